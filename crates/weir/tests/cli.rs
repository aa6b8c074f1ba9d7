//! The `weir` binary end to end: `check` lists problems with positions and exits non-zero,
//! `run` refuses a bad file, `demo` serves from several servers and stops cleanly on SIGINT,
//! `run` drains and exits 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const BAD: &str = r#"
[[listener]]
name = "web"
protocol = "tcp"
bind = "127.0.0.1:0"
group = "app"
idle_timeout = "15 sec"

[[group]]
name = "ap"
servers = [{ address = "127.0.0.1:1" }]
"#;

#[test]
fn check_lists_every_problem_with_its_position() {
    let path = write_config("bad.toml", BAD);
    let out = weir().arg("check").arg("-c").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(stderr.contains(&format!("{file}:7:16: error")), "{stderr}");
    assert!(stderr.contains(&format!("{file}:6:9: error")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_accepts_the_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/weir.toml");
    let out = weir().args(["check", "-c", example]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_refuses_a_bad_config() {
    let path = write_config("bad-run.toml", BAD);
    let out = weir().arg("run").arg("-c").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid config"), "{stderr}");
    assert!(stderr.contains(":7:16:"), "{stderr}");
}

#[test]
fn run_refuses_a_missing_file() {
    let out = weir()
        .args(["run", "-c", "/nonexistent/weir.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/weir.toml"), "{stderr}");
}

/// Kills the child on drop so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "weir did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get_with_cookie(addr: SocketAddr, cookie: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: demo\r\n{cookie}Connection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn http_get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn demo_serves_from_several_servers_and_stops_on_sigint() {
    let child = weir()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    // "weir demo: a TCP load balancer on 127.0.0.1:PORT in front of 3 demo servers:"
    let addr: SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    let mut http_addr: Option<SocketAddr> = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("HTTP load balancer") {
            http_addr = line.split_whitespace().find_map(|w| w.parse().ok());
            break;
        }
    }
    let http_addr = http_addr.expect("the banner names the HTTP listener");
    // Keep reading stdout so the access log never blocks the demo.
    std::thread::spawn(move || for _ in lines {});

    let mut names = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let reply = http_get(addr);
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        names.insert(reply.lines().last().unwrap_or_default().to_string());
    }
    assert!(names.len() >= 2, "answers from: {names:?}");

    // The HTTP listener pins a client to one server with its cookie.
    let first = http_get_with_cookie(http_addr, None);
    let cookie = first
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: weir_demo=")
                .then(|| l[12..].split(';').next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("no persistence cookie in {first}"));
    let pinned = first.lines().last().unwrap_or_default().to_string();
    for _ in 0..5 {
        let reply = http_get_with_cookie(http_addr, Some(&cookie));
        assert_eq!(reply.lines().last().unwrap_or_default(), pinned, "{reply}");
    }

    signal(&child.0, "INT");
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

/// An echo backend on a thread; returns its address.
fn echo_backend() -> SocketAddr {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in backend.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    backend_addr
}

/// A port that was free a moment ago (bind 0, read it back, release it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to `addr`, retrying until weir listens (10 s at most).
fn connect_when_up(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => panic!("weir never listened on {addr}: {err}"),
        }
    }
}

fn echo_once(conn: &mut TcpStream, msg: &[u8]) {
    try_echo(conn, msg).unwrap();
}

/// Sends `msg` and reads it back (5 s at most).
fn try_echo(conn: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(msg)?;
    let mut buf = vec![0u8; msg.len()];
    conn.read_exact(&mut buf)?;
    assert_eq!(buf, msg);
    Ok(())
}

#[test]
fn run_serves_then_drains_and_exits_zero_on_sigterm() {
    let backend_addr = echo_backend();
    let port = free_port();
    let cfg = format!(
        "[runtime]\nshutdown_grace = \"5s\"\n[log]\naccess = \"stdout\"\n\
         [[listener]]\nname = \"t\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:{port}\"\ngroup = \"g\"\n\
         [[group]]\nname = \"g\"\nservers = [{{ address = \"{backend_addr}\" }}]\n"
    );
    let path = write_config("run.toml", &cfg);
    let child = weir()
        .arg("run")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut conn = connect_when_up(addr);
    echo_once(&mut conn, b"ping");
    let mut buf = [0u8; 4];

    // SIGTERM with the connection open: weir waits for it (up to the grace).
    signal(&child.0, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "weir waits for the open connection"
    );
    conn.write_all(b"pong").unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("\"end_by\":\"client\",\"end_how\":\"fin\""),
        "{log}"
    );
}

