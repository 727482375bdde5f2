//! The access log: one JSON line per request, on its own sink (standard output or a file),
//! separate from the operational log on standard error. Lines are handed to a writer thread
//! through a bounded queue and written in buffered batches; when the queue is full the line is
//! dropped and counted, so a slow disk never slows requests.

use super::json_line::JsonLine;
use super::metrics::family;
use prometheus::{register_int_counter, IntCounter};
use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

family!(ACCESS_LOG_DROPPED: IntCounter = register_int_counter!(
    "portico_access_log_dropped_total",
    "Access-log lines dropped because the writer fell behind."
));

/// Lines waiting for the writer: 64k covers one flush period at over 500k requests/s.
const QUEUE: usize = 64 * 1024;
/// How often the writer drains the queue.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Registers the family.
pub fn init() {
    LazyLock::force(&ACCESS_LOG_DROPPED);
}

/// One request, as logged. Field order and names are the documented line format.
#[derive(Debug)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub request_id: &'a str,
    pub trace_id: Option<[u8; 16]>,
    /// The SERVER span's id and whether its trace is sampled.
    pub span: Option<([u8; 8], bool)>,
    pub route: &'a str,
    /// `Host` (or `:authority`) as sent.
    pub host: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    /// Logged only with `access_log.log_query`, secrets blanked.
    pub query: Option<Cow<'a, str>>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'a str,
    pub user_agent: Option<&'a str>,
    pub status: u16,
    pub source: &'a str,
    pub reason: Option<&'a str>,
    pub service: Option<&'a str>,
    /// The authenticated consumer.
    pub consumer: Option<&'a str>,
    pub instance: Option<SocketAddr>,
    pub attempts: u32,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub client_ip: IpAddr,
}

impl Entry<'_> {
    /// The JSON line, newline included; absent optional fields are left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = JsonLine::with_capacity(384);
        line.time("ts", self.time);
        line.str("request_id", self.request_id);
        if let Some(id) = &self.trace_id {
            line.hex("trace_id", id);
        }
        if let Some((id, sampled)) = &self.span {
            line.hex8("span_id", id);
            line.bool("sampled", *sampled);
        }
        line.str("route", self.route);
        if let Some(host) = self.host {
            line.str("host", host);
        }
        line.str("method", self.method);
        line.str("path", self.path);
        if let Some(query) = &self.query {
            line.str("query", query);
        }
        line.str("protocol", self.protocol);
        if let Some(ua) = self.user_agent {
            line.str("user_agent", ua);
        }
        line.uint("status", self.status.into());
        line.str("source", self.source);
        if let Some(reason) = self.reason {
            line.str("reason", reason);
        }
        if let Some(service) = self.service {
            line.str("service", service);
        }
        if let Some(consumer) = self.consumer {
            line.str("consumer", consumer);
        }
        if let Some(instance) = self.instance {
            line.socket_addr("instance", instance);
        }
        line.uint("attempts", self.attempts.into());
        line.millis("duration_ms", self.duration);
        if let Some(upstream) = self.upstream {
            line.millis("upstream_ms", upstream);
        }
        line.uint("bytes_in", self.bytes_in as u64);
        line.uint("bytes_out", self.bytes_out as u64);
        line.ip("client_ip", self.client_ip);
        line.finish()
    }
}

/// The request path's end of the access log.
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
}

impl AccessLog {
    /// Starts the writer thread for `path` (`-` = standard output).
    pub fn open(path: &str) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(Self { tx })
    }

    /// Queues one entry.
    pub fn log(&self, entry: &Entry<'_>) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(entry.encode()) {
            ACCESS_LOG_DROPPED.inc();
        }
    }
}

fn write_lines(rx: Receiver<Vec<u8>>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        // Wake up on a timer, not per line: a wake-up per request would cost a context switch
        // on the serving core. Lines wait at most one period.
        std::thread::sleep(FLUSH_EVERY);
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    let _ = out.write_all(&line);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let _ = out.flush();
    }
}
