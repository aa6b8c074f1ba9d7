//! `weir demo`: a few demo servers on loopback, a weir listener in front of them with health
//! checks, and — every `flap_every` seconds — one server taken down and brought back, so the
//! health checks and the failover show up in the log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::info;
use weir_config::{
    Algorithm, CheckKind, Config, Group, HealthCheck, Listener, Persistence, Protocol, Server,
};
use weir_core::Proxy;
use weir_core::access_log::{AccessLog, RecordSink};

use crate::cli::DemoArgs;
use crate::serve::{build_runtime, init_tracing, wait_for_stop};

/// Runs the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    init_tracing();
    let runtime = build_runtime()?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let count = args.servers.clamp(2, 10);
    let mut servers = Vec::with_capacity(count);
    for i in 1..=count {
        servers.push(DemoServer::start(format!("demo-{i}"), "127.0.0.1:0".parse()?).await?);
    }
    let config = demo_config(args.listen, args.http_listen, &servers);
    let log = Arc::new(AccessLog::open(&config.log.access, config.log.format)?);
    let sink: Arc<dyn RecordSink> = log.clone();
    let proxy = Proxy::start(&config, sink).await.with_context(|| {
        format!(
            "cannot start the demo listeners on {} and {} (try --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 for any free ports)",
            args.listen, args.http_listen
        )
    })?;
    let addr = proxy
        .local_addrs("demo")
        .first()
        .copied()
        .unwrap_or(args.listen);
    let http_addr = proxy
        .local_addrs("demo-http")
        .first()
        .copied()
        .unwrap_or(args.http_listen);
    print_banner(addr, http_addr, &servers, args.flap_every);

    let flapper = tokio::spawn(flap(servers, Duration::from_secs(args.flap_every.max(2))));
    let stop = wait_for_stop().await?;
    info!(signal = stop, "demo stopping");
    flapper.abort();
    proxy.shutdown(Duration::from_secs(5)).await;
    if let Ok(log) = Arc::try_unwrap(log) {
        log.close();
    }
    Ok(())
}

fn demo_config(listen: SocketAddr, http_listen: SocketAddr, servers: &[DemoServer]) -> Config {
    let members = servers
        .iter()
        .map(|s| Server {
            name: s.name.clone(),
            ..Server::new(s.addr)
        })
        .collect();
    let mut group = Group::new("demo", members);
    group.algorithm = Algorithm::Rr;
    group.connect_timeout = Duration::from_secs(1);
    group.health_check = HealthCheck {
        kind: CheckKind::Tcp,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        jitter: Duration::from_millis(100),
        ..HealthCheck::default()
    };
    let mut listener = Listener::new("demo", Protocol::Tcp, vec![listen], "demo");
    listener.idle_timeout = Duration::from_secs(60);
    // The same servers behind an HTTP listener, with cookie persistence: a client that keeps
    // its cookie stays on one server until that server goes down.
    let mut sticky = group.clone();
    sticky.name = "demo-sticky".to_string();
    sticky.persistence = Some(Persistence::CookieInsert {
        cookie: "WEIR_DEMO".to_string(),
        timeout: Some(Duration::from_secs(3600)),
    });
    let http = Listener::new(
        "demo-http",
        Protocol::Http,
        vec![http_listen],
        "demo-sticky",
    );
    Config {
        listeners: vec![listener, http],
        groups: vec![group, sticky],
        ..Config::default()
    }
}

fn print_banner(addr: SocketAddr, http_addr: SocketAddr, servers: &[DemoServer], flap_every: u64) {
    println!(
        "weir demo: a TCP load balancer on {addr} in front of {} demo servers:",
        servers.len()
    );
    for s in servers {
        println!("  {} on {}", s.name, s.addr);
    }
    println!("and an HTTP load balancer with cookie persistence on {http_addr}");
    println!("Try:");
    println!("  curl http://{addr}/            # each request names the server that answered");
    println!("  for i in 1 2 3 4 5 6; do curl -s http://{addr}/; done");
    println!(
        "  echo hi | nc -q1 {} {}       # raw TCP works too",
        addr.ip(),
        addr.port()
    );
    println!(
        "  curl -c jar -b jar http://{http_addr}/   # sticky: the cookie keeps you on one server"
    );
    println!("  curl -si http://{http_addr}/ | grep -i set-cookie");
    println!(
        "Every {flap_every}s one demo server goes down and comes back: watch the health checks"
    );
    println!("take it out and put it back (stderr), and the access log (one JSON line per");
    println!("connection below) keep every client served. Ctrl-C stops.");
}

/// Takes the servers down and up one at a time, forever.
async fn flap(mut servers: Vec<DemoServer>, every: Duration) {
    let mut next = 0;
    loop {
        tokio::time::sleep(every / 2).await;
        let count = servers.len();
        let server = &mut servers[next % count];
        info!(server = %server.name, "demo: taking a server down");
        server.stop();
        tokio::time::sleep(every / 2).await;
        info!(server = %server.name, "demo: bringing the server back");
        if let Err(err) = server.restart().await {
            info!(server = %server.name, %err, "demo: could not bring the server back");
        }
        next += 1;
    }
}

/// A demo server: answers HTTP requests with its name, and anything else with a greeting.
struct DemoServer {
    name: String,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl DemoServer {
    async fn start(name: String, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind demo server {name}"))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve_demo(listener, name.clone()));
        Ok(DemoServer {
            name,
            addr,
            task: Some(task),
        })
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.task = Some(tokio::spawn(serve_demo(listener, self.name.clone())));
        Ok(())
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve_demo(listener: TcpListener, name: String) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, name.clone()));
        }
    }
}

/// Reads what the client sends first, answers, then closes the way weir wants every peer to:
/// FIN, then read until the client's FIN.
async fn answer(mut stream: TcpStream, name: String) {
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => 0,
    };
    let head = &buf[..n];
    let is_http = head.split(|&b| b == b' ').next().is_some_and(|m| {
        matches!(
            m,
            b"GET" | b"HEAD" | b"POST" | b"PUT" | b"DELETE" | b"OPTIONS" | b"PATCH"
        )
    });
    let body = format!("hello from {name}\n");
    let reply = if is_http {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Demo-Server: {name}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        body
    };
    if stream.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
