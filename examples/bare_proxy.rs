//! The baseline of the load benchmark: a Pingora 0.9.1 reverse proxy with one static peer and no
//! filters, built from this project's dependency set so the comparison is like for like.
//!
//! `cargo run --release --example bare_proxy -- LISTEN UPSTREAM [THREADS]`

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:6188".into());
    let upstream = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .expect("usage: bare_proxy LISTEN UPSTREAM [THREADS] [nosteal]");
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1);
    // `nosteal`: Pingora's no-steal runtime (Portico's default), for comparisons at 2+ threads.
    let work_stealing = args.get(4).map(String::as_str) != Some("nosteal");
    let conf = ServerConf {
        threads,
        work_stealing,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
