//! A running weir: listeners bound, health checks started, connections tracked; and the
//! orderly shutdown (stop accepting, let connections finish within the grace, then close what
//! is left with FIN).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;
use weir_config::{Config, Protocol};

use crate::access_log::RecordSink;
use crate::l4::forward::{CLOSE_LINGER, ForwardConfig};
use crate::l4::tcp::TcpService;
use crate::listener::{Lifecycle, accept_loop, bind_tcp};
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
    upstreams: HashMap<String, Arc<Upstream>>,
    life: Lifecycle,
    accept_tasks: TaskTracker,
    health_stop: CancellationToken,
    health_tasks: TaskTracker,
}

impl Proxy {
    /// Binds every listener, starts health checks, then starts accepting. Nothing is started
    /// when any listener fails to bind.
    pub async fn start(config: &Config, sink: Arc<dyn RecordSink>) -> Result<Proxy, StartError> {
        let upstreams: HashMap<String, Arc<Upstream>> = config
            .groups
            .iter()
            .map(|group| {
                let upstream = Upstream::new(group.clone(), |group, server| {
                    Arc::new(ServerState::new(group, &server.name, server.address))
                });
                (group.name.clone(), Arc::new(upstream))
            })
            .collect();

        let mut sockets = Vec::new();
        for listener in &config.listeners {
            if listener.protocol != Protocol::Tcp {
                return Err(StartError::Unsupported {
                    listener: listener.name.clone(),
                    protocol: listener.protocol.as_str(),
                });
            }
            let upstream =
                upstreams
                    .get(&listener.group)
                    .ok_or_else(|| StartError::UnknownGroup {
                        listener: listener.name.clone(),
                        group: listener.group.clone(),
                    })?;
            let service = Arc::new(TcpService {
                listener: listener.name.clone(),
                upstream: upstream.clone(),
                forward: ForwardConfig {
                    idle_timeout: listener.idle_timeout,
                    idle_close: listener.idle_close,
                    propagate_reset: listener.propagate_reset,
                },
                keepalive: listener.tcp_keepalive,
                sink: sink.clone(),
            });
            for &addr in &listener.bind {
                let socket = bind_tcp(addr, listener.backlog)
                    .and_then(TcpListener::from_std)
                    .map_err(|source| StartError::Bind {
                        listener: listener.name.clone(),
                        addr,
                        source,
                    })?;
                let local = socket.local_addr().unwrap_or(addr);
                sockets.push((listener.name.clone(), local, socket, service.clone()));
            }
        }

        let health_stop = CancellationToken::new();
        let health_tasks = TaskTracker::new();
        for upstream in upstreams.values() {
            spawn_checks(upstream, &health_stop, &health_tasks);
        }

        let life = Lifecycle {
            stop_accepting: CancellationToken::new(),
            force_close: CancellationToken::new(),
            connections: TaskTracker::new(),
        };
        let accept_tasks = TaskTracker::new();
        let mut listeners: Vec<Bound> = Vec::new();
        for (name, local, socket, service) in sockets {
            info!(listener = %name, addr = %local, "listening");
            match listeners.iter_mut().find(|b| b.name == name) {
                Some(bound) => bound.addrs.push(local),
                None => listeners.push(Bound {
                    name: name.clone(),
                    addrs: vec![local],
                }),
            }
            accept_tasks.spawn(accept_loop(socket, service, life.clone()));
        }
        Ok(Proxy {
            listeners,
            upstreams,
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
        self.upstreams.get(group)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.life.connections.len()
    }

    /// Stops accepting, waits up to `grace` for open connections to finish, then closes the
    /// rest (with FIN unless a listener asks for RST) and stops health checks.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        self.life.stop_accepting.cancel();
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
            // Closing takes at most the close linger per connection; bound it anyway.
            let _ = tokio::time::timeout(CLOSE_LINGER * 2, self.life.connections.wait()).await;
        }
        self.health_stop.cancel();
        self.health_tasks.close();
        self.health_tasks.wait().await;
        ShutdownReport { forced }
    }
}
