//! Malformed configs: each is refused with every problem listed, at the right line and column,
//! with a message that says what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_config::{Diagnostic, Severity, parse};

/// One malformed config and the errors it must produce, in order: line, column, and a
/// substring of the rendered diagnostic (`key: message` and `hint: ...`).
struct Case {
    name: &'static str,
    source: &'static str,
    errors: &'static [(usize, usize, &'static str)],
}

/// A valid tail appended to snippets that only need a group to point at.
const APP: &str = r#"
[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
"#;

const CASES: &[Case] = &[
    Case {
        name: "unknown key, with a suggestion",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
idle_timout = "15s"
"#,
        errors: &[(
            6,
            1,
            "unknown key `idle_timout`\n  hint: did you mean `idle_timeout`?",
        )],
    },
    Case {
        name: "unknown top-level table",
        source: "[listeners]\nname = \"web\"\n",
        errors: &[(
            1,
            2,
            "listeners: unknown key `listeners`\n  hint: did you mean `listener`?",
        )],
    },
    Case {
        name: "duration with an unknown unit",
        source: "[runtime]\nshutdown_grace = \"15sec\"\n",
        errors: &[(
            2,
            18,
            "runtime.shutdown_grace: invalid duration: unknown unit \"sec\"",
        )],
    },
    Case {
        name: "io_uring is a boolean",
        source: "[runtime]\nio_uring = \"yes\"\n",
        errors: &[(
            2,
            12,
            "runtime.io_uring: expected true or false, found string \"yes\"",
        )],
    },
    Case {
        name: "duration without a unit",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
idle_timeout = 15
"#,
        errors: &[(
            6,
            16,
            "listener \"web\".idle_timeout: expected a duration string like \"15s\", found integer 15\n  hint: write the unit: \"15s\"",
        )],
    },
    Case {
        name: "negative duration",
        source: "[runtime]\nshutdown_grace = \"-1s\"\n",
        errors: &[(2, 18, "durations cannot be negative")],
    },
    Case {
        name: "zero connect timeout",
        source: r#"[[group]]
name = "app"
connect_timeout = "0s"
servers = [{ address = "10.0.0.1:80" }]
"#,
        errors: &[(
            3,
            19,
            "group \"app\".connect_timeout: must be greater than zero",
        )],
    },
    Case {
        name: "weight out of range",
        source: r#"[[group]]
name = "app"
servers = [
  { address = "10.0.0.1:80" },
  { address = "10.0.0.2:80", weight = 5000 },
]
"#,
        errors: &[(
            5,
            39,
            "group \"app\".servers[1].weight: must be between 0 and 1000, found 5000",
        )],
    },
    Case {
        name: "wrong type",
        source: r#"[[group]]
name = "app"
retries = "3"
servers = [{ address = "10.0.0.1:80" }]
"#,
        errors: &[(
            3,
            11,
            "retries: expected an integer, found string \"3\"\n  hint: remove the quotes: 3",
        )],
    },
    Case {
        name: "duplicate listener name",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"

[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8081"
group = "app"
"#,
        errors: &[(
            8,
            8,
            "duplicate listener name \"web\"\n  hint: the first listener named \"web\" is at line 2",
        )],
    },
    Case {
        name: "duplicate group name",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
[[group]]
name = "app"
servers = [{ address = "10.0.0.2:80" }]
"#,
        errors: &[(5, 8, "group \"app\".name: duplicate group name \"app\"")],
    },
    Case {
        name: "dangling group reference",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "ap"

[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]

[[group]]
name = "api"
servers = [{ address = "10.0.0.2:80" }]
"#,
        errors: &[(
            5,
            9,
            "listener \"web\".group: group \"ap\" is not defined\n  hint: did you mean \"app\"? defined groups: app, api",
        )],
    },
    Case {
        name: "two listeners on one address",
        source: r#"[[listener]]
name = "a"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
[[listener]]
name = "b"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
"#,
        errors: &[(
            9,
            8,
            "listener \"b\".bind: 127.0.0.1:8080 is already bound by listener \"a\"\n  hint: listener \"a\" binds \"127.0.0.1:8080\" at line 4",
        )],
    },
    Case {
        name: "overlapping port ranges",
        source: r#"[[listener]]
name = "a"
protocol = "tcp"
bind = "0.0.0.0:7000-7010"
group = "app"
[[listener]]
name = "b"
protocol = "tcp"
bind = "0.0.0.0:7005-7020"
group = "app"
"#,
        errors: &[(9, 8, "0.0.0.0:7005 is already bound by listener \"a\"")],
    },
    Case {
        name: "wildcard address covers a specific one",
        source: r#"[[listener]]
name = "a"
protocol = "tcp"
bind = "127.0.0.1:7000"
group = "app"
[[listener]]
name = "b"
protocol = "tcp"
bind = "0.0.0.0:6990-7000"
group = "app"
"#,
        errors: &[(
            9,
            8,
            "0.0.0.0:7000 overlaps 127.0.0.1:7000 bound by listener \"a\"",
        )],
    },
    Case {
        name: "missing name, positioned at the header",
        source: r#"[[listener]]
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
"#,
        errors: &[(
            1,
            1,
            "listener[0]: missing required key `name`\n  hint: add name = \"web\"",
        )],
    },
    Case {
        name: "missing servers",
        source: "[[group]]\nname = \"app\"\n",
        errors: &[(1, 1, "group \"app\": missing required key `servers`")],
    },
    Case {
        name: "a group with no servers",
        source: "[[group]]\nname = \"app\"\nservers = []\n",
        errors: &[(
            3,
            11,
            "group \"app\".servers: a group needs at least one server",
        )],
    },
    Case {
        name: "bad server address",
        source: "[[group]]\nname = \"app\"\nservers = [{ address = \"backend:80\" }]\n",
        errors: &[(
            3,
            24,
            "servers[0].address: invalid address: \"backend\" is a host name",
        )],
    },
    Case {
        name: "IPv6 bind without brackets",
        source: r#"[[listener]]
name = "v6"
protocol = "tcp"
bind = "::1:8080"
group = "app"
"#,
        errors: &[(4, 8, "IPv6 addresses go in brackets: write \"[::1]:8080\"")],
    },
    Case {
        name: "port 0 in a range",
        source: r#"[[listener]]
name = "r"
protocol = "tcp"
bind = "0.0.0.0:0-10"
group = "app"
"#,
        errors: &[(4, 8, "port 0 (an ephemeral port) cannot be part of a range")],
    },
    Case {
        name: "range of more than 1000 ports",
        source: r#"[[listener]]
name = "r"
protocol = "tcp"
bind = "0.0.0.0:1000-9999"
group = "app"
"#,
        errors: &[(4, 8, "covers 9000 ports; at most 1000 are allowed")],
    },
    Case {
        name: "unsupported protocol",
        source: r#"[[listener]]
name = "dns"
protocol = "udp"
bind = "0.0.0.0:5353"
group = "app"
"#,
        errors: &[(
            3,
            12,
            "listener \"dns\".protocol: listener protocol \"udp\" is not supported yet by this build",
        )],
    },
    Case {
        name: "port range on an http listener",
        source: r#"[[listener]]
name = "web"
protocol = "https"
bind = "0.0.0.0:8443-8444"
group = "app"
"#,
        errors: &[
            (
                3,
                12,
                "listener \"web\".tls: an https listener needs TLS settings",
            ),
            (
                4,
                8,
                "a port range is only allowed for tcp and udp listeners, not https",
            ),
        ],
    },
    Case {
        name: "http-only key on a tcp listener",
        source: r#"[[listener]]
name = "db"
protocol = "tcp"
bind = "0.0.0.0:5432"
group = "app"
max_header_size = "64KiB"
[[listener.rule]]
group = "app"
"#,
        errors: &[
            (
                6,
                1,
                "listener \"db\".max_header_size: `max_header_size` only applies to http and https listeners; this listener is protocol = \"tcp\"",
            ),
            (
                7,
                12,
                "listener \"db\".rule: `rule` only applies to http and https listeners",
            ),
        ],
    },
    Case {
        name: "https without tls",
        source: r#"[[listener]]
name = "web"
protocol = "https"
bind = "0.0.0.0:8443"
group = "app"
"#,
        errors: &[(
            3,
            12,
            "listener \"web\".tls: an https listener needs TLS settings: a [listener.tls] table with its certificates\n  hint: add [listener.tls]",
        )],
    },
    Case {
        name: "tls on an http listener",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
  [listener.tls]
  certificates = [{ cert = "a.pem", key = "a.key" }]
"#,
        errors: &[(
            6,
            13,
            "listener \"web\".tls: `tls` only applies to https listeners; this listener is protocol = \"http\"\n  hint: set protocol = \"https\"",
        )],
    },
    Case {
        name: "splice on an http listener",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
splice = true
"#,
        errors: &[(
            6,
            1,
            "listener \"web\".splice: `splice` only applies to tcp listeners; this listener is protocol = \"http\"\n  hint: remove it: tunnels through http listeners are copied",
        )],
    },
    Case {
        name: "tls on a tcp listener",
        source: r#"[[listener]]
name = "db"
protocol = "tcp"
bind = "0.0.0.0:5432"
group = "app"
tls = { certificates = [] }
"#,
        errors: &[(
            6,
            1,
            "`tls` only applies to https listeners; this listener is protocol = \"tcp\"\n  hint: weir does not terminate TLS on tcp listeners",
        )],
    },
    Case {
        name: "an empty certificates list",
        source: r#"[[listener]]
name = "web"
protocol = "https"
bind = "0.0.0.0:8443"
group = "app"
  [listener.tls]
  certificates = []
  min_version = "1.2"
"#,
        errors: &[(
            7,
            18,
            "listener \"web\".tls.certificates: an https listener needs at least one certificate",
        )],
    },
    Case {
        name: "misspelt certificates key and a float min_version",
        source: r#"[[listener]]
name = "web"
protocol = "https"
bind = "0.0.0.0:8443"
group = "app"
  [listener.tls]
  certificate = [{ cert = "a.pem", key = "a.key" }]
  min_version = 1.2
"#,
        errors: &[
            (
                6,
                3,
                "listener \"web\".tls: missing required key `certificates`",
            ),
            (
                7,
                3,
                "unknown key `certificate`\n  hint: did you mean `certificates`?",
            ),
            (
                8,
                17,
                "tls.min_version: expected a string, found float 1.2\n  hint: quote it: \"1.2\"",
            ),
        ],
    },
    Case {
        name: "a rule with neither group nor redirect",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
  [[listener.rule]]
  host = "api.example.com"
"#,
        errors: &[(
            6,
            3,
            "listener \"web\".rule[0]: a rule needs a `group` to send matching requests to, or a `redirect`",
        )],
    },
    Case {
        name: "a rule with both group and redirect",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
  [[listener.rule]]
  path_prefix = "/"
  group = "app"
  redirect = { scheme = "https" }
"#,
        errors: &[(
            9,
            3,
            "listener \"web\".rule[0].redirect: a rule either sends to a `group` or answers with a `redirect`, not both",
        )],
    },
    Case {
        name: "a rule with both path and path_prefix",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
rule = [{ path = "/login", path_prefix = "/log", group = "app" }]
"#,
        errors: &[(
            6,
            28,
            "rule[0].path_prefix: a rule matches either `path` (exactly) or `path_prefix`, not both",
        )],
    },
    Case {
        name: "a rule's group not defined",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
  [[listener.rule]]
  host = "api.example.com"
  group = "apis"

[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
[[group]]
name = "api"
servers = [{ address = "10.0.0.2:80" }]
"#,
        errors: &[(
            8,
            11,
            "listener \"web\".rule[0].group: group \"apis\" is not defined\n  hint: did you mean \"api\"? defined groups: app, api",
        )],
    },
    Case {
        name: "bad redirect status and a redirect to the same URL",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
  [[listener.rule]]
  path = "/old"
  redirect = { host = "www.example.com", status = 200 }
  [[listener.rule]]
  path = "/same"
  redirect = { status = 302 }
"#,
        errors: &[
            (
                8,
                51,
                "rule[0].redirect.status: a redirect status must be 301, 302, 303, 307 or 308, found 200",
            ),
            (
                11,
                14,
                "rule[1].redirect: a redirect needs at least one of `scheme`, `host` or `port`",
            ),
        ],
    },
    Case {
        name: "bad host patterns",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
rule = [
  { host = "*.", group = "app" },
  { host = "a.*.com", group = "app" },
  { host = "api example.com", group = "app" },
  { host = "api.example.com:8080", group = "app" },
]
"#,
        errors: &[
            (7, 12, "rule[0].host: \"*.\" has nothing after the wildcard"),
            (
                8,
                12,
                "\"a.*.com\": a wildcard may only be the whole first label, as in \"*.example.com\"",
            ),
            (9, 12, "\"api example.com\" contains a space"),
            (
                10,
                12,
                "\"api.example.com:8080\" has a port (\":8080\"); write the host alone, \"api.example.com\"",
            ),
        ],
    },
    Case {
        name: "bad cookie name",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
persistence = { mode = "cookie_insert", cookie = "my cookie" }
"#,
        errors: &[(
            4,
            50,
            "persistence.cookie: \"my cookie\" is not a valid cookie name: it contains a space",
        )],
    },
    Case {
        name: "unknown persistence mode",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
  [group.persistence]
  mode = "cookie_insrt"
  cookie = "SERVERID"
"#,
        errors: &[(
            5,
            10,
            "persistence.mode: unknown value \"cookie_insrt\"; expected one of cookie_insert, cookie_rewrite\n  hint: did you mean \"cookie_insert\"?",
        )],
    },
    Case {
        name: "cookie_rewrite with a timeout",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
persistence = { mode = "cookie_rewrite", cookie = "JSESSIONID", timeout = "1h" }
"#,
        errors: &[(
            4,
            65,
            "persistence.timeout: `timeout` only applies to mode = \"cookie_insert\"",
        )],
    },
    Case {
        name: "size strings",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
max_header_size = "64 KB"
max_uri_length = "12XB"
max_body_size = "-1KiB"
"#,
        errors: &[
            (
                6,
                19,
                "max_header_size: invalid size: \"64 KB\" has a space between the number and the unit; write \"64KB\"",
            ),
            (7, 18, "invalid size: unknown unit \"XB\" in \"12XB\""),
            (
                8,
                17,
                "invalid size: \"-1KiB\" is negative; sizes cannot be negative",
            ),
        ],
    },
    Case {
        name: "sizes without a unit",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
max_header_size = "64"
max_body_size = 65536
"#,
        errors: &[
            (
                6,
                19,
                "invalid size: \"64\" has no unit; write \"64KiB\" or \"64B\"\n  hint: write \"64KiB\", or \"64B\" for bytes",
            ),
            (
                7,
                17,
                "expected a size string like \"64KiB\", found integer 65536\n  hint: write the unit: \"64KiB\"",
            ),
        ],
    },
    Case {
        name: "sizes and limits out of range",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "0.0.0.0:8080"
group = "app"
max_header_size = "2MiB"
max_requests_per_connection = 0
http2 = { max_concurrent_streams = 0 }
"#,
        errors: &[
            (
                6,
                19,
                "max_header_size: must be between 1KiB and 1MiB, found \"2MiB\"",
            ),
            (
                7,
                31,
                "max_requests_per_connection: must be between 1 and 100000, found 0",
            ),
            (
                8,
                36,
                "http2.max_concurrent_streams: must be between 1 and 10000, found 0",
            ),
        ],
    },
    Case {
        name: "pool and session lifetime out of range",
        source: r#"[[listener]]
name = "web"
protocol = "https"
bind = "0.0.0.0:8443"
group = "app"
tls = { certificates = [{ cert = "a.pem", key = "a.key" }], session_lifetime = "2d" }
[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
pool = { idle_timeout = "0s", max_idle_per_server = 10001 }
"#,
        errors: &[
            (
                6,
                80,
                "tls.session_lifetime: must be between 1s and 24h, found 2d",
            ),
            (10, 25, "pool.idle_timeout: must be greater than zero"),
            (
                10,
                53,
                "pool.max_idle_per_server: must be between 0 and 10000, found 10001",
            ),
        ],
    },
    Case {
        name: "http-only key on a tcp check",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
  [group.health_check]
  interval = "5s"
  path = "/healthz"
"#,
        errors: &[(
            6,
            3,
            "health_check.path: `path` only applies to kind = \"http\" checks; this check is kind = \"tcp\" (the default)",
        )],
    },
    Case {
        name: "bad status class",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
health_check = { kind = "http", expect_status = ["2xx", "6xx"] }
"#,
        errors: &[(
            4,
            57,
            "expect_status[1]: status class \"6xx\" is not valid; classes run from 1xx to 5xx",
        )],
    },
    Case {
        name: "lowercase method and relative path",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
[group.health_check]
kind = "http"
method = "get"
path = "healthz"
"#,
        errors: &[
            (
                6,
                10,
                "\"get\" is not an uppercase HTTP method\n  hint: e.g. method = \"GET\"",
            ),
            (7, 8, "\"healthz\" must start with '/'"),
        ],
    },
    Case {
        name: "udp health check",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
[group.health_check]
kind = "udp"
"#,
        errors: &[(
            5,
            8,
            "health check kind \"udp\" is not supported yet by this build",
        )],
    },
    Case {
        name: "duplicate server address and name in a group",
        source: r#"[[group]]
name = "app"
servers = [
  { address = "10.0.0.1:80" },
  { address = "10.0.0.1:80" },
  { address = "10.0.0.2:80", name = "10.0.0.1:80" },
]
"#,
        errors: &[
            (
                5,
                15,
                "servers[1].address: 10.0.0.1:80 is listed twice in group \"app\"",
            ),
            (
                6,
                37,
                "servers[2].name: duplicate server name \"10.0.0.1:80\" in group \"app\"",
            ),
        ],
    },
    Case {
        name: "unknown algorithm",
        source: r#"[[group]]
name = "app"
algorithm = "wr"
servers = [{ address = "10.0.0.1:80" }]
"#,
        errors: &[(
            3,
            13,
            "unknown value \"wr\"; expected one of rr, wrr, least_conn, maglev, random2\n  hint: did you mean \"wrr\"?",
        )],
    },
    Case {
        name: "admin on a public address without a token",
        source: "[admin]\nlisten = \"0.0.0.0:9900\"\n",
        errors: &[(
            2,
            10,
            "admin.listen: the admin API on non-loopback address 0.0.0.0:9900 needs a token",
        )],
    },
    Case {
        name: "workers out of range",
        source: "[runtime]\nworkers = 0\n",
        errors: &[(
            2,
            11,
            "runtime.workers: must be between 1 and 1024, found 0",
        )],
    },
    Case {
        name: "listener written as a single table",
        source: "[listener]\nname = \"web\"\n",
        errors: &[(
            1,
            1,
            "listener: expected an array of tables, found a table\n  hint: write each entry under its own [[listener]] header",
        )],
    },
    Case {
        name: "listener name with a space",
        source: r#"[[listener]]
name = "my web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
"#,
        errors: &[(
            2,
            8,
            "\"my web\" may only contain letters, digits, '_', '.' and '-'",
        )],
    },
    Case {
        name: "sub-second keep-alive",
        source: r#"[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80" }]
tcp_keepalive = { idle = "500ms" }
"#,
        errors: &[(
            4,
            26,
            "tcp_keepalive.idle: must be a whole number of seconds",
        )],
    },
    Case {
        name: "acl entry that is not an address",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = { allow = ["10.0.0.300/8"] }
"#,
        errors: &[(
            6,
            18,
            "listener \"web\".acl.allow[0]: \"10.0.0.300/8\": \"10.0.0.300\" is not an IP address",
        )],
    },
    Case {
        name: "acl prefix out of range for IPv4",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = { deny = ["10.0.0.0/33"] }
"#,
        errors: &[(
            6,
            17,
            "acl.deny[0]: \"10.0.0.0/33\": prefix /33 is out of range for IPv4 (0 to 32)",
        )],
    },
    Case {
        name: "acl prefix out of range for IPv6",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = { deny = ["::1", "2001:db8::/129"] }
"#,
        errors: &[(6, 24, "prefix /129 is out of range for IPv6 (0 to 128)")],
    },
    Case {
        name: "acl network with host bits set",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = { allow = ["192.168.0.0/16", "10.0.0.1/8"] }
"#,
        errors: &[(
            6,
            36,
            "acl.allow[1]: \"10.0.0.1/8\" has host bits set after the /8 prefix\n  hint: did you mean \"10.0.0.0/8\"?",
        )],
    },
    Case {
        name: "empty acl list",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = { allow = [] }
"#,
        errors: &[(
            6,
            17,
            "acl.allow: must list at least one network\n  hint: an empty allow list would let no client in",
        )],
    },
    Case {
        name: "acl with both allow and deny",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = { allow = ["10.0.0.0/8"], deny = ["10.1.0.0/16"] }
"#,
        errors: &[(6, 33, "acl.deny: an acl either allows or denies, not both")],
    },
    Case {
        name: "acl with neither allow nor deny",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = {}
"#,
        errors: &[(
            6,
            7,
            "listener \"web\".acl: an acl needs an `allow` or a `deny` list",
        )],
    },
    Case {
        name: "acl with an unknown key",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = { allow = ["10.0.0.0/8"], denny = ["10.1.0.0/16"] }
"#,
        errors: &[(
            6,
            33,
            "acl.denny: unknown key `denny`\n  hint: did you mean `deny`? keys accepted in listener \"web\".acl: allow, deny",
        )],
    },
    Case {
        name: "acl entry that is not a string",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = { allow = ["10.0.0.0/8", 10] }
"#,
        errors: &[(6, 32, "acl.allow[1]: expected a string, found integer 10")],
    },
    Case {
        name: "acl written as a list",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
acl = ["10.0.0.0/8"]
"#,
        errors: &[(
            6,
            7,
            "listener \"web\".acl: expected a table, found an array",
        )],
    },
    Case {
        name: "limits out of range",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
limits = { max_connections = 20000000, cps = 0 }
"#,
        errors: &[
            (
                6,
                30,
                "limits.max_connections: must be between 1 and 10000000, found 20000000",
            ),
            (6, 46, "limits.cps: must be between 1 and 1000000, found 0"),
        ],
    },
    Case {
        name: "limits with an unknown key",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"

[listener.limits]
max_conections = 100
"#,
        errors: &[(
            8,
            1,
            "limits.max_conections: unknown key `max_conections`\n  hint: did you mean `max_connections`?",
        )],
    },
    Case {
        name: "qps on a tcp listener",
        source: r#"[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "app"
limits = { cps = 100, qps = 500 }
"#,
        errors: &[(
            6,
            23,
            "listener \"web\".limits.qps: `qps` only applies to http and https listeners; this listener is protocol = \"tcp\"\n  hint: limit new connections per second with `cps` instead",
        )],
    },
    Case {
        name: "limits qps out of range",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "127.0.0.1:8080"
group = "app"
limits = { qps = 0 }
"#,
        errors: &[(6, 18, "limits.qps: must be between 1 and 10000000, found 0")],
    },
    Case {
        name: "rule qps out of range",
        source: r#"[[listener]]
name = "web"
protocol = "http"
bind = "127.0.0.1:8080"
group = "app"
[[listener.rule]]
path_prefix = "/api/"
group = "app"
qps = 20000000
"#,
        errors: &[(
            9,
            7,
            "listener \"web\".rule[0].qps: must be between 1 and 10000000, found 20000000",
        )],
    },
    Case {
        name: "TOML syntax error",
        source: "[runtime]\nworkers = 2\nshutdown_grace = 30s\n",
        errors: &[(
            3,
            18,
            "error: TOML syntax error: string values must be quoted",
        )],
    },
    Case {
        name: "duplicate key is a TOML error",
        source: "[runtime]\nworkers = 2\nworkers = 3\n",
        errors: &[(3, 1, "error: TOML syntax error: duplicate key")],
    },
];

fn rendered(d: &Diagnostic) -> String {
    d.to_string()
}

#[test]
fn every_malformed_case_reports_exactly_its_errors() {
    assert!(CASES.len() >= 55);
    let mut failures = Vec::new();
    for case in CASES {
        let source = if case.source.contains("[[group]]") {
            case.source.to_string()
        } else {
            // Snippets without a group get one after them, so a listener's `group` resolves.
            format!("{}{APP}", case.source)
        };
        let errors: Vec<Diagnostic> = match parse(&source, "t.toml") {
            Ok(_) => {
                failures.push(format!("{}: parsed without error", case.name));
                continue;
            }
            Err(diagnostics) => diagnostics.errors().cloned().collect(),
        };
        let got: Vec<(usize, usize, String)> = errors
            .iter()
            .map(|d| (d.line, d.column, rendered(d)))
            .collect();
        let matches = got.len() == case.errors.len()
            && got
                .iter()
                .zip(case.errors)
                .all(|((line, col, text), want)| {
                    (*line, *col) == (want.0, want.1) && text.contains(want.2)
                });
        if !matches {
            failures.push(format!(
                "{}:\n  want {:?}\n  got  {:#?}",
                case.name, case.errors, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn three_problems_in_one_file_are_all_reported_in_source_order() {
    let source = r#"[runtime]
workers = 0

[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:8080"
group = "missing"

[[group]]
name = "app"
servers = [{ address = "10.0.0.1:80", weigth = 5 }]
"#;
    let diagnostics = parse(source, "three.toml").unwrap_err();
    let errors: Vec<_> = diagnostics.errors().collect();
    assert_eq!(errors.len(), 3, "{diagnostics}");
    let got: Vec<_> = errors
        .iter()
        .map(|d| (d.line, d.column, d.key.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, 11, "runtime.workers"),
            (8, 9, "listener \"web\".group"),
            (12, 39, "group \"app\".servers[0].weigth"),
        ]
    );
    assert!(
        errors[2].hint.starts_with("did you mean `weight`?"),
        "{}",
        errors[2]
    );
    // The rendered form is what `weir check` prints.
    let first = diagnostics.to_string();
    assert!(
        first.starts_with(
            "three.toml:2:11: error: runtime.workers: must be between 1 and 1024, found 0"
        ),
        "{first}"
    );
}

#[test]
fn every_error_is_an_error_and_carries_the_origin() {
    let diagnostics = parse("[runtime]\nworkers = \"many\"\n", "weir.toml").unwrap_err();
    assert!(
        diagnostics
            .0
            .iter()
            .all(|d| d.severity == Severity::Error && d.origin == "weir.toml")
    );
}
