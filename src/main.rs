//! Command line: parse arguments, load configuration, build the server, run.

use anyhow::Context;
use clap::{Parser, Subcommand};
use portico::gateway::{ConfigSource, Gateway};
use portico::server::{self, ProcessOptions};
use std::path::PathBuf;

/// mimalloc instead of glibc malloc: fewer instructions per request on the proxy path and no
/// glibc arena fragmentation under load (see BENCHMARKS.md for the measurement).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portico",
    about = "API gateway and edge reverse proxy on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic (the default command).
    Run(RunArgs),
    /// Check a configuration file and print every error.
    Validate {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Register an instance in the Redis service registry, heartbeat until SIGTERM/SIGINT,
    /// then deregister.
    Register(RegisterArgs),
    /// Serve the built-in echo upstream (JSON echo of each request; /status/N, /delay/MS,
    /// /health, /echo/stats) — for demos, load tests and smoke tests.
    Echo {
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: std::net::SocketAddr,
        /// Reported in the X-Echo-Instance header.
        #[arg(long, default_value = "echo")]
        name: String,
    },
    /// Manage consumers kept in Redis (every gateway sharing it picks them up).
    Consumer(ConsumerArgs),
    /// Print the version.
    Version,
}

/// Where Redis is, for the commands that write to it.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["redis", "config"])))]
struct RedisArgs {
    /// One Redis node: redis://[user:pass@]host:port/db, or rediss:// for TLS.
    #[arg(long)]
    redis: Option<String>,
    /// The gateway's configuration file: its `redis` section says where Redis is.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Key prefix (the gateway's redis.prefix); overrides the configuration's.
    #[arg(long)]
    prefix: Option<String>,
}

#[derive(clap::Args)]
struct ConsumerArgs {
    #[command(flatten)]
    at: RedisArgs,
    #[command(subcommand)]
    action: ConsumerAction,
}

#[derive(Subcommand)]
enum ConsumerAction {
    /// Add or replace a consumer.
    Add {
        name: String,
        /// A group, repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// An API key (plain, stored as its digest) or sha256:HEX, repeatable.
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Basic-auth user (with --password-hash).
        #[arg(long, requires = "password_hash")]
        basic_user: Option<String>,
        /// An Argon2id or bcrypt hash.
        #[arg(long, requires = "basic_user")]
        password_hash: Option<String>,
    },
    /// Remove a consumer.
    Remove { name: String },
    /// Generate a new API key for a consumer, store its digest and print it (once).
    Key { name: String },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["redis", "config"])))]
struct RegisterArgs {
    /// One Redis node: redis://[user:pass@]host:port/db, or rediss:// for TLS.
    #[arg(long)]
    redis: Option<String>,
    /// The gateway's configuration file: its `redis` section (one node, cluster or sentinel;
    /// TLS, password and prefix) says where Redis is.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Service name (as in the gateway's `services` section).
    #[arg(long)]
    service: String,
    /// HOST:PORT the gateway should send traffic to (host names are resolved once).
    #[arg(long)]
    addr: String,
    /// Instance id; defaults to the resolved address.
    #[arg(long)]
    id: Option<String>,
    #[arg(long, default_value_t = 1)]
    weight: usize,
    /// Heartbeat TTL; heartbeats are sent every ttl/3. Match the service's heartbeat_ttl.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
    #[arg(long)]
    zone: Option<String>,
    #[arg(long)]
    version: Option<String>,
    /// Metadata as key=value, repeatable (stored as meta.KEY).
    #[arg(long, value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// Key prefix (the gateway's redis.prefix); overrides the configuration's.
    #[arg(long)]
    prefix: Option<String>,
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "conf/portico.yaml")]
    config: PathBuf,
    /// Run the built-in demo: echo upstreams and an embedded config, no files needed.
    #[arg(long)]
    demo: bool,
    /// Take over the listeners of a running Portico (graceful binary upgrade).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("portico {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(Command::Validate { config }) => validate(&config),
        Some(Command::Run(args)) => run(args),
        Some(Command::Register(args)) => register(args),
        Some(Command::Consumer(args)) => consumer(args),
        Some(Command::Echo { listen, name }) => echo(listen, &name),
        None => run(RunArgs {
            config: PathBuf::from("conf/portico.yaml"),
            ..RunArgs::default()
        }),
    }
}

