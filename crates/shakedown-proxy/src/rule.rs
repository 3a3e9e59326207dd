//! Toxics on the data path: a `Rule` holds one toxic's state for one direction
//! of one connection and returns a verdict per chunk; ends (close, reset) come
//! from its deadline, so they fire whether or not data flows.

use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::time::Instant;

use crate::toxic::ToxicKind;

/// Bytes to deliver no earlier than `at`.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub at: Instant,
    pub data: Bytes,
}

/// What a rule does with one chunk.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Forward unchanged.
    Pass,
    /// Forward no earlier than this.
    DelayUntil(Instant),
    /// Forward these pieces instead, each with its own time.
    Slice(Vec<Segment>),
    /// Swallow the chunk.
    Drop,
}

/// How a connection ends when a rule says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Forward what is queued in this direction, then close both sockets.
    Close,
    /// Reset both sockets now (RST via SO_LINGER 0), dropping what is queued.
    Reset,
}

/// One toxic's state on one direction of one connection.
#[derive(Debug)]
pub(crate) enum Rule {
    Latency {
        latency: Duration,
        jitter_us: u64,
    },
    Bandwidth {
        bytes_per_s: u64,
        next_free: Instant,
    },
    SlowClose {
        delay: Duration,
    },
    Timeout {
        close_at: Option<Instant>,
    },
    ResetPeer {
        reset_at: Instant,
    },
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay: Duration,
    },
    LimitData {
        left: u64,
        exhausted_at: Option<Instant>,
    },
    /// Acts before the connection exists; inert on the data path.
    SlowConnect,
}

impl Rule {
    /// The rule for a toxic that starts applying at `now`.
    pub fn new(kind: &ToxicKind, now: Instant) -> Rule {
        match *kind {
            ToxicKind::Latency { latency_ms, jitter_ms } => {
                Rule::Latency { latency: Duration::from_millis(latency_ms), jitter_us: jitter_ms * 1000 }
            }
            ToxicKind::Bandwidth { rate_kbs } => Rule::Bandwidth { bytes_per_s: rate_kbs * 1000, next_free: now },
            ToxicKind::SlowClose { delay_ms } => Rule::SlowClose { delay: Duration::from_millis(delay_ms) },
            ToxicKind::Timeout { timeout_ms } => {
                Rule::Timeout { close_at: (timeout_ms > 0).then(|| now + Duration::from_millis(timeout_ms)) }
            }
            ToxicKind::ResetPeer { timeout_ms } => {
                Rule::ResetPeer { reset_at: now + Duration::from_millis(timeout_ms) }
            }
            ToxicKind::Slicer { average_size, size_variation, delay_us } => {
                Rule::Slicer { average_size, size_variation, delay: Duration::from_micros(delay_us) }
            }
            ToxicKind::LimitData { bytes } => {
                Rule::LimitData { left: bytes, exhausted_at: (bytes == 0).then_some(now) }
            }
            ToxicKind::SlowConnect { .. } => Rule::SlowConnect,
        }
    }

    /// The verdict on one chunk; chunks arrive in stream order.
    pub fn on_chunk(&mut self, seg: &Segment, rng: &mut StdRng) -> Verdict {
        match self {
            Rule::Latency { latency, jitter_us } => Verdict::DelayUntil(seg.at + jittered(*latency, *jitter_us, rng)),
            Rule::Bandwidth { bytes_per_s, next_free } => throttle(seg, *bytes_per_s, next_free),
            Rule::Timeout { .. } => Verdict::Drop,
            Rule::Slicer { average_size, size_variation, delay } => {
                Verdict::Slice(slice(seg, *average_size, *size_variation, *delay, rng))
            }
            Rule::LimitData { left, exhausted_at } => limit(seg, left, exhausted_at),
            Rule::SlowClose { .. } | Rule::ResetPeer { .. } | Rule::SlowConnect => Verdict::Pass,
        }
    }

    /// When this rule ends the connection, and how.
    pub fn deadline(&self) -> Option<(Instant, End)> {
        match *self {
            Rule::Timeout { close_at } => close_at.map(|at| (at, End::Close)),
            Rule::ResetPeer { reset_at } => Some((reset_at, End::Reset)),
            Rule::LimitData { exhausted_at, .. } => exhausted_at.map(|at| (at, End::Close)),
            _ => None,
        }
    }

    /// How long to hold back closing the other side after this side closed.
    pub fn close_delay(&self) -> Duration {
        match *self {
            Rule::SlowClose { delay } => delay,
            _ => Duration::ZERO,
        }
    }

    /// Whether the rule can cut a chunk into many, so reads should stay small.
    pub fn multiplies(&self) -> bool {
        matches!(self, Rule::Slicer { .. })
    }

    /// Whether the rule only delays chunks, by at most `max`: then it never
    /// needs the bytes themselves, and a kernel pipe can be the delay line.
    pub fn only_delays_within(&self, max: Duration) -> bool {
        match *self {
            Rule::Latency { latency, jitter_us } => latency + Duration::from_micros(jitter_us) <= max,
            _ => false,
        }
    }
}

/// `base` plus a uniform offset in ±`jitter_us`, never below zero (toxiproxy's rule).
fn jittered(base: Duration, jitter_us: u64, rng: &mut StdRng) -> Duration {
    if jitter_us == 0 {
        return base;
    }
    let offset_us = rng.gen_range(0..=2 * jitter_us) as i128 - jitter_us as i128;
    let total_us = (base.as_micros() as i128 + offset_us).max(0);
    Duration::from_micros(total_us as u64)
}

