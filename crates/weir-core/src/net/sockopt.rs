//! Socket options weir sets on client and server sockets.

use std::io;
use std::os::fd::AsFd;

use socket2::SockRef;
use weir_config::TcpKeepalive;

/// Turns on TCP keep-alive probes with the configured idle time, interval and count, on a
/// connected stream or on a socket before it connects.
pub fn set_keepalive(socket: &impl AsFd, keepalive: &TcpKeepalive) -> io::Result<()> {
    let params = socket2::TcpKeepalive::new()
        .with_time(keepalive.idle)
        .with_interval(keepalive.interval)
        .with_retries(keepalive.count);
    SockRef::from(socket).set_tcp_keepalive(&params)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn keepalive_settings_reach_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let keepalive = TcpKeepalive {
            idle: Duration::from_secs(42),
            interval: Duration::from_secs(7),
            count: 5,
        };
        set_keepalive(&stream, &keepalive).unwrap();
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(42)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(7)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 5);
    }
}
