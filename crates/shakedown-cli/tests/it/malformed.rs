//! Malformed input end to end: the real `shakedown` binary is given every
//! scenario and history in `tests/data/malformed/`, and devices, FIFOs,
//! directories and oversized files made here, and must refuse each with its
//! documented exit code and a message naming the file and line, within 5 s
//! and 200 MB of peak RSS, never with a panic (exit 101) and, for scenarios,
//! before anything runs. Output to a closed pipe must not panic either.

use crate::common::SHAKEDOWN;
use nix::libc;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The wall time and peak RSS every case must stay within.
const MAX_WALL: Duration = Duration::from_secs(5);
const MAX_RSS_KB: i64 = 200 * 1024;
/// Past this a child is killed, so a hang fails the test instead of stalling it.
const KILL_AFTER: Duration = Duration::from_secs(30);
/// Output kept per stream; a case that prints more is cut, not buffered whole.
const MAX_OUTPUT_BYTES: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
struct Manifest {
    case: BTreeMap<String, Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    exit: i32,
    message: String,
    /// More parts the message must hold (an include's own line, say).
    #[serde(default)]
    also: Vec<String>,
    /// Arguments before the file, replacing the command's default ones.
    args: Option<Vec<String>>,
}

impl Expect {
    /// Whether `f` ended as expected.
    fn matches(&self, f: &Finished) -> bool {
        f.code == Some(self.exit) && std::iter::once(&self.message).chain(&self.also).all(|m| f.stderr.contains(m))
    }
}

/// How a child ended, measured by `wait4`.
struct Finished {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    wall: Duration,
    max_rss_kb: i64,
}

impl Finished {
    fn describe(&self) -> String {
        format!(
            "exit {:?}, signal {:?}, {:?}, {} KB peak RSS; stderr:\n{}",
            self.code, self.signal, self.wall, self.max_rss_kb, self.stderr
        )
    }
}

fn data_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/malformed").join(kind)
}

fn manifest(dir: &Path) -> Manifest {
    let text = std::fs::read_to_string(dir.join("expect.toml")).expect("read expect.toml");
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}/expect.toml: {e}", dir.display()))
}

/// Runs shakedown with `args` and `stderr`, reaping it with `wait4` for its
/// peak RSS; the stderr text is empty when `stderr` is not a pipe read here.
#[allow(clippy::zombie_processes, reason = "the child is reaped by waitpid while its memory is sampled")]
fn run_measured(args: &[OsString], stdout: Stdio, stderr: Stdio) -> Finished {
    let start = Instant::now();
    let mut child = Command::new(SHAKEDOWN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn shakedown");
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(r) = r {
                let _ = r.take(MAX_OUTPUT_BYTES).read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // Peak memory is sampled from /proc (VmHWM, the process's own high-water
    // mark since its exec) while it runs: wait4's ru_maxrss would carry this
    // test process's own peak into the child, since exec records the old
    // image's high-water mark, and the test binary runs other tests beside.
    let mut max_rss_kb = 0;
    let status = loop {
        max_rss_kb = max_rss_kb.max(vm_hwm_kb(pid));
        let mut status = 0;
        // SAFETY: pid is our own child, not yet reaped; status is valid.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(reaped >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if reaped == pid {
            break status;
        }
        if start.elapsed() > KILL_AFTER {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let wall = start.elapsed();
    let _ = out.join();
    let stderr = err.join().unwrap_or_default();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    Finished { code, signal, stderr, wall, max_rss_kb }
}

/// A live process's peak resident memory in KiB (0 once it has exited).
fn vm_hwm_kb(pid: libc::pid_t) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap_or("");
    line.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

fn run_case(args: &[OsString]) -> Finished {
    run_measured(args, Stdio::piped(), Stdio::piped())
}

/// The slowest and the largest run of a test, printed for the record
/// (`--nocapture` shows them).
#[derive(Default)]
struct Worst {
    wall: (Duration, String),
    rss_kb: (i64, String),
}

impl Worst {
    fn note(&mut self, what: &str, f: &Finished) {
        if f.wall > self.wall.0 {
            self.wall = (f.wall, what.to_string());
        }
        if f.max_rss_kb > self.rss_kb.0 {
            self.rss_kb = (f.max_rss_kb, what.to_string());
        }
    }

    fn print(&self, n: usize) {
        println!(
            "{n} cases; slowest {} in {:?}; largest {} at {} KB peak RSS",
            self.wall.1, self.wall.0, self.rss_kb.1, self.rss_kb.0
        );
    }
}

/// The limits every run holds to, whatever its input.
fn assert_bounded(what: &str, f: &Finished) {
    assert_ne!(f.code, Some(101), "{what}: a panic\n{}", f.describe());
    assert!(f.signal.is_none(), "{what}: killed by a signal\n{}", f.describe());
    assert!(f.wall < MAX_WALL, "{what}: took {:?}, over {MAX_WALL:?}\n{}", f.wall, f.describe());
    assert!(f.max_rss_kb < MAX_RSS_KB, "{what}: peaked at {} KB, over {MAX_RSS_KB} KB", f.max_rss_kb);
}

/// The expected message must name its file (the case's, or an include's
/// starting with `_`) followed by `:LINE`.
fn assert_names_file_and_line(name: &str, message: &str) {
    let file = message.split(':').next().unwrap_or_default();
    let line = message.split(':').nth(1).unwrap_or_default();
    assert!(
        (file == name || file.starts_with('_')) && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()),
        "{name}: the expected message must start with the file name and a line, `{name}:LINE`: {message:?}"
    );
}

/// Every file of `dir` (but `expect.toml` and `_` includes) has a case and every case a file.
fn check_manifest_covers(dir: &Path, m: &Manifest) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("read the corpus")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "expect.toml" && !n.starts_with('_'))
        .collect();
    files.sort();
    let cases: Vec<String> = m.case.keys().cloned().collect();
    assert_eq!(files, cases, "{}: files and expect.toml cases differ", dir.display());
    files
}

