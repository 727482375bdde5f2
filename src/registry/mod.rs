//! The Redis service registry: its public key schema, instance records, the reads and writes
//! against Redis, the watcher that feeds balancers, and the `portico register` agent.

pub mod agent;
pub mod keys;
pub mod record;
pub mod status;
pub mod store;
pub mod watcher;

pub use keys::Keys;
pub use status::RegistryStatus;
