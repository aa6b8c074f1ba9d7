//! Following a chunked body (RFC 9112 §7.1) as its bytes pass through: where it ends, whether
//! its framing is sound, and — for a client that cannot take chunked framing — which bytes
//! are data.
//!
//! The scanner keeps a few integers of state, so a body can be followed across any number of
//! reads without buffering it. Chunk extensions and trailer fields are checked for shape and
//! length only, and passed on as they are.

/// Longest chunk-size line (size and extensions) or trailer line.
const MAX_LINE: usize = 4096;

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The framing is broken.
    Malformed,
    /// The data would exceed the allowed size.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size (`digits` so far, `ext` once an extension started).
    Size { digits: u8, ext: bool, len: usize },
    /// Saw CR after the size line; expecting LF.
    SizeLf,
    /// Chunk data still to pass.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section (`len` bytes into the current line, `cr` after a CR).
    Trailer { len: usize, cr: bool },
    /// The body is complete.
    Done,
}

/// Follows one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkScanner {
    state: State,
    size: u64,
    total: u64,
    max: u64,
}

impl ChunkScanner {
    /// A scanner for a body whose data may total at most `max` bytes.
    pub fn new(max: u64) -> Self {
        ChunkScanner {
            state: State::Size {
                digits: 0,
                ext: false,
                len: 0,
            },
            size: 0,
            total: 0,
            max,
        }
    }

    /// Whether the body (trailer included) is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes seen so far.
    pub fn data_len(&self) -> u64 {
        self.total
    }

    /// Follows `bytes`, the next bytes of the body. Returns how many of them belong to the
    /// body: all of them, or fewer when the body ends inside `bytes`. `data` is called with
    /// the range (within `bytes`) of every run of chunk data.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Data { remaining } => {
                    let n = remaining.min((bytes.len() - i) as u64) as usize;
                    data(i..i + n);
                    i += n;
                    self.state = match remaining - n as u64 {
                        0 => State::DataCr,
                        remaining => State::Data { remaining },
                    };
                }
                state => {
                    self.state = self.step(state, bytes[i])?;
                    i += 1;
                }
            }
        }
        Ok(i)
    }

    /// One byte of framing.
    fn step(&mut self, state: State, b: u8) -> Result<State, ChunkError> {
        let bad = ChunkError::Malformed;
        Ok(match state {
            State::Size { digits, ext, len } => {
                if len >= MAX_LINE {
                    return Err(bad);
                }
                let len = len + 1;
                match b {
                    b'\r' if digits > 0 => State::SizeLf,
                    _ if ext => {
                        if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                            return Err(bad);
                        }
                        State::Size { digits, ext, len }
                    }
                    b';' | b' ' | b'\t' if digits > 0 => State::Size {
                        digits,
                        ext: true,
                        len,
                    },
                    _ => {
                        let digit = (b as char).to_digit(16).ok_or(bad)?;
                        if digits >= 15 {
                            return Err(bad);
                        }
                        self.size = self.size * 16 + u64::from(digit);
                        State::Size {
                            digits: digits + 1,
                            ext,
                            len,
                        }
                    }
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(bad);
                }
                let size = std::mem::take(&mut self.size);
                self.total += size;
                if self.total > self.max {
                    return Err(ChunkError::TooLarge);
                }
                match size {
                    0 => State::Trailer { len: 0, cr: false },
                    remaining => State::Data { remaining },
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size {
                digits: 0,
                ext: false,
                len: 0,
            },
            State::DataCr | State::DataLf => return Err(bad),
            State::Trailer { len, cr } => match (b, cr) {
                (b'\r', false) => State::Trailer { len, cr: true },
                (b'\n', true) if len == 0 => State::Done,
                (b'\n', true) => State::Trailer { len: 0, cr: false },
                (_, true) => return Err(bad),
                _ if len >= MAX_LINE || (b < 0x20 && b != b'\t') || b == 0x7f => return Err(bad),
                _ => State::Trailer {
                    len: len + 1,
                    cr: false,
                },
            },
            State::Data { .. } | State::Done => state,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn scan_all(body: &[u8], max: u64) -> Result<(usize, Vec<u8>, bool), ChunkError> {
        let mut scanner = ChunkScanner::new(max);
        let mut out = Vec::new();
        let used = scanner.feed(body, |r| out.extend_from_slice(&body[r]))?;
        Ok((used, out, scanner.is_done()))
    }

    #[test]
    fn finds_the_end_and_the_data() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1";
        let (used, data, done) = scan_all(body, 100).unwrap();
        assert!(done);
        assert_eq!(&body[used..], b"GET / HTTP/1.1");
        assert_eq!(data, b"hello world");
    }

    #[test]
    fn follows_a_body_one_byte_at_a_time() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut scanner = ChunkScanner::new(100);
        let mut data = Vec::new();
        for (i, b) in body.iter().enumerate() {
            assert!(!scanner.is_done(), "done early at {i}");
            let one = [*b];
            let used = scanner
                .feed(&one, |r| data.extend_from_slice(&one[r]))
                .unwrap();
            assert_eq!(used, 1);
        }
        assert!(scanner.is_done());
        assert_eq!(data, b"0123456789");
        assert_eq!(scanner.data_len(), 10);
    }

    #[test]
    fn refuses_broken_framing() {
        for body in [
            &b"x\r\n"[..],
            b"5\r\nhelloX",
            b"5\nhello\r\n",
            b"\r\n",
            b"1234567890abcdef0\r\n",
            b"0\r\nBad\x01: x\r\n\r\n",
            b"0\r\n\rX",
        ] {
            assert_eq!(
                scan_all(body, u64::MAX).unwrap_err(),
                ChunkError::Malformed,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn counts_data_against_the_limit() {
        assert_eq!(
            scan_all(b"5\r\nhello\r\n6\r\n", 10).unwrap_err(),
            ChunkError::TooLarge
        );
        assert!(
            scan_all(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 10)
                .unwrap()
                .2
        );
    }
}
