//! Tests of cookie persistence: ids, pinning, insert and rewrite cookies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::time::Duration;

fn servers(names: &[&str]) -> Vec<Server> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut server = Server::new(format!("10.0.0.{}:8000", i + 1).parse().unwrap());
            server.name = (*name).to_string();
            server
        })
        .collect()
}

fn insert(timeout: Option<Duration>) -> Persistence {
    Persistence::CookieInsert {
        cookie: "SERVERID".to_string(),
        timeout,
    }
}

fn rewrite() -> Persistence {
    Persistence::CookieRewrite {
        cookie: "JSESSIONID".to_string(),
    }
}

fn cookies(values: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for v in values {
        headers.append(COOKIE, HeaderValue::from_str(v).unwrap());
    }
    headers
}

fn all(headers: &HeaderMap, name: http::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn id_is_stable_and_hides_the_address() {
    let p = Persist::new(&insert(None), "app", &servers(&["web-1", "10.0.0.12:8000"]));
    // Precomputed independently (Python); changing the hash re-pins every client.
    assert_eq!(p.id(0), "a19da7ac99a85cec");
    assert_eq!(p.id(1), "5c4199067af18e74");
    assert_eq!(p.id(0), server_id("app", "web-1"));
    assert!(!p.id(1).contains("10.0.0"));
    assert_ne!(server_id("app", "web-1"), server_id("api", "web-1"));
    assert_ne!(server_id("ab", "c"), server_id("a", "bc"));
    assert_eq!(p.id(7), "");
}

#[test]
fn colliding_ids_made_unique() {
    let ids = unique(vec![
        "x".into(),
        "y".into(),
        "x".into(),
        "x".into(),
        "x-2".into(),
    ]);
    assert_eq!(ids, ["x", "y", "x-2", "x-3", "x-2-2"]);
    // Two servers with the same name (possible in a config built in code) hash the same.
    let p = Persist::new(&insert(None), "app", &servers(&["same", "same"]));
    assert_ne!(p.id(0), p.id(1));
    assert_eq!(p.id(1), format!("{}-2", p.id(0)));
    let h = cookies(&[&format!("SERVERID={}", p.id(1))]);
    assert_eq!(p.pinned(&h), Some(1));
}

#[test]
fn insert_cookie_format() {
    let p = Persist::new(&insert(None), "app", &servers(&["a", "b"]));
    let mut h = HeaderMap::new();
    p.on_response(&mut h, 1);
    assert_eq!(
        all(&h, SET_COOKIE),
        [format!("SERVERID={}; Path=/; HttpOnly", p.id(1))]
    );

    let p = Persist::new(
        &insert(Some(Duration::from_secs(3600))),
        "app",
        &servers(&["a"]),
    );
    let mut h = HeaderMap::new();
    h.append(SET_COOKIE, HeaderValue::from_static("app=1"));
    p.on_response(&mut h, 0);
    let want = format!("SERVERID={}; Path=/; HttpOnly; Max-Age=3600", p.id(0));
    assert_eq!(all(&h, SET_COOKIE), ["app=1".to_string(), want]);

    let p = Persist::new(
        &insert(Some(Duration::from_millis(1500))),
        "app",
        &servers(&["a"]),
    );
    let mut h = HeaderMap::new();
    p.on_response(&mut h, 0);
    assert!(all(&h, SET_COOKIE)[0].ends_with("; Max-Age=2"));
    p.on_response(&mut h, 5);
    assert_eq!(all(&h, SET_COOKIE).len(), 1);
}

#[test]
fn pinned_among_pairs_and_headers() {
    let p = Persist::new(&insert(None), "app", &servers(&["a", "b", "c"]));
    let id = p.id(2);
    let h = cookies(&["theme=dark; lang=en", &format!("x=1;SERVERID={id} ; y=2")]);
    assert_eq!(p.pinned(&h), Some(2));
    let h = cookies(&[&format!("junk; =v; SERVERID=nope; SERVERID=\"{id}\"")]);
    assert_eq!(p.pinned(&h), Some(2));
    assert_eq!(p.pinned(&cookies(&["theme=dark"])), None);
    assert_eq!(p.pinned(&HeaderMap::new()), None);
    assert_eq!(p.pinned(&cookies(&[&format!("serverid={id}")])), None);
}

#[test]
fn foreign_or_forged_values_do_not_pin() {
    let list = servers(&["a", "b"]);
    let p = Persist::new(&insert(None), "app", &list);
    let other = Persist::new(&insert(None), "api", &list);
    for value in [
        other.id(0),
        "0123456789abcdef",
        "10.0.0.1:8000",
        "a",
        "",
        &p.id(0)[..15],
    ] {
        let h = cookies(&[&format!("SERVERID={value}")]);
        assert_eq!(p.pinned(&h), None, "{value}");
    }
    let r = Persist::new(&rewrite(), "app", &list);
    let h = cookies(&[&format!("JSESSIONID={}~abc", other.id(0))]);
    assert_eq!(r.pinned(&h), None);
}

#[test]
fn strip_request_removes_insert_cookie_only() {
    let p = Persist::new(&insert(None), "app", &servers(&["a"]));
    let id = p.id(0);
    let mut h = cookies(&[
        &format!("a=1; SERVERID={id}; b=2"),
        &format!("SERVERID={id}"),
        "c=3",
    ]);
    p.strip_request(&mut h);
    assert_eq!(all(&h, COOKIE), ["a=1; b=2", "c=3"]);

    let mut h = cookies(&["a=1;b=2"]);
    p.strip_request(&mut h);
    assert_eq!(all(&h, COOKIE), ["a=1;b=2"], "untouched when absent");
}

#[test]
fn rewrite_round_trip() {
    let p = Persist::new(&rewrite(), "app", &servers(&["a", "b"]));
    let mut response = HeaderMap::new();
    response.append(SET_COOKIE, HeaderValue::from_static("other=1; Path=/"));
    response.append(
        SET_COOKIE,
        HeaderValue::from_static("JSESSIONID=abc; Path=/"),
    );
    p.on_response(&mut response, 1);
    let id = p.id(1);
    assert_eq!(
        all(&response, SET_COOKIE),
        [
            "other=1; Path=/".to_string(),
            format!("JSESSIONID={id}~abc; Path=/")
        ]
    );

    let mut request = cookies(&[&format!("x=1; JSESSIONID={id}~abc")]);
    assert_eq!(p.pinned(&request), Some(1));
    p.strip_request(&mut request);
    assert_eq!(all(&request, COOKIE), ["x=1; JSESSIONID=abc"]);
    assert_eq!(p.pinned(&request), None);
}

#[test]
fn rewrite_handles_quotes_and_stale_ids() {
    let p = Persist::new(&rewrite(), "app", &servers(&["a"]));
    let id = p.id(0);
    let mut response = HeaderMap::new();
    response.append(
        SET_COOKIE,
        HeaderValue::from_static("JSESSIONID=\"q\"; Secure"),
    );
    p.on_response(&mut response, 0);
    assert_eq!(
        all(&response, SET_COOKIE),
        [format!("JSESSIONID=\"{id}~q\"; Secure")]
    );

    let mut request = cookies(&[&format!("JSESSIONID=\"{id}~q\"")]);
    assert_eq!(p.pinned(&request), Some(0));
    p.strip_request(&mut request);
    assert_eq!(all(&request, COOKIE), ["JSESSIONID=\"q\""]);

    // A server removed from the group: its prefix is still stripped; a foreign '~' is not.
    let mut request = cookies(&["JSESSIONID=0123456789abcdef~s1", "JSESSIONID=v~1"]);
    p.strip_request(&mut request);
    assert_eq!(all(&request, COOKIE), ["JSESSIONID=s1", "JSESSIONID=v~1"]);
}

#[test]
fn persist_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Persist>();
}
