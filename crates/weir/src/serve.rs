//! `weir run`, `weir check` and `weir proxy`: load a config (or build one), run it until a
//! signal, shut down gracefully.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};
use weir_config::{
    Algorithm, CheckKind, Config, Diagnostic, Group, HealthCheck, HttpCheck, Listener, Protocol,
    Server, Severity,
};
use weir_core::Proxy;
use weir_core::access_log::{AccessLog, RecordSink};
use weir_core::workers::Workers;

use crate::cli::{CheckArgs, ProxyArgs, RunArgs};

/// `weir run -c FILE`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing();
    let loaded = weir_config::load(&args.config)
        .map_err(|diags| anyhow::anyhow!("invalid config\n{diags}"))?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    serve(loaded.config)
}

/// `weir check -c FILE`: prints every finding; exit 0 only when there is no error.
pub fn check(args: CheckArgs) -> ExitCode {
    match weir_config::load(&args.config) {
        Ok(loaded) => {
            print_findings(&loaded.warnings);
            let tls_errors = check_tls(&loaded.config);
            for err in &tls_errors {
                eprintln!("{}: error: {err}", args.config.display());
            }
            if !tls_errors.is_empty() {
                eprintln!(
                    "{}: {} error(s); the config was not accepted",
                    args.config.display(),
                    tls_errors.len()
                );
                return ExitCode::FAILURE;
            }
            let c = &loaded.config;
            println!(
                "{}: ok ({} listener(s), {} group(s), {} warning(s))",
                args.config.display(),
                c.listeners.len(),
                c.groups.len(),
                loaded.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            print_findings(&diags.0);
            let errors = diags.errors().count();
            eprintln!(
                "{}: {errors} error(s); the config was not accepted",
                args.config.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Loads every https listener's certificates and keys, as `run` would.
fn check_tls(config: &Config) -> Vec<String> {
    config
        .listeners
        .iter()
        .filter_map(|l| {
            let tls = l.http.as_ref()?.tls.as_ref()?;
            weir_core::tls::server_config(tls)
                .err()
                .map(|err| format!("listener \"{}\": {err}", l.name))
        })
        .collect()
}

fn print_findings(findings: &[Diagnostic]) {
    for d in findings {
        match d.severity {
            Severity::Error | Severity::Warning => eprintln!("{d}"),
        }
    }
}

/// `weir proxy --from ADDR --to A,B,…`.
pub fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    init_tracing();
    let config = proxy_config(&args)?;
    serve(config)
}

fn proxy_config(args: &ProxyArgs) -> anyhow::Result<Config> {
    let algorithm = match args.algorithm.as_str() {
        "rr" => Algorithm::Rr,
        "wrr" => Algorithm::Wrr,
        "least_conn" => Algorithm::LeastConn,
        "maglev" => Algorithm::Maglev,
        "random2" => Algorithm::Random2,
        other => {
            bail!("--algorithm {other:?}: expected one of rr, wrr, least_conn, maglev, random2")
        }
    };
    let default_check = if args.http { "http" } else { "tcp" };
    let kind = match args.check.as_deref().unwrap_or(default_check) {
        "tcp" => CheckKind::Tcp,
        "http" => CheckKind::Http(HttpCheck::default()),
        "none" => CheckKind::None,
        other => bail!("--check {other:?}: expected tcp, http or none"),
    };
    let servers = args.to.iter().map(|addr| Server::new(*addr)).collect();
    let mut group = Group::new("default", servers);
    group.algorithm = algorithm;
    group.health_check = HealthCheck {
        kind,
        ..HealthCheck::default()
    };
    Ok(Config {
        listeners: vec![Listener::new(
            "proxy",
            if args.http {
                Protocol::Http
            } else {
                Protocol::Tcp
            },
            vec![args.from],
            "default",
        )],
        groups: vec![group],
        ..Config::default()
    })
}

/// Runs `config` until SIGTERM or SIGINT: connections on `[runtime] workers` worker threads
/// (one per core by default), health checks and shutdown on the main thread.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let workers = Workers::start(
        worker_count(config.runtime.workers),
        config.runtime.io_uring,
    )
    .context("cannot start the worker threads")?;
    let runtime = build_runtime()?;
    let handles = workers.handles();
    let result = runtime.block_on(async move {
        let log = AccessLog::open(&config.log.access, config.log.format).context("cannot open the access log")?;
        let log = Arc::new(log);
        let sink: Arc<dyn RecordSink> = log.clone();
        let proxy = Proxy::start_on(&config, sink, &handles).await?;
        let stop = wait_for_stop().await?;
        info!(signal = stop, grace = ?config.runtime.shutdown_grace, "stopping: no new connections");
        let report = proxy.shutdown(config.runtime.shutdown_grace).await;
        info!(forced = report.forced, "stopped");
        if let Ok(log) = Arc::try_unwrap(log) {
            log.close();
        }
        Ok(())
    });
    workers.stop();
    result
}

/// `workers` from the config, or one per core.
pub fn worker_count(workers: Option<usize>) -> usize {
    workers
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

/// The main thread's runtime: signals, health checks, the shutdown sequence.
pub fn build_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// Waits for SIGTERM or SIGINT; SIGHUP is acknowledged (reload is not in this build yet) so it
/// does not kill the process.
pub async fn wait_for_stop() -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => warn!("SIGHUP received: configuration reload is not available in this build yet; still running the loaded config"),
        }
    }
}

/// Operational logs (health changes, listeners, shutdown) go to stderr; `WEIR_LOG` filters
/// (e.g. `WEIR_LOG=debug`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
