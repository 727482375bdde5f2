//! Rate-limit decision cost: the in-process store (ns per decision, one key and a spread of
//! keys) and one Redis-store decision round trip against a `redis-server` this benchmark
//! starts on a free loopback port (skipped when `redis-server` is not installed).
//!
//! `cargo bench --bench ratelimit`

use criterion::{criterion_group, criterion_main, Criterion};
use portico::config::RedisConfig;
use portico::ratelimit::gcra::Gcra;
use portico::ratelimit::local::LocalStore;
use portico::ratelimit::shared::SharedStore;
use portico::redis_client::Topology;
use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn local(c: &mut Criterion) {
    let store = LocalStore::new(100_000);
    // A rule that never refuses, so every decision also writes its state.
    let gcra = Gcra::new(1_000_000_000, 1_000_000, 0);
    let mut now = 1u64 << 40;
    c.bench_function("local decision, one key", |b| {
        b.iter(|| {
            now += 1;
            let key = store.hash_key(black_box("203.0.113.7"));
            black_box(store.decide(&gcra, key, now))
        })
    });
    let mut i = 0u32;
    c.bench_function("local decision, 50k distinct keys", |b| {
        b.iter(|| {
            now += 1;
            i = (i + 1) % 50_000;
            let key = store.hash_key(black_box(i));
            black_box(store.decide(&gcra, key, now))
        })
    });
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Redis, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((Redis(child), port));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn shared(c: &mut Criterion) {
    let Some((_redis, port)) = start_redis() else {
        eprintln!("redis-server not found: skipping the Redis-store benchmark");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(async {
        let topology = Topology::from_config(&RedisConfig {
            command_timeout: Duration::from_secs(1),
            ..RedisConfig::single(&format!("redis://127.0.0.1:{port}/0"))
        })
        .expect("a valid Redis section");
        SharedStore::new(std::sync::Arc::new(topology), Default::default())
    });
    let gcra = Gcra::new(1_000_000_000, 1_000_000, 0);
    c.bench_function("redis decision round trip (loopback)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(store.decide(&gcra, "bench:rl:{rule:ip:203.0.113.7}").await)
        })
    });
}

criterion_group!(benches, local, shared);
criterion_main!(benches);
