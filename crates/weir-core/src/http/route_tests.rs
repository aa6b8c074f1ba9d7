//! Tests of host/path routing, host normalisation and redirect locations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use http::{HeaderMap, HeaderValue, Uri};

fn rule(host: Option<HostMatch>, path: Option<PathMatch>, group: &str) -> Rule {
    Rule {
        host,
        path,
        action: RuleAction::Group(group.to_string()),
        qps: None,
    }
}

fn exact(h: &str) -> Option<HostMatch> {
    Some(HostMatch::Exact(h.to_string()))
}

fn wild(s: &str) -> Option<HostMatch> {
    Some(HostMatch::Wildcard(s.to_string()))
}

fn prefix(p: &str) -> Option<PathMatch> {
    Some(PathMatch::Prefix(p.to_string()))
}

fn index(name: &str) -> Option<usize> {
    ["g0", "g1", "g2", "g3"].iter().position(|g| *g == name)
}

fn redirect(scheme: Option<&str>, host: Option<&str>, port: Option<u16>) -> Redirect {
    Redirect {
        scheme: scheme.map(str::to_string),
        host: host.map(str::to_string),
        port,
        status: 301,
    }
}

#[test]
fn exact_host() {
    let r = Router::new(&[rule(exact("API.example.com"), None, "g1")], index);
    assert_eq!(r.route(Some("api.example.com"), "/"), Route::Group(1));
    assert_eq!(r.route(Some("www.example.com"), "/"), Route::Default);
    assert_eq!(r.route(Some("x.api.example.com"), "/"), Route::Default);
    assert_eq!(r.route(None, "/"), Route::Default);
}

#[test]
fn wildcard_host() {
    let r = Router::new(&[rule(wild(".example.com"), None, "g2")], index);
    assert_eq!(r.route(Some("a.example.com"), "/"), Route::Group(2));
    assert_eq!(r.route(Some("a.b.example.com"), "/"), Route::Group(2));
    assert_eq!(r.route(Some("example.com"), "/"), Route::Default);
    assert_eq!(r.route(Some("badexample.com"), "/"), Route::Default);
    assert_eq!(r.route(Some(".example.com"), "/"), Route::Default);
}

#[test]
fn host_match_ignores_case() {
    let r = Router::new(
        &[
            rule(exact("Api.Example.COM"), None, "g1"),
            rule(wild(".EXAMPLE.org"), None, "g2"),
        ],
        index,
    );
    assert_eq!(r.route(Some("API.example.com"), "/"), Route::Group(1));
    assert_eq!(r.route(Some("A.Example.Org"), "/"), Route::Group(2));
}

#[test]
fn prefix_and_exact_path() {
    let rules = [
        rule(None, Some(PathMatch::Exact("/login".into())), "g1"),
        rule(None, prefix("/v1/"), "g2"),
    ];
    let r = Router::new(&rules, index);
    assert_eq!(r.route(None, "/login"), Route::Group(1));
    assert_eq!(r.route(None, "/login/"), Route::Default);
    assert_eq!(r.route(None, "/v1/users"), Route::Group(2));
    assert_eq!(r.route(None, "/v1/"), Route::Group(2));
    assert_eq!(r.route(None, "/v1"), Route::Default);
    assert_eq!(r.route(None, "/V1/users"), Route::Default);
}

#[test]
fn first_match_wins_and_both_conditions_must_hold() {
    let rules = [
        rule(exact("a.com"), prefix("/api/"), "g1"),
        rule(exact("a.com"), None, "g2"),
        rule(None, prefix("/"), "g3"),
    ];
    let r = Router::new(&rules, index);
    assert_eq!(r.route(Some("a.com"), "/api/x"), Route::Group(1));
    assert_eq!(r.route(Some("a.com"), "/other"), Route::Group(2));
    assert_eq!(r.route(Some("b.com"), "/api/x"), Route::Group(3));
}

#[test]
fn default_when_nothing_matches_and_unknown_groups_dropped() {
    let r = Router::new(&[], index);
    assert_eq!(r.route(Some("a.com"), "/"), Route::Default);
    let r = Router::new(&[rule(None, None, "nope"), rule(None, None, "g0")], index);
    assert_eq!(r.route(Some("a.com"), "/"), Route::Group(0));
}

#[test]
fn redirect_rule_routes_to_its_redirect() {
    let target = redirect(Some("https"), None, None);
    let rules = [Rule {
        host: exact("a.com"),
        path: None,
        action: RuleAction::Redirect(target.clone()),
        qps: None,
    }];
    let r = Router::new(&rules, index);
    assert_eq!(r.route(Some("a.com"), "/x"), Route::Redirect(&target));
}

