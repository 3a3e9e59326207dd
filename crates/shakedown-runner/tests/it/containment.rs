//! A run's containment against real processes: a daemon that left its
//! process group, a child that changed user, two runs side by side, and the
//! leftovers of a dead owner, under the cgroup mechanism and the fallback.
//!
//! Every test here takes `SERIAL`: starting a containment sweeps leftovers
//! machine-wide, which must not race the test that plants fake ones.

use shakedown_runner::containment::{reap_leftovers, Choice, Mechanism, Owner, RunContainment, OWNER_VAR};
use shakedown_runner::supervisor::{spawn_tracked, ProcSpec, RUN_DIR_VAR};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The fields of /proc/PID/stat these tests need: (ppid, pgid, sid, start, state).
fn stat(pid: i32) -> Option<(i32, i32, i32, u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    Some((f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?, f[19].parse().ok()?, f[0].chars().next()?))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.4 != 'Z' && s.4 != 'X')
}

fn env_of(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|&b| b == 0).map(|e| String::from_utf8_lossy(e).into_owned()).collect()
}

/// Live processes whose environment carries `VAR=value`.
fn tagged(var: &str, value: &str) -> Vec<i32> {
    let want = format!("{var}={value}");
    let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
    pids.filter(|&p| alive(p) && env_of(p).contains(&want)).collect()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// A command of the run in `run_dir`, tagged as the planner tags them.
fn spec(run_dir: &Path, argv: &[&str]) -> ProcSpec {
    ProcSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap()), (RUN_DIR_VAR.into(), run_dir.display().to_string())],
        cwd: run_dir.to_path_buf(),
        namespaces: Vec::new(),
    }
}

/// Starts a daemon the way many services do (a subshell that starts it in a
/// new session and exits), then ends the group the run started, as a stop
/// would: the daemon is still there, and only the run's end kills it.
async fn a_daemon_dies_at_the_run_end(choice: Choice) {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().canonicalize().unwrap();
    let containment = RunContainment::start(&run_dir, choice).unwrap();
    let mut cmd = spec(&run_dir, &["sh", "-c", "(setsid sleep 1000 &); exit 0"]).command();
    let (mut child, group) = spawn_tracked(&mut cmd).unwrap();
    assert!(child.wait().await.unwrap().success());
    let tag = run_dir.display().to_string();
    let mut daemons = Vec::new();
    let found = wait_until(Duration::from_secs(5), || {
        daemons = tagged(RUN_DIR_VAR, &tag);
        daemons.len() == 1 && stat(daemons[0]).is_some_and(|s| s.2 == daemons[0])
    });
    let described: Vec<_> = daemons.iter().map(|&p| (p, stat(p))).collect();
    assert!(found, "one daemon in its own session: {described:?}");
    // The stop of the group it started in (once it has left) does not reach it.
    drop(group);
    std::thread::sleep(Duration::from_millis(100));
    let daemon = daemons[0];
    assert!(alive(daemon), "the daemon outlives its group");
    let watchdog = containment.watchdog_pid().unwrap();
    assert_eq!(stat(watchdog).unwrap().2, watchdog, "the watchdog leads a session of its own");
    let (ppid, pgid, sid, _, _) = stat(daemon).unwrap();
    assert_eq!((pgid, sid), (daemon, daemon), "the daemon leads a session of its own");
    assert!(env_of(daemon).contains(&format!("{OWNER_VAR}={}", Owner::current().tag())), "tagged with its owner");
    match containment.mechanism() {
        Mechanism::Cgroup(_) => {
            let cgroup = containment.cgroup().unwrap().to_path_buf();
            let name = cgroup.file_name().unwrap().to_str().unwrap().to_string();
            let membership = std::fs::read_to_string(format!("/proc/{daemon}/cgroup")).unwrap();
            assert!(membership.contains(&name), "the daemon is in {name}: {membership}");
            containment.end().unwrap();
            assert!(!cgroup.exists(), "the run's cgroup is removed");
        }
        Mechanism::Subreaper(_) => {
            assert_eq!(ppid, Owner::current().pid, "orphans are adopted by the subreaper");
            containment.end().unwrap();
        }
    }
    assert!(!alive(daemon), "the daemon died at the run's end");
    assert!(stat(watchdog).is_none(), "the watchdog exited and was reaped");
    // Adopted orphans are reaped, not left as our zombies.
    assert!(wait_until(Duration::from_secs(2), || stat(daemon).is_none_or(|s| s.0 != Owner::current().pid)));
}

