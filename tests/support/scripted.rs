//! A one-request-per-connection HTTP/1.1 server whose answers the test writes: a JWKS
//! endpoint, a forward-auth service, a mirror. It counts the requests it saw, keeps their heads, and
//! can be stopped (its port then refuses connections) and started again on the same port.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A request as the server saw it (header names lower-cased).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: BTreeMap<String, String>,
    /// The body, when the request declared a `Content-Length`.
    pub body: String,
}

/// What the server answers: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

pub struct Scripted {
    pub addr: SocketAddr,
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    /// Serves `handler`'s answers on a free loopback port.
    pub fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        Self::serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(handler),
            Arc::default(),
        )
    }

    fn serve(addr: SocketAddr, handler: Handler, seen: Arc<Mutex<Vec<Seen>>>) -> Self {
        let listener = TcpListener::bind(addr).expect("bind scripted server");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (handler, seen, stop) = (handler.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (handler, seen) = (handler.clone(), seen.clone());
                    std::thread::spawn(move || answer(stream, &*handler, &seen));
                }
            })
        };
        Self {
            addr,
            handler,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests were seen.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Stops accepting: the port refuses connections afterwards.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Serves again on the same port with `handler`.
    pub fn restart(&mut self, handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) {
        self.stop();
        *self = Self::serve(self.addr, Arc::new(handler), self.seen.clone());
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(
    stream: TcpStream,
    handler: &(dyn Fn(&Seen) -> Answer + Send + Sync),
    seen: &Mutex<Vec<Seen>>,
) {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        body.clear();
    }
    let request = Seen {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    seen.lock().unwrap().push(request.clone());
    let (status, extra, body) = handler(&request);
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
}
