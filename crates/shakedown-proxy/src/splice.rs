//! A kernel pipe and splice(2) calls: the zero-copy path a direction takes
//! while no toxic acts on it. Bytes move socket -> pipe -> socket as page
//! references, never through userspace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes the pipe may hold; Linux grants root up to /proc/sys/fs/pipe-max-size.
const PIPE_BYTES: usize = 1 << 20;

/// A non-blocking pipe, and how many bytes sit in it.
#[derive(Debug)]
pub(crate) struct KernelPipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet out.
    pub len: usize,
    /// Bytes we let it hold (the kernel may count pages, so it can be full earlier).
    pub cap: usize,
}

impl KernelPipe {
    pub fn new() -> io::Result<KernelPipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger pipe moves more per call; the default 64 KiB is the fallback.
        // SAFETY: F_SETPIPE_SZ takes an int argument and only touches this fd.
        let granted = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int) };
        let cap = if granted > 0 { granted as usize } else { 1 << 16 };
        Ok(KernelPipe { read, write, len: 0, cap })
    }

    /// Moves up to the free room from socket `from` into the pipe. 0 means
    /// end of stream. EAGAIN means no data *or* a pipe full by page count.
    pub fn fill_from(&mut self, from: RawFd) -> io::Result<usize> {
        assert!(self.len < self.cap, "fill only a pipe with room");
        let n = splice(from, self.write.as_raw_fd(), self.cap - self.len)?;
        self.len += n;
        assert!(self.len <= self.cap, "the pipe never holds more than its capacity");
        Ok(n)
    }

    /// Moves up to `max` of what the pipe holds into socket `to`. EAGAIN
    /// means the socket is full.
    pub fn drain_into(&mut self, to: RawFd, max: usize) -> io::Result<usize> {
        assert!(self.len > 0 && max > 0, "drain only a pipe that holds bytes");
        let n = splice(self.read.as_raw_fd(), to, self.len.min(max))?;
        assert!(n <= self.len, "a pipe yields at most what was put in");
        self.len -= n;
        Ok(n)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: both descriptors are open for the duration of the call and null
    // offsets are what splice expects for sockets and pipes.
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn moves_bytes_between_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let listener2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(listener2.local_addr().unwrap()).unwrap();
        let (mut d, _) = listener2.accept().unwrap();
        a.write_all(b"hello splice").unwrap();
        let mut pipe = KernelPipe::new().unwrap();
        assert!(pipe.cap >= 1 << 16);
        // Blocking sockets: the data is already there, so one call moves it.
        assert_eq!(pipe.fill_from(b.as_raw_fd()).unwrap(), 12);
        assert_eq!(pipe.drain_into(c.as_raw_fd(), 5).unwrap(), 5);
        assert_eq!(pipe.drain_into(c.as_raw_fd(), 100).unwrap(), 7);
        assert_eq!(pipe.len, 0);
        let mut got = [0u8; 12];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello splice");
        drop(a);
        assert_eq!(pipe.fill_from(b.as_raw_fd()).unwrap(), 0, "end of stream reads as 0");
    }
}
