//! A minimal HTTP/1.1 client that keeps its connection: requests one after another, responses
//! read by `Content-Length` (what Portico and the echo upstream send), `Connection` honoured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// One client connection.
pub struct Connection {
    reader: BufReader<TcpStream>,
}

/// One response read off a kept connection.
#[derive(Debug)]
pub struct KeptResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl KeptResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server will keep the connection open after this response.
    pub fn keeps_alive(&self) -> bool {
        !self
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

impl Connection {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Sends raw request bytes.
    pub fn send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(raw)
    }

    /// Reads one response; `None` when the connection ended before a complete one.
    pub fn read_response(&mut self) -> Option<KeptResponse> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if self.reader.read_line(&mut h).ok()? == 0 {
                return None;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).ok()?;
        Some(KeptResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// `GET path`; the status and whether the connection stays open.
    pub fn get(&mut self, path: &str) -> Option<(u16, bool)> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes())
            .ok()?;
        self.read_response().map(|r| (r.status, r.keeps_alive()))
    }
}
