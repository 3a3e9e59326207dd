//! Disk-full faults: a service's data dir on a size-limited tmpfs in a mount namespace that only shakedown holds.
//!
//! [`DiskLimit::create`] makes a mount namespace on a short-lived thread
//! (`unshare(CLONE_NEWNS)`, propagation private), mounts a tmpfs of the given
//! size there and bind-mounts its `data` subdirectory over the data-dir path.
//! The host's mount table never sees it. The namespace lives exactly as long
//! as its file descriptors: the one [`DiskLimit`] holds and those of the
//! processes inside. Dropping the limit, or shakedown dying (even by
//! SIGKILL, which also takes its services down through PDEATHSIG), unmounts
//! everything; there is nothing to clean up.
//!
//! A service enters the namespace before exec ([`enter_mntns`] in
//! `pre_exec`) and sees the tmpfs at its data dir; a restarted service sees
//! the same contents. The harness fills the tmpfs with a filler file kept in
//! the tmpfs root, beside `data` and so out of the service's sight, and
//! deletes it to free the space.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, OFlag};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use crate::supervisor::Namespace;

/// Name of the filler file in the tmpfs root.
const FILLER: &str = "filler";
/// Name of the tmpfs subdirectory bound over the data-dir path.
const DATA: &str = "data";
/// The tmpfs page: sizes are whole pages, and so is the filler.
const PAGE_BYTES: u64 = 4096;

/// Why a disk limit could not be set up, filled, freed or read.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("limit {path} to {size_bytes} bytes: a tmpfs holds at least one page ({PAGE_BYTES} bytes)")]
    TooSmall { path: PathBuf, size_bytes: u64 },
    #[error("create data dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("{step} for {path}: {source}")]
    Setup { step: &'static str, path: PathBuf, source: io::Error },
    #[error("start the mount thread: {0}")]
    Thread(io::Error),
    #[error("{what} the tmpfs at {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
}

/// A size-limited tmpfs at a data-dir path, visible only inside its own mount namespace.
#[derive(Debug)]
pub struct DiskLimit {
    path: PathBuf,
    size_bytes: u64,
    /// The mount namespace (`/proc/thread-self/ns/mnt` of the mounting thread).
    ns: Arc<OwnedFd>,
    /// The tmpfs root: holds `data` and the filler.
    root: OwnedFd,
    /// `data`, the directory the service sees at `path`.
    data: OwnedFd,
}

/// The descriptors the mounting thread hands back.
struct Mounted {
    ns: OwnedFd,
    root: OwnedFd,
    data: OwnedFd,
}

impl DiskLimit {
    /// Creates `path` on the host if missing (as the mount point) and mounts a
    /// tmpfs of `size_bytes` (rounded up to pages) over it in a new mount
    /// namespace. The tmpfs starts empty, with `path`'s owner and mode.
    /// With `base`, the new namespace starts as a copy of that one (the
    /// run's, with its private `/dev/shm`) instead of the host's.
    pub fn create(path: &Path, size_bytes: u64, base: Option<Arc<OwnedFd>>) -> Result<DiskLimit, DiskError> {
        if size_bytes < PAGE_BYTES {
            return Err(DiskError::TooSmall { path: path.to_path_buf(), size_bytes });
        }
        fs::create_dir_all(path).map_err(|source| DiskError::CreateDir { path: path.to_path_buf(), source })?;
        let path =
            fs::canonicalize(path).map_err(|source| DiskError::CreateDir { path: path.to_path_buf(), source })?;
        let owner = fs::metadata(&path).map_err(|source| DiskError::CreateDir { path: path.clone(), source })?;
        // unshare(CLONE_NEWNS) moves the calling thread only (it unshares
        // CLONE_FS with it), so a thread of its own leaves the rest of
        // shakedown in the host namespace; it exits once the fds are open.
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("disk-mount".into())
            .spawn(move || mount_in_new_namespace(&thread_path, size_bytes, &owner, base.as_deref()))
            .map_err(DiskError::Thread)?;
        let mounted = thread.join().map_err(|_| DiskError::Thread(io::Error::other("the mount thread panicked")))??;
        Ok(DiskLimit { path, size_bytes, ns: Arc::new(mounted.ns), root: mounted.root, data: mounted.data })
    }

    /// The data-dir path the tmpfs is mounted at (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size asked for.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The mount namespace's fd, for [`enter_mntns`] in a child's `pre_exec`.
    pub fn ns_fd(&self) -> RawFd {
        self.ns.as_raw_fd()
    }

    /// The namespace as the supervisor's `ProcSpec` carries it.
    pub fn namespace(&self) -> Namespace {
        Namespace { fd: Arc::clone(&self.ns), nstype: libc::CLONE_NEWNS }
    }

