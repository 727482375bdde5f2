//! A small HTTP/1.1 echo server: the demo's upstreams and the integration tests' origins. It
//! answers with JSON describing the request it saw (instance name, method, path, headers), and
//! has a few test knobs: `/health` (503 when marked unhealthy), `/status/NNN`, `/delay/MS`,
//! and `/echo/stats` (connections accepted and requests answered, for load tools).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Limit on one request head; larger heads get the connection closed.
const MAX_HEAD: usize = 64 * 1024;

/// Shared state of one echo instance.
#[derive(Debug)]
pub struct EchoState {
    pub name: String,
    /// `/health` answers 200 while true, 503 otherwise.
    pub healthy: AtomicBool,
    /// Requests answered, `/health` excluded.
    pub requests: AtomicU64,
    /// `/delay/MS` requests waiting out their delay now.
    pub delayed: AtomicU64,
    /// When non-zero, every request except `/health` is answered with this status.
    pub fail_with: AtomicU16,
    /// Connections accepted (what a proxy in front opened).
    pub connections: AtomicU64,
}

impl EchoState {
    /// A healthy instance called `name`.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            fail_with: AtomicU16::new(0),
            connections: AtomicU64::new(0),
        })
    }
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<EchoState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        state.connections.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        tokio::spawn(async move {
            let _ = connection(stream, state).await;
        });
    }
}

struct Head {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
}

async fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Head>> {
    let mut line = String::new();
    let mut total = 0;
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        let n = reader.read_line(&mut h).await?;
        total += n;
        if n == 0 || total > MAX_HEAD {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            headers
                .entry(k)
                .and_modify(|old: &mut String| {
                    old.push_str(", ");
                    old.push_str(v);
                })
                .or_insert_with(|| v.to_string());
        }
    }
    Ok(Some(Head {
        method,
        target,
        headers,
    }))
}

async fn read_body(reader: &mut BufReader<TcpStream>, head: &Head) -> std::io::Result<usize> {
    if head
        .headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        let mut total = 0;
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).await?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).await?;
            total += size;
            if size == 0 {
                return Ok(total);
            }
        }
    }
    let len: usize = head
        .headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut remaining = len;
    let mut buf = [0u8; 8192];
    while remaining > 0 {
        let n = reader.read(&mut buf[..remaining.min(8192)]).await?;
        if n == 0 {
            break;
        }
        remaining -= n;
    }
    Ok(len)
}

async fn connection(stream: TcpStream, state: Arc<EchoState>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    while let Some(head) = read_head(&mut reader).await? {
        let body_bytes = read_body(&mut reader, &head).await?;
        let path = head.target.split('?').next().unwrap_or("/");
        let (status, body) = if path == "/echo/stats" {
            // For load tools: what a proxy in front opened and sent, read on the origin.
            let stats = serde_json::json!({
                "connections": state.connections.load(Ordering::Relaxed),
                "requests": state.requests.load(Ordering::Relaxed),
            });
            (200, serde_json::to_vec(&stats).unwrap_or_default())
        } else if path == "/health" {
            if state.healthy.load(Ordering::Relaxed) {
                (200, b"{\"status\":\"ok\"}".to_vec())
            } else {
                (503, b"{\"status\":\"unhealthy\"}".to_vec())
            }
        } else {
            state.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(ms) = path
                .strip_prefix("/delay/")
                .and_then(|m| m.parse::<u64>().ok())
            {
                state.delayed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
                state.delayed.fetch_sub(1, Ordering::Relaxed);
            }
            let status = path
                .strip_prefix("/status/")
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|s| (200..=599).contains(s))
                .unwrap_or(200);
            let status = match state.fail_with.load(Ordering::Relaxed) {
                0 => status,
                forced => forced,
            };
            let echo = serde_json::json!({
                "instance": state.name,
                "method": head.method,
                "path": head.target,
                "headers": head.headers,
                "body_bytes": body_bytes,
            });
            (status, serde_json::to_vec(&echo).unwrap_or_default())
        };
        let close = head
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Echo-Instance: {}\r\n{}\r\n",
            reason(status),
            body.len(),
            state.name,
            if close { "Connection: close\r\n" } else { "" }
        );
        // One write per response: a separate body write would meet Nagle and delayed ACKs.
        let mut out = response.into_bytes();
        out.extend_from_slice(&body);
        reader.get_mut().write_all(&out).await?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

/// An echo instance on its own thread and runtime, for tests and tools; dropping it (or
/// calling [`EchoServer::stop`]) closes the listener and every connection.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub state: Arc<EchoState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl EchoServer {
    /// Starts an instance called `name` on a free loopback port.
    pub fn start(name: &str) -> std::io::Result<Self> {
        Self::start_on(name, "127.0.0.1:0".parse().expect("literal address"))
    }

    /// Starts an instance on `addr` (e.g. to bring a stopped instance back on its old port).
    pub fn start_on(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let state = EchoState::new(name);
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        runtime.spawn(serve(listener, state.clone()));
        Ok(Self {
            addr,
            state,
            runtime: Some(runtime),
        })
    }

    /// Requests answered so far (health probes excluded).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// `/delay/MS` requests being delayed right now.
    pub fn requests_in_flight(&self) -> u64 {
        self.state.delayed.load(Ordering::Relaxed)
    }

    /// Stops serving: the port refuses connections afterwards.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