#[test]
fn malformed_scenarios_are_refused_before_anything_runs() {
    let dir = data_dir("scenarios");
    let m = manifest(&dir);
    let files = check_manifest_covers(&dir, &m);
    assert!(files.len() >= 60, "only {} scenario cases", files.len());
    let tmp = tempfile::tempdir().unwrap();
    let (mut failures, mut worst) = (Vec::new(), Worst::default());
    for name in &files {
        let want = &m.case[name];
        assert_names_file_and_line(name, &want.message);
        let out = tmp.path().join(name);
        let mut args: Vec<OsString> = vec!["run".into(), dir.join(name).into(), "--out".into(), out.clone().into()];
        args.extend(want.args.iter().flatten().map(OsString::from));
        let f = run_case(&args);
        assert_bounded(name, &f);
        worst.note(name, &f);
        if !want.matches(&f) {
            failures.push(format!("{name}: wanted exit {} and {:?}; got {}", want.exit, want.message, f.describe()));
        }
        // Refused before anything ran: no run directory was made.
        if out.exists() || !f.stderr.contains("nothing was run") {
            failures.push(format!("{name}: it was not refused before running:\n{}", f.describe()));
        }
    }
    worst.print(files.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), files.len(), failures.join("\n\n"));
}

#[test]
fn malformed_histories_are_refused_naming_file_and_line() {
    let dir = data_dir("histories");
    let m = manifest(&dir);
    let files = check_manifest_covers(&dir, &m);
    assert!(files.len() >= 40, "only {} history cases", files.len());
    let (mut failures, mut worst) = (Vec::new(), Worst::default());
    for name in &files {
        let want = &m.case[name];
        assert_names_file_and_line(name, &want.message);
        let default_args = ["--model".to_string(), "register".to_string()];
        let mut args: Vec<OsString> = vec!["check".into()];
        args.extend(want.args.as_deref().unwrap_or(&default_args).iter().map(OsString::from));
        args.push(dir.join(name).into());
        let f = run_case(&args);
        assert_bounded(name, &f);
        worst.note(name, &f);
        if !want.matches(&f) {
            failures.push(format!("{name}: wanted exit {} and {:?}; got {}", want.exit, want.message, f.describe()));
        }
    }
    worst.print(files.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), files.len(), failures.join("\n\n"));
}

/// A FIFO at `path`; opening it to read would block until a writer came.
fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// A valid history of one write and one read, for cases about the file, not its content.
const GOOD_HISTORY: &str = concat!(
    r#"{"format":"shakedown-history","version":1,"scenario":"t","seed":1}"#,
    "\n",
    r#"{"index":0,"time_ns":10,"type":"invoke","process":0,"actor":"0","f":"write","value":1}"#,
    "\n",
    r#"{"index":1,"time_ns":20,"type":"ok","process":0,"actor":"0","f":"write","value":1}"#,
    "\n",
    r#"{"index":2,"time_ns":30,"type":"invoke","process":0,"actor":"0","f":"read","value":null}"#,
    "\n",
    r#"{"index":3,"time_ns":40,"type":"ok","process":0,"actor":"0","f":"read","value":1}"#,
    "\n",
);

