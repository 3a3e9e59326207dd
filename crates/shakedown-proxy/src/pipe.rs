//! One direction of one connection, in one task: bytes from `src` to `dst`.
//! With no toxic acting it splices through a kernel pipe (zero copy); with
//! toxics it reads chunks, runs them through the rules in order, and queues
//! `(deliver_at, chunk)` in a bounded queue that the same task writes out when
//! due, so a latency toxic is pipelined rather than one chunk per delay.
//! With no rule acting, small chunks are copied (two syscalls each) and bulk
//! goes to splice. Every wait is raced against the connection's end (link
//! down, stop, the other direction failing); waits for a peer to take bytes
//! are bounded by the write stall timeout; reads may idle for as long as the
//! connection stays open, as any TCP connection may.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use rand::rngs::StdRng;
use rand::Rng;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::coop::consume_budget;
use tokio::time::{sleep_until, timeout, Instant};

use crate::rule::{End, Rule, Segment, Verdict};
use crate::splice::KernelPipe;
use crate::toxic::{Stream, Toxic, ToxicKind};

/// Bytes read per call on the userspace path while rules act.
const READ_BYTES: usize = 256 * 1024;
/// Bytes read per call while copying small traffic with no rule acting; a
/// read that fills it marks the traffic bulk, which then goes to splice.
const COPY_BYTES: usize = 64 * 1024;
/// A splice that moves less than this marks the traffic small: copying it
/// costs two syscalls per chunk where splicing costs three.
const SMALL_FILL: usize = 8 * 1024;
/// Bytes read per call while a rule may cut chunks into many pieces.
const READ_BYTES_SLICED: usize = 16 * 1024;
/// The longest delay the kernel pipe serves as the delay line for: a latency
/// toxic up to it keeps the zero-copy path, with the 1 MiB pipe holding the
/// bytes in flight (about 8 Gbit/s at 1 ms); longer ones take the 4 MiB
/// userspace queue, which holds more in flight.
const SPLICE_DELAY_MAX: Duration = Duration::from_millis(1);
/// The queue's bound, counted in bytes plus `SEGMENT_COST` per segment.
const QUEUE_COST: usize = 4 * 1024 * 1024;
const SEGMENT_COST: usize = 64;

/// A toxic on a link, with an id that changes whenever it is added or updated,
/// so live connections keep a rule's state exactly while its toxic is unchanged.
#[derive(Debug)]
pub(crate) struct ToxicEntry {
    pub uid: u64,
    pub toxic: Toxic,
}

/// The link's toxics in order, as a watch channel hands them to connections.
pub(crate) type ToxicSet = Arc<Vec<Arc<ToxicEntry>>>;

/// The connection's end, shared by both directions; the first end set wins.
pub(crate) type EndSignal = Arc<watch::Sender<Option<End>>>;

/// What a pipe is doing; transitions are asserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PipeState {
    Open,
    /// The source ended; forwarding what is queued, then half-closing `dst`.
    Eof,
    /// A rule ends the connection; forwarding what is queued, then closing.
    Closing,
    Done,
}

/// What a mode loop asks of the caller.
enum Step {
    Switch,
    Done,
}

/// A toxic's rule on this direction; `None` when the toxicity roll missed.
struct Slot {
    uid: u64,
    rule: Option<Rule>,
}

pub(crate) struct Pipe {
    stream: Stream,
    src: Arc<TcpStream>,
    dst: Arc<TcpStream>,
    toxics: watch::Receiver<ToxicSet>,
    end_tx: EndSignal,
    end_rx: watch::Receiver<Option<End>>,
    rng: StdRng,
    write_stall: Duration,
    state: PipeState,
    slots: Vec<Slot>,
    queue: VecDeque<Segment>,
    queued_cost: usize,
    buf: BytesMut,
    chain: (Vec<Segment>, Vec<Segment>),
    kernel_pipe: Option<KernelPipe>,
    splice_failed: bool,
    /// Traffic comes in small chunks (request/response), so copy even with no rule.
    small: bool,
}