#[test]
fn proxy_one_liner_forwards() {
    let backend_addr = echo_backend();
    let port = free_port();
    let child = weir()
        .args([
            "proxy",
            "--from",
            &format!("127.0.0.1:{port}"),
            "--to",
            &backend_addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let mut conn = connect_when_up(format!("127.0.0.1:{port}").parse().unwrap());
    echo_once(&mut conn, b"through the one-liner");
    drop(conn);
    signal(&child.0, "TERM");
    assert!(wait_exit(&mut child.0, Duration::from_secs(10)).success());
}

#[test]
fn accept_loop_survives_running_out_of_file_descriptors() {
    let backend_addr = echo_backend();
    let port = free_port();
    let cfg = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nname = \"t\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:{port}\"\ngroup = \"g\"\n\
         [[group]]\nname = \"g\"\nservers = [{{ address = \"{backend_addr}\" }}]\n[group.health_check]\nkind = \"none\"\n"
    );
    let path = write_config("emfile.toml", &cfg);
    // 64 descriptors: enough to start, far too few for 100 proxied connections (2 fds each).
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} run -c {}",
            env!("CARGO_BIN_EXE_weir"),
            path.display()
        ))
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut first = connect_when_up(addr);
    echo_once(&mut first, b"before");
    let mut held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Give the accept loop time to hit EMFILE and back off a few times.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "weir is still running"
    );
    held.clear();
    drop(first);
    // Once descriptors are free again, new connections are served. weir frees them as it
    // sees the clients' closes; a connection accepted before that finds no descriptor for its
    // server connection and is closed, so try again until one is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut after = connect_when_up(addr);
        match try_echo(&mut after, b"after") {
            Ok(()) => break,
            Err(err) if Instant::now() < deadline => {
                eprintln!("not served yet ({err}); retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("no connection served after descriptors were freed: {err}"),
        }
    }
    signal(&child.0, "TERM");
    assert!(wait_exit(&mut child.0, Duration::from_secs(15)).success());
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("out of resources"),
        "the EMFILE was seen and logged: {stderr}"
    );
}

#[test]
fn proxy_http_one_liner_adds_forwarding_headers() {
    // An HTTP backend answering with the X-Forwarded-For it received.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in backend.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let xff = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-forwarded-for: "))
                    .unwrap_or("none")
                    .to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xff}",
                    xff.len()
                );
                let _ = s.write_all(reply.as_bytes());
                let _ = s.shutdown(std::net::Shutdown::Write);
                let _ = s.read_to_end(&mut Vec::new());
            });
        }
    });
    let port = free_port();
    let child = weir()
        .args([
            "proxy",
            "--http",
            "--check",
            "none",
            "--from",
            &format!("127.0.0.1:{port}"),
            "--to",
            &backend_addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    drop(connect_when_up(addr));
    let reply = http_get_with_cookie(addr, None);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.ends_with("127.0.0.1"),
        "X-Forwarded-For reached the server: {reply}"
    );
    signal(&child.0, "TERM");
    assert!(wait_exit(&mut child.0, Duration::from_secs(10)).success());
}

#[test]
fn check_loads_tls_certificates() {
    let missing = write_config(
        "tls-missing.toml",
        "[[listener]]\nname = \"s\"\nprotocol = \"https\"\nbind = \"127.0.0.1:0\"\ngroup = \"g\"\n\
         [listener.tls]\ncertificates = [{ cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }]\n\
         [[group]]\nname = \"g\"\nservers = [{ address = \"127.0.0.1:1\" }]\n",
    );
    let out = weir()
        .arg("check")
        .arg("-c")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
}
