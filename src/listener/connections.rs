//! Admission of client connections: one count per process and, when configured, one per client
//! address. A connection is admitted with a [`ConnectionGuard`] that gives its place back when
//! dropped, however the connection ends; shutdown waits on [`Connections::wait_idle`].

use prometheus::IntGauge;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
}

impl Refusal {
    /// Its place in `telemetry::connections::REFUSAL_REASONS`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

/// The limits in force for one admission (read from the current snapshot, so they reload).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// 0 = no limit.
    pub max: usize,
    /// 0 = no limit.
    pub per_ip: usize,
}

/// Open client connections of this process.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    /// Open connections per client address; only kept while a per-address limit is set.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    idle: Notify,
}

impl Connections {
    /// Admits a connection from `peer` or says which limit it hits.
    pub fn admit(
        self: &Arc<Self>,
        peer: Option<IpAddr>,
        limits: Limits,
    ) -> Result<ConnectionGuard, Refusal> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        if limits.max > 0 && open > limits.max {
            self.release();
            return Err(Refusal::MaxConnections);
        }
        let tracked_ip = match peer.filter(|_| limits.per_ip > 0) {
            Some(ip) => {
                let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
                let count = map.entry(ip).or_insert(0);
                if *count >= limits.per_ip {
                    drop(map);
                    self.release();
                    return Err(Refusal::MaxConnectionsPerIp);
                }
                *count += 1;
                Some(ip)
            }
            None => None,
        };
        Ok(ConnectionGuard {
            connections: self.clone(),
            ip: tracked_ip,
            gauge: None,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Returns once no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn release(&self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// One admitted connection's place; given back on drop.
pub struct ConnectionGuard {
    connections: Arc<Connections>,
    ip: Option<IpAddr>,
    /// The open-connections gauge counting it, once its protocol is known.
    gauge: Option<IntGauge>,
}

impl ConnectionGuard {
    /// Makes `gauge` (already incremented) count down when the connection closes.
    pub fn counted_in(&mut self, gauge: IntGauge) {
        self.gauge = Some(gauge);
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self
                .connections
                .per_ip
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(count) = map.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&ip);
                }
            }
        }
        if let Some(gauge) = &self.gauge {
            gauge.dec();
        }
        self.connections.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn the_process_limit_refuses_the_connection_beyond_it_and_frees_on_drop() {
        let c = Arc::new(Connections::default());
        let limits = Limits { max: 2, per_ip: 0 };
        let one = c.admit(Some(A), limits).unwrap();
        let _two = c.admit(Some(B), limits).unwrap();
        assert_eq!(
            c.admit(Some(A), limits).err(),
            Some(Refusal::MaxConnections)
        );
        assert_eq!(c.open(), 2, "a refused connection holds no place");
        drop(one);
        assert!(c.admit(Some(A), limits).is_ok());
    }

    #[test]
    fn the_per_address_limit_counts_each_address_apart() {
        let c = Arc::new(Connections::default());
        let limits = Limits { max: 0, per_ip: 1 };
        let a = c.admit(Some(A), limits).unwrap();
        assert_eq!(
            c.admit(Some(A), limits).err(),
            Some(Refusal::MaxConnectionsPerIp)
        );
        let _b = c.admit(Some(B), limits).unwrap();
        drop(a);
        let _again = c.admit(Some(A), limits).unwrap();
        assert_eq!(c.per_ip.lock().unwrap().get(&A), Some(&1));
        drop(_b);
        assert_eq!(
            c.per_ip.lock().unwrap().get(&B),
            None,
            "no entry left behind"
        );
    }

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_connection_closes() {
        let c = Arc::new(Connections::default());
        let guard = c.admit(None, Limits { max: 0, per_ip: 0 }).unwrap();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait_idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("idle after the last close")
            .unwrap();
    }
}