fn host(uri: &str, host_header: Option<&str>) -> Option<String> {
    let uri: Uri = uri.parse().unwrap();
    let mut headers = HeaderMap::new();
    if let Some(h) = host_header {
        headers.insert(http::header::HOST, HeaderValue::from_str(h).unwrap());
    }
    host_of(&uri, &headers)
}

#[test]
fn a_host_already_in_normal_form_is_not_copied() {
    assert!(matches!(
        normal_host("example.com."),
        Some(Cow::Borrowed("example.com"))
    ));
    assert!(matches!(normal_host("[::1]"), Some(Cow::Borrowed("::1"))));
    assert!(matches!(normal_host("Example.com"), Some(Cow::Owned(h)) if h == "example.com"));
    assert!(normal_host("exa mple.com").is_none());
}

#[test]
fn host_of_strips_port_lowercases_and_drops_trailing_dot() {
    assert_eq!(
        host("/", Some("Example.COM:8080")).as_deref(),
        Some("example.com")
    );
    assert_eq!(
        host("/", Some("example.com.")).as_deref(),
        Some("example.com")
    );
    assert_eq!(
        host("/", Some("example.com:")).as_deref(),
        Some("example.com")
    );
    assert_eq!(host("/", Some("10.0.0.1:80")).as_deref(), Some("10.0.0.1"));
    assert_eq!(host("/", None), None);
    assert_eq!(host("/", Some("")), None);
    assert_eq!(host("/", Some("a.com:x")), None);
    assert_eq!(host("/", Some("a.com:99999")), None);
    assert_eq!(host("/", Some("user@a.com")), None);
    assert_eq!(host("/", Some("a b")), None);
}

#[test]
fn host_of_ipv6_loses_brackets() {
    assert_eq!(host("/", Some("[::1]:8080")).as_deref(), Some("::1"));
    assert_eq!(
        host("/", Some("[2001:DB8::1]")).as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(host("/", Some("[::1")), None);
    assert_eq!(host("/", Some("[zz]")), None);
    assert_eq!(host("/", Some("::1")), None);
    assert_eq!(host("http://[::1]:8080/x", None).as_deref(), Some("::1"));
}

#[test]
fn absolute_form_authority_beats_host() {
    assert_eq!(
        host("http://Real.example:81/x", Some("other.example")).as_deref(),
        Some("real.example")
    );
    assert_eq!(host("https://u:p@a.com/", None).as_deref(), Some("a.com"));
}

#[test]
fn redirect_location_table() {
    let cases = [
        // (rule, request scheme, authority, path, expected)
        (
            redirect(Some("https"), None, None),
            "http",
            "a:8080",
            "/x",
            "https://a/x",
        ),
        (
            redirect(Some("https"), None, None),
            "http",
            "a",
            "/x?q=1&r",
            "https://a/x?q=1&r",
        ),
        (
            redirect(Some("https"), None, Some(8443)),
            "http",
            "a:8080",
            "/x",
            "https://a:8443/x",
        ),
        (
            redirect(Some("https"), None, Some(443)),
            "http",
            "a:8080",
            "/x",
            "https://a/x",
        ),
        (
            redirect(None, None, Some(80)),
            "http",
            "a:8080",
            "/x",
            "http://a/x",
        ),
        (
            redirect(None, Some("b.example"), None),
            "http",
            "a:8080",
            "/x",
            "http://b.example:8080/x",
        ),
        (
            redirect(None, Some("b.example"), None),
            "https",
            "a:443",
            "/",
            "https://b.example/",
        ),
        (
            redirect(Some("http"), Some("b"), None),
            "https",
            "a:8443",
            "/p",
            "http://b/p",
        ),
        (
            redirect(Some("HTTPS"), None, None),
            "https",
            "a:8443",
            "/p",
            "https://a:8443/p",
        ),
        (
            redirect(Some("https"), None, None),
            "http",
            "[::1]:8080",
            "/x",
            "https://[::1]/x",
        ),
        (
            redirect(None, Some("::1"), None),
            "http",
            "a",
            "/x",
            "http://[::1]/x",
        ),
        (
            redirect(Some("https"), None, None),
            "http",
            "user:pw@a",
            "",
            "https://a/",
        ),
        (
            redirect(Some("https"), None, None),
            "http",
            "a",
            "*",
            "https://a/",
        ),
    ];
    for (rule, scheme, authority, path, want) in cases {
        assert_eq!(
            redirect_location(&rule, scheme, authority, path),
            want,
            "{rule:?} {scheme} {authority} {path}"
        );
    }
}

#[test]
fn router_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Router>();
}