#[tokio::test]
async fn a_daemon_dies_at_the_run_end_under_the_cgroup() {
    a_daemon_dies_at_the_run_end(Choice::Cgroup).await;
}

#[tokio::test]
async fn a_daemon_dies_at_the_run_end_under_the_fallback() {
    a_daemon_dies_at_the_run_end(Choice::Subreaper).await;
}

/// A child that drops to `nobody` (which clears its PDEATHSIG) and a child
/// of it (a wrapper that does not exec) die with the run.
async fn a_child_that_changed_user_dies_at_the_run_end(choice: Choice) {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().canonicalize().unwrap();
    let containment = RunContainment::start(&run_dir, choice).unwrap();
    let argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", "sleep 1000; :"];
    let mut cmd = spec(&run_dir, &argv).command();
    let (_child, _group) = spawn_tracked(&mut cmd).unwrap();
    let tag = run_dir.display().to_string();
    let mut pids = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        pids = tagged(RUN_DIR_VAR, &tag);
        pids.len() == 2
    }));
    for &pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.lines().any(|l| l.starts_with("Uid:\t65534")), "{pid} runs as nobody: {status}");
    }
    containment.end().unwrap();
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?} died at the run's end");
}

#[tokio::test]
async fn a_child_that_changed_user_dies_at_the_run_end_under_the_cgroup() {
    a_child_that_changed_user_dies_at_the_run_end(Choice::Cgroup).await;
}

#[tokio::test]
async fn a_child_that_changed_user_dies_at_the_run_end_under_the_fallback() {
    a_child_that_changed_user_dies_at_the_run_end(Choice::Subreaper).await;
}

/// Two runs in one process: the first to end leaves the other's daemon alone.
async fn ending_one_run_spares_its_neighbour(choice: Choice) {
    let _serial = SERIAL.lock().await;
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs = [tmp_a.path().canonicalize().unwrap(), tmp_b.path().canonicalize().unwrap()];
    let runs = [RunContainment::start(&dirs[0], choice).unwrap(), RunContainment::start(&dirs[1], choice).unwrap()];
    let mut groups = Vec::new();
    for dir in &dirs {
        let mut cmd = spec(dir, &["sh", "-c", "(setsid sleep 1000 &); exit 0"]).command();
        let (mut child, group) = spawn_tracked(&mut cmd).unwrap();
        child.wait().await.unwrap();
        groups.push(group);
    }
    let daemon_of = |dir: &Path| tagged(RUN_DIR_VAR, &dir.display().to_string());
    let one_daemon = |dir: &Path| {
        let pids = daemon_of(dir);
        pids.len() == 1 && stat(pids[0]).is_some_and(|s| s.2 == pids[0])
    };
    assert!(wait_until(Duration::from_secs(5), || one_daemon(&dirs[0]) && one_daemon(&dirs[1])));
    drop(groups);
    let (a, b) = (daemon_of(&dirs[0])[0], daemon_of(&dirs[1])[0]);
    let [first, second] = runs;
    first.end().unwrap();
    assert!(!alive(a), "the first run's daemon died");
    assert!(alive(b), "the second run's daemon lives on");
    second.end().unwrap();
    assert!(!alive(b));
}

#[tokio::test]
async fn ending_one_run_spares_its_neighbour_under_the_cgroup() {
    ending_one_run_spares_its_neighbour(Choice::Cgroup).await;
}

#[tokio::test]
async fn ending_one_run_spares_its_neighbour_under_the_fallback() {
    ending_one_run_spares_its_neighbour(Choice::Subreaper).await;
}

/// A process that has exited: its (pid, start) names an owner that is gone.
fn dead_owner() -> Owner {
    let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let start = stat(pid).unwrap().3;
    child.wait().unwrap();
    Owner { pid, start }
}

