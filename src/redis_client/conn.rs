//! One connection type for every caller, whatever the topology: a multiplexed connection to one
//! node (a single server or a sentinel's primary) or a self-healing cluster connection. Both
//! are cheap to clone and safe to share; callers only need `redis::aio::ConnectionLike`. And
//! how a connection to one node is opened.

use super::driven::{self, Driver};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// A connection to wherever the topology's commands go.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A new connection and the address it reached (for logs; never with credentials).
pub struct Opened {
    pub conn: Conn,
    pub at: String,
    /// The connection's I/O, when its callers drive it ([`Driver`]).
    pub driver: Option<Driver>,
}

/// One node's connection through `client`: driven by its callers when asked and the crate
/// lets Portico dial it (plain TCP), otherwise with the crate's own task.
pub async fn open_node(
    client: Client,
    config: AsyncConnectionConfig,
    driven: bool,
    connect: Duration,
) -> RedisResult<Opened> {
    let info = client.get_connection_info();
    let at = info.addr().to_string();
    if driven {
        if let Some((conn, driver)) = driven::dial(info, config.clone(), connect).await? {
            return Ok(Opened {
                conn: Conn::Single(conn),
                at,
                driver: Some(driver),
            });
        }
    }
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok(Opened {
        conn: Conn::Single(conn),
        at,
        driver: None,
    })
}
