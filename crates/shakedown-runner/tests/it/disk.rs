//! Disk-full faults on real mounts: a tmpfs in a private mount namespace, ENOSPC at its limit, nothing left behind.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shakedown_runner::disk::{self, enter_mntns, mounted_in, DiskLimit};

use crate::clock::{Launch, Service};

const KIB: u64 = 1024;

/// Set in the child of [`a_killed_holder_leaves_no_mount`]: where to make its limit.
const HOLDER_ENV: &str = "SHAKEDOWN_IT_DISK_HOLDER";
const HOLDER_TEST: &str = "disk::a_killed_holder_leaves_no_mount";

/// Runs `f` on a thread inside the limit's mount namespace, where `limit.path()` is the tmpfs.
fn inside<T: Send>(limit: &DiskLimit, f: impl FnOnce() -> T + Send) -> T {
    let fd = limit.ns_fd();
    std::thread::scope(|scope| {
        let thread = scope.spawn(move || {
            // setns into a mount namespace needs a thread that shares no filesystem info.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).expect("unshare CLONE_FS");
            enter_mntns(fd).expect("enter the mount namespace");
            f()
        });
        thread.join().expect("thread inside the namespace panicked")
    })
}

fn write(path: &Path, n_bytes: u64) -> std::io::Result<()> {
    std::fs::write(path, vec![7u8; n_bytes as usize])
}

fn is_enospc(result: std::io::Result<()>) -> bool {
    matches!(result, Err(e) if e.raw_os_error() == Some(libc::ENOSPC))
}

/// Every process's mount table that has a mount at `path`.
fn mount_tables_with(path: &Path) -> Vec<PathBuf> {
    let procs = std::fs::read_dir("/proc").expect("read /proc");
    let tables = procs.flatten().map(|e| e.path().join("mountinfo"));
    tables.filter(|table| mounted_in(table, path)).collect()
}

#[test]
fn writes_fail_with_enospc_at_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limit = DiskLimit::create(&dir.path().join("data"), 64 * KIB, None).expect("create the limit");
    let path = limit.path().to_path_buf();
    inside(&limit, || {
        write(&path.join("a"), 48 * KIB).expect("48 KiB fit in 64 KiB");
        assert!(is_enospc(write(&path.join("b"), 32 * KIB)), "32 KiB more do not");
        std::fs::remove_file(path.join("b")).expect("remove the partial file");
        write(&path.join("b"), 16 * KIB).expect("the last 16 KiB fit");
    });
    assert_eq!(limit.used_bytes().expect("used"), 64 * KIB);
    assert_eq!(limit.free_bytes().expect("free"), 0);
}

#[test]
fn fill_leaves_what_was_asked_and_free_makes_room_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limit = DiskLimit::create(&dir.path().join("data"), 1024 * KIB, None).expect("create the limit");
    let path = limit.path().to_path_buf();
    inside(&limit, || write(&path.join("before"), 100 * KIB)).expect("write before the fill");
    limit.fill(0).expect("fill");
    assert_eq!(limit.free_bytes().expect("free"), 0);
    assert!(inside(&limit, || is_enospc(write(&path.join("x"), 1))), "a full disk takes nothing");
    limit.fill(64 * KIB).expect("fill leaving 64 KiB");
    assert_eq!(limit.free_bytes().expect("free"), 64 * KIB);
    inside(&limit, || {
        std::fs::remove_file(path.join("x")).expect("remove the empty file");
        write(&path.join("x"), 64 * KIB).expect("64 KiB fit");
        assert!(is_enospc(write(&path.join("y"), 4 * KIB)), "and no more");
    });
    limit.free().expect("free");
    inside(&limit, || write(&path.join("y"), 512 * KIB)).expect("room again after free");
    let names = inside(&limit, || std::fs::read_dir(&path).unwrap().flatten().count());
    assert_eq!(names, 3, "the service sees its files, not the filler");
}

#[test]
fn the_host_never_sees_the_mount_and_drop_removes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limit = DiskLimit::create(&dir.path().join("data"), 64 * KIB, None).expect("create the limit");
    let path = limit.path().to_path_buf();
    assert!(inside(&limit, || mounted_in(Path::new("/proc/thread-self/mountinfo"), &path)));
    inside(&limit, || write(&path.join("inside"), 10)).expect("write inside");
    assert!(!path.join("inside").exists(), "the host path is untouched");
    assert!(!mounted_in(Path::new("/proc/self/mountinfo"), &path));
    assert!(!mounted_in(Path::new("/proc/1/mountinfo"), &path));
    drop(limit);
    assert_eq!(mount_tables_with(&path), Vec::<PathBuf>::new());
}

#[test]
fn a_child_keeps_its_working_dir_and_sees_the_tmpfs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limit = DiskLimit::create(&dir.path().join("data"), 64 * KIB, None).expect("create the limit");
    let path = limit.path().to_path_buf();
    inside(&limit, || write(&path.join("marker"), 3)).expect("write the marker");
    let fd = limit.ns_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "pwd && wc -c < marker"]).current_dir(&path);
    // SAFETY: enter_mntns makes system calls only.
    unsafe { cmd.pre_exec(move || enter_mntns(fd)) };
    let output = cmd.output().expect("run sh in the namespace");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text, format!("{}\n3\n", path.display()), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn copy_out_copies_the_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limit = DiskLimit::create(&dir.path().join("data"), 64 * KIB, None).expect("create the limit");
    let path = limit.path().to_path_buf();
    inside(&limit, || {
        std::fs::create_dir(path.join("sub")).expect("mkdir");
        write(&path.join("sub/b"), 5).expect("write");
        write(&path.join("a"), 2)
    })
    .expect("write");
    limit.fill(0).expect("fill");
    let dest = dir.path().join("copy");
    assert_eq!(limit.copy_out(&dest).expect("copy out"), 7);
    assert_eq!(std::fs::read(dest.join("sub/b")).expect("copied"), [7; 5]);
    assert!(!dest.join("filler").exists());
}

