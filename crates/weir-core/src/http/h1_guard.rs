//! A guard on the bytes of an HTTP/1 client connection, in front of hyper.
//!
//! hyper quietly repairs some ambiguous requests — it drops `Content-Length` when
//! `Transfer-Encoding` is also present — and a proxy must refuse those instead (request
//! smuggling lives in the gap between two parsers' repairs). So weir follows the message
//! framing itself: it parses each request head with httparse as the bytes arrive, checks it,
//! skips the body by its declared length or chunk by chunk, and expects the next head. A head
//! or body it refuses is never handed to hyper, so it never reaches a server; weir answers the
//! client itself ([`Reject`]).
//!
//! The guard is a state machine fed with byte slices; it does no I/O and keeps only the head
//! being parsed (bounded by the header limit) and a few counters.

use http::StatusCode;

/// Limits the guard enforces.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    /// Largest request head (request line and headers), bytes → 431.
    pub max_header_size: usize,
    /// Longest request target, bytes → 414.
    pub max_uri_length: usize,
    /// Largest request body, bytes → 413.
    pub max_body_size: u64,
}

/// Why a request was refused: the status weir answers with, and a short tag for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// Status to answer with.
    pub status: StatusCode,
    /// Short snake_case reason, logged as `end_reason`.
    pub reason: &'static str,
}

impl Reject {
    const fn bad(reason: &'static str) -> Self {
        Reject {
            status: StatusCode::BAD_REQUEST,
            reason,
        }
    }
}

/// Most headers in one request head.
const MAX_HEADERS: usize = 128;

/// Longest chunk-size line (size, extensions) or trailer line.
const MAX_CHUNK_LINE: usize = 4096;

/// Where the guard is in the stream of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Accumulating a request head.
    Head,
    /// Skipping a body of known length.
    Body { remaining: u64 },
    /// Inside a chunked body.
    Chunked(Chunk),
    /// No more HTTP/1 framing: an upgrade or CONNECT was requested, or the client speaks
    /// HTTP/2 (prior knowledge); bytes pass unchecked.
    Passthrough,
    /// A request was refused; nothing more is accepted.
    Refused(Reject),
}

/// Position inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size (`digits` so far, `ext` once a `;` extension started).
    Size {
        size: u64,
        digits: u8,
        ext: bool,
        len: usize,
    },
    /// Saw CR after the size line; expecting LF.
    SizeLf { size: u64 },
    /// Chunk data still to skip.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section, at the start of a line (`len` = bytes in the current line).
    Trailer { len: usize, cr: bool },
}

/// The HTTP/1 framing guard for one client connection.
#[derive(Debug)]
pub struct H1Guard {
    limits: GuardLimits,
    state: State,
    head: Vec<u8>,
    body_total: u64,
}

/// First byte of a TLS record carrying a handshake (a ClientHello sent to a plain port).
const TLS_HANDSHAKE: u8 = 0x16;

/// How the HTTP/2 connection preface of a prior-knowledge client starts.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2";

impl H1Guard {
    /// A guard expecting a request head.
    pub fn new(limits: GuardLimits) -> Self {
        H1Guard {
            limits,
            state: State::Head,
            head: Vec::new(),
            body_total: 0,
        }
    }

    /// Whether the guard has stopped checking (upgrade, CONNECT, HTTP/2).
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Whether a head is partly received (for the request-header timeout: the client has
    /// started a request).
    pub fn mid_head(&self) -> bool {
        self.state == State::Head && !self.head.is_empty()
    }

    /// After an upgrade the server declined, the connection goes on as HTTP/1: check again.
    pub fn resume(&mut self) {
        if self.state == State::Passthrough {
            self.state = State::Head;
            self.head.clear();
        }
    }

    /// Feeds bytes read from the client. `Ok(())` means they may be handed to hyper;
    /// `Err` means the connection must be answered with the rejection and closed — none of
    /// `bytes` may be handed on.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Reject> {
        while !bytes.is_empty() {
            let used = match self.state {
                State::Passthrough => return Ok(()),
                State::Refused(reject) => return Err(reject),
                State::Head => self.feed_head(bytes),
                State::Body { remaining } => {
                    let n = remaining.min(bytes.len() as u64);
                    self.state = match remaining - n {
                        0 => State::Head,
                        remaining => State::Body { remaining },
                    };
                    Ok(n as usize)
                }
                State::Chunked(chunk) => self.feed_chunked(chunk, bytes),
            };
            match used {
                Ok(n) => bytes = &bytes[n..],
                Err(reject) => {
                    self.state = State::Refused(reject);
                    return Err(reject);
                }
            }
        }
        Ok(())
    }

