//! A listener's `acl` (who may connect, as CIDR networks) and `limits` (connections, new
//! connections and requests per second). Both apply to every protocol, except `limits.qps`,
//! which needs requests to count: http and https only.

use std::net::IpAddr;

use crate::reader::Table;
use crate::rule::later_of;
use crate::sink::{Sink, Span};
use crate::value::expect_str;
use crate::{Acl, IpNet, Limits, Protocol};

/// Why a network did not parse: the message, and a hint when there is an obvious fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CidrError {
    /// What is wrong, quoting the text.
    pub message: String,
    /// How to fix it (`did you mean "10.0.0.0/8"?`), or a reminder of the syntax.
    pub hint: String,
}

const CIDR_SYNTAX: &str = "write a network as \"10.0.0.0/8\" or \"2001:db8::/32\", or one \
                           address such as \"192.0.2.7\"";

/// Parses `"10.0.0.0/8"`, `"2001:db8::/32"`, or a bare address (a /32 or /128). The host bits
/// after the prefix must be zero.
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, CidrError> {
    let fail = |message: String, hint: &str| CidrError {
        message,
        hint: hint.to_string(),
    };
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| {
        fail(
            format!("\"{text}\": \"{addr_text}\" is not an IP address"),
            CIDR_SYNTAX,
        )
    })?;
    let (family, max) = match addr {
        IpAddr::V4(_) => ("IPv4", 32),
        IpAddr::V6(_) => ("IPv6", 128),
    };
    let Some(prefix_text) = prefix_text else {
        return Ok(IpNet { addr, prefix: max });
    };
    if prefix_text.is_empty() || !prefix_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(
            format!("\"{text}\": \"/{prefix_text}\" is not a prefix length"),
            CIDR_SYNTAX,
        ));
    }
    let prefix = match prefix_text.parse::<u8>() {
        Ok(p) if p <= max => p,
        _ => {
            return Err(fail(
                format!(
                    "\"{text}\": prefix /{prefix_text} is out of range for {family} (0 to {max})"
                ),
                &format!("an {family} prefix is a length from /0 to /{max}"),
            ));
        }
    };
    let network = mask(addr, prefix);
    if network != addr {
        return Err(fail(
            format!("\"{text}\" has host bits set after the /{prefix} prefix"),
            &format!("did you mean \"{network}/{prefix}\"?"),
        ));
    }
    Ok(IpNet { addr, prefix })
}

/// `addr` with every bit after the first `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & bits).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & bits).into())
        }
    }
}

/// Reads the listener's `acl = { allow = [...] }` or `{ deny = [...] }`. Returns the list and,
/// for an allow list, where it is written (for lint); `None` when absent or invalid (reported).
pub(crate) fn read_acl(
    sink: &mut Sink<'_>,
    listener: &mut Table<'_, '_>,
) -> Option<(Acl, Option<Span>)> {
    let mut t = listener.table(sink, "acl")?;
    let errors_before = sink.error_count();
    let allow = read_networks(sink, &mut t, "allow");
    let deny = read_networks(sink, &mut t, "deny");
    if let Some((key, at)) = later_of(&t, "allow", "deny") {
        sink.error(
            &at,
            &t.key_path(key),
            "an acl either allows or denies, not both",
            "keep `allow` to let only those networks in, or `deny` to keep only those out",
        );
    } else if t.key_span("allow").is_none() && t.key_span("deny").is_none() {
        sink.error(
            t.span(),
            t.path(),
            "an acl needs an `allow` or a `deny` list",
            "e.g. acl = { allow = [\"10.0.0.0/8\"] }; remove `acl` to let every client in",
        );
    }
    t.finish(sink);
    if sink.error_count() != errors_before {
        return None;
    }
    match (allow, deny) {
        (Some((nets, at)), None) => Some((Acl::Allow(nets), Some(at))),
        (None, Some((nets, _))) => Some((Acl::Deny(nets), None)),
        _ => None,
    }
}

/// Reads one list of networks (`allow` or `deny`), with where it is written.
fn read_networks(
    sink: &mut Sink<'_>,
    t: &mut Table<'_, '_>,
    key: &'static str,
) -> Option<(Vec<IpNet>, Span)> {
    let list = t.array(sink, key)?;
    let path = t.key_path(key);
    if list.get_ref().is_empty() {
        let hint = if key == "allow" {
            "an empty allow list would let no client in; list the networks to admit, e.g. \
             [\"10.0.0.0/8\"], or remove `acl`"
        } else {
            "list the networks to keep out, e.g. [\"203.0.113.0/24\"], or remove `acl`"
        };
        sink.error(&list.span(), &path, "must list at least one network", hint);
        return None;
    }
    let mut nets = Vec::new();
    for (i, value) in list.get_ref().iter().enumerate() {
        let entry = format!("{path}[{i}]");
        let Some(text) = expect_str(sink, value, &entry) else {
            continue;
        };
        match parse_cidr(text) {
            Ok(net) => nets.push(net),
            Err(why) => sink.error(&value.span(), &entry, why.message, why.hint),
        }
    }
    Some((nets, list.span()))
}

