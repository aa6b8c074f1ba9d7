//! The HTTP half of a probe: send the request, read the response head with httparse, discard
//! the body as framed (Content-Length, chunked, until close), and close without a reset.

use super::*;

// === HTTP ===

/// A connection being probed over HTTP, with the bytes read but not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
    /// The server's FIN or RST was read: nothing more can arrive. (After any other error the
    /// socket still goes through [`close_gracefully`], which returns at once if it is dead.)
    ended: bool,
}

impl Conn {
    /// Reads more bytes into `buf`; `Ok(0)` at the server's FIN.
    async fn fill(&mut self, phase: Phase) -> Result<usize, Failure> {
        self.buf.reserve(READ_CHUNK);
        match timeout_at(self.deadline, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(Failure::TimedOut(phase)),
            Ok(Ok(n)) => {
                self.ended = n == 0;
                Ok(n)
            }
            Ok(Err(err)) if is_reset(&err) => {
                self.ended = true;
                Err(Failure::Reset)
            }
            Ok(Err(err)) => Err(Failure::Io(phase, err)),
        }
    }
}

pub(super) async fn http_probe(
    stream: TcpStream,
    http: &HttpProbe,
    deadline: Instant,
    timeout: Duration,
) -> ProbeResult {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        deadline,
        ended: false,
    };
    let exchange = exchange(&mut conn, http).await;
    let (result, server_closes) = match exchange {
        Ok(head) if http.expects(head.status) => (
            ProbeResult::pass(format!("status {}", head.status)),
            head.server_closes,
        ),
        Ok(head) => {
            let detail = format!("status {} not expected", head.status);
            (ProbeResult::fail(detail), head.server_closes)
        }
        Err(failure) => (ProbeResult::fail(failure.detail(timeout)), false),
    };
    finish(conn, server_closes).await;
    result
}

/// Sends the request, reads the final response head and discards its body.
async fn exchange(conn: &mut Conn, http: &HttpProbe) -> Result<Head, Failure> {
    match timeout_at(conn.deadline, conn.stream.write_all(http.request())).await {
        Err(_) => return Err(Failure::TimedOut(Phase::Sending)),
        Ok(Err(err)) if is_reset(&err) => return Err(Failure::Reset),
        Ok(Err(err)) => return Err(Failure::Io(Phase::Sending, err)),
        Ok(Ok(())) => {}
    }
    for _ in 0..MAX_INTERIM {
        let head = read_head(conn, http.head_request).await?;
        if head.status == 101 || !(100..200).contains(&head.status) {
            discard_body(conn, head.framing).await?;
            return Ok(head);
        }
    }
    Err(Failure::Invalid)
}

/// Closes the probe's connection without a reset: nothing to do if the server already ended
/// it; otherwise wait for the server's FIN if it announced one, else send ours and drain.
async fn finish(conn: Conn, server_closes: bool) {
    if conn.ended {
        return; // Everything up to the server's FIN was read: dropping sends our FIN only.
    }
    let mut stream = conn.stream;
    if server_closes && await_server_fin(&mut stream, conn.deadline).await {
        return;
    }
    close_gracefully(stream, linger_until(conn.deadline)).await;
}

