//! Splits a BMP byte stream into whole messages. BMP has no resynchronisation marker, so the only
//! framing information is the common header's version (must be 3) and length (RFC 7854 §4.1);
//! when either is impossible the stream cannot be trusted any further and the framer stops
//! ([`FramingError`]), and the station closes the connection (FRR reconnects and resends its state).

use bytes::{Buf, Bytes, BytesMut};

/// Version (1) + message length (4) + message type (1).
pub const COMMON_HEADER_LEN: usize = 6;

/// BMP version 3 (RFC 7854); FRR 8.4 sends nothing else.
pub const BMP_VERSION: u8 = 3;

/// Default upper bound for one message: far above any Peer Up (two OPENs ≤ 4 KiB each + TLVs) or
/// Route Monitoring (one UPDATE ≤ 64 KiB with extended messages).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 1 << 20;

/// How many bytes of a broken stream are kept for the report.
const RAW_KEPT_ON_ERROR: usize = 4096;

/// Why the stream cannot be split any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("BMP version {version} is not 3: the stream is not BMP or lost its framing")]
    BadVersion { version: u8, raw: Bytes },
    #[error("BMP message length {len} is shorter than the 6-byte common header")]
    TooShort { len: u32, raw: Bytes },
    #[error("BMP message length {len} exceeds the limit of {max} bytes")]
    TooLong { len: u32, max: usize, raw: Bytes },
}

impl FramingError {
    /// The bytes at the point where framing was lost (at most 4 KiB).
    pub fn raw(&self) -> &Bytes {
        match self {
            FramingError::BadVersion { raw, .. }
            | FramingError::TooShort { raw, .. }
            | FramingError::TooLong { raw, .. } => raw,
        }
    }
}

/// Accumulates bytes and yields whole messages (common header included).
#[derive(Debug)]
pub struct Framer {
    buffer: BytesMut,
    max_message_len: usize,
    failed: bool,
}

impl Framer {
    /// A framer refusing messages longer than `max_message_len`.
    pub fn new(max_message_len: usize) -> Self {
        Framer {
            buffer: BytesMut::with_capacity(64 * 1024),
            max_message_len: max_message_len.max(COMMON_HEADER_LEN),
            failed: false,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buffer.extend_from_slice(data);
        }
    }

    /// Bytes buffered that do not yet form a whole message.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole message, `None` when more bytes are needed, or the reason framing was lost.
    /// After an error every later call returns `None`.
    pub fn next_message(&mut self) -> Option<Result<Bytes, FramingError>> {
        if self.failed || self.buffer.len() < COMMON_HEADER_LEN {
            return None;
        }
        let version = self.buffer[0];
        let len = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]);
        let error = if version != BMP_VERSION {
            Some(FramingError::BadVersion {
                version,
                raw: self.raw_head(),
            })
        } else if (len as usize) < COMMON_HEADER_LEN {
            Some(FramingError::TooShort {
                len,
                raw: self.raw_head(),
            })
        } else if len as usize > self.max_message_len {
            Some(FramingError::TooLong {
                len,
                max: self.max_message_len,
                raw: self.raw_head(),
            })
        } else {
            None
        };
        if let Some(error) = error {
            self.failed = true;
            self.buffer.clear();
            return Some(Err(error));
        }
        let len = len as usize;
        if self.buffer.len() < len {
            self.buffer.reserve(len - self.buffer.len());
            return None;
        }
        Some(Ok(self.buffer.split_to(len).freeze()))
    }

    fn raw_head(&self) -> Bytes {
        let n = self.buffer.len().min(RAW_KEPT_ON_ERROR);
        Bytes::copy_from_slice(&self.buffer.chunk()[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![BMP_VERSION];
        m.extend_from_slice(&((body.len() + COMMON_HEADER_LEN) as u32).to_be_bytes());
        m.push(ty);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn splits_messages_across_arbitrary_reads() {
        let mut stream = message(4, b"hello");
        stream.extend(message(5, b""));
        stream.extend(message(0, &[7; 300]));
        for chunk in [1, 2, 5, 7, 64, 1000] {
            let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_LEN);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                framer.push(piece);
                while let Some(m) = framer.next_message() {
                    got.push(m.expect("valid"));
                }
            }
            let lens: Vec<usize> = got.iter().map(Bytes::len).collect();
            assert_eq!(lens, [11, 6, 306], "chunk size {chunk}");
            assert_eq!(framer.pending(), 0);
        }
    }

    #[test]
    fn impossible_headers_stop_the_framer() {
        let mut framer = Framer::new(1000);
        framer.push(&[2, 0, 0, 0, 6, 4]);
        assert!(matches!(
            framer.next_message(),
            Some(Err(FramingError::BadVersion { version: 2, .. }))
        ));
        framer.push(&message(4, b""));
        assert_eq!(framer.next_message(), None, "a failed framer stays failed");

        let mut framer = Framer::new(1000);
        framer.push(&[3, 0, 0, 0, 5, 4]);
        assert!(matches!(
            framer.next_message(),
            Some(Err(FramingError::TooShort { len: 5, .. }))
        ));

        let mut framer = Framer::new(1000);
        framer.push(&[3, 0, 0, 0x10, 0, 4]);
        let err = framer.next_message().expect("some").expect_err("too long");
        assert!(matches!(
            err,
            FramingError::TooLong {
                len: 4096,
                max: 1000,
                ..
            }
        ));
        assert_eq!(err.raw().as_ref(), &[3, 0, 0, 0x10, 0, 4]);
    }
}
