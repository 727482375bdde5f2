//! The access log: one JSON line per request, on its own sink (standard output or a file),
//! separate from the operational log on standard error. Each line is encoded straight into a
//! shared batch buffer (no allocation or channel message per line: those cost ~1k instructions
//! per request); a writer thread takes the whole batch every period and writes it. When the
//! batch is at its bound (the writer has fallen behind) the line is dropped and counted, so a
//! slow disk never slows requests.

use super::json_line::{json_key, JsonLine};
use super::metrics::family;
use prometheus::{register_int_counter, IntCounter};
use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

family!(ACCESS_LOG_DROPPED: IntCounter = register_int_counter!(
    "portico_access_log_dropped_total",
    "Access-log lines dropped because the writer fell behind."
));

/// Bytes waiting for the writer: 16 MiB covers one flush period at over 400k requests/s of
/// ~400-byte lines.
const BATCH_BOUND: usize = 16 * 1024 * 1024;
/// Room for a usual line in each thread's encoding buffer.
const LINE_START: usize = 1024;

thread_local! {
    static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(LINE_START));
}

/// What a fresh batch buffer starts with (it grows to the traffic's size and stays there).
const BATCH_START: usize = 64 * 1024;
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
    /// Appends the JSON line, newline included, to `buf`; absent optional fields are left out.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let mut line = JsonLine::append_to(buf);
        line.time(json_key!("ts"), self.time);
        line.str(json_key!("request_id"), self.request_id);
        if let Some(id) = &self.trace_id {
            line.hex(json_key!("trace_id"), id);
        }
        if let Some((id, sampled)) = &self.span {
            line.hex8(json_key!("span_id"), id);
            line.bool(json_key!("sampled"), *sampled);
        }
        line.str(json_key!("route"), self.route);
        if let Some(host) = self.host {
            line.str(json_key!("host"), host);
        }
        line.str(json_key!("method"), self.method);
        line.str(json_key!("path"), self.path);
        if let Some(query) = &self.query {
            line.str(json_key!("query"), query);
        }
        line.str(json_key!("protocol"), self.protocol);
        if let Some(ua) = self.user_agent {
            line.str(json_key!("user_agent"), ua);
        }
        line.uint(json_key!("status"), self.status.into());
        line.str(json_key!("source"), self.source);
        if let Some(reason) = self.reason {
            line.str(json_key!("reason"), reason);
        }
        if let Some(service) = self.service {
            line.str(json_key!("service"), service);
        }
        if let Some(consumer) = self.consumer {
            line.str(json_key!("consumer"), consumer);
        }
        if let Some(instance) = self.instance {
            line.socket_addr(json_key!("instance"), instance);
        }
        line.uint(json_key!("attempts"), self.attempts.into());
        line.millis(json_key!("duration_ms"), self.duration);
        if let Some(upstream) = self.upstream {
            line.millis(json_key!("upstream_ms"), upstream);
        }
        line.uint(json_key!("bytes_in"), self.bytes_in as u64);
        line.uint(json_key!("bytes_out"), self.bytes_out as u64);
        line.ip(json_key!("client_ip"), self.client_ip);
        line.finish();
    }
}

/// The request path's end of the access log.
pub struct AccessLog {
    batch: Arc<Mutex<Vec<u8>>>,
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
        let batch = Arc::new(Mutex::new(Vec::with_capacity(BATCH_START)));
        let shared = batch.clone();
        std::thread::Builder::new()
            .name("access log".into())
            .spawn(move || write_batches(&shared, out))?;
        Ok(Self { batch })
    }

    /// Adds one line to the batch (or drops it, counted, when the batch is full). The line is
    /// encoded into this thread's buffer first, so the lock (which the other workers and the
    /// writer's swap share) is held for a copy of a few hundred bytes, not for the encoding.
    pub fn log(&self, entry: &Entry<'_>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            entry.encode_into(line);
            let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
            if batch.len() >= BATCH_BOUND {
                drop(batch);
                ACCESS_LOG_DROPPED.inc();
            } else {
                batch.extend_from_slice(line);
            }
            // One huge line (a long path) does not keep a huge buffer on the thread.
            line.shrink_to(LINE_START);
        });
    }
}

fn write_batches(batch: &Arc<Mutex<Vec<u8>>>, mut out: Box<dyn Write + Send>) {
    let mut spare = Vec::with_capacity(BATCH_START);
    loop {
        // Wake up on a timer, not per line: a wake-up per request would cost a context switch
        // on the serving core. Lines wait at most one period.
        std::thread::sleep(FLUSH_EVERY);
        // The last handle gone (the gateway state dropped): one final batch, then stop.
        let last = Arc::strong_count(batch) == 1;
        {
            let mut full = batch.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *full, &mut spare);
        }
        let used = spare.len();
        if used > 0 {
            let _ = out.write_all(&spare);
            let _ = out.flush();
            spare.clear();
        }
        // A burst grew the buffer far beyond what traffic needs now: give that memory back
        // (not for ordinary ups and downs, or the request path would regrow it every period).
        if spare.capacity() > BATCH_START.max(used * 4) {
            spare.shrink_to(BATCH_START.max(used * 2));
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            time: SystemTime::now(),
            request_id: "id",
            trace_id: None,
            span: None,
            route: "r",
            host: None,
            method: "GET",
            path,
            query: None,
            protocol: "HTTP/1.1",
            user_agent: None,
            status: 200,
            source: "upstream",
            reason: None,
            service: None,
            consumer: None,
            instance: None,
            attempts: 1,
            duration: Duration::from_micros(5),
            upstream: None,
            bytes_in: 0,
            bytes_out: 0,
            client_ip: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_the_last_batch_is_written_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = Arc::new(AccessLog::open(path.to_str().unwrap()).unwrap());
        let long = "/x".repeat(3000); // longer than a thread's usual line buffer
        std::thread::scope(|s| {
            for t in 0..4 {
                let (log, long) = (&log, &long);
                s.spawn(move || {
                    for i in 0..500 {
                        let p = if i == 7 {
                            long.clone()
                        } else {
                            format!("/{t}/{i}")
                        };
                        log.log(&entry(&p));
                    }
                });
            }
        });
        drop(log);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2000 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut paths: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].to_string())
            .collect();
        assert_eq!(paths.len(), 2000);
        paths.sort();
        paths.dedup();
        assert_eq!(
            paths.len(),
            4 * 499 + 1,
            "every line once, the long ones equal"
        );
    }
}
