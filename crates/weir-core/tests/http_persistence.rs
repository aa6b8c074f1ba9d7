//! Cookie session persistence on HTTP listeners (SPEC §6): `cookie_insert` pins a client to one
//! server, is set on every response (3xx and 4xx included), re-pins when the server goes down,
//! and cannot be forged to reach a server outside the group; `cookie_rewrite` round-trips the
//! server's own cookie.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use common::{Harness, echoed, eventually, within};
use weir_testkit::{H1Client, HttpBackend, RawResponse};

/// A keep-alive client that reconnects when weir closes the connection (after 100 requests).
struct Session {
    addr: SocketAddr,
    client: H1Client<tokio::net::TcpStream>,
}

impl Session {
    async fn new(addr: SocketAddr) -> Session {
        Session {
            addr,
            client: H1Client::connect(addr).await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str, headers: &[&str]) -> RawResponse {
        let r = within(10, self.client.get(path, headers)).await.unwrap();
        if r.closes() {
            self.client = H1Client::connect(self.addr).await.unwrap();
        }
        r
    }
}

/// The value weir's `Set-Cookie` gives cookie `name`, if the response has one.
fn cookie_value(r: &RawResponse, name: &str) -> Option<String> {
    r.headers_named("set-cookie").iter().find_map(|v| {
        let pair = v.split(';').next()?.trim();
        let (n, value) = pair.split_once('=')?;
        (n == name).then(|| value.to_string())
    })
}

fn backend_of(r: &RawResponse) -> String {
    r.header("x-backend").unwrap_or("?").to_string()
}

/// A listener `lb` in front of group `g` (servers `g_servers`, cookie_insert `SRV`); requests
/// under `/other/` go to group `h` (servers `h_servers`, also cookie_insert `SRV`).
fn two_groups(g_servers: &[SocketAddr], h_servers: &[SocketAddr], check: &str) -> String {
    let list = |servers: &[SocketAddr], prefix: &str| {
        servers
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{{ address = \"{a}\", name = \"{prefix}{i}\" }}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[log]
access = "off"

[[listener]]
name = "lb"
protocol = "http"
bind = "127.0.0.1:0"
group = "g"

  [[listener.rule]]
  path_prefix = "/other/"
  group = "h"

[[group]]
name = "g"
algorithm = "rr"
persistence = {{ mode = "cookie_insert", cookie = "SRV", timeout = "1h" }}
servers = [{}]

[group.health_check]
{check}

[[group]]
name = "h"
persistence = {{ mode = "cookie_insert", cookie = "SRV" }}
servers = [{}]

[group.health_check]
kind = "none"
"#,
        list(g_servers, "s"),
        list(h_servers, "o")
    )
}

async fn backends(names: &[&str]) -> Vec<HttpBackend> {
    let mut out = Vec::new();
    for name in names {
        out.push(HttpBackend::start(name).await);
    }
    out
}

#[tokio::test]
async fn the_cookie_pins_1000_requests_to_one_server() {
    let g = backends(&["g0", "g1"]).await;
    let other = backends(&["other"]).await;
    let cfg = two_groups(
        &[g[0].addr(), g[1].addr()],
        &[other[0].addr()],
        "kind = \"none\"",
    );
    let h = Harness::start(&cfg).await;
    let mut session = Session::new(h.addr).await;

    // Without a cookie, round robin uses both servers, and each answer pins to its server.
    let mut ids: HashMap<String, String> = HashMap::new();
    for _ in 0..4 {
        let r = session.get("/", &[]).await;
        assert_eq!(r.status, 200);
        let id = cookie_value(&r, "SRV").expect("Set-Cookie on every response");
        let set_cookie = r.header("set-cookie").unwrap();
        assert!(
            set_cookie.contains("Path=/") && set_cookie.contains("Max-Age=3600"),
            "{set_cookie}"
        );
        let previous = ids.insert(backend_of(&r), id.clone());
        assert!(previous.is_none_or(|p| p == id), "one id per server");
    }
    assert_eq!(
        ids.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["g0".to_string(), "g1".to_string()])
    );
    assert_ne!(ids["g0"], ids["g1"]);
    for id in ids.values() {
        assert!(
            !id.contains("127.0.0.1") && !id.contains("g0") && !id.contains("s0"),
            "the id is opaque: {id}"
        );
    }

    // 1,000 requests carrying the cookie of g1 all reach g1.
    let cookie = format!("Cookie: SRV={}", ids["g1"]);
    let before = (g[0].requests(), g[1].requests());
    for i in 0..1000 {
        let r = session.get(&format!("/pinned/{i}"), &[&cookie]).await;
        assert_eq!(
            (r.status, backend_of(&r)),
            (200, "g1".to_string()),
            "request {i}"
        );
        assert_eq!(cookie_value(&r, "SRV").as_deref(), Some(ids["g1"].as_str()));
    }
    assert_eq!(g[0].requests(), before.0, "g0 got none of them");
    assert_eq!(g[1].requests(), before.1 + 1000);

    // weir's cookie is weir's: the server does not see it, other cookies pass.
    let r = session
        .get(
            "/headers",
            &[&format!("Cookie: a=1; SRV={}; b=2", ids["g0"])],
        )
        .await;
    assert_eq!(backend_of(&r), "g0");
    let head = r.text();
    assert_eq!(echoed(&head, "cookie"), vec!["a=1; b=2"], "{head}");
    assert!(!head.contains("SRV"), "{head}");
}

#[tokio::test]
async fn the_cookie_is_set_on_a_302_and_a_404() {
    let g = backends(&["g0", "g1"]).await;
    let other = backends(&["other"]).await;
    let cfg = two_groups(
        &[g[0].addr(), g[1].addr()],
        &[other[0].addr()],
        "kind = \"none\"",
    );
    let h = Harness::start(&cfg).await;
    let mut session = Session::new(h.addr).await;
    let r = session.get("/", &[]).await;
    let id = cookie_value(&r, "SRV").unwrap();
    let pinned = backend_of(&r);
    let cookie = format!("Cookie: SRV={id}");

    let r = session.get("/redirect", &[&cookie]).await;
    assert_eq!((r.status, r.header("location")), (302, Some("/")));
    assert_eq!(
        cookie_value(&r, "SRV").as_deref(),
        Some(id.as_str()),
        "{r:?}"
    );
    assert_eq!(backend_of(&r), pinned);

    let r = session.get("/status/404", &[&cookie]).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        cookie_value(&r, "SRV").as_deref(),
        Some(id.as_str()),
        "{r:?}"
    );
    assert_eq!(backend_of(&r), pinned);

    // A first 404 (no cookie yet) pins the client too.
    let r = session.get("/status/404", &[]).await;
    assert_eq!(r.status, 404);
    assert!(cookie_value(&r, "SRV").is_some(), "{r:?}");
}

#[tokio::test]
async fn a_client_is_repinned_when_its_server_goes_down() {
    let mut g: Vec<Option<HttpBackend>> = backends(&["g0", "g1"])
        .await
        .into_iter()
        .map(Some)
        .collect();
    let other = backends(&["other"]).await;
    let addrs: Vec<SocketAddr> = g.iter().map(|b| b.as_ref().unwrap().addr()).collect();
    let check =
        "kind = \"tcp\"\ninterval = \"100ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 1";
    let h = Harness::start(&two_groups(&addrs, &[other[0].addr()], check)).await;
    let mut session = Session::new(h.addr).await;

    let r = session.get("/", &[]).await;
    let first = backend_of(&r);
    let old_id = cookie_value(&r, "SRV").unwrap();
    let down = if first == "g0" { 0 } else { 1 };
    let up_name = if down == 0 { "g1" } else { "g0" };
    let cookie = format!("Cookie: SRV={old_id}");
    for _ in 0..5 {
        assert_eq!(backend_of(&session.get("/", &[&cookie]).await), first);
    }

    // The pinned server stops; weir's health check marks it down.
    g[down] = None;
    let state = h.proxy().upstream("g").unwrap().servers[down].clone();
    assert!(
        eventually(Duration::from_secs(10), || !state.is_healthy()).await,
        "weir marks the stopped server down"
    );

    // The old cookie is ignored: the other server answers and a new cookie names it.
    let mut session = Session::new(h.addr).await;
    let r = session.get("/", &[&cookie]).await;
    assert_eq!((r.status, backend_of(&r)), (200, up_name.to_string()));
    let new_id = cookie_value(&r, "SRV").expect("a new cookie");
    assert_ne!(new_id, old_id);
    let cookie = format!("Cookie: SRV={new_id}");
    for _ in 0..20 {
        let r = session.get("/", &[&cookie]).await;
        assert_eq!((r.status, backend_of(&r)), (200, up_name.to_string()));
        assert_eq!(cookie_value(&r, "SRV").as_deref(), Some(new_id.as_str()));
    }
}

#[tokio::test]
async fn a_cookie_naming_a_draining_server_is_repinned() {
    let g = backends(&["g0", "g1"]).await;
    let other = backends(&["other"]).await;
    let cfg = two_groups(
        &[g[0].addr(), g[1].addr()],
        &[other[0].addr()],
        "kind = \"none\"",
    );
    let h = Harness::start(&cfg).await;
    let mut session = Session::new(h.addr).await;
    let r = session.get("/", &[]).await;
    let first = backend_of(&r);
    let old_id = cookie_value(&r, "SRV").unwrap();
    let index = if first == "g0" { 0 } else { 1 };
    let cookie = format!("Cookie: SRV={old_id}");

    h.proxy().upstream("g").unwrap().servers[index].set_draining(true);
    for _ in 0..10 {
        let r = session.get("/", &[&cookie]).await;
        assert_ne!(
            backend_of(&r),
            first,
            "no new request for a draining server"
        );
        let new_id = cookie_value(&r, "SRV").unwrap();
        assert_ne!(new_id, old_id, "re-pinned");
    }
    h.proxy().upstream("g").unwrap().servers[index].set_draining(false);
    let r = session.get("/", &[&cookie]).await;
    assert_eq!(backend_of(&r), first, "pinned again once it is back");
}

#[tokio::test]
async fn forged_cookies_cannot_pick_a_server() {
    let g = backends(&["g0", "g1"]).await;
    let other = backends(&["other"]).await;
    let cfg = two_groups(
        &[g[0].addr(), g[1].addr()],
        &[other[0].addr()],
        "kind = \"none\"",
    );
    let h = Harness::start(&cfg).await;
    let mut session = Session::new(h.addr).await;

    // The honest ids: of g's two servers, and of the server of group h.
    let mut ids: HashMap<String, String> = HashMap::new();
    for _ in 0..2 {
        let r = session.get("/", &[]).await;
        ids.insert(backend_of(&r), cookie_value(&r, "SRV").unwrap());
    }
    let r = session.get("/other/x", &[]).await;
    assert_eq!(backend_of(&r), "other");
    let other_id = cookie_value(&r, "SRV").unwrap();
    assert!(!ids.values().any(|id| *id == other_id));

    let forged = [
        "0123456789abcdef".to_string(),
        other_id.clone(),
        format!("{other_id}-2"),
        other[0].addr().to_string(),
        g[1].addr().to_string(),
        "s1".to_string(),
        "o0".to_string(),
        format!("\"{other_id}\""),
        String::new(),
    ];
    for value in forged {
        let cookie = format!("Cookie: SRV={value}");
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            let r = session.get("/", &[&cookie]).await;
            assert_eq!(r.status, 200);
            let served_by = backend_of(&r);
            assert_ne!(served_by, "other", "forged {value:?} reached another group");
            // The client is re-pinned to the server that really answered.
            assert_eq!(
                cookie_value(&r, "SRV").as_ref(),
                ids.get(&served_by),
                "forged {value:?}"
            );
            seen.insert(served_by);
        }
        assert_eq!(
            seen.len(),
            2,
            "forged {value:?} is ignored: round robin goes on over both servers"
        );
    }
    assert_eq!(other[0].requests(), 1, "only the honest /other/ request");
}

