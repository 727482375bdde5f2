//! Client-facing listeners. Pingora binds its listeners inside the service's own thread and
//! panics there when a bind fails, which leaves a process that is alive, answers its admin
//! probes and serves nothing. [`Bound`] binds every address first, in the service's start, and
//! ends the process (exit code 2, one error line naming the listener) when one cannot be bound;
//! it hands the sockets to Pingora through the same descriptor table a binary upgrade uses, so
//! Pingora's accept loops, TLS and upgrade path stay as they are. Readiness
//! ([`ListenerState::is_ready`]) turns true only once every proxy listener is bound.
//!
//! Each accepted connection then goes through [`frontend::Frontend`] (limits, request-head
//! deadline, pipelining, drain at shutdown, idle connections without request state, and idle
//! cleartext ones without a task: [`dormant`]).

mod between;
pub mod buffers;
pub mod connections;
pub mod dormant;
pub mod drain;
pub mod frontend;
pub mod head_deadline;
pub mod idle;
pub mod socket;

#[cfg(test)]
mod test_pair;

use async_trait::async_trait;
use connections::Connections;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit code when a listener cannot be bound (a configuration error exits with 1).
pub const EXIT_LISTENER_FAILED: i32 = 2;

/// What the rest of the gateway may know about the proxy listeners.
#[derive(Default)]
pub struct ListenerState {
    ready: AtomicBool,
    /// Open client connections and their limits.
    pub connections: Arc<Connections>,
}

impl ListenerState {
    /// Whether every proxy listener is bound.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// A Pingora service whose listen addresses are bound before it starts.
pub struct Bound<S> {
    inner: S,
    addresses: Vec<String>,
    /// Set ready once bound; `None` for listeners that do not decide readiness (admin).
    state: Option<Arc<ListenerState>>,
}

impl<S: Service> Bound<S> {
    /// Wraps `inner`, which listens on `addresses` (as given to its `add_tcp`/`add_tls`).
    pub fn new(inner: S, addresses: Vec<String>, state: Option<Arc<ListenerState>>) -> Self {
        Self {
            inner,
            addresses,
            state,
        }
    }
}

/// Binds `address` unless the descriptor table already holds it (taken over from the old
/// process in a binary upgrade).
fn bind_into(fds: &ListenFds, address: &str) -> std::io::Result<()> {
    if fds.lock().get(address).is_some() {
        return Ok(());
    }
    // std sets SO_REUSEADDR, as Pingora does; Pingora raises the backlog when it adopts the fd.
    let listener = std::net::TcpListener::bind(address)?;
    // Pingora adopts the descriptor as it is; its accept loop needs it non-blocking.
    listener.set_nonblocking(true)?;
    fds.lock().add(address.to_string(), listener.into_raw_fd());
    Ok(())
}

#[async_trait]
impl<S: Service + Send + Sync> Service for Bound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        if let Some(fds) = &fds {
            for address in &self.addresses {
                if let Err(e) = bind_into(fds, address) {
                    log::error!(
                        "{}: cannot listen on {address}: {e}; exiting",
                        self.inner.name()
                    );
                    std::process::exit(EXIT_LISTENER_FAILED);
                }
            }
        }
        log::info!("{} listening on {:?}", self.inner.name(), self.addresses);
        if let Some(state) = &self.state {
            state.ready.store(true, Ordering::Release);
        }
        self.inner
            .start_service(fds, shutdown, listeners_per_fd)
            .await;
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.addresses.clone())
    }
}
