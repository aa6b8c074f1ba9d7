//! A running weir: listeners bound, health checks started, connections tracked; and the
//! orderly shutdown (stop accepting, let connections finish within the grace, then close what
//! is left with FIN).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;
use weir_config::{Config, Protocol};

use crate::access_log::RecordSink;
use crate::http::conn::HttpEntry;
use crate::http::service::{HttpGroup, HttpService};
use crate::l4::forward::{CLOSE_LINGER, ForwardConfig};
use crate::l4::tcp::TcpService;
use crate::limits::Gate;
use crate::listener::{Lifecycle, Service, accept_loop, bind_tcp, ensure_free};
use crate::tls::server_config;
use crate::upstream::health::spawn_checks;
use crate::upstream::{ServerState, Upstream};

/// A failure to start: which listener, which address, what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening socket could not be bound.
    #[error("listener \"{listener}\": cannot bind {addr}: {source}")]
    Bind {
        /// Listener name.
        listener: String,
        /// Address it tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config uses something this build does not run.
    #[error("listener \"{listener}\": protocol {protocol} is not supported by this build")]
    Unsupported {
        /// Listener name.
        listener: String,
        /// The protocol.
        protocol: &'static str,
    },
    /// A TLS certificate or key could not be loaded.
    #[error("listener \"{listener}\": {source}")]
    Tls {
        /// Listener name.
        listener: String,
        /// What went wrong, naming the file.
        source: crate::tls::TlsError,
    },
    /// A listener names a group that does not exist (validation prevents this for files).
    #[error("listener \"{listener}\": no group named \"{group}\"")]
    UnknownGroup {
        /// Listener name.
        listener: String,
        /// The missing group.
        group: String,
    },
}

/// What shutdown found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether the grace ran out and open connections were closed by weir.
    pub forced: bool,
}

/// A bound listener.
struct Bound {
    name: String,
    addrs: Vec<SocketAddr>,
}

/// A running weir instance.
pub struct Proxy {
    listeners: Vec<Bound>,
    upstreams: Vec<Arc<Upstream>>,
    http_groups: Vec<Arc<HttpGroup>>,
    http_tasks: TaskTracker,
    life: Lifecycle,
    accept_tasks: TaskTracker,
    health_stop: CancellationToken,
    health_tasks: TaskTracker,
}

impl Proxy {
    /// Starts weir on the current runtime alone (see [`Proxy::start_on`]).
    pub async fn start(config: &Config, sink: Arc<dyn RecordSink>) -> Result<Proxy, StartError> {
        Proxy::start_on(config, sink, &[Handle::current()]).await
    }

    /// Binds every listener once per worker, starts health checks on the current runtime,
    /// then starts accepting on `workers` (see [`crate::workers`]; none: the current runtime).
    /// Nothing is started when any listener fails to bind.
    pub async fn start_on(
        config: &Config,
        sink: Arc<dyn RecordSink>,
        workers: &[Handle],
    ) -> Result<Proxy, StartError> {
        let current = [Handle::current()];
        let workers = if workers.is_empty() {
            &current[..]
        } else {
            workers
        };
        let upstreams: Vec<Arc<Upstream>> = config
            .groups
            .iter()
            .map(|group| {
                Arc::new(Upstream::new(group.clone(), |group, server| {
                    Arc::new(ServerState::new(group, &server.name, server.address))
                }))
            })
            .collect();
        let group_index = |name: &str| upstreams.iter().position(|u| u.name() == name);
        let http_groups: Vec<Arc<HttpGroup>> = upstreams
            .iter()
            .map(|u| Arc::new(HttpGroup::new(u.clone(), workers.len())))
            .collect();
        let http_tasks = TaskTracker::new();

        let mut sockets = Vec::new();
        for listener in &config.listeners {
            let unknown_group = || StartError::UnknownGroup {
                listener: listener.name.clone(),
                group: listener.group.clone(),
            };
            let index = group_index(&listener.group).ok_or_else(unknown_group)?;
            let gate = Arc::new(Gate::new(listener.acl.clone(), &listener.limits));
            let service = match (listener.protocol, &listener.http) {
                (Protocol::Tcp, _) => Service::Tcp(Arc::new(TcpService {
                    listener: listener.name.as_str().into(),
                    upstream: upstreams[index].clone(),
                    forward: ForwardConfig {
                        idle_timeout: listener.idle_timeout,
                        idle_close: listener.idle_close,
                        propagate_reset: listener.propagate_reset,
                        splice: listener.splice,
                    },
                    sink: sink.clone(),
                })),
                (Protocol::Http | Protocol::Https, Some(settings)) => {
                    let tls = match &settings.tls {
                        Some(tls) => {
                            Some(TlsAcceptor::from(server_config(tls).map_err(|source| {
                                StartError::Tls {
                                    listener: listener.name.clone(),
                                    source,
                                }
                            })?))
                        }
                        None => None,
                    };
                    let service = HttpService::new(
                        listener.name.clone(),
                        settings.clone(),
                        listener.idle_timeout,
                        http_groups.clone(),
                        index,
                        group_index,
                        sink.clone(),
                        http_tasks.clone(),
                        gate.clone(),
                    );
                    Service::Http(Arc::new(HttpEntry::new(Arc::new(service), tls)))
                }
                (protocol, _) => {
                    return Err(StartError::Unsupported {
                        listener: listener.name.clone(),
                        protocol: protocol.as_str(),
                    });
                }
            };
            for &addr in &listener.bind {
                // Keep-alive on client sockets is a `tcp` listener setting.
                let keepalive = match listener.protocol {
                    Protocol::Tcp => listener.tcp_keepalive.as_ref(),
                    _ => None,
                };
                let bind_error = |source| StartError::Bind {
                    listener: listener.name.clone(),
                    addr,
                    source,
                };
                // One socket per worker, watched by that worker's reactor (its connections
                // live there); the first socket fixes the port when the config says 0.
                let shared = workers.len() > 1;
                if shared && addr.port() != 0 {
                    // SO_REUSEPORT would let these sockets join another process's on the
                    // same port, silently sharing its traffic: first make sure the address is
                    // free, as a plain bind does.
                    ensure_free(addr).map_err(bind_error)?;
                }
                let mut per_worker = Vec::with_capacity(workers.len());
                let mut local = addr;
                for worker in workers {
                    let socket = bind_tcp(local, listener.backlog, keepalive, shared)
                        .and_then(|socket| {
                            let _in_worker = worker.enter();
                            TcpListener::from_std(socket)
                        })
                        .map_err(bind_error)?;
                    local = socket.local_addr().unwrap_or(local);
                    per_worker.push((socket, worker.clone()));
                }
                sockets.push((
                    listener.name.clone(),
                    local,
                    per_worker,
                    service.clone(),
                    gate.clone(),
                ));
            }
        }

        let health_stop = CancellationToken::new();
        let health_tasks = TaskTracker::new();
        for upstream in &upstreams {
            spawn_checks(upstream, &health_stop, &health_tasks);
        }
        health_tasks.spawn(sweep_h2_pools(http_groups.clone(), health_stop.clone()));
        for worker in workers {
            let sweep =
                sweep_h1_pools(http_groups.clone(), http_tasks.clone(), health_stop.clone());
            health_tasks.spawn_on(sweep, worker);
        }

        let life = Lifecycle {
            stop_accepting: CancellationToken::new(),
            force_close: CancellationToken::new(),
            connections: TaskTracker::new(),
            signal: Default::default(),
        };
        let accept_tasks = TaskTracker::new();
        let mut listeners: Vec<Bound> = Vec::new();
        for (name, local, per_worker, service, gate) in sockets {
            info!(listener = %name, addr = %local, workers = per_worker.len(), "listening");
            match listeners.iter_mut().find(|b| b.name == name) {
                Some(bound) => bound.addrs.push(local),
                None => listeners.push(Bound {
                    name: name.clone(),
                    addrs: vec![local],
                }),
            }
            for (socket, worker) in per_worker {
                let accept = accept_loop(socket, service.clone(), gate.clone(), life.clone());
                accept_tasks.spawn_on(accept, &worker);
            }
        }
        Ok(Proxy {
            listeners,
            upstreams,
            http_groups,
            http_tasks,
            life,
            accept_tasks,
            health_stop,
            health_tasks,
        })
    }

