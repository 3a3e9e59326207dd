//! A run's private shared memory: its own IPC namespace (System V shared
//! memory, semaphores and message queues) and its own `/dev/shm` (a tmpfs
//! in a mount namespace of the run), both held only by file descriptors.
//!
//! A service killed with SIGKILL cannot remove what it shared: PostgreSQL,
//! for one, leaves its System V segment and its `/dev/shm/PostgreSQL.*`
//! files behind, on the host, for good. Inside the run's namespaces they are
//! nobody else's: when the run's processes are gone and shakedown closes (or,
//! killed, loses) its descriptors, the kernel frees the namespace, its
//! segments and the tmpfs. Nothing is ever added to the host's IPC or mount
//! tables, so there is nothing to clean up.
//!
//! The namespaces are made on a short-lived thread (`unshare` moves only the
//! calling thread), which mounts a fresh tmpfs on `/dev/shm` (and a fresh
//! `mqueue` on `/dev/mqueue` when the host has one) with propagation
//! private. Every child of the run enters both before exec (see
//! `containment::Join`). Without the privilege to make them (no
//! CAP_SYS_ADMIN), a run goes on without them, and `doctor` says so.

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

/// Why the run's private shared memory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("{step}: {source}")]
    Setup { step: &'static str, source: nix::Error },
    #[error("start the namespace thread: {0}")]
    Thread(std::io::Error),
}

/// The run's IPC and mount namespaces.
#[derive(Debug, Clone)]
pub struct PrivateIpc {
    pub ipc: Arc<OwnedFd>,
    pub mnt: Arc<OwnedFd>,
}

impl PrivateIpc {
    /// Makes the namespaces and mounts the private `/dev/shm`.
    pub fn create() -> Result<PrivateIpc, IpcError> {
        let thread =
            std::thread::Builder::new().name("run-ipc".into()).spawn(make_namespaces).map_err(IpcError::Thread)?;
        let (ipc, mnt) = thread.join().map_err(|_| IpcError::Thread(std::io::Error::other("it panicked")))??;
        Ok(PrivateIpc { ipc: Arc::new(ipc), mnt: Arc::new(mnt) })
    }
}

/// On its own thread: new IPC and mount namespaces, a tmpfs on `/dev/shm`.
fn make_namespaces() -> Result<(OwnedFd, OwnedFd), IpcError> {
    let step = |step: &'static str| move |source: nix::Error| IpcError::Setup { step, source };
    nix::sched::unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
        .map_err(step("unshare the IPC and mount namespaces"))?;
    let none = None::<&str>;
    // Private, so nothing mounted here propagates back to the host.
    nix::mount::mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(step("make mounts private"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if Path::new("/dev/shm").is_dir() {
        nix::mount::mount(Some("tmpfs"), "/dev/shm", Some("tmpfs"), flags, Some("mode=1777"))
            .map_err(step("mount a tmpfs on /dev/shm"))?;
    }
    if Path::new("/dev/mqueue").is_dir() {
        // The IPC namespace's own message queues; without it they are just invisible.
        let _ = nix::mount::mount(Some("mqueue"), "/dev/mqueue", Some("mqueue"), flags, none);
    }
    let open = |what: &str| {
        nix::fcntl::open(
            format!("/proc/thread-self/ns/{what}").as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
    };
    let ipc = open("ipc").map_err(step("open the IPC namespace"))?;
    let mnt = open("mnt").map_err(step("open the mount namespace"))?;
    Ok((ipc, mnt))
}

/// Whether a run here gets private shared memory, and why not; for `doctor`.
pub fn describe() -> Result<String, String> {
    PrivateIpc::create().map_err(|e| {
        format!("unavailable ({e}): a killed service's shared memory (System V, /dev/shm) can outlive the run")
    })?;
    Ok("a private IPC namespace and /dev/shm per run, gone with the run".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::process::Command;

    /// Runs `script` in the namespaces, the way a run's child enters them.
    fn run_inside(ns: &PrivateIpc, script: &str) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        let (ipc, mnt) = (ns.ipc.as_raw_fd(), ns.mnt.as_raw_fd());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        // SAFETY: setns is async-signal-safe; the fds stay open in the parent.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, kind) in [(ipc, libc::CLONE_NEWIPC), (mnt, libc::CLONE_NEWNS)] {
                    if libc::setns(fd, kind) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.output().unwrap()
    }

    #[test]
    fn shared_memory_made_inside_never_reaches_the_host() {
        let ns = match PrivateIpc::create() {
            Ok(ns) => ns,
            Err(e) => panic!("this machine runs the suite as root and must make the namespaces: {e}"),
        };
        let name = format!("shakedown-ipc-test-{}", std::process::id());
        let script =
            format!("ipcmk -M 4096 >/dev/null && touch /dev/shm/{name} && ipcs -m | grep -c 4096; ls /dev/shm");
        let inside = run_inside(&ns, &script);
        let out = String::from_utf8_lossy(&inside.stdout);
        assert!(inside.status.success(), "{out} {}", String::from_utf8_lossy(&inside.stderr));
        assert!(out.starts_with("1\n") && out.contains(&name), "inside, the segment and file exist: {out}");
        assert!(!Path::new("/dev/shm").join(&name).exists(), "the host's /dev/shm never sees the file");
        // A second process of the run sees what the first made.
        let again = run_inside(&ns, &format!("ls /dev/shm/{name} && ipcs -m | grep -c 4096"));
        assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    }
}
