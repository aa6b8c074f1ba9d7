//! A loopback listener that never answers new connections: its accept queue is full, so the
//! kernel drops further SYNs and a connect hangs in `SYN_SENT`. Used to test connect timeouts
//! without leaving loopback.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Most client connections used to fill the accept queue.
const MAX_FILLERS: usize = 4;

/// How long one filling connect may take; the first that times out shows the queue is full.
const FILL_TIMEOUT: Duration = Duration::from_millis(100);

/// A listener with a full accept queue, and the client connections that fill it. Keep it alive
/// for as long as connects to its address should hang.
#[derive(Debug)]
pub struct UnresponsiveListener {
    _listener: Socket,
    _fillers: Vec<Socket>,
    addr: SocketAddr,
}

impl UnresponsiveListener {
    /// The address whose connects hang.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds `127.0.0.1:0` with a backlog of 0, never accepts, and fills the accept queue with held
/// client connections, so that further connects get no SYN-ACK. Takes about 100 ms (the last
/// filling connect has to time out to show the queue is full).
pub fn unresponsive_listener() -> io::Result<(UnresponsiveListener, SocketAddr)> {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    listener.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    listener.listen(0)?;
    let addr = listener
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no IP address"))?;
    let fillers = fill_accept_queue(addr)?;
    let held = UnresponsiveListener {
        _listener: listener,
        _fillers: fillers,
        addr,
    };
    Ok((held, addr))
}

/// Connects until a connect times out, which means the queue is full. The first connect must
/// succeed (a backlog of 0 still admits one connection on Linux).
fn fill_accept_queue(addr: SocketAddr) -> io::Result<Vec<Socket>> {
    let mut fillers = Vec::new();
    for _ in 0..MAX_FILLERS {
        let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        match client.connect_timeout(&addr.into(), FILL_TIMEOUT) {
            Ok(()) => fillers.push(client),
            Err(err) if is_timeout(&err) && !fillers.is_empty() => return Ok(fillers),
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::other(
        "the accept queue did not fill up: connects to a backlog-0 listener kept succeeding",
    ))
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}
