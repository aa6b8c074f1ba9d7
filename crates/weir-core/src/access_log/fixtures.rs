//! Fixed records for the access log's tests.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

use crate::end::{ConnRecord, EndBy, EndHow, EndPhase, HttpRecord};

/// A TCP connection a client closed, with every optional field set.
pub(crate) fn conn_record() -> ConnRecord {
    ConnRecord {
        time: UNIX_EPOCH + Duration::from_millis(1_795_242_241_005),
        listener: "edge".into(),
        protocol: "tcp",
        client: "127.0.0.1:50123".parse().unwrap(),
        group: "app".into(),
        server: Some("s1".into()),
        server_addr: Some("10.0.0.2:8080".parse().unwrap()),
        retries: 1,
        connect_time: Some(Duration::from_micros(1_250)),
        duration: Duration::from_micros(2_500_001),
        bytes_in: 512,
        bytes_out: 70_000,
        end_by: EndBy::Client,
        end_how: EndHow::Fin,
        end_phase: EndPhase::Tunnel,
        end_reason: None,
    }
}

/// An HTTPS request that timed out waiting for the server (no upstream status).
pub(crate) fn http_record() -> HttpRecord {
    let mut r = crate::http::exchange::new_record("web", true, "[::1]:40000".parse().unwrap());
    r.time = UNIX_EPOCH + Duration::from_millis(951_827_696_789);
    r.tls_version = Some("TLSv1.3");
    r.method = "GET".into();
    r.host = Some("a.test".into());
    r.path = "/v1/items".into();
    r.status = 504;
    r.group = Some("api".into());
    r.server = Some("s0".into());
    r.server_addr = Some("127.0.0.1:9000".parse().unwrap());
    r.request_time = Duration::from_secs(60);
    r.upstream_connect_time = Some(Duration::ZERO);
    r.bytes_in = 3;
    r.end(crate::end::End::weir(
        EndHow::Timeout,
        EndPhase::Response,
        "request_timeout",
    ));
    r
}

/// The same request answered by the server in one microsecond (written `1e-6`).
pub(crate) fn http_record_answered() -> HttpRecord {
    let mut r = http_record();
    r.status = 200;
    r.upstream_status = Some(200);
    r.upstream_response_time = Some(Duration::from_nanos(1_999));
    r.end_reason = None;
    r
}
