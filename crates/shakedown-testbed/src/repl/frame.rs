//! The replication wire format: length-prefixed write frames from primary to
//! replica, fixed 8-byte acks back, parsed from however TCP chunks them.
//!
//! A frame is `len: u32` then `len` bytes of `seq: u64, key_len: u32, key,
//! value` (integers big-endian, strings UTF-8). An ack is the `seq: u64` of the
//! frame the replica applied (or had already superseded).

/// Longest frame body accepted; a longer length prefix is a protocol error.
pub(crate) const MAX_FRAME_BYTES: usize = 1 << 20;
/// Bytes of an ack.
pub(crate) const ACK_BYTES: usize = 8;
const SEQ_BYTES: usize = 8;
const LEN_BYTES: usize = 4;

/// One replicated write: `key` holds `value` as of primary sequence number `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Write {
    pub seq: u64,
    pub key: String,
    pub value: String,
}

/// Why the replica gave up on a replication stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("read a replication frame: length {0} is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLong(usize),
    #[error("read a replication frame: {0}")]
    Malformed(&'static str),
}

/// Appends `write`'s frame to `out`.
pub(crate) fn encode(write: &Write, out: &mut Vec<u8>) {
    let body_len = SEQ_BYTES + LEN_BYTES + write.key.len() + write.value.len();
    assert!(body_len <= MAX_FRAME_BYTES, "the primary refuses writes too long to replicate");
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&write.seq.to_be_bytes());
    out.extend_from_slice(&(write.key.len() as u32).to_be_bytes());
    out.extend_from_slice(write.key.as_bytes());
    out.extend_from_slice(write.value.as_bytes());
}

/// Whether a write with this key and value fits in one frame.
pub(crate) fn fits(key: &str, value: &str) -> bool {
    SEQ_BYTES + LEN_BYTES + key.len() + value.len() <= MAX_FRAME_BYTES
}

/// Buffers stream bytes and hands out whole frames; holds at most one
/// partial frame plus what one read brought.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Adds bytes read from the stream.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, or `None` until more bytes arrive.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Write>, FrameError> {
        let Some(len_bytes) = self.buf.get(..LEN_BYTES) else {
            return Ok(None);
        };
        let body_len = u32::from_be_bytes(len_bytes.try_into().expect("four bytes")) as usize;
        if body_len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLong(body_len));
        }
        let Some(body) = self.buf.get(LEN_BYTES..LEN_BYTES + body_len) else {
            return Ok(None);
        };
        let write = decode_body(body)?;
        self.buf.drain(..LEN_BYTES + body_len);
        Ok(Some(write))
    }
}

fn decode_body(body: &[u8]) -> Result<Write, FrameError> {
    if body.len() < SEQ_BYTES + LEN_BYTES {
        return Err(FrameError::Malformed("frame shorter than its header"));
    }
    let (seq, rest) = body.split_at(SEQ_BYTES);
    let (key_len, rest) = rest.split_at(LEN_BYTES);
    let key_len = u32::from_be_bytes(key_len.try_into().expect("four bytes")) as usize;
    if key_len > rest.len() {
        return Err(FrameError::Malformed("key longer than its frame"));
    }
    let (key, value) = rest.split_at(key_len);
    let text = |bytes: &[u8], what| String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::Malformed(what));
    Ok(Write {
        seq: u64::from_be_bytes(seq.try_into().expect("eight bytes")),
        key: text(key, "key is not UTF-8")?,
        value: text(value, "value is not UTF-8")?,
    })
}

/// Collects acks from stream bytes however they are split.
#[derive(Debug, Default)]
pub(crate) struct AckReader {
    partial: [u8; ACK_BYTES],
    n_partial: usize,
}

impl AckReader {
    /// Feeds `bytes` and returns the acks they complete, in order.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Vec<u64> {
        let mut acks = Vec::new();
        while !bytes.is_empty() {
            let n = (ACK_BYTES - self.n_partial).min(bytes.len());
            self.partial[self.n_partial..self.n_partial + n].copy_from_slice(&bytes[..n]);
            self.n_partial += n;
            bytes = &bytes[n..];
            if self.n_partial == ACK_BYTES {
                acks.push(u64::from_be_bytes(self.partial));
                self.n_partial = 0;
            }
        }
        acks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(seq: u64, key: &str, value: &str) -> Write {
        Write { seq, key: key.into(), value: value.into() }
    }

    #[test]
    fn frames_survive_any_chunking() {
        let writes = [write(1, "k", "v"), write(2, "", ""), write(u64::MAX, "ключ", &"x".repeat(5000))];
        let mut bytes = Vec::new();
        writes.iter().for_each(|w| encode(w, &mut bytes));
        for chunk_len in [1, 2, 3, 7, 4096, bytes.len()] {
            let mut reader = FrameReader::default();
            let mut decoded = Vec::new();
            for chunk in bytes.chunks(chunk_len) {
                reader.extend(chunk);
                while let Some(w) = reader.next_frame().unwrap() {
                    decoded.push(w);
                }
            }
            assert_eq!(decoded, writes, "chunks of {chunk_len}");
            assert!(reader.buf.is_empty());
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut reader = FrameReader::default();
        reader.extend(&u32::MAX.to_be_bytes());
        assert!(matches!(reader.next_frame(), Err(FrameError::TooLong(_))));
        let cases: [&[u8]; 3] = [
            &[0, 0, 0, 3, 1, 2, 3],
            &[0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, b'k'],
            &[0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xff],
        ];
        for bytes in cases {
            let mut reader = FrameReader::default();
            reader.extend(bytes);
            assert!(matches!(reader.next_frame(), Err(FrameError::Malformed(_))), "{bytes:?}");
        }
    }

    #[test]
    fn acks_survive_any_chunking() {
        let bytes: Vec<u8> = [3u64, 4, 1 << 40].iter().flat_map(|seq| seq.to_be_bytes()).collect();
        for chunk_len in [1, 3, 8, 24] {
            let mut reader = AckReader::default();
            let acks: Vec<u64> = bytes.chunks(chunk_len).flat_map(|chunk| reader.feed(chunk)).collect();
            assert_eq!(acks, [3, 4, 1 << 40], "chunks of {chunk_len}");
        }
    }

    #[test]
    fn fits_matches_the_frame_limit() {
        assert!(fits("k", "v"));
        assert!(!fits("k", &"v".repeat(MAX_FRAME_BYTES)));
    }
}
