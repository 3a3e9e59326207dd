//! Nothing `shakedown run` starts outlives it: a daemon (new session, double
//! fork, still listening), a wrapper script that does not exec its server,
//! a child that changed user, and PostgreSQL, after a normal run and after
//! `kill -9` of shakedown mid-run, under the cgroup mechanism and the forced
//! fallback; and leftovers of a dead shakedown are killed at the next start.
//!
//! A run's processes are found the way a person would look for them: a live
//! process whose working directory is inside the run directory, whose
//! environment carries the run's tag, or whose command line names it, and
//! every descendant of one. Tests take `SERIAL`, since every start of
//! shakedown kills leftovers machine-wide and one test plants fake ones.

use crate::common::{example, repo_root, SHAKEDOWN};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// A process seen during a run: its identity, and what it was.
#[derive(Debug, Clone)]
struct Seen {
    pid: i32,
    start: u64,
    uid: u32,
    what: String,
}

/// (ppid, start, state) from /proc/PID/stat.
fn stat(pid: i32) -> Option<(i32, u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = text[text.rfind(')')? + 2..].split(' ').collect();
    Some((f[1].parse().ok()?, f[19].parse().ok()?, f[0].chars().next()?))
}

fn pids() -> Vec<i32> {
    let entries = std::fs::read_dir("/proc").unwrap().flatten();
    entries.filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

fn is_live(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|(_, s, state)| s == start && state != 'Z' && state != 'X')
}

/// Whether `pid` itself points at the run directory `out`.
fn mentions(pid: i32, out: &str) -> bool {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let in_run = cwd.is_some_and(|c| c.starts_with(out));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let tag = format!("SHAKEDOWN_RUN_DIR={out}");
    let tagged = environ.split(|&b| b == 0).any(|e| e.starts_with(tag.as_bytes()));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    in_run || tagged || String::from_utf8_lossy(&cmdline).contains(out)
}

/// The live processes of the run in `out` (but not `shakedown` itself) and their descendants.
fn processes_of(out: &Path, shakedown: Option<u32>) -> Vec<Seen> {
    let out = out.to_str().unwrap();
    let all: Vec<(i32, i32, u64)> =
        pids().into_iter().filter_map(|p| stat(p).filter(|s| s.2 != 'Z').map(|(pp, st, _)| (p, pp, st))).collect();
    let not_shakedown = |p: i32| shakedown.is_none_or(|s| i64::from(p) != i64::from(s));
    let mut members: BTreeSet<i32> =
        all.iter().map(|a| a.0).filter(|&p| not_shakedown(p) && mentions(p, out)).collect();
    loop {
        let before = members.len();
        let children: Vec<i32> = all.iter().filter(|a| members.contains(&a.1)).map(|a| a.0).collect();
        members.extend(children);
        if members.len() == before {
            break;
        }
    }
    let seen = all.iter().filter(|a| members.contains(&a.0));
    seen.map(|&(pid, _, start)| Seen { pid, start, uid: uid(pid), what: describe(pid) }).collect()
}

fn uid(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("Uid:\t4294967295");
    line.split_whitespace().nth(1).and_then(|u| u.parse().ok()).unwrap_or(u32::MAX)
}

fn describe(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    format!("{pid} {}", String::from_utf8_lossy(&cmdline).replace('\0', " ").trim())
}

