//! The access log: one JSON line per request, on its own sink (standard output or a file),
//! separate from the operational log on standard error. Lines are handed to a writer thread
//! through a bounded queue and written in buffered batches; when the queue is full the line is
//! dropped and counted, so a slow disk never slows requests.

use super::metrics::family;
use prometheus::{register_int_counter, IntCounter};
use serde::Serialize;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::LazyLock;

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

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub ts: String,
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub attempts: u32,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub client_ip: String,
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
        let mut line = Vec::with_capacity(384);
        if serde_json::to_writer(&mut line, entry).is_err() {
            return;
        }
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
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

/// RFC 3339 UTC time with milliseconds.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
