//! Who an acl lets in: `IpNet::contains` and `Acl::permits` on IPv4, IPv6 and IPv4-mapped
//! IPv6 clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use weir_config::{Acl, IpNet};

fn net(addr: &str, prefix: u8) -> IpNet {
    IpNet {
        addr: addr.parse().unwrap(),
        prefix,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn ipv4_networks() {
    let all = net("0.0.0.0", 0);
    assert!(all.contains(ip("0.0.0.0")));
    assert!(all.contains(ip("255.255.255.255")));
    assert!(all.contains(ip("10.1.2.3")));

    let ten = net("10.0.0.0", 8);
    assert!(ten.contains(ip("10.0.0.0")));
    assert!(ten.contains(ip("10.255.255.255")));
    assert!(!ten.contains(ip("11.0.0.0")));
    assert!(!ten.contains(ip("9.255.255.255")));

    let one = net("192.0.2.7", 32);
    assert!(one.contains(ip("192.0.2.7")));
    assert!(!one.contains(ip("192.0.2.6")));
    assert!(!one.contains(ip("192.0.2.8")));
}

#[test]
fn ipv6_networks() {
    let all = net("::", 0);
    assert!(all.contains(ip("::")));
    assert!(all.contains(ip("2001:db8::1")));
    assert!(all.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));

    let doc = net("2001:db8::", 32);
    assert!(doc.contains(ip("2001:db8::")));
    assert!(doc.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!doc.contains(ip("2001:db9::")));
    assert!(!doc.contains(ip("2001:db7:ffff::1")));

    let one = net("::1", 128);
    assert!(one.contains(ip("::1")));
    assert!(!one.contains(ip("::2")));
    assert!(!one.contains(ip("::")));
}

#[test]
fn ipv4_mapped_clients_match_ipv4_networks() {
    // What a dual-stack [::] socket reports for an IPv4 client.
    let mapped = ip("::ffff:10.1.2.3");
    assert!(net("10.0.0.0", 8).contains(mapped));
    assert!(net("10.1.2.3", 32).contains(mapped));
    assert!(net("0.0.0.0", 0).contains(mapped));
    assert!(!net("192.168.0.0", 16).contains(mapped));
    // Canonicalised to IPv4, it is no longer in IPv6 networks, even ::/0.
    assert!(!net("::", 0).contains(mapped));
}

#[test]
fn ipv4_and_ipv6_never_match_each_other() {
    assert!(!net("0.0.0.0", 0).contains(ip("::1")));
    assert!(!net("0.0.0.0", 0).contains(ip("2001:db8::1")));
    assert!(!net("::", 0).contains(ip("10.0.0.1")));
    assert!(!net("::", 0).contains(ip("0.0.0.0")));
    // ::1 is not 0.0.0.1, nor 127.0.0.1.
    assert!(!net("0.0.0.1", 32).contains(ip("::1")));
    assert!(!net("127.0.0.0", 8).contains(ip("::1")));
}

#[test]
fn allow_and_deny_lists() {
    let nets = vec![net("10.0.0.0", 8), net("2001:db8::", 32)];
    let allow = Acl::Allow(nets.clone());
    let deny = Acl::Deny(nets);
    for (client, listed) in [
        ("10.9.8.7", true),
        ("::ffff:10.9.8.7", true),
        ("2001:db8:1::5", true),
        ("192.168.1.1", false),
        ("::ffff:192.168.1.1", false),
        ("2001:db9::5", false),
        ("::1", false),
    ] {
        assert_eq!(allow.permits(ip(client)), listed, "allow {client}");
        assert_eq!(deny.permits(ip(client)), !listed, "deny {client}");
    }
}