/// Reads `limits = { max_connections, cps, qps }` / `[listener.limits]`; `protocol` is `None`
/// when it is missing or invalid (already reported), and then `qps` is only marked as known.
pub(crate) fn read_limits(
    sink: &mut Sink<'_>,
    listener: &mut Table<'_, '_>,
    protocol: Option<Protocol>,
) -> Limits {
    let mut limits = Limits::default();
    let Some(mut t) = listener.table(sink, "limits") else {
        return limits;
    };
    let count = |n: toml::Spanned<i64>| u32::try_from(n.into_inner()).ok();
    limits.max_connections = t
        .integer(sink, "max_connections", 1..=10_000_000)
        .and_then(count);
    limits.cps = t.integer(sink, "cps", 1..=1_000_000).and_then(count);
    match protocol {
        Some(kind @ (Protocol::Tcp | Protocol::Udp)) => {
            if let (Some(_), Some(at)) = (t.get("qps"), t.key_span("qps")) {
                sink.error(
                    &at,
                    &t.key_path("qps"),
                    format!(
                        "`qps` only applies to http and https listeners; this listener is \
                         protocol = \"{}\"",
                        kind.as_str()
                    ),
                    "limit new connections per second with `cps` instead",
                );
            }
        }
        Some(Protocol::Http | Protocol::Https) => {
            limits.qps = t.integer(sink, "qps", 1..=10_000_000).and_then(count);
        }
        None => {
            t.get("qps");
        }
    }
    t.finish(sink);
    limits
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn net(text: &str) -> (String, u8) {
        let n = parse_cidr(text).unwrap();
        (n.addr.to_string(), n.prefix)
    }

    fn err(text: &str) -> (String, String) {
        let e = parse_cidr(text).unwrap_err();
        (e.message, e.hint)
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        assert_eq!(net("10.0.0.0/8"), ("10.0.0.0".into(), 8));
        assert_eq!(net("192.168.0.0/16"), ("192.168.0.0".into(), 16));
        assert_eq!(net("0.0.0.0/0"), ("0.0.0.0".into(), 0));
        assert_eq!(net("192.0.2.7"), ("192.0.2.7".into(), 32));
        assert_eq!(net("192.0.2.7/32"), ("192.0.2.7".into(), 32));
        assert_eq!(net("::1"), ("::1".into(), 128));
        assert_eq!(net("2001:db8::/32"), ("2001:db8::".into(), 32));
        assert_eq!(net("::/0"), ("::".into(), 0));
        assert_eq!(net("2001:db8::1/128"), ("2001:db8::1".into(), 128));
    }

    #[test]
    fn refuses_bad_addresses_and_prefixes() {
        assert_eq!(
            err("10.0.0.256/8").0,
            "\"10.0.0.256/8\": \"10.0.0.256\" is not an IP address"
        );
        assert_eq!(err("").0, "\"\": \"\" is not an IP address");
        assert_eq!(
            err("[::1]/128").0,
            "\"[::1]/128\": \"[::1]\" is not an IP address"
        );
        assert_eq!(
            err("10.0.0.0/33"),
            (
                "\"10.0.0.0/33\": prefix /33 is out of range for IPv4 (0 to 32)".into(),
                "an IPv4 prefix is a length from /0 to /32".into()
            )
        );
        assert_eq!(
            err("::/129").0,
            "\"::/129\": prefix /129 is out of range for IPv6 (0 to 128)"
        );
        assert_eq!(
            err("::/300").0,
            "\"::/300\": prefix /300 is out of range for IPv6 (0 to 128)"
        );
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
        ] {
            assert!(err(bad).0.contains("is not a prefix length"), "{bad}");
        }
    }

    #[test]
    fn host_bits_suggest_the_network() {
        assert_eq!(
            err("10.0.0.1/8"),
            (
                "\"10.0.0.1/8\" has host bits set after the /8 prefix".into(),
                "did you mean \"10.0.0.0/8\"?".into()
            )
        );
        assert_eq!(err("192.168.1.1/0").1, "did you mean \"0.0.0.0/0\"?");
        assert_eq!(err("2001:db8::1/32").1, "did you mean \"2001:db8::/32\"?");
    }
}