#[test]
fn devices_fifos_directories_and_oversized_files_are_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::os::unix::fs::symlink("/dev/zero", t.join("zero.toml")).unwrap();
    make_fifo(&t.join("fifo.toml"));
    let big = std::fs::File::create(t.join("big.toml")).unwrap();
    big.set_len(5 << 20).unwrap();
    std::fs::write(t.join("inc-fifo.toml"), "name = \"inc\"\ninclude = [\"fifo.toml\"]\n").unwrap();
    std::fs::write(t.join("h.jsonl"), GOOD_HISTORY).unwrap();
    std::fs::create_dir(t.join("dir.jsonl")).unwrap();
    let s = |p: &str| t.join(p).into_os_string();
    let run = |p: OsString| vec!["run".into(), p, "--out".into(), s("out")];
    let check = |p: OsString| vec!["check".into(), "--model".into(), "register".into(), p];
    let cases: Vec<(Vec<OsString>, String)> = vec![
        (run("/dev/zero".into()), "error: /dev/zero: is a character device, not a regular file".into()),
        (run(s("zero.toml")), format!("{}: is a character device", t.join("zero.toml").display())),
        (run(s("fifo.toml")), format!("{}: is a FIFO, not a regular file", t.join("fifo.toml").display())),
        (run(s("big.toml")), "is larger than the maximum of 4 MiB (5242880 bytes)".into()),
        (run(s("inc-fifo.toml")), "inc-fifo.toml:2:12: cannot read include `fifo.toml`".into()),
        (check("/dev/zero".into()), "cannot read history /dev/zero: is a character device".into()),
        (check(s("fifo.toml")), "fifo.toml: is a FIFO, not a regular file".into()),
        (check(s("dir.jsonl")), "dir.jsonl: is a directory, not a regular file".into()),
        (
            [check(s("h.jsonl")), vec!["--max-history-bytes".into(), "100".into()]].concat(),
            "h.jsonl: is larger than the maximum of 100 bytes".into(),
        ),
    ];
    for (args, want) in cases {
        let f = run_case(&args);
        let what = format!("{args:?}");
        assert_bounded(&what, &f);
        assert_eq!(f.code, Some(3), "{what}: {}", f.describe());
        assert!(f.stderr.contains(&want), "{what}: wanted {want:?} in {}", f.describe());
    }
    assert!(!t.join("out").exists(), "nothing ran");
    let f = run_case(&[check(s("h.jsonl")), vec!["--max-history-bytes".into(), "1KiB".into()]].concat());
    assert_eq!(f.code, Some(0), "a history within --max-history-bytes is checked: {}", f.describe());
}

/// A pipe whose read end is already closed: writing to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

#[test]
fn output_to_a_closed_pipe_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("h.jsonl");
    std::fs::write(&history, GOOD_HISTORY).unwrap();
    let bad = data_dir("scenarios").join("duration-u64-max.toml");
    let cases: Vec<(Vec<OsString>, Stdio, Stdio, i32)> = vec![
        // Errors and the miette report go to a stderr nobody reads.
        (vec!["run".into(), bad.into()], Stdio::null(), closed_pipe(), 3),
        // Results go to a stdout nobody reads, as in `shakedown check ... | head -0`.
        (
            vec!["check".into(), "--model".into(), "register".into(), history.clone().into()],
            closed_pipe(),
            Stdio::null(),
            0,
        ),
        (
            vec!["check".into(), "--format".into(), "json".into(), "--model".into(), "register".into(), history.into()],
            closed_pipe(),
            closed_pipe(),
            0,
        ),
        (vec!["--help".into()], closed_pipe(), closed_pipe(), 0),
        // A usage error, printed by clap to a stderr nobody reads.
        (
            vec!["run".into(), "x.toml".into(), "--jobs".into(), "18446744073709551615".into()],
            Stdio::null(),
            closed_pipe(),
            3,
        ),
    ];
    for (args, stdout, stderr, want) in cases {
        let f = run_measured(&args, stdout, stderr);
        let what = format!("{args:?}");
        assert_bounded(&what, &f);
        assert_eq!(f.code, Some(want), "{what}: {}", f.describe());
    }
}

#[test]
fn the_namespaced_service_limit_is_the_runners() {
    use shakedown::crates::{runner, spec};
    assert_eq!(spec::limits::MAX_NAMESPACED_SERVICES, runner::netns::MAX_NODES);
}