#[tokio::test]
async fn cookie_rewrite_round_trips_the_servers_cookie() {
    let g = backends(&["g0", "g1"]).await;
    let cfg = common::http_config(
        &[g[0].addr(), g[1].addr()],
        "",
        "algorithm = \"rr\"\npersistence = { mode = \"cookie_rewrite\", cookie = \"SID\" }",
        "kind = \"none\"",
    );
    let h = Harness::start(&cfg).await;
    let mut session = Session::new(h.addr).await;

    // The server sets its cookie; weir prefixes the server's id.
    let r = session.get("/set-cookie/SID/abc", &[]).await;
    let pinned = backend_of(&r);
    let set_cookie = r.header("set-cookie").unwrap().to_string();
    let value = cookie_value(&r, "SID").unwrap();
    let (id, rest) = value.split_once('~').expect("id~value");
    assert_eq!(rest, "abc");
    assert!(!id.is_empty());
    assert!(
        set_cookie.ends_with("; Path=/"),
        "attributes kept: {set_cookie}"
    );
    // A server cookie of another name is left alone.
    let r = session.get("/set-cookie/other/xyz", &[]).await;
    assert_eq!(r.header("set-cookie"), Some("other=xyz; Path=/"));
    assert_eq!(
        r.headers_named("set-cookie").len(),
        1,
        "cookie_rewrite adds no cookie of its own"
    );

    // The client sends it back: pinned, and the server sees its own value.
    let cookie = format!("Cookie: x=1; SID={value}");
    for _ in 0..10 {
        let r = session.get("/headers", &[&cookie]).await;
        assert_eq!(backend_of(&r), pinned);
        let head = r.text();
        assert_eq!(echoed(&head, "cookie"), vec!["x=1; SID=abc"], "{head}");
        assert!(!head.contains(id), "{head}");
    }
    // Without it, round robin.
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        seen.insert(backend_of(&session.get("/", &[]).await));
    }
    assert_eq!(seen.len(), 2);
    drop(h);
}