    /// Accumulates head bytes; parses once a line ends. Returns how many bytes of `bytes`
    /// belong to the head.
    fn feed_head(&mut self, bytes: &[u8]) -> Result<usize, Reject> {
        let start = self.head.len();
        if start == 0 && bytes.first() == Some(&TLS_HANDSHAKE) {
            return Err(Reject::bad("tls_on_plain_port"));
        }
        // Invariant: a head never fills the buffer without being refused, so there is room.
        let take = bytes.len().min(self.limits.max_header_size - start);
        self.head.extend_from_slice(&bytes[..take]);
        if self.head.starts_with(H2_PREFACE_START) {
            self.state = State::Passthrough;
            return Ok(bytes.len());
        }
        if bytes[..take].contains(&b'\n') {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&self.head) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let next = check_head(&request, &self.limits)?;
                    self.head.clear();
                    self.body_total = 0;
                    self.state = next;
                    return Ok(head_len - start);
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Reject {
                        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        reason: "too_many_headers",
                    });
                }
                Err(_) => return Err(Reject::bad("malformed_head")),
            }
        }
        self.check_head_size(take)
    }

    fn check_head_size(&self, take: usize) -> Result<usize, Reject> {
        if self.head.len() >= self.limits.max_header_size {
            // The request line alone may be what is too long.
            let line_end = self.head.iter().position(|&b| b == b'\n');
            if line_end.is_none() && self.head.len() > self.limits.max_uri_length {
                return Err(Reject {
                    status: StatusCode::URI_TOO_LONG,
                    reason: "uri_too_long",
                });
            }
            return Err(Reject {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: "header_too_large",
            });
        }
        Ok(take)
    }

    fn feed_chunked(&mut self, chunk: Chunk, bytes: &[u8]) -> Result<usize, Reject> {
        let mut used = 0;
        let mut chunk = chunk;
        while used < bytes.len() {
            let b = bytes[used];
            chunk = match chunk {
                Chunk::Data { remaining } => {
                    let n = remaining.min((bytes.len() - used) as u64);
                    used += n as usize;
                    match remaining - n {
                        0 => Chunk::DataCr,
                        remaining => Chunk::Data { remaining },
                    }
                }
                _ => {
                    used += 1;
                    match self.chunk_byte(chunk, b)? {
                        Some(next) => next,
                        None => {
                            self.state = State::Head;
                            return Ok(used);
                        }
                    }
                }
            };
        }
        self.state = State::Chunked(chunk);
        Ok(used)
    }

    /// One byte of chunk framing; `None` when the body (with its trailer) is complete.
    fn chunk_byte(&mut self, chunk: Chunk, b: u8) -> Result<Option<Chunk>, Reject> {
        let bad = Reject::bad("bad_chunk");
        Ok(Some(match chunk {
            Chunk::Size {
                size,
                digits,
                ext,
                len,
            } => {
                if len >= MAX_CHUNK_LINE {
                    return Err(bad);
                }
                match b {
                    b'\r' if digits > 0 => Chunk::SizeLf { size },
                    _ if ext => {
                        if b == b'\n' || (b < 0x20 && b != b'\t') {
                            return Err(bad);
                        }
                        Chunk::Size {
                            size,
                            digits,
                            ext,
                            len: len + 1,
                        }
                    }
                    b';' if digits > 0 => Chunk::Size {
                        size,
                        digits,
                        ext: true,
                        len: len + 1,
                    },
                    b' ' | b'\t' if digits > 0 => Chunk::Size {
                        size,
                        digits,
                        ext: true,
                        len: len + 1,
                    },
                    _ => {
                        let digit = (b as char).to_digit(16).ok_or(bad)?;
                        if digits >= 15 {
                            return Err(bad);
                        }
                        Chunk::Size {
                            size: size * 16 + u64::from(digit),
                            digits: digits + 1,
                            ext,
                            len: len + 1,
                        }
                    }
                }
            }
            Chunk::SizeLf { size } => {
                if b != b'\n' {
                    return Err(bad);
                }
                self.body_total += size;
                if self.body_total > self.limits.max_body_size {
                    return Err(Reject {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        reason: "body_too_large",
                    });
                }
                match size {
                    0 => Chunk::Trailer { len: 0, cr: false },
                    remaining => Chunk::Data { remaining },
                }
            }
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return Err(bad),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size {
                    size: 0,
                    digits: 0,
                    ext: false,
                    len: 0,
                },
                _ => return Err(bad),
            },
            Chunk::Trailer { len, cr } => match (b, cr) {
                (b'\r', false) => Chunk::Trailer { len, cr: true },
                (b'\n', true) if len == 0 => return Ok(None),
                (b'\n', true) => Chunk::Trailer { len: 0, cr: false },
                (_, true) => return Err(bad),
                _ if len >= MAX_CHUNK_LINE || (b < 0x20 && b != b'\t') => return Err(bad),
                _ => Chunk::Trailer {
                    len: len + 1,
                    cr: false,
                },
            },
            Chunk::Data { .. } => chunk,
        }))
    }
}

/// Checks a complete head; returns the state for what follows it.
fn check_head(request: &httparse::Request<'_, '_>, limits: &GuardLimits) -> Result<State, Reject> {
    let path = request.path.unwrap_or("");
    if path.len() > limits.max_uri_length {
        return Err(Reject {
            status: StatusCode::URI_TOO_LONG,
            reason: "uri_too_long",
        });
    }
    let http10 = request.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encodings = 0;
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Reject::bad("bad_header_value"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let len = parse_decimal(value).ok_or(Reject::bad("bad_content_length"))?;
            if content_length.is_some() {
                return Err(Reject::bad("duplicate_content_length"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encodings += 1;
            chunked = trim(value).eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= has_token(value, b"upgrade");
        }
    }
    if transfer_encodings > 0 {
        if content_length.is_some() {
            return Err(Reject::bad("te_and_cl"));
        }
        if transfer_encodings > 1 || !chunked || http10 {
            return Err(Reject::bad("bad_transfer_encoding"));
        }
    }
    if let Some(len) = content_length
        && len > limits.max_body_size
    {
        return Err(Reject {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: "body_too_large",
        });
    }
    if request.method == Some("CONNECT") || (upgrade && connection_upgrade) {
        return Ok(State::Passthrough);
    }
    Ok(match (chunked, content_length) {
        (true, _) => State::Chunked(Chunk::Size {
            size: 0,
            digits: 0,
            ext: false,
            len: 0,
        }),
        (false, Some(remaining)) if remaining > 0 => State::Body { remaining },
        _ => State::Head,
    })
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &value[start..end]
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

#[cfg(test)]
#[path = "h1_guard_tests.rs"]
mod tests;
