//! Command-line interface definitions.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// weir: a layer-4/layer-7 load balancer that leaves no reset noise behind and says who ended
/// every connection.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run with a config file. SIGTERM/SIGINT drain and stop.
    Run(RunArgs),
    /// Validate and lint a config file; exit non-zero listing every problem.
    Check(CheckArgs),
    /// One-line TCP load balancer with health checks, no file needed.
    Proxy(ProxyArgs),
    /// Start demo backends on loopback and a load balancer in front of them.
    Demo(DemoArgs),
}

/// `weir run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file.
    #[arg(short, long, default_value = "weir.toml")]
    pub config: PathBuf,
}

/// `weir check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file.
    #[arg(short, long, default_value = "weir.toml")]
    pub config: PathBuf,
}

/// `weir proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub from: SocketAddr,
    /// Servers, comma-separated, e.g. 127.0.0.1:9001,127.0.0.1:9002.
    #[arg(long, value_delimiter = ',', required = true)]
    pub to: Vec<SocketAddr>,
    /// Balancing algorithm: rr, wrr, least_conn, maglev, random2.
    #[arg(long, default_value = "least_conn")]
    pub algorithm: String,
    /// Health check: tcp, http (GET /, 2xx/3xx) or none; default tcp, or http with --http.
    #[arg(long)]
    pub check: Option<String>,
    /// HTTP mode: an http listener (routing by nothing, X-Forwarded-* headers, keep-alive pool,
    /// HTTP health checks on `/`).
    #[arg(long)]
    pub http: bool,
}

/// `weir demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the demo's TCP load balancer.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the demo's HTTP load balancer (cookie persistence).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub http_listen: SocketAddr,
    /// Number of demo servers.
    #[arg(long, default_value_t = 3)]
    pub servers: usize,
    /// Seconds between taking one demo server down (and back up half-way through).
    #[arg(long, default_value_t = 20)]
    pub flap_every: u64,
}