    /// Fills the tmpfs so that only `leave_bytes` (rounded up to a page) stay
    /// free, growing or shrinking the filler; returns the filler's size.
    /// Writes past that fail with ENOSPC.
    pub fn fill(&self, leave_bytes: u64) -> Result<u64, DiskError> {
        let filler = nix::fcntl::openat(
            self.root.as_fd(),
            FILLER,
            OFlag::O_CREAT | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.io_error("open the filler in", e))?;
        // The service may write between our look and our allocation; a few
        // tries settle it, and the last answer stands.
        for _ in 0..8 {
            let current = nix::sys::stat::fstat(filler.as_fd()).map_err(|e| self.io_error("stat the filler in", e))?;
            let current = current.st_size as u64;
            let target = (current + self.free_bytes()?).saturating_sub(round_up(leave_bytes)) / PAGE_BYTES * PAGE_BYTES;
            match resize(&filler, current, target) {
                Ok(()) => return Ok(target),
                Err(Errno::ENOSPC) => continue,
                Err(e) => return Err(self.io_error("grow the filler in", e)),
            }
        }
        let size = nix::sys::stat::fstat(filler.as_fd()).map_err(|e| self.io_error("stat the filler in", e))?;
        Ok(size.st_size as u64)
    }

    /// Deletes the filler, freeing its space.
    pub fn free(&self) -> Result<(), DiskError> {
        match nix::unistd::unlinkat(self.root.as_fd(), FILLER, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.io_error("delete the filler in", e)),
        }
    }

    /// Bytes in use on the tmpfs, the filler included.
    pub fn used_bytes(&self) -> Result<u64, DiskError> {
        let stat = self.statvfs()?;
        Ok((stat.blocks() - stat.blocks_free()) * stat.fragment_size())
    }

    /// Bytes still free on the tmpfs.
    pub fn free_bytes(&self) -> Result<u64, DiskError> {
        let stat = self.statvfs()?;
        Ok(stat.blocks_available() * stat.fragment_size())
    }

    /// Copies what the service sees at its data dir into `dest` (created if
    /// missing), for the run directory; returns the bytes copied. Regular
    /// files and directories only: symlinks and others are skipped.
    pub fn copy_out(&self, dest: &Path) -> Result<u64, DiskError> {
        // The fd's magic link in /proc reaches into the namespace's mount.
        let source = PathBuf::from(format!("/proc/self/fd/{}", self.data.as_raw_fd()));
        copy_tree(&source, dest).map_err(|source| DiskError::Io { what: "copy out", path: self.path.clone(), source })
    }

    fn statvfs(&self) -> Result<nix::sys::statvfs::Statvfs, DiskError> {
        nix::sys::statvfs::fstatvfs(self.root.as_fd()).map_err(|e| self.io_error("measure", e))
    }

    fn io_error(&self, what: &'static str, errno: Errno) -> DiskError {
        DiskError::Io { what, path: self.path.clone(), source: errno.into() }
    }
}

fn round_up(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_BYTES) * PAGE_BYTES
}

/// Grows the filler with fallocate (its pages are really taken) or truncates it.
fn resize(filler: &OwnedFd, current: u64, target: u64) -> Result<(), Errno> {
    if target > current {
        let (offset, len) = (current as libc::off_t, (target - current) as libc::off_t);
        nix::fcntl::fallocate(filler.as_fd(), FallocateFlags::empty(), offset, len)
    } else {
        nix::unistd::ftruncate(filler.as_fd(), target as libc::off_t)
    }
}

