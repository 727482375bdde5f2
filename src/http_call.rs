//! Outbound HTTP calls the gateway makes for itself (a JWKS document, a forward-auth check, a
//! mirrored request),
//! through Pingora's own connector: pooled keep-alive connections, TLS with the same stack
//! as upstreams, no second HTTP client in the binary.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

/// Idle time a pooled connection to an auth service or key endpoint is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Where a call goes: `http://` or `https://` host, port and path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    path_and_query: String,
}

impl Endpoint {
    /// Parses an absolute `http` or `https` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("must start with http:// or https://".into()),
        };
        let authority = uri.authority().ok_or("the URL has no host")?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        Ok(Self {
            tls,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            host: host.to_string(),
            authority: authority.as_str().to_string(),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }

    /// The path (and query) the call asks for.
    pub fn path(&self) -> &str {
        &self.path_and_query
    }
}

/// A finished call's answer.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a call has no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("timed out")]
    Timeout,
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{0}")]
    Http(String),
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
}

impl CallError {
    fn http(e: impl std::fmt::Display) -> Self {
        CallError::Http(e.to_string())
    }
}

/// Makes calls; one per gateway, shared by everything that calls out.
pub struct Caller {
    connector: Connector,
}

impl Default for Caller {
    fn default() -> Self {
        Self {
            connector: Connector::new(None),
        }
    }
}

impl Caller {
    /// Sends `method` to `endpoint` with `headers` and no body; the whole call, name
    /// resolution included, is bounded by `timeout`, and a body over `max_body` is an error.
    pub async fn call(
        &self,
        endpoint: &Endpoint,
        method: Method,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Duration,
        max_body: usize,
    ) -> Result<Reply, CallError> {
        let exchange = async {
            let addr = resolve(&endpoint.host, endpoint.port).await?;
            let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
            peer.options.connection_timeout = Some(timeout);
            peer.options.total_connection_timeout = Some(timeout);
            let mut req = RequestHeader::build(method, endpoint.path_and_query.as_bytes(), None)
                .map_err(CallError::http)?;
            req.insert_header(http::header::HOST, &endpoint.authority)
                .map_err(CallError::http)?;
            for (name, value) in headers {
                req.append_header(name.clone(), value.clone())
                    .map_err(CallError::http)?;
            }
            let mut body = BytesMut::new();
            let (status, headers) = self
                .send(&peer, Box::new(req), Bytes::new(), |chunk| {
                    if body.len() + chunk.len() > max_body {
                        return Err(CallError::TooLarge(max_body));
                    }
                    body.extend_from_slice(chunk);
                    Ok(())
                })
                .await?;
            Ok(Reply {
                status,
                headers,
                body: body.freeze(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    /// Sends `req` with `body` (none when empty) to `peer` and hands each chunk of the
    /// response body to `on_chunk`, which may stop the exchange with an error; returns the
    /// response status and headers. The connection goes back to the pool only when the
    /// response was read to its end. Unbounded in time: callers wrap it in their timeout.
    pub async fn send(
        &self,
        peer: &HttpPeer,
        req: Box<RequestHeader>,
        body: Bytes,
        mut on_chunk: impl FnMut(&[u8]) -> Result<(), CallError>,
    ) -> Result<(u16, HeaderMap), CallError> {
        let (mut session, _reused) = self
            .connector
            .get_http_session(peer)
            .await
            .map_err(CallError::http)?;
        session
            .write_request_header(req)
            .await
            .map_err(CallError::http)?;
        if !body.is_empty() {
            session
                .write_request_body(body, true)
                .await
                .map_err(CallError::http)?;
        }
        session
            .finish_request_body()
            .await
            .map_err(CallError::http)?;
        // Interim answers (`100 Continue`, `103 Early Hints`) come before the real one.
        let head = loop {
            session
                .read_response_header()
                .await
                .map_err(CallError::http)?;
            let head = session
                .response_header()
                .ok_or_else(|| CallError::Http("no response header".into()))?;
            if !head.status.is_informational() {
                break head;
            }
        };
        let (status, headers) = (head.status.as_u16(), head.headers.clone());
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(CallError::http)?
        {
            on_chunk(&chunk)?;
        }
        self.connector
            .release_http_session(session, peer, Some(POOL_IDLE))
            .await;
        Ok((status, headers))
    }
}

/// The first address of `host` (an IP literal costs nothing; a name goes to the resolver).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, CallError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| CallError::Resolve(host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn urls_become_endpoints() {
        let e = Endpoint::parse("https://idp.example.com/.well-known/jwks.json").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("idp.example.com", 443));
        assert_eq!(e.path(), "/.well-known/jwks.json");
        let e = Endpoint::parse("http://127.0.0.1:9000/check?x=1").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("127.0.0.1", 9000, false));
        assert_eq!(e.authority, "127.0.0.1:9000");
        assert_eq!(e.path(), "/check?x=1");
        let e = Endpoint::parse("http://[::1]:81").unwrap();
        assert_eq!((e.host.as_str(), e.path()), ("::1", "/"));
        assert!(Endpoint::parse("ftp://x/").is_err());
        assert!(Endpoint::parse("/relative").is_err());
    }
}