#[test]
fn sizes_below_a_page_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = DiskLimit::create(&dir.path().join("data"), 0, None).unwrap_err();
    assert!(err.to_string().contains("at least one page"), "{err}");
}

#[test]
fn probe_works_here() {
    disk::probe().expect("the namespace tier works on this machine");
}

/// In the child role, holds a limit until killed; otherwise SIGKILLs such a
/// child and checks that its mount went with it.
#[test]
fn a_killed_holder_leaves_no_mount() {
    if let Some(path) = std::env::var_os(HOLDER_ENV) {
        let _limit = DiskLimit::create(Path::new(&path), 64 * KIB, None).expect("create the limit");
        println!("holding");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    let exe = std::env::current_exe().expect("test binary path");
    let mut holder = Command::new(exe)
        .args([HOLDER_TEST, "--exact", "--nocapture"])
        .env(HOLDER_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let (tx, rx) = mpsc::sync_channel(1);
    let stdout = holder.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let holding = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l == "holding");
        let _ = tx.send(holding);
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(true), "the holder never held");
    assert!(holds_a_mount_namespace(holder.id()), "the holder keeps its namespace by an fd");
    holder.kill().expect("SIGKILL the holder");
    holder.wait().expect("reap the holder");
    assert_eq!(mount_tables_with(&path), Vec::<PathBuf>::new());
    assert!(!mounted_in(Path::new("/proc/1/mountinfo"), &path));
}

/// Whether one of `pid`'s open fds is a mount namespace other than ours.
fn holds_a_mount_namespace(pid: u32) -> bool {
    let ours = std::fs::read_link("/proc/self/ns/mnt").expect("our namespace");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the holder's fds");
    let links = fds.flatten().filter_map(|fd| std::fs::read_link(fd.path()).ok());
    links.into_iter().any(|link| link.to_string_lossy().starts_with("mnt:[") && link != ours)
}

/// The kv service with its data dir on `limit`, in its namespace.
fn kv_on(limit: &DiskLimit, bugs: &[&str], cwd: &Path) -> Service {
    let launch = Launch { service: "kv", bugs, data: limit.path(), env: Vec::new(), mntns: Some(limit.ns_fd()), cwd };
    launch.spawn()
}

/// What one build did around a full disk: the adds it acknowledged, the
/// statuses it answered while full, and the set after a SIGKILL and restart.
struct FullDiskRun {
    acknowledged: BTreeSet<u64>,
    statuses_while_full: Vec<u16>,
    read_after_restart: BTreeSet<u64>,
}

/// Adds 0..20, fills the disk, adds 20..220, frees it, adds 220..230,
/// kills the service with SIGKILL and reads the set from a fresh one.
fn full_disk_run(bugs: &[&str]) -> FullDiskRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let limit = DiskLimit::create(&dir.path().join("data"), 1024 * KIB, None).expect("create the limit");
    let kv = kv_on(&limit, bugs, dir.path());
    let mut acknowledged = BTreeSet::new();
    let mut add = |n: u64| {
        let (status, _) = kv.post(&format!("/set/s/{n}"));
        if status == 200 {
            acknowledged.insert(n);
        }
        status
    };
    (0..20).for_each(|n| assert_eq!(add(n), 200));
    limit.fill(0).expect("fill");
    // The log's last page still has room, so the first adds after the fill
    // may succeed; 200 of them overflow it.
    let statuses_while_full = (20..220).map(&mut add).collect();
    limit.free().expect("free");
    (220..230).for_each(|n| assert_eq!(add(n), 200));
    kv.kill();
    let kv = kv_on(&limit, bugs, dir.path());
    let (status, body) = kv.get("/set/s");
    assert_eq!(status, 200, "{body}");
    let read_after_restart = serde_json::from_str(&body).expect("a JSON list of integers");
    FullDiskRun { acknowledged, statuses_while_full, read_after_restart }
}

#[test]
fn a_full_disk_makes_ignore_write_errors_lose_acknowledged_adds() {
    let buggy = full_disk_run(&["ignore-write-errors"]);
    assert!(buggy.statuses_while_full.iter().all(|&s| s == 200), "the buggy build acknowledges every add");
    let lost: Vec<_> = buggy.acknowledged.difference(&buggy.read_after_restart).collect();
    assert!(!lost.is_empty(), "the buggy build lost nothing");
    assert!(lost.iter().all(|&&n| (20..220).contains(&n)), "only adds made while full are lost: {lost:?}");

    let correct = full_disk_run(&[]);
    let n_refused = correct.statuses_while_full.iter().filter(|&&s| s == 500).count();
    assert!(n_refused > 0, "the correct build refused nothing while full");
    assert_eq!(n_refused + correct.acknowledged.len(), 230, "{:?}", correct.statuses_while_full);
    assert_eq!(correct.read_after_restart, correct.acknowledged, "the correct build lost or invented adds");
}