/// Runs on the mounting thread: a new private mount namespace, the tmpfs, the bind of `data`, and the fds.
fn mount_in_new_namespace(
    path: &Path,
    size_bytes: u64,
    owner: &fs::Metadata,
    base: Option<&OwnedFd>,
) -> Result<Mounted, DiskError> {
    let setup =
        |step: &'static str| move |e: Errno| DiskError::Setup { step, path: path.to_path_buf(), source: e.into() };
    if let Some(base) = base {
        nix::sched::unshare(CloneFlags::CLONE_FS).map_err(setup("unshare the thread's file system context"))?;
        nix::sched::setns(base.as_fd(), CloneFlags::CLONE_NEWNS).map_err(setup("enter the run's mount namespace"))?;
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
        .map_err(setup("unshare the mount namespace"))?;
    // Private, so nothing mounted here propagates back to the host.
    let none = None::<&str>;
    nix::mount::mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(setup("make mounts private"))?;
    let options = format!("size={},mode={:o}", round_up(size_bytes), owner.permissions().mode() & 0o7777);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    nix::mount::mount(Some("tmpfs"), path, Some("tmpfs"), flags, Some(options.as_str()))
        .map_err(setup("mount the tmpfs"))?;
    let root = open_dir(path).map_err(setup("open the tmpfs root"))?;
    nix::sys::stat::mkdirat(root.as_fd(), DATA, Mode::from_bits_truncate(owner.permissions().mode()))
        .map_err(setup("create the data dir in the tmpfs"))?;
    let data_in_root = path.join(DATA);
    std::os::unix::fs::chown(&data_in_root, Some(owner.uid()), Some(owner.gid()))
        .map_err(|source| DiskError::Setup { step: "give the data dir its owner", path: path.to_path_buf(), source })?;
    nix::mount::mount(Some(&data_in_root), path, none, MsFlags::MS_BIND, none)
        .map_err(setup("bind the data dir over the path"))?;
    let data = open_dir(path).map_err(setup("open the data dir"))?;
    let ns = nix::fcntl::open("/proc/thread-self/ns/mnt", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(setup("open the mount namespace"))?;
    Ok(Mounted { ns, root, data })
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

/// Copies regular files and directories under `from` into `to`; returns the bytes copied.
fn copy_tree(from: &Path, to: &Path) -> io::Result<u64> {
    fs::create_dir_all(to)?;
    let mut n_bytes = 0;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            n_bytes += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            n_bytes += fs::copy(entry.path(), &target)?;
        }
    }
    Ok(n_bytes)
}

/// Moves the calling process into the mount namespace `fd`, keeping its
/// working directory (setns resets it to the namespace's root, so it is
/// read before and entered again by path after, which reaches the tmpfs
/// when it is the data dir). Async-signal-safe: system calls only, on a
/// stack buffer, for a `pre_exec` hook. The process must be single-threaded.
pub fn enter_mntns(fd: RawFd) -> io::Result<()> {
    let mut cwd = [0u8; libc::PATH_MAX as usize];
    // SAFETY: getcwd writes at most `cwd.len()` bytes, NUL-terminated, into the buffer.
    let have_cwd = unsafe { !libc::getcwd(cwd.as_mut_ptr().cast(), cwd.len()).is_null() };
    // SAFETY: setns takes any fd; a wrong one is an error, not undefined behaviour.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `cwd` holds the NUL-terminated path getcwd wrote.
    if have_cwd && unsafe { libc::chdir(cwd.as_ptr().cast()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this machine can give a service a size-limited tmpfs in its own
/// mount namespace: makes a one-page limit in a throwaway dir, fills it,
/// checks a write then fails with ENOSPC, frees it and checks the write
/// succeeds. Returns the first thing that failed.
pub fn probe() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("shakedown-disk-probe-{}", std::process::id()));
    let result = probe_in(&dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn probe_in(dir: &Path) -> Result<(), String> {
    let limit = DiskLimit::create(dir, 16 * PAGE_BYTES, None).map_err(|e| format!("failed to {e}"))?;
    let file = PathBuf::from(format!("/proc/self/fd/{}", limit.data.as_raw_fd())).join("probe");
    let write = || fs::write(&file, [0u8; 100]);
    limit.fill(0).map_err(|e| format!("failed to {e}"))?;
    match write() {
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {}
        Err(e) => return Err(format!("a write to the filled tmpfs failed with {e}, not ENOSPC")),
        Ok(()) => return Err("a write to the filled tmpfs succeeded: the size limit does not hold".into()),
    }
    limit.free().map_err(|e| format!("failed to {e}"))?;
    write().map_err(|e| format!("a write to the freed tmpfs failed: {e}"))?;
    if mounted_in(Path::new("/proc/self/mountinfo"), limit.path()) {
        return Err("the tmpfs shows in shakedown's own mount table: the namespace is not private".into());
    }
    Ok(())
}

/// Whether the mount table at `mountinfo` has a mount point at `path`.
pub fn mounted_in(mountinfo: &Path, path: &Path) -> bool {
    let Ok(text) = fs::read_to_string(mountinfo) else { return false };
    let wanted = path.as_os_str();
    text.lines().any(|line| line.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(wanted))
}

/// Undoes mountinfo's octal escapes (`\040` for a space) in a path.
fn unescape_mountinfo(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        let octal = bytes.get(idx + 1..idx + 4).and_then(|d| std::str::from_utf8(d).ok());
        match (bytes[idx], octal.and_then(|d| u8::from_str_radix(d, 8).ok())) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                idx += 4;
            }
            (byte, _) => {
                out.push(byte);
                idx += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_unescape() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/odd\0"), r"/odd\0");
    }

    #[test]
    fn sizes_round_up_to_pages() {
        assert_eq!(round_up(0), 0);
        assert_eq!(round_up(1), PAGE_BYTES);
        assert_eq!(round_up(PAGE_BYTES), PAGE_BYTES);
    }
}