impl Pipe {
    /// A pipe from `src` to `dst`, acting on toxics of `stream`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: Stream,
        src: Arc<TcpStream>,
        dst: Arc<TcpStream>,
        toxics: watch::Receiver<ToxicSet>,
        end_tx: EndSignal,
        rng: StdRng,
        write_stall: Duration,
    ) -> Pipe {
        let end_rx = end_tx.subscribe();
        Pipe {
            stream,
            src,
            dst,
            toxics,
            end_tx,
            end_rx,
            rng,
            write_stall,
            state: PipeState::Open,
            slots: Vec::new(),
            queue: VecDeque::new(),
            queued_cost: 0,
            buf: BytesMut::new(),
            chain: (Vec::new(), Vec::new()),
            kernel_pipe: None,
            splice_failed: false,
            small: true,
        }
    }

    /// Forwards until the source ends or the connection does.
    pub async fn run(mut self) {
        self.refresh_rules();
        loop {
            let step = if self.needs_userspace() { self.run_userspace().await } else { self.run_splice().await };
            if let Step::Done = step {
                break;
            }
        }
        self.transition(PipeState::Done);
    }

    fn transition(&mut self, to: PipeState) {
        use PipeState::*;
        let ok = matches!((self.state, to), (Open, Eof | Closing | Done) | (Eof | Closing, Done) | (Eof, Closing));
        assert!(ok, "pipe {:?}: bad transition {:?} -> {to:?}", self.stream, self.state);
        self.state = to;
    }

    fn needs_userspace(&self) -> bool {
        self.small || self.splice_failed || !self.queue.is_empty() || !self.rules_splice()
    }

    /// Whether every acting rule can work on the kernel pipe (see `SPLICE_DELAY_MAX`).
    fn rules_splice(&self) -> bool {
        self.rules().all(|r| r.only_delays_within(SPLICE_DELAY_MAX))
    }

    /// When bytes read now may leave, through every acting rule.
    fn due(&mut self, now: Instant) -> Instant {
        let mut seg = Segment { at: now, data: bytes::Bytes::new() };
        for rule in self.slots.iter_mut().filter_map(|s| s.rule.as_mut()) {
            if let Verdict::DelayUntil(at) = rule.on_chunk(&seg, &mut self.rng) {
                seg.at = at.max(seg.at);
            }
        }
        seg.at
    }

    /// Takes the current toxic list: keeps the state of unchanged toxics, and
    /// rolls toxicity for new ones now.
    fn refresh_rules(&mut self) {
        let set = self.toxics.borrow_and_update().clone();
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.slots);
        for entry in set.iter().filter(|e| e.toxic.stream == self.stream) {
            if matches!(entry.toxic.kind, ToxicKind::SlowConnect { .. }) {
                continue;
            }
            let slot = match old.iter().position(|s| s.uid == entry.uid) {
                Some(i) => old.swap_remove(i),
                None => {
                    let hit = roll(entry.toxic.toxicity, &mut self.rng);
                    Slot { uid: entry.uid, rule: hit.then(|| Rule::new(&entry.toxic.kind, now)) }
                }
            };
            self.slots.push(slot);
        }
    }

    fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.slots.iter().filter_map(|s| s.rule.as_ref())
    }

    /// Sets the connection's end unless one is set already.
    fn finish(&self, end: End) {
        self.end_tx.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(end);
            }
            first
        });
    }

    /// An I/O error ends the connection: a reset read passes the reset on.
    fn fail(&mut self, err: io::Error) -> Step {
        tracing::debug!(stream = ?self.stream, error = %err, "connection failed");
        let end = if err.kind() == io::ErrorKind::ConnectionReset { End::Reset } else { End::Close };
        self.finish(end);
        Step::Done
    }

    /// The source ended: wait out slow_close toxics, then half-close `dst`.
    async fn on_eof(&mut self) -> Step {
        let delay = self.rules().map(Rule::close_delay).max().unwrap_or_default();
        if !delay.is_zero() && tokio::time::timeout(delay, self.end_rx.changed()).await.is_ok() {
            return Step::Done;
        }
        // The peer may be gone already; that is its own end, not an error here.
        let _ = socket2::SockRef::from(&*self.dst).shutdown(std::net::Shutdown::Write);
        Step::Done
    }

    async fn run_splice(&mut self) -> Step {
        let mut pipe = match self.kernel_pipe.take() {
            Some(pipe) => pipe,
            None => match KernelPipe::new() {
                Ok(pipe) => pipe,
                Err(err) => {
                    tracing::warn!(error = %err, "failed to create a pipe for splice; copying instead");
                    self.splice_failed = true;
                    return Step::Switch;
                }
            },
        };
        let step = self.splice_loop(&mut pipe).await;
        self.kernel_pipe = Some(pipe);
        step
    }

    /// Splices until the source ends, the connection ends, or a toxic
    /// arrives (then drains the kernel pipe first, so no byte is reordered).
    async fn splice_loop(&mut self, pipe: &mut KernelPipe) -> Step {
        let (src_fd, dst_fd) = (self.src.as_raw_fd(), self.dst.as_raw_fd());
        let (mut switching, mut eof) = (false, false);
        // While delaying rules act, when each run of bytes in the pipe may leave.
        let mut marks: VecDeque<(Instant, usize)> = VecDeque::new();
        loop {
            let mut progress = false;
            if !switching && !eof && pipe.len < pipe.cap {
                // EAGAIN from a non-empty pipe may mean "pipe full", so only
                // an empty pipe's EAGAIN may clear the socket's readiness.
                let filled = if pipe.len == 0 {
                    self.src.try_io(Interest::READABLE, || pipe.fill_from(src_fd))
                } else {
                    pipe.fill_from(src_fd)
                };
                match filled {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        progress = true;
                        if self.rules().next().is_some() || !marks.is_empty() {
                            let now = Instant::now();
                            // Bytes spliced in before a rule arrived leave as they are.
                            if marks.is_empty() && pipe.len > n {
                                marks.push_back((now, pipe.len - n));
                            }
                            let due = self.due(now);
                            marks.push_back((due, n));
                        }
                        if n < SMALL_FILL {
                            self.small = true;
                            switching = true;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => return self.fail(err),
                }
            }
            let now = Instant::now();
            let due_len = due_bytes(&marks, pipe.len, now);
            if due_len > 0 {
                match self.dst.try_io(Interest::WRITABLE, || pipe.drain_into(dst_fd, due_len)) {
                    Ok(n) => {
                        progress = true;
                        consume_marks(&mut marks, n);
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => return self.fail(err),
                }
            }
            assert!(marks.is_empty() || marks.iter().map(|m| m.1).sum::<usize>() == pipe.len, "marks cover the pipe");
            if eof && pipe.len == 0 {
                self.transition(PipeState::Eof);
                return self.on_eof().await;
            }
            if switching && pipe.len == 0 {
                return Step::Switch;
            }
            if progress {
                consume_budget().await;
                continue;
            }
            let wait_write = due_len > 0;
            let wait_read = pipe.len == 0 && !switching && !eof;
            let next_due = marks.front().map(|m| m.0).filter(|at| *at > now);
            tokio::select! {
                biased;
                _ = self.end_rx.changed() => return Step::Done,
                changed = self.toxics.changed(), if !switching => {
                    if changed.is_err() {
                        return Step::Done;
                    }
                    self.refresh_rules();
                    switching = self.needs_userspace();
                }
                ready = self.src.readable(), if wait_read => {
                    if let Err(err) = ready {
                        return self.fail(err);
                    }
                }
                ready = timeout(self.write_stall, self.dst.writable()), if wait_write => match ready {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => return self.fail(err),
                    Err(_) => return self.fail(io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading")),
                },
                _ = sleep_until(next_due.unwrap_or(now)), if next_due.is_some() => {}
            }
        }
    }

    /// The userspace path, while rules act or chunks are queued. Switches back
    /// to splicing once no rule acts and the queue is empty.
    async fn run_userspace(&mut self) -> Step {
        loop {
            let now = Instant::now();
            let mut progress = match self.write_due(now) {
                Ok(progress) => progress,
                Err(err) => return self.fail(err),
            };
            if let Some(step) = self.check_ends(now).await {
                return step;
            }
            if self.state == PipeState::Open && !self.needs_userspace() {
                return Step::Switch;
            }
            let can_read = self.state == PipeState::Open && self.queued_cost < QUEUE_COST;
            if can_read {
                match self.read_chunk(now) {
                    Ok(read) => progress |= read,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => return self.fail(err),
                }
            }
            if progress {
                consume_budget().await;
                continue;
            }
            if let Some(step) = self.wait_userspace(now, can_read).await {
                return step;
            }
        }
    }

    /// Ends that are due: a reset at once, a close once the queue is flushed,
    /// and the source's end of stream once the queue is flushed.
    async fn check_ends(&mut self, now: Instant) -> Option<Step> {
        if let Some((_, end)) = self.deadline().filter(|(at, _)| *at <= now) {
            if end == End::Reset {
                self.finish(End::Reset);
                return Some(Step::Done);
            }
            if self.state != PipeState::Closing {
                self.transition(PipeState::Closing);
            }
        }
        if !self.queue.is_empty() {
            return None;
        }
        match self.state {
            PipeState::Closing => {
                self.finish(End::Close);
                Some(Step::Done)
            }
            PipeState::Eof => Some(self.on_eof().await),
            _ => None,
        }
    }

    /// Waits for whatever lets the loop move on; no timer is armed for a
    /// chunk that is already due.
    async fn wait_userspace(&mut self, now: Instant, can_read: bool) -> Option<Step> {
        let head_at = self.queue.front().map(|s| s.at);
        let head_due = head_at.is_some_and(|at| at <= now);
        let wake = [head_at.filter(|at| *at > now), self.deadline().map(|d| d.0)].into_iter().flatten().min();
        tokio::select! {
            biased;
            _ = self.end_rx.changed() => return Some(Step::Done),
            changed = self.toxics.changed() => {
                if changed.is_err() {
                    return Some(Step::Done);
                }
                self.refresh_rules();
            }
            ready = self.src.readable(), if can_read => {
                if let Err(err) = ready {
                    return Some(self.fail(err));
                }
            }
            ready = timeout(self.write_stall, self.dst.writable()), if head_due => match ready {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Some(self.fail(err)),
                Err(_) => return Some(self.fail(io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading"))),
            },
            _ = sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
        }
        None
    }

    fn deadline(&self) -> Option<(Instant, End)> {
        self.rules().filter_map(Rule::deadline).min_by_key(|(at, end)| (*at, *end == End::Close))
    }

    /// Reads one chunk and queues what the rules make of it. `Ok(true)` on
    /// data or end of stream.
    fn read_chunk(&mut self, now: Instant) -> io::Result<bool> {
        let ruled = self.rules().next().is_some();
        let read_len = match ruled {
            false => COPY_BYTES,
            true if self.rules().any(Rule::multiplies) => READ_BYTES_SLICED,
            true => READ_BYTES,
        };
        let n = self.read_once(read_len)?;
        if n == 0 {
            self.transition(PipeState::Eof);
            return Ok(true);
        }
        if n == read_len && self.rules_splice() {
            self.small = false;
        }
        let data = self.buf.split().freeze();
        self.admit(Segment { at: now, data });
        Ok(true)
    }

    /// One read of at most `read_len` bytes into `buf`. A short read means the
    /// socket was drained, so it clears the readiness as tokio's own
    /// `poll_read` does, sparing the EAGAIN read per chunk; tokio clears only
    /// if no readiness event arrived meanwhile, so no wakeup is lost.
    fn read_once(&mut self, read_len: usize) -> io::Result<usize> {
        self.buf.reserve(read_len);
        let (src, buf) = (&self.src, &mut self.buf);
        let mut short = None;
        let result = src.try_io(Interest::READABLE, || {
            let n = src.try_read_buf(&mut buf.limit(read_len))?;
            if n > 0 && n < read_len {
                short = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match short {
            Some(n) => Ok(n),
            None => result,
        }
    }

    /// Runs a chunk through the rules in order and queues the result.
    fn admit(&mut self, chunk: Segment) {
        let (mut input, mut output) = std::mem::take(&mut self.chain);
        input.push(chunk);
        for rule in self.slots.iter_mut().filter_map(|s| s.rule.as_mut()) {
            for seg in input.drain(..) {
                match rule.on_chunk(&seg, &mut self.rng) {
                    Verdict::Pass => output.push(seg),
                    Verdict::DelayUntil(at) => output.push(Segment { at: at.max(seg.at), data: seg.data }),
                    Verdict::Slice(pieces) => output.extend(pieces),
                    Verdict::Drop => {}
                }
            }
            std::mem::swap(&mut input, &mut output);
        }
        for seg in input.drain(..).filter(|s| !s.data.is_empty()) {
            self.queued_cost += seg.data.len() + SEGMENT_COST;
            self.queue.push_back(seg);
        }
        self.chain = (input, output);
    }

    /// Writes the due head of the queue until the socket is full.
    fn write_due(&mut self, now: Instant) -> io::Result<bool> {
        let mut progress = false;
        while let Some(seg) = self.queue.front_mut() {
            if seg.at > now {
                break;
            }
            let n = match self.dst.try_write(&seg.data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            };
            progress = true;
            assert!(n <= seg.data.len() && n <= self.queued_cost, "a write takes at most what is queued");
            seg.data.advance(n);
            self.queued_cost -= n;
            if seg.data.is_empty() {
                self.queue.pop_front();
                self.queued_cost -= SEGMENT_COST;
            }
        }
        assert!(!self.queue.is_empty() || self.queued_cost == 0, "an empty queue costs nothing");
        Ok(progress)
    }
}

/// How many bytes at the pipe's head may leave at `now`: all of them when no
/// run is marked, else the marked runs that are due.
fn due_bytes(marks: &VecDeque<(Instant, usize)>, pipe_len: usize, now: Instant) -> usize {
    if marks.is_empty() {
        return pipe_len;
    }
    marks.iter().take_while(|(at, _)| *at <= now).map(|(_, len)| len).sum()
}

/// Forgets the first `n` bytes of the marked runs.
fn consume_marks(marks: &mut VecDeque<(Instant, usize)>, mut n: usize) {
    while n > 0 {
        let Some(front) = marks.front_mut() else { return };
        let take = n.min(front.1);
        front.1 -= take;
        n -= take;
        if front.1 == 0 {
            marks.pop_front();
        }
    }
}

/// Whether a toxic with this toxicity applies to one connection.
fn roll(toxicity: f64, rng: &mut StdRng) -> bool {
    toxicity >= 1.0 || (toxicity > 0.0 && rng.gen::<f64>() < toxicity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_due_runs_leave_the_pipe() {
        let now = Instant::now();
        let later = now + Duration::from_millis(1);
        assert_eq!(due_bytes(&VecDeque::new(), 300, now), 300, "unmarked bytes are all due");
        let marks: VecDeque<(Instant, usize)> = [(now, 100), (now, 50), (later, 150)].into();
        assert_eq!(due_bytes(&marks, 300, now), 150);
        assert_eq!(due_bytes(&marks, 300, later), 300);
        let marks: VecDeque<(Instant, usize)> = [(later, 10), (now, 5)].into();
        assert_eq!(due_bytes(&marks, 15, now), 0, "a later run holds back the runs behind it");
    }

    #[test]
    fn draining_consumes_runs_in_order() {
        let now = Instant::now();
        let mut marks: VecDeque<(Instant, usize)> = [(now, 100), (now, 50), (now, 150)].into();
        consume_marks(&mut marks, 120);
        assert_eq!(marks.iter().map(|m| m.1).collect::<Vec<_>>(), [30, 150]);
        consume_marks(&mut marks, 180);
        assert!(marks.is_empty());
        consume_marks(&mut marks, 10);
        assert!(marks.is_empty(), "consuming past the end is harmless");
    }
}
