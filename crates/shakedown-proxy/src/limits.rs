//! The process's open-file limit. Every proxied connection holds two sockets
//! (and two pipe ends per direction while splicing), so the usual soft limit
//! of 1,024 caps a proxy at a few hundred connections although the hard limit
//! allows far more. Links and the API server raise the soft limit to the hard
//! one when they start.

use std::io;
use std::sync::Once;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the `(soft, hard)` pair
/// in force afterwards. Idempotent: when the soft limit is already the hard
/// one, it only reads them.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the limit once per process, logging the outcome; later calls cost
/// an atomic load. A failure is logged, not returned: the proxy still works,
/// with fewer connections.
pub(crate) fn ensure_nofile_limit() {
    static RAISED: Once = Once::new();
    RAISED.call_once(|| match raise_nofile_limit() {
        Ok((soft, hard)) => tracing::debug!(soft, hard, "open-file limit raised to the hard limit"),
        Err(err) => tracing::warn!(error = %err, "failed to raise the open-file limit; connections may be refused"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let (soft, hard) = raise_nofile_limit().expect("getrlimit and setrlimit work on linux");
        assert_eq!(soft, hard, "the soft limit is raised to the hard one");
        assert_eq!(raise_nofile_limit().expect("a second call works too"), (soft, hard));
    }
}