fn validate(path: &std::path::Path) -> anyhow::Result<()> {
    match portico::snapshot::compile_file(path) {
        Ok(plan) => {
            println!(
                "{}: ok ({} routes, {} services)",
                path.display(),
                plan.config.routes.len(),
                plan.config.services.len()
            );
            Ok(())
        }
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(1);
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    // SIGHUP's default action ends the process, and the reloader installs its handler only
    // once its background service runs — after the configuration is compiled and the
    // listeners report ready. A reload signal sent in that window (an orchestrator reloading
    // right after a start) killed the gateway. Ignored until then; the reloader's handler
    // replaces this.
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    init_logging();
    let options = ProcessOptions {
        upgrade: args.upgrade,
        daemon: args.daemon,
    };
    let (gateway, extra) = if args.demo {
        let (plan, upstreams) = portico::demo::prepare().map_err(|e| anyhow::anyhow!("{e}"))?;
        let gateway = Gateway::new(plan, ConfigSource::Embedded)?;
        let extra: Vec<Box<dyn pingora::services::ServiceWithDependents>> = vec![Box::new(
            pingora::services::background::background_service("demo upstreams", upstreams),
        )];
        (gateway, extra)
    } else {
        let plan = portico::snapshot::compile_file(&args.config)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("invalid configuration {}", args.config.display()))?;
        (
            Gateway::new(plan, ConfigSource::File(args.config.clone()))?,
            Vec::new(),
        )
    };
    // "listening on" is logged by each listener once it is bound.
    server::build(gateway, options, extra)
        .map_err(|e| anyhow::anyhow!(e))?
        .run_forever()
}

fn echo(listen: std::net::SocketAddr, name: &str) -> anyhow::Result<()> {
    init_logging();
    let server = portico::echo::EchoServer::start_on(name, listen)?;
    log::info!("echo upstream {name} listening on {}", server.addr);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok::<(), std::io::Error>(())
        })?;
    drop(server);
    Ok(())
}

/// The Redis configuration `--redis`/`--config`/`--prefix` point at.
fn redis_config(
    url: Option<&String>,
    config: Option<&PathBuf>,
    prefix: Option<String>,
) -> anyhow::Result<portico::config::RedisConfig> {
    let mut redis = match (url, config) {
        (_, Some(path)) => {
            match portico::snapshot::compile_redis_file(path).map_err(|e| anyhow::anyhow!("{e}"))? {
                Some(topology) => topology.config().clone(),
                None => anyhow::bail!("{} has no redis section", path.display()),
            }
        }
        (Some(url), None) => portico::config::RedisConfig::single(url),
        (None, None) => unreachable!("clap requires --redis or --config"),
    };
    if let Some(prefix) = prefix {
        redis.prefix = prefix;
    }
    Ok(redis)
}

fn consumer(args: ConsumerArgs) -> anyhow::Result<()> {
    use portico::consumer_store::{self as store, Keys};
    init_logging();
    let at = args.at;
    let config = redis_config(at.redis.as_ref(), at.config.as_ref(), at.prefix)?;
    let keys = Keys::new(&config.prefix);
    let topology = portico::redis_client::Topology::from_config(&config)
        .map_err(|e| anyhow::anyhow!("cannot use this Redis:\n{e}"))?;
    let timeout = std::time::Duration::from_secs(5);
    let redis =
        portico::redis_client::Redis::new(store::CLIENT, std::sync::Arc::new(topology), timeout);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.action {
            ConsumerAction::Add {
                name,
                groups,
                keys: api_keys,
                basic_user,
                password_hash,
            } => {
                let basic = basic_user.zip(password_hash).map(|(user, password_hash)| {
                    portico::config::BasicCredential {
                        user,
                        password_hash,
                    }
                });
                let record = portico::config::ConsumerConfig {
                    groups,
                    api_keys,
                    basic,
                };
                let record = store::prepare(&name, record)
                    .map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
                store::put(&redis, &keys, &name, &record, timeout).await?;
                println!("stored consumer {name} ({} keys)", record.api_keys.len());
            }
            ConsumerAction::Remove { name } => {
                if !store::remove(&redis, &keys, &name, timeout).await? {
                    anyhow::bail!("no consumer {name:?} in Redis");
                }
                println!("removed consumer {name}");
            }
            ConsumerAction::Key { name } => {
                let mut record = store::get(&redis, &keys, &name, timeout)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no consumer {name:?} in Redis"))?;
                let key = portico::identity::api_key::generate();
                record.api_keys.push(key.clone());
                let record = store::prepare(&name, record)
                    .map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
                store::put(&redis, &keys, &name, &record, timeout).await?;
                println!("{key}");
            }
        }
        Ok(())
    })
}

fn register(args: RegisterArgs) -> anyhow::Result<()> {
    init_logging();
    if !(1..=portico::config::MAX_WEIGHT).contains(&args.weight) {
        anyhow::bail!("--weight must be in 1..={}", portico::config::MAX_WEIGHT);
    }
    let redis = redis_config(args.redis.as_ref(), args.config.as_ref(), args.prefix)?;
    let topology = portico::redis_client::Topology::from_config(&redis)
        .map_err(|e| anyhow::anyhow!("cannot use this Redis:\n{e}"))?;
    let opts = portico::registry::agent::AgentOptions {
        redis: std::sync::Arc::new(topology),
        service: args.service,
        addr: args.addr,
        id: args.id,
        weight: args.weight,
        ttl: args.ttl,
        zone: args.zone,
        version: args.version,
        meta: args.meta.into_iter().collect(),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(portico::registry::agent::run(opts))
}

/// Logs to stderr (`portico::log_filter`), filtered by `RUST_LOG` when it is set and valid.
fn init_logging() {
    portico::log_filter::init_from_env();
}