/// `sh` tagged with `owner` and `run_dir`, whose child `sleep` has an empty
/// environment (as PostgreSQL's backends effectively do): found only as a descendant.
fn plant(owner: &Owner, run_dir: &str) -> (std::process::Child, i32) {
    let child = Command::new("sh")
        .args(["-c", "env -i sleep 1000; :"])
        .env(RUN_DIR_VAR, run_dir)
        .env(OWNER_VAR, owner.tag())
        .spawn()
        .unwrap();
    let sh = i32::try_from(child.id()).unwrap();
    let mut sleep = None;
    let found = wait_until(Duration::from_secs(5), || {
        sleep = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .find(|&p| stat(p).is_some_and(|s| s.0 == sh) && alive(p));
        sleep.is_some()
    });
    assert!(found, "sh started its sleep");
    (child, sleep.unwrap())
}

#[tokio::test]
async fn leftovers_of_a_dead_owner_are_killed_and_a_live_owners_kept() {
    let _serial = SERIAL.lock().await;
    let dead = dead_owner();
    let (mut dead_sh, dead_sleep) = plant(&dead, "/nonexistent/dead-run");
    let (mut live_sh, live_sleep) = plant(&Owner::current(), "/nonexistent/live-run");
    // A dead owner's cgroup with a process in it (untagged: the cgroup alone says whose).
    let mut in_cgroup = Command::new("sleep").arg("1000").spawn().unwrap();
    let cgroup = Path::new("/sys/fs/cgroup/unified").join(format!("shakedown-{}-{}-1", dead.pid, dead.start));
    std::fs::create_dir(&cgroup).unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), in_cgroup.id().to_string()).unwrap();

    let leftovers = reap_leftovers();
    let report: Vec<String> = leftovers.iter().map(|l| l.to_string()).collect();
    assert!(
        report.contains(&"killed 2 processes left by an earlier run in /nonexistent/dead-run".into()),
        "{report:?}"
    );
    assert!(report.contains(&"killed 1 process left by an earlier run in unknown".into()), "{report:?}");
    assert!(leftovers.iter().all(|l| l.owner == dead.tag() || !l.run_dir.contains("live-run")), "{leftovers:?}");
    assert!(!alive(dead_sleep), "the untagged descendant died");
    assert!(!cgroup.exists(), "the dead owner's cgroup is removed");
    assert!(dead_sh.wait().unwrap().code().is_none(), "killed by a signal");
    assert!(in_cgroup.wait().unwrap().code().is_none(), "killed by a signal");
    assert!(alive(live_sleep) && live_sh.try_wait().unwrap().is_none(), "a live owner's processes are kept");
    live_sh.kill().unwrap();
    live_sh.wait().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(live_sleep), nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// Live children of `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
    pids.filter(|&p| alive(p) && stat(p).is_some_and(|s| s.0 == pid)).collect()
}

/// The fallback without tags to go by: a leader whose environment is empty
/// is found through the process group the run registered with the watchdog,
/// and its child that moved to a session of its own through its descent.
#[tokio::test]
async fn the_fallback_finds_untagged_processes_by_group_and_descent() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().canonicalize().unwrap();
    let containment = RunContainment::start(&run_dir, Choice::Subreaper).unwrap();
    let script = "sleep 1000 & setsid sleep 1000 & wait";
    let mut cmd = spec(&run_dir, &["env", "-i", "sh", "-c", script]).command();
    let (child, _group) = spawn_tracked(&mut cmd).unwrap();
    let leader = i32::try_from(child.id().unwrap()).unwrap();
    let mut kids = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        kids = children_of(leader);
        kids.len() == 2 && kids.iter().any(|&k| stat(k).is_some_and(|s| s.2 == k))
    }));
    assert!(tagged(RUN_DIR_VAR, &run_dir.display().to_string()).is_empty(), "nothing carries the tag");
    containment.end().unwrap();
    for pid in kids.iter().chain([&leader]) {
        assert!(!alive(*pid), "{pid} died at the run's end");
    }
}