/// The TCP ports the processes in `seen` listen on, from their socket inodes.
fn listening_ports(seen: &[Seen]) -> Vec<u16> {
    let mut inodes = BTreeSet::new();
    for s in seen {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", s.pid)) else { continue };
        for fd in fds.flatten() {
            let link = std::fs::read_link(fd.path()).unwrap_or_default().display().to_string();
            if let Some(inode) = link.strip_prefix("socket:[").and_then(|l| l.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let listening = table.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()).filter(|f| f[3] == "0A");
    let ours = listening.filter(|f| inodes.contains(f[9]));
    ours.map(|f| u16::from_str_radix(f[1].rsplit(':').next().unwrap(), 16).unwrap()).collect()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// `shakedown run SCENARIO --out OUT` with the given mechanism, quiet.
fn start_run(scenario: &Path, out: &Path, mechanism: &str) -> Child {
    Command::new(SHAKEDOWN)
        .args(["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("SHAKEDOWN_CONTAINMENT", mechanism)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A temporary directory every user can traverse (pg.sh runs PostgreSQL as
/// `postgres`, and the data directory is below it).
fn traversable_tmp() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// `escapers.toml` lasting `duration` in a temporary directory, and the run directory to use.
fn escapers(duration: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = traversable_tmp();
    let text = std::fs::read_to_string(data("escapers.toml")).unwrap();
    let scenario = tmp.path().join("escapers.toml");
    std::fs::write(&scenario, text.replace("duration = \"3s\"", &format!("duration = \"{duration}\""))).unwrap();
    let out = tmp.path().canonicalize().unwrap().join("out");
    (tmp, scenario, out)
}

fn data(name: &str) -> PathBuf {
    repo_root().join("crates/shakedown-cli/tests/data/containment").join(name)
}

/// Waits until the escapers are all up: two servers listening (the daemon
/// and the wrapper's child) and a process running as nobody.
fn wait_for_escapers(out: &Path, shakedown: &mut Child) -> (Vec<Seen>, Vec<u16>) {
    let (mut seen, mut ports) = (Vec::new(), Vec::new());
    let up = wait_until(Duration::from_secs(30), || {
        seen = processes_of(out, Some(shakedown.id()));
        ports = listening_ports(&seen);
        ports.len() == 2 && seen.iter().filter(|s| s.uid == 65534).count() == 2
    });
    if !up {
        let _ = shakedown.kill();
    }
    assert!(up, "the services came up: {seen:#?}, ports {ports:?}");
    (seen, ports)
}

/// What of `seen` still runs, and anything else of the run in `out`.
fn survivors(seen: &[Seen], out: &Path) -> Vec<String> {
    let mut left: Vec<String> = seen.iter().filter(|s| is_live(s.pid, s.start)).map(|s| s.what.clone()).collect();
    left.extend(processes_of(out, None).into_iter().map(|s| s.what));
    left.sort();
    left.dedup();
    left
}

fn assert_refused(ports: &[u16]) {
    for port in ports {
        let connect = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], *port).into(), Duration::from_secs(1));
        assert!(connect.is_err(), "port {port} still accepts connections");
    }
}

fn escapers_after_a_normal_run(mechanism: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (_tmp, scenario, out) = escapers("3s");
    let mut shakedown = start_run(&scenario, &out, mechanism);
    let (seen, ports) = wait_for_escapers(&out, &mut shakedown);
    let exited = wait_until(Duration::from_secs(60), || shakedown.try_wait().unwrap().is_some());
    assert!(exited, "the run ends");
    // Unknown: there is no workload, so the stats check has no ops to judge.
    assert_eq!(shakedown.wait().unwrap().code(), Some(2));
    assert_eq!(survivors(&seen, &out), Vec::<String>::new(), "of {seen:#?}");
    assert_refused(&ports);
}

#[test]
fn nothing_outlives_a_normal_run_under_the_cgroup() {
    escapers_after_a_normal_run("cgroup");
}

#[test]
fn nothing_outlives_a_normal_run_under_the_fallback() {
    escapers_after_a_normal_run("subreaper");
}

/// SIGKILLs shakedown and gives its watchdog 10 s; returns how long it took.
fn kill_and_wait(mut shakedown: Child, seen: &[Seen], out: &Path) -> Duration {
    shakedown.kill().unwrap();
    shakedown.wait().unwrap();
    let killed = Instant::now();
    let clean = wait_until(Duration::from_secs(10), || survivors(seen, out).is_empty());
    assert!(clean, "left after kill -9: {:#?}", survivors(seen, out));
    killed.elapsed()
}

/// The run cgroups a shakedown with this pid made (shakedown-<pid>-*).
fn cgroups_of(pid: u32) -> Vec<String> {
    let entries = std::fs::read_dir("/sys/fs/cgroup/unified").unwrap().flatten();
    let names = entries.map(|e| e.file_name().to_string_lossy().into_owned());
    names.filter(|n| n.starts_with(&format!("shakedown-{pid}-"))).collect()
}

fn escapers_after_kill_9(mechanism: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (_tmp, scenario, out) = escapers("60s");
    let mut shakedown = start_run(&scenario, &out, mechanism);
    let pid = shakedown.id();
    let (seen, ports) = wait_for_escapers(&out, &mut shakedown);
    let expected_cgroups = usize::from(mechanism == "cgroup");
    assert_eq!(cgroups_of(pid).len(), expected_cgroups, "{mechanism}");
    let took = kill_and_wait(shakedown, &seen, &out);
    eprintln!("{mechanism}: {} processes gone {took:?} after kill -9", seen.len());
    assert_refused(&ports);
    assert_eq!(cgroups_of(pid), Vec::<String>::new(), "the run's cgroup is removed");
}

#[test]
fn nothing_outlives_a_sigkilled_shakedown_under_the_cgroup() {
    escapers_after_kill_9("cgroup");
}

#[test]
fn nothing_outlives_a_sigkilled_shakedown_under_the_fallback() {
    escapers_after_kill_9("subreaper");
}

/// Ctrl-C at a terminal signals the whole foreground process group. Twice:
/// the second makes shakedown exit at once (130) without ending its run, so
/// the watchdog, which has left that group, kills the run after shakedown is gone.
#[test]
fn ctrl_c_twice_at_a_terminal_leaves_nothing() {
    use nix::sys::signal::{killpg, Signal};
    use std::os::unix::process::CommandExt;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (_tmp, scenario, out) = escapers("60s");
    let mut shakedown = Command::new(SHAKEDOWN)
        .args(["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let (seen, ports) = wait_for_escapers(&out, &mut shakedown);
    let group = nix::unistd::Pid::from_raw(i32::try_from(shakedown.id()).unwrap());
    killpg(group, Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _ = killpg(group, Signal::SIGINT);
    let exited = wait_until(Duration::from_secs(20), || shakedown.try_wait().unwrap().is_some());
    if !exited {
        let _ = shakedown.kill();
    }
    assert!(exited, "shakedown exits on Ctrl-C");
    assert_eq!(shakedown.wait().unwrap().code(), Some(130));
    let clean = wait_until(Duration::from_secs(10), || survivors(&seen, &out).is_empty());
    assert!(clean, "left after Ctrl-C: {:#?}", survivors(&seen, &out));
    assert_refused(&ports);
}

/// The PostgreSQL queue example, SIGKILLed once the server and its
/// background processes run (as `postgres`, via setpriv in pg.sh).
fn postgres_after_kill_9(mechanism: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = traversable_tmp();
    let out = tmp.path().canonicalize().unwrap().join("out");
    let mut shakedown = start_run(&example("postgres/queue.toml"), &out, mechanism);
    let mut seen = Vec::new();
    let up = wait_until(Duration::from_secs(60), || {
        seen = processes_of(&out, Some(shakedown.id()));
        seen.iter().filter(|s| s.what.contains("postgres: ")).count() >= 3
    });
    if !up {
        let _ = shakedown.kill();
    }
    assert!(up, "postgres came up: {seen:#?}");
    assert!(seen.iter().any(|s| s.what.contains("bin/postgres -D") && s.uid != 0), "{seen:#?}");
    let took = kill_and_wait(shakedown, &seen, &out);
    eprintln!("postgres, {mechanism}: {} processes gone {took:?} after kill -9", seen.len());
}

#[test]
fn postgres_does_not_outlive_a_sigkilled_shakedown_under_the_cgroup() {
    postgres_after_kill_9("cgroup");
}

#[test]
fn postgres_does_not_outlive_a_sigkilled_shakedown_under_the_fallback() {
    postgres_after_kill_9("subreaper");
}

/// `sh` whose child `sleep` has an empty environment, tagged with `owner`
/// (`<pid>:<start>`) and the run directory `run_dir`.
fn plant(owner: &str, run_dir: &Path) -> Child {
    Command::new("sh")
        .args(["-c", "env -i sleep 1000; :"])
        .env("SHAKEDOWN_RUN_DIR", run_dir)
        .env("SHAKEDOWN_OWNER", owner)
        .spawn()
        .unwrap()
}

fn children_of(pid: u32) -> Vec<i32> {
    pids().into_iter().filter(|&p| stat(p).is_some_and(|s| i64::from(s.0) == i64::from(pid) && s.2 != 'Z')).collect()
}

#[test]
fn leftovers_of_a_dead_shakedown_are_killed_and_reported_at_the_next_start() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (earlier, beside) = (tmp.path().join("earlier-run"), tmp.path().join("running-beside"));
    // The owner lives while its processes start, and dies just before the
    // next run, as a SIGKILLed shakedown whose watchdog died with it would.
    let mut owner = Command::new("sleep").arg("1000").spawn().unwrap();
    let owner_pid = i32::try_from(owner.id()).unwrap();
    let owner_tag = format!("{owner_pid}:{}", stat(owner_pid).unwrap().1);
    let me = i32::try_from(std::process::id()).unwrap();
    let mut dead = plant(&owner_tag, &earlier);
    let mut live = plant(&format!("{me}:{}", stat(me).unwrap().1), &beside);
    assert!(
        wait_until(Duration::from_secs(5), || children_of(dead.id()).len() == 1 && children_of(live.id()).len() == 1)
    );
    let (dead_sleep, live_sleep) = (children_of(dead.id())[0], children_of(live.id())[0]);
    owner.kill().unwrap();
    owner.wait().unwrap();

    let scenario = tmp.path().join("quick.toml");
    std::fs::write(&scenario, "name = \"quick\"\nduration = \"100ms\"\n").unwrap();
    let o = crate::common::shakedown(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = format!("shakedown: killed 2 processes left by an earlier run in {}", earlier.display());
    assert!(stderr.contains(&line), "{stderr}");
    assert!(!stderr.contains("running-beside"), "{stderr}");
    assert!(dead.wait().unwrap().code().is_none(), "the tagged sh was killed");
    assert!(stat(dead_sleep).is_none_or(|s| s.2 == 'Z'), "its untagged child was killed");
    assert!(live.try_wait().unwrap().is_none() && stat(live_sleep).is_some(), "a live owner's processes are kept");
    live.kill().unwrap();
    live.wait().unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(live_sleep), nix::sys::signal::Signal::SIGKILL);
}

/// How many random-moment kills [`shakedown_killed_at_random_moments_leaves_nothing_and_a_readable_prefix`]
/// makes: 10 in the default suite, more with `SHAKEDOWN_KILL_TRIALS`
/// (`scripts/kill-trials` runs 50).
fn kill_trials() -> usize {
    std::env::var("SHAKEDOWN_KILL_TRIALS").ok().and_then(|n| n.parse().ok()).unwrap_or(10)
}

/// What the trials kill shakedown in, and the window the kill falls in.
struct Subject {
    name: &'static str,
    /// The scenario file, given the trial's temporary directory.
    scenario: fn(&Path) -> PathBuf,
    latest_kill: Duration,
}

const SUBJECTS: [Subject; 4] = [
    Subject { name: "quickstart", scenario: |_| example("quickstart.toml"), latest_kill: Duration::from_millis(5500) },
    Subject {
        name: "daemon and wrapper",
        scenario: |tmp| {
            let text = std::fs::read_to_string(data("escapers.toml")).unwrap();
            let path = tmp.join("escapers.toml");
            std::fs::write(&path, text.replace("duration = \"3s\"", "duration = \"60s\"")).unwrap();
            path
        },
        latest_kill: Duration::from_millis(4000),
    },
    Subject {
        name: "namespaced partition",
        scenario: |_| data("partitioned.toml"),
        latest_kill: Duration::from_secs(5),
    },
    Subject {
        name: "postgres",
        scenario: |_| example("postgres/queue.toml"),
        latest_kill: Duration::from_millis(7500),
    },
];

/// One trial: run `subject`, SIGKILL shakedown after `delay`, then nothing
/// of the run may be left on the host, and `shakedown report` must turn
/// what it recorded into a report saying the harness died.
fn killed_trial(subject: &Subject, delay: Duration, mechanism: &str) {
    let tmp = traversable_tmp();
    let out = tmp.path().canonicalize().unwrap().join("out");
    let (host_before, shm_before) = (crate::host::state(), crate::host::shared_memory());
    let mut shakedown = start_run(&(subject.scenario)(tmp.path()), &out, mechanism);
    let pid = shakedown.id();
    let mut seen = Vec::new();
    let start = Instant::now();
    while start.elapsed() < delay {
        seen.extend(processes_of(&out, Some(pid)));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(shakedown.try_wait().unwrap().is_none(), "{}: the run was still going at {delay:?}", subject.name);
    seen.extend(processes_of(&out, Some(pid)));
    seen.sort_by_key(|s| (s.pid, s.start));
    seen.dedup_by_key(|s| (s.pid, s.start));
    let what = format!("{} killed at {delay:?} ({mechanism}, {} processes seen)", subject.name, seen.len());
    kill_and_wait(shakedown, &seen, &out);
    assert_eq!(cgroups_of(pid), Vec::<String>::new(), "{what}: the run's cgroup is removed");
    let host_after = crate::host::state();
    assert_eq!(host_before.netns, host_after.netns, "{what}: ip netns list is unchanged");
    assert_eq!(host_before.rules, host_after.rules, "{what}: the host's firewall rules are unchanged");
    assert_eq!(host_before.mounts, host_after.mounts, "{what}: the host's mount table is unchanged");
    let new_shm = crate::host::new_shared_memory(&shm_before, &crate::host::shared_memory());
    assert_eq!(new_shm, Vec::<String>::new(), "{what}: no shared memory is left on the host");
    let report = Command::new(SHAKEDOWN).args(["report", out.to_str().unwrap()]).env("NO_COLOR", "1").output().unwrap();
    let err = String::from_utf8_lossy(&report.stderr);
    assert!(matches!(report.status.code(), Some(1 | 4)), "{what}: report exits 4 (or 1 on a finding): {err}");
    assert!(err.contains("the harness stopped before the run finished"), "{what}: {err}");
    let json = crate::common::report(&out);
    assert_eq!(json["end"], "died", "{what}: {json}");
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    assert!(history.starts_with("{\"format\":\"shakedown-history\""), "{what}: the history has its header");
    eprintln!("{what}: clean; the report judged {} events", history.lines().count().saturating_sub(1));
}

/// SIGKILL at random moments (drawn from `SHAKEDOWN_KILL_SEED`, default 1)
/// across the quick start, a daemon and a wrapper script, a namespaced
/// partition and PostgreSQL, under both mechanisms in turn.
#[test]
fn shakedown_killed_at_random_moments_leaves_nothing_and_a_readable_prefix() {
    use rand::{Rng, SeedableRng};
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = std::env::var("SHAKEDOWN_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    eprintln!("{} trials, seed {seed}", kill_trials());
    for i in 0..kill_trials() {
        let subject = &SUBJECTS[i % SUBJECTS.len()];
        let mechanism = if (i / SUBJECTS.len()).is_multiple_of(2) { "cgroup" } else { "subreaper" };
        let delay = Duration::from_millis(rng.gen_range(300..=u64::try_from(subject.latest_kill.as_millis()).unwrap()));
        killed_trial(subject, delay, mechanism);
    }
}