/// Spaces chunks so the stream never exceeds the rate, in pieces of at most
/// 100 ms worth of bytes so a large read does not arrive as one late lump.
fn throttle(seg: &Segment, bytes_per_s: u64, next_free: &mut Instant) -> Verdict {
    if bytes_per_s == 0 {
        return Verdict::Pass;
    }
    let piece_len = (bytes_per_s / 10).max(1) as usize;
    let mut pieces = Vec::with_capacity(seg.data.len().div_ceil(piece_len));
    let mut start = (*next_free).max(seg.at);
    for offset in (0..seg.data.len()).step_by(piece_len) {
        let piece = seg.data.slice(offset..(offset + piece_len).min(seg.data.len()));
        start += Duration::from_nanos(piece.len() as u64 * 1_000_000_000 / bytes_per_s);
        pieces.push(Segment { at: start, data: piece });
    }
    *next_free = start;
    Verdict::Slice(pieces)
}

/// Cuts a chunk into pieces of `average` ± `variation` bytes, `delay` apart.
fn slice(seg: &Segment, average: u64, variation: u64, delay: Duration, rng: &mut StdRng) -> Vec<Segment> {
    assert!(average > 0 && variation < average, "slicer sizes are validated when the toxic is read");
    let mut pieces = Vec::new();
    let (mut offset, mut at) = (0, seg.at);
    while offset < seg.data.len() {
        let size = rng.gen_range(average - variation..=average + variation) as usize;
        let end = (offset + size).min(seg.data.len());
        pieces.push(Segment { at, data: seg.data.slice(offset..end) });
        offset = end;
        at += delay;
    }
    pieces
}

/// Passes bytes until the budget is spent, then marks the rule exhausted.
fn limit(seg: &Segment, left: &mut u64, exhausted_at: &mut Option<Instant>) -> Verdict {
    if *left == 0 {
        return Verdict::Drop;
    }
    let len = seg.data.len() as u64;
    if len < *left {
        *left -= len;
        return Verdict::Pass;
    }
    let keep = *left as usize;
    *left = 0;
    *exhausted_at = Some(seg.at);
    Verdict::Slice(vec![Segment { at: seg.at, data: seg.data.slice(..keep) }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn seg(len: usize) -> Segment {
        Segment { at: Instant::now(), data: Bytes::from(vec![7u8; len]) }
    }

    fn pieces(v: Verdict) -> Vec<Segment> {
        match v {
            Verdict::Slice(p) => p,
            other => panic!("expected a slice, got {other:?}"),
        }
    }

    #[test]
    fn latency_with_jitter_stays_in_bounds() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut rule = Rule::new(&ToxicKind::Latency { latency_ms: 100, jitter_ms: 20 }, Instant::now());
        let s = seg(1);
        for _ in 0..1000 {
            let Verdict::DelayUntil(at) = rule.on_chunk(&s, &mut rng) else { panic!("latency must delay") };
            let delay = at - s.at;
            assert!(delay >= Duration::from_millis(80) && delay <= Duration::from_millis(120), "{delay:?}");
        }
    }

    #[test]
    fn bandwidth_spaces_pieces_by_rate() {
        let now = Instant::now();
        let mut rule = Rule::new(&ToxicKind::Bandwidth { rate_kbs: 100 }, now);
        let s = Segment { at: now, data: Bytes::from(vec![0u8; 50_000]) };
        let p = pieces(rule.on_chunk(&s, &mut StdRng::seed_from_u64(0)));
        assert_eq!(p.len(), 5, "100 KB/s makes 10 KB pieces");
        assert_eq!(p.last().unwrap().at - now, Duration::from_millis(500));
        let next = pieces(rule.on_chunk(&Segment { at: now, data: Bytes::from(vec![0u8; 10_000]) }, &mut rng0()));
        assert_eq!(next[0].at - now, Duration::from_millis(600), "the budget carries over");
    }

    fn rng0() -> StdRng {
        StdRng::seed_from_u64(0)
    }

    #[test]
    fn slicer_pieces_cover_the_chunk_in_order() {
        let mut rule =
            Rule::new(&ToxicKind::Slicer { average_size: 10, size_variation: 4, delay_us: 1000 }, Instant::now());
        let s = Segment { at: Instant::now(), data: Bytes::from((0..=255u8).collect::<Vec<_>>()) };
        let p = pieces(rule.on_chunk(&s, &mut rng0()));
        let joined: Vec<u8> = p.iter().flat_map(|x| x.data.iter().copied()).collect();
        assert_eq!(&joined[..], &s.data[..]);
        assert!(p[..p.len() - 1].iter().all(|x| (6..=14).contains(&x.data.len())));
        assert_eq!(p[1].at - p[0].at, Duration::from_millis(1));
    }

    #[test]
    fn limit_data_truncates_then_ends() {
        let now = Instant::now();
        let mut rule = Rule::new(&ToxicKind::LimitData { bytes: 15 }, now);
        assert!(matches!(rule.on_chunk(&seg(10), &mut rng0()), Verdict::Pass));
        assert!(rule.deadline().is_none());
        assert_eq!(pieces(rule.on_chunk(&seg(10), &mut rng0()))[0].data.len(), 5);
        assert_eq!(rule.deadline().map(|d| d.1), Some(End::Close));
        assert!(matches!(rule.on_chunk(&seg(1), &mut rng0()), Verdict::Drop));
    }

    #[test]
    fn timers_end_connections() {
        let now = Instant::now();
        assert_eq!(Rule::new(&ToxicKind::Timeout { timeout_ms: 0 }, now).deadline(), None);
        let close = Rule::new(&ToxicKind::Timeout { timeout_ms: 5 }, now).deadline();
        assert_eq!(close, Some((now + Duration::from_millis(5), End::Close)));
        let reset = Rule::new(&ToxicKind::ResetPeer { timeout_ms: 0 }, now).deadline();
        assert_eq!(reset, Some((now, End::Reset)));
    }
}