    /// The addresses a listener is bound to (with the real port when the config said 0).
    pub fn local_addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .find(|b| b.name == listener)
            .map(|b| b.addrs.clone())
            .unwrap_or_default()
    }

    /// A group's run-time state.
    pub fn upstream(&self, group: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == group)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.life.connections.len()
    }

    /// Stops accepting, waits up to `grace` for open connections to finish, then closes the
    /// rest (with FIN unless a listener asks for RST) and stops health checks.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        self.life.stop_accepting.cancel();
        self.life.signal.stop();
        self.accept_tasks.close();
        self.accept_tasks.wait().await;
        self.life.connections.close();
        let open = self.life.connections.len();
        if open > 0 {
            info!(open, grace = ?grace, "waiting for open connections to finish");
        }
        let forced = tokio::time::timeout(grace, self.life.connections.wait())
            .await
            .is_err();
        if forced {
            info!(
                open = self.life.connections.len(),
                "shutdown grace over: closing open connections"
            );
            self.life.force_close.cancel();
            self.life.signal.force();
            // Closing takes at most the close linger per connection; bound it anyway.
            let _ = tokio::time::timeout(CLOSE_LINGER * 2, self.life.connections.wait()).await;
        }
        self.health_stop.cancel();
        self.health_tasks.close();
        self.health_tasks.wait().await;
        // Idle server connections close with FIN; wait for them and any tunnel, bounded.
        for group in &self.http_groups {
            group.pool.clear();
            group.h1_pool.clear(&self.http_tasks);
        }
        self.http_tasks.close();
        let _ = tokio::time::timeout(CLOSE_LINGER * 2, self.http_tasks.wait()).await;
        ShutdownReport { forced }
    }
}

/// How often idle server connections past their idle time are dropped.
const POOL_SWEEP: Duration = Duration::from_millis(250);

/// Closes the HTTP/2 pools' expired connections.
async fn sweep_h2_pools(groups: Vec<Arc<HttpGroup>>, stop: CancellationToken) {
    every(POOL_SWEEP, &stop, || {
        groups.iter().for_each(|g| g.pool.sweep())
    })
    .await;
}

/// Closes the expired HTTP/1 server connections of the worker it runs on, so each socket is
/// closed by the reactor that watches it.
///
/// The tick also keeps a timer due within `POOL_SWEEP` in the worker's timer wheel. Without
/// one, the wheel is often empty when the worker polls for events, and tokio then wakes its
/// own thread (an eventfd write) whenever a connection sets a timer: one more system call per
/// new connection.
async fn sweep_h1_pools(groups: Vec<Arc<HttpGroup>>, tasks: TaskTracker, stop: CancellationToken) {
    every(POOL_SWEEP, &stop, || {
        groups.iter().for_each(|g| g.h1_pool.sweep(&tasks))
    })
    .await;
}

/// Runs `work` every `period` until `stop`.
async fn every(period: Duration, stop: &CancellationToken, work: impl Fn()) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => work(),
        }
    }
}
