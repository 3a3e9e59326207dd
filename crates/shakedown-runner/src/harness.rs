//! Harness and environment failures found while a run is under way: a
//! program that cannot be started (missing, not executable), a driver that
//! keeps dying as it starts. None of them is a finding about the system under
//! test, so the run stops and ends `failed` (exit 4), naming the program and
//! how to get it, instead of recording ops that fail for a reason of ours.
//!
//! Failures are kept per run, keyed by the run's tag (its directory, the
//! `SHAKEDOWN_RUN_DIR` every process it starts carries), so runs sharing a
//! process never stop each other.

use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::Notify;

static FAILURES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
static CHANGED: Notify = Notify::const_new();

/// Records the first harness failure of the run tagged `run`.
pub fn fail(run: &str, why: String) {
    let mut failures = FAILURES.lock().unwrap_or_else(|p| p.into_inner());
    if !failures.contains_key(run) {
        tracing::warn!("harness failure in {run}: {why}");
        failures.insert(run.to_string(), why);
        CHANGED.notify_waiters();
    }
}

/// The run's harness failure, if one happened; it is forgotten.
pub fn take(run: &str) -> Option<String> {
    FAILURES.lock().unwrap_or_else(|p| p.into_inner()).remove(run)
}

/// Returns once the run tagged `run` has a harness failure.
pub async fn failed(run: &str) {
    loop {
        let changed = CHANGED.notified();
        if FAILURES.lock().unwrap_or_else(|p| p.into_inner()).contains_key(run) {
            return;
        }
        changed.await;
    }
}

/// The run tag in a process's environment.
pub fn tag_of(env: &[(String, String)]) -> Option<&str> {
    env.iter().find(|(k, _)| k == crate::supervisor::RUN_DIR_VAR).map(|(_, v)| v.as_str())
}

/// When starting `program` failed because of the machine (it is missing, not
/// executable, or not a program), says so and how to fix it; `None` for a
/// failure that is not the environment's (out of processes, say).
pub fn spawn_problem(program: &str, e: &std::io::Error, purpose: &str) -> Option<String> {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound if program.contains('/') => format!("{program} does not exist"),
        std::io::ErrorKind::NotFound => format!("`{program}` is not on PATH ({})", crate::plan::search_path()),
        std::io::ErrorKind::PermissionDenied => format!("{program} is not executable (permission denied)"),
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => format!("{program} is not a program this machine can run"),
        _ => return None,
    };
    Some(format!("cannot start {purpose}: {what}; {}", install_hint(program)))
}

/// How to get `program` on a Debian-like machine.
pub fn install_hint(program: &str) -> String {
    let name = program.rsplit('/').next().unwrap_or(program);
    let package = match name {
        "psql" | "pg_dump" | "pg_isready" => "postgresql-client",
        "postgres" | "initdb" | "pg_ctl" => "postgresql",
        "redis-cli" => "redis-tools",
        "redis-server" => "redis-server",
        "etcdctl" => "etcd-client",
        "etcd" => "etcd-server",
        "python" | "python3" => "python3",
        "sqlite3" => "sqlite3",
        "nft" => "nftables",
        "ip" => "iproute2",
        "beanstalkd" => "beanstalkd",
        "rclone" => "rclone",
        "rsync" => "rsync",
        _ => return format!("install it (it may be in a package named {name}) or give its full path"),
    };
    format!("install it, e.g. `apt-get install {package}` on Debian or Ubuntu")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_programs_are_named_with_how_to_get_them() {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        let why = spawn_problem("rsync", &e, "the resume job").unwrap();
        assert!(why.starts_with("cannot start the resume job: `rsync` is not on PATH"), "{why}");
        assert!(why.ends_with("`apt-get install rsync` on Debian or Ubuntu"), "{why}");
        let why = spawn_problem("/opt/x/bin/thing", &e, "service kv").unwrap();
        assert!(why.contains("/opt/x/bin/thing does not exist") && why.contains("package named thing"), "{why}");
        let busy = std::io::Error::from_raw_os_error(libc::EAGAIN);
        assert_eq!(spawn_problem("rsync", &busy, "x"), None);
    }

    #[tokio::test]
    async fn failures_are_kept_per_run_and_wake_waiters() {
        let waiter = tokio::spawn(async { failed("/runs/a").await });
        tokio::task::yield_now().await;
        fail("/runs/b", "other".into());
        assert!(!waiter.is_finished());
        fail("/runs/a", "first".into());
        fail("/runs/a", "second".into());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(take("/runs/a").as_deref(), Some("first"));
        assert_eq!(take("/runs/a"), None);
        assert_eq!(take("/runs/b").as_deref(), Some("other"));
    }
}
