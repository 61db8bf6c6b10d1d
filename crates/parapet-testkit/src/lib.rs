//! Test support for parapet's integration tests, shared by every crate's `tests/` (a
//! dev-dependency only, never published).
//!
//! - [`TestDb`]: a PostgreSQL database of its own for each test, created fresh and dropped (with
//!   the roles it made) when the guard drops, so tests run in parallel and twice in a row.
//! - [`require_redis`], [`redis_url`], [`unique_prefix`]: the real Redis and a key prefix no
//!   other test uses.
//! - [`cluster::TempCluster`] (a PostgreSQL cluster of the test's own, plain or TLS-only),
//!   [`certs::TestCa`] (a CA and server certificates made with `openssl`),
//!   [`pgbouncer::PgBouncer`] (a PgBouncer in front of a server), [`redis_tls::TlsRedis`] (a
//!   TLS-only Redis): started by the test, stopped on drop.
//! - [`RedisServer`], [`RedisCluster`]: `redis-server` processes of the test's own (one server, or
//!   a Cluster of three masters) on free ports, killed on drop.
//! - [`otlp`]: fake OTLP receivers, over HTTP and over gRPC, that keep what they are sent, and
//!   helpers to read the decoded spans and metrics.
//!
//! A service that is missing is a failure, never a skip: the helpers panic with a message that
//! names the service, where its address came from and how to start it.
//!
//! ```no_run
//! # async fn example() {
//! let db = parapet_testkit::TestDb::create("leads").await;
//! let client = db.client().await;
//! client.batch_execute("CREATE TABLE leads (id int)").await.unwrap();
//! # }
//! ```
// Failing loudly is what test support is for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod certs;
pub mod cluster;
pub mod otlp;
pub mod pgbouncer;
mod ports;
mod postgres;
mod redis;
mod redis_server;
pub mod redis_tls;

pub use ports::{free_port, free_ports};
pub use postgres::{
    TestDb, admin_url, connect, db_message, require_postgres, user_of, with_database, with_user,
};
pub use redis::{redis_url, require_redis, unique_prefix};
pub use redis_server::{RedisCluster, RedisServer};