/// Reads and discards until the server ends the connection (`true`) or `deadline` (`false`).
async fn await_server_fin(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut scratch = [0u8; READ_CHUNK];
    loop {
        match timeout_at(deadline, stream.read(&mut scratch)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A parsed response head: the status and how its body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    framing: Framing,
    /// The server said it will close (`Connection: close`, HTTP/1.0, or a body read to close).
    server_closes: bool,
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

async fn read_head(conn: &mut Conn, head_request: bool) -> Result<Head, Failure> {
    loop {
        if let Some((head, len)) = parse_head(&conn.buf, head_request)? {
            conn.buf.drain(..len);
            return Ok(head);
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(Failure::Invalid);
        }
        if conn.fill(Phase::Waiting).await? == 0 {
            return Err(Failure::Closed(Phase::Waiting));
        }
    }
}

/// Parses a response head at the start of `buf`; `None` while incomplete.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<(Head, usize)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Invalid),
    };
    let status = response.code.ok_or(Failure::Invalid)?;
    let framing = framing(status, head_request, response.headers)?;
    let close = has_token(response.headers, "connection", "close");
    let keep_alive = has_token(response.headers, "connection", "keep-alive");
    let old = response.version == Some(0);
    let server_closes = close || (old && !keep_alive) || framing == Framing::UntilClose;
    let head = Head {
        status,
        framing,
        server_closes,
    };
    Ok(Some((head, len)))
}

/// RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; then Transfer-Encoding, then
/// Content-Length (all copies must agree), else read until close.
fn framing(
    status: u16,
    head_request: bool,
    headers: &[httparse::Header<'_>],
) -> Result<Framing, Failure> {
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    let mut encodings = headers_named(headers, "transfer-encoding").peekable();
    if encodings.peek().is_some() {
        let last = encodings.flat_map(|v| v.split(',')).last().unwrap_or("");
        let chunked = last.trim().eq_ignore_ascii_case("chunked");
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in headers_named(headers, "content-length") {
        let parsed: u64 = value.trim().parse().map_err(|_| Failure::Invalid)?;
        if length.is_some_and(|seen| seen != parsed) {
            return Err(Failure::Invalid);
        }
        length = Some(parsed);
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

fn headers_named<'h>(
    headers: &'h [httparse::Header<'h>],
    name: &'static str,
) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

fn has_token(headers: &[httparse::Header<'_>], name: &'static str, token: &str) -> bool {
    headers_named(headers, name)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Reads and discards the body as framed. `conn.buf` holds the bytes after the head.
async fn discard_body(conn: &mut Conn, framing: Framing) -> Result<(), Failure> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(len) => discard_length(conn, len).await,
        Framing::Chunked => discard_chunked(conn).await,
        Framing::UntilClose => loop {
            conn.buf.clear();
            if conn.fill(Phase::Body).await? == 0 {
                return Ok(());
            }
        },
    }
}

async fn discard_length(conn: &mut Conn, len: u64) -> Result<(), Failure> {
    let mut left = len;
    loop {
        let have = u64::try_from(conn.buf.len()).unwrap_or(u64::MAX);
        left = left.saturating_sub(have);
        conn.buf.clear();
        if left == 0 {
            return Ok(());
        }
        if conn.fill(Phase::Body).await? == 0 {
            return Err(Failure::Closed(Phase::Body));
        }
    }
}

async fn discard_chunked(conn: &mut Conn) -> Result<(), Failure> {
    let mut chunks = Chunked::default();
    loop {
        let done = chunks.feed(&conn.buf).map_err(|_| Failure::Invalid)?;
        conn.buf.clear();
        if done {
            return Ok(());
        }
        if conn.fill(Phase::Body).await? == 0 {
            return Err(Failure::Closed(Phase::Body));
        }
    }
}

// === chunked decoding (discarding) ===

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// A malformed chunked body.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadChunk;

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Skips a chunked body, byte slice by byte slice, keeping only the current line.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: ChunkState,
    line: Vec<u8>,
}

impl Chunked {
    /// Consumes `input`; `Ok(true)` once the last chunk and the trailers are through.
    pub(super) fn feed(&mut self, mut input: &[u8]) -> Result<bool, BadChunk> {
        while !input.is_empty() && self.state != ChunkState::Done {
            if let ChunkState::Data(left) = self.state {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                input = &input[take..];
                let left = left - take as u64;
                self.state = if left == 0 {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(left)
                };
                continue;
            }
            let Some(newline) = input.iter().position(|b| *b == b'\n') else {
                self.push_line(input)?;
                return Ok(false);
            };
            self.push_line(&input[..newline])?;
            input = &input[newline + 1..];
            let line = std::mem::take(&mut self.line);
            self.state = self.next_state(line.strip_suffix(b"\r").unwrap_or(&line))?;
        }
        Ok(self.state == ChunkState::Done)
    }

    fn push_line(&mut self, bytes: &[u8]) -> Result<(), BadChunk> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(BadChunk);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn next_state(&self, line: &[u8]) -> Result<ChunkState, BadChunk> {
        match self.state {
            ChunkState::Size => match chunk_size(line)? {
                0 => Ok(ChunkState::Trailer),
                size => Ok(ChunkState::Data(size)),
            },
            ChunkState::DataEnd if line.is_empty() => Ok(ChunkState::Size),
            ChunkState::Trailer if line.is_empty() => Ok(ChunkState::Done),
            ChunkState::Trailer => Ok(ChunkState::Trailer),
            ChunkState::DataEnd | ChunkState::Data(_) | ChunkState::Done => Err(BadChunk),
        }
    }
}

/// Parses `1a;ext=1` as 0x1a.
fn chunk_size(line: &[u8]) -> Result<u64, BadChunk> {
    let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
    let size = std::str::from_utf8(size).map_err(|_| BadChunk)?.trim();
    if size.is_empty() || size.len() > 16 {
        return Err(BadChunk);
    }
    u64::from_str_radix(size, 16).map_err(|_| BadChunk)
}
