//! How a connection ended, as seen by one side: the peer's FIN, a reset, or something else.
//!
//! A RST is told from a FIN by the socket error: `ECONNRESET` (or `EPIPE` / `ECONNABORTED` on a
//! write) versus a zero-length read.

use std::io;

/// How the peer ended a connection, from the reader's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Orderly: a read returned 0 bytes (the peer sent FIN).
    Fin,
    /// Abortive: the socket reported a reset (`ECONNRESET`, `EPIPE`, `ECONNABORTED`).
    Rst,
    /// Any other error, or a timeout.
    Other,
}

/// Classifies the result of one read: `Some(ending)` once the connection has ended, `None` when
/// bytes were read and the caller should keep reading.
pub fn classify(result: io::Result<usize>) -> Option<Ending> {
    match result {
        Ok(0) => Some(Ending::Fin),
        Ok(_) => None,
        Err(err) => Some(of_error(&err)),
    }
}

/// Classifies an I/O error (from a read or a write): resets are [`Ending::Rst`], the rest
/// [`Ending::Other`].
pub fn of_error(err: &io::Error) -> Ending {
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => Ending::Rst,
        _ => Ending::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_reads() {
        assert_eq!(classify(Ok(0)), Some(Ending::Fin));
        assert_eq!(classify(Ok(5)), None);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify(Err(reset)), Some(Ending::Rst));
        let pipe = io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(classify(Err(pipe)), Some(Ending::Rst));
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(classify(Err(aborted)), Some(Ending::Rst));
        let other = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(classify(Err(other)), Some(Ending::Other));
    }
}
