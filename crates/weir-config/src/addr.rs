//! Socket addresses as the config writes them: `"ip:port"`, `"[v6]:port"`, and for listener
//! binds a port range `"ip:first-last"`.
//!
//! Host names are refused on purpose: weir does not resolve names at load time, so an address
//! means exactly one socket. Errors are sentence fragments for a diagnostic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Most ports one `bind` range may cover.
pub(crate) const MAX_RANGE_PORTS: u32 = 1000;

/// A parsed `bind`: one address and an inclusive port range (`first == last` for one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bind {
    /// The IP address to bind.
    pub ip: IpAddr,
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
    /// Whether the text gave a range (`"ip:7000-7000"` is a range of one port).
    pub range: bool,
}

impl Bind {
    /// Whether `bind` gave a range rather than one port.
    pub(crate) fn is_range(&self) -> bool {
        self.range
    }

    /// One socket address per port.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        (self.first..=self.last)
            .map(|port| SocketAddr::new(self.ip, port))
            .collect()
    }
}

/// Parses `"ip:port"`; `allow_port_zero` admits port 0 (an ephemeral port, used by tests).
pub(crate) fn parse_socket_addr(text: &str, allow_port_zero: bool) -> Result<SocketAddr, String> {
    let (ip, port) = split_host_port(text)?;
    let port = parse_port(port, text)?;
    if port == 0 && !allow_port_zero {
        return Err(format!(
            "port 0 in \"{text}\" is not a port a server can listen on"
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Parses a listener's `bind`: `"ip:port"` or `"ip:first-last"`.
pub(crate) fn parse_bind(text: &str) -> Result<Bind, String> {
    let (ip, ports) = split_host_port(text)?;
    let Some((first, last)) = ports.split_once('-') else {
        let port = parse_port(ports, text)?;
        return Ok(Bind {
            ip,
            first: port,
            last: port,
            range: false,
        });
    };
    let first = parse_port(first, text)?;
    let last = parse_port(last, text)?;
    if first == 0 || last == 0 {
        return Err(format!(
            "port 0 (an ephemeral port) cannot be part of a range in \"{text}\""
        ));
    }
    if first > last {
        return Err(format!("the range in \"{text}\" ends before it starts"));
    }
    let count = u32::from(last) - u32::from(first) + 1;
    if count > MAX_RANGE_PORTS {
        return Err(format!(
            "the range in \"{text}\" covers {count} ports; at most {MAX_RANGE_PORTS} are allowed"
        ));
    }
    Ok(Bind {
        ip,
        first,
        last,
        range: true,
    })
}

/// Parses an IP address (`health_check.source`).
pub(crate) fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>()
        .map_err(|_| format!("\"{text}\" is not an IP address"))
}

/// Splits `ip:rest` / `[v6]:rest` and parses the IP.
fn split_host_port(text: &str) -> Result<(IpAddr, &str), String> {
    if let Some(bracketed) = text.strip_prefix('[') {
        let Some((host, rest)) = bracketed.split_once(']') else {
            return Err(format!("\"{text}\" opens '[' without a closing ']'"));
        };
        let Some(port) = rest.strip_prefix(':') else {
            return Err(format!("\"{text}\" has no port; write \"[{host}]:8080\""));
        };
        let ip = host
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("\"{host}\" in \"{text}\" is not an IPv6 address"))?;
        return Ok((IpAddr::V6(ip), port));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("\"{text}\" has no port; write \"{text}:8080\""));
    };
    if host.contains(':') {
        return Err(format!(
            "IPv6 addresses go in brackets: write \"[{host}]:{port}\""
        ));
    }
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => Ok((IpAddr::V4(ip), port)),
        Err(_) if host.chars().any(|c| c.is_ascii_alphabetic()) => Err(format!(
            "\"{host}\" is a host name; weir needs an IP address here (e.g. 127.0.0.1:{port})"
        )),
        Err(_) => Err(format!("\"{host}\" in \"{text}\" is not an IPv4 address")),
    }
}

fn parse_port(port: &str, text: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err(format!("\"{text}\" has no port after ':'"));
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("port \"{port}\" in \"{text}\" is not a number"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("port {port} in \"{text}\" is above 65535"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_addresses() {
        let a = parse_socket_addr("10.0.0.1:80", false).unwrap();
        assert_eq!(a, "10.0.0.1:80".parse().unwrap());
        let a = parse_socket_addr("[::1]:8080", false).unwrap();
        assert_eq!(a, "[::1]:8080".parse().unwrap());
        assert_eq!(parse_socket_addr("127.0.0.1:0", true).unwrap().port(), 0);
    }

    #[test]
    fn explains_bad_addresses() {
        let cases = [
            ("localhost:80", "host name"),
            ("10.0.0.1", "has no port"),
            ("10.0.0.1:", "no port after"),
            ("10.0.0.1:http", "not a number"),
            ("10.0.0.1:70000", "above 65535"),
            ("10.0.0.256:80", "not an IPv4 address"),
            ("::1:80", "in brackets"),
            ("[::1:80", "without a closing"),
            ("[::1]", "has no port"),
            ("[zz]:80", "not an IPv6 address"),
            ("10.0.0.1:0", "port 0"),
        ];
        for (text, want) in cases {
            let err = parse_socket_addr(text, false).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn parses_bind_ranges() {
        let b = parse_bind("0.0.0.0:7000-7002").unwrap();
        assert!(b.is_range());
        assert_eq!(b.addrs().len(), 3);
        assert_eq!(b.addrs()[2], "0.0.0.0:7002".parse().unwrap());
        let b = parse_bind("[::1]:7000-7010").unwrap();
        assert_eq!(b.addrs().len(), 11);
        let b = parse_bind("127.0.0.1:0").unwrap();
        assert!(!b.is_range());
        assert_eq!(b.addrs(), ["127.0.0.1:0".parse().unwrap()]);
        assert!(parse_bind("0.0.0.0:7000-7000").unwrap().is_range());
    }

    #[test]
    fn explains_bad_ranges() {
        let cases = [
            ("0.0.0.0:0-10", "cannot be part of a range"),
            ("0.0.0.0:20-10", "ends before it starts"),
            ("0.0.0.0:1000-2000", "covers 1001 ports"),
            ("0.0.0.0:10-x", "not a number"),
        ];
        for (text, want) in cases {
            let err = parse_bind(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
