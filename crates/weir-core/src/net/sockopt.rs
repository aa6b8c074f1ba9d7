//! Socket options weir sets on client and server sockets.

use std::io;

use socket2::SockRef;
use tokio::net::TcpStream;
use weir_config::TcpKeepalive;

/// Turns on TCP keep-alive probes with the configured idle time, interval and count.
pub fn set_keepalive(stream: &TcpStream, keepalive: &TcpKeepalive) -> io::Result<()> {
    let params = socket2::TcpKeepalive::new()
        .with_time(keepalive.idle)
        .with_interval(keepalive.interval)
        .with_retries(keepalive.count);
    SockRef::from(stream).set_tcp_keepalive(&params)
}
