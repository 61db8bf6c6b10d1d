//! Test harness shared by parapet's workspace-level integration tests.
//!
//! Every test gets its own PostgreSQL database (created fresh, dropped when the guard drops), so
//! tests run in parallel and twice in a row; the database, the Redis check and the OTLP receivers
//! come from parapet-testkit. When a service is missing the harness panics with a message that
//! names the service and how to start it: a test never passes without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;

use tokio_postgres::NoTls;

pub use parapet_testkit::{admin_url, connect, db_message, user_of, with_database, with_user};

/// A database of its own for one test, dropped (with its connections and roles) when this guard
/// drops: parapet-testkit's [`TestDb`](parapet_testkit::TestDb), which it derefs to, plus the
/// project's migrations and a deadpool pool.
#[derive(Debug)]
pub struct TestDb {
    db: parapet_testkit::TestDb,
}

impl Deref for TestDb {
    type Target = parapet_testkit::TestDb;

    fn deref(&self) -> &Self::Target {
        &self.db
    }
}

impl TestDb {
    /// Creates an empty database named after `label`, the process id and a counter.
    pub async fn create(label: &str) -> Self {
        Self {
            db: parapet_testkit::TestDb::create(label).await,
        }
    }

    /// Creates a database and applies the project's migrations (`migrations/`).
    pub async fn migrated(label: &str) -> Self {
        let db = Self::create(label).await;
        let client = db.client().await;
        parapet_migrate::Migrator::crm()
            .run(&client)
            .await
            .unwrap_or_else(|e| panic!("migrations failed on {}: {e}", db.name()));
        db
    }

    /// A deadpool pool on this database, with bounded waits.
    pub fn pool(&self, max_size: usize) -> deadpool_postgres::Pool {
        pool_for(self.url(), max_size)
    }
}

/// A deadpool pool on `url` whose every wait is bounded (2 s).
pub fn pool_for(url: &str, max_size: usize) -> deadpool_postgres::Pool {
    let pg: tokio_postgres::Config = url.parse().expect("valid PostgreSQL URL");
    let timeouts = deadpool_postgres::Timeouts {
        wait: Some(std::time::Duration::from_secs(2)),
        create: Some(std::time::Duration::from_secs(2)),
        recycle: Some(std::time::Duration::from_secs(2)),
    };
    let manager = deadpool_postgres::Manager::new(pg, NoTls);
    deadpool_postgres::Pool::builder(manager)
        .max_size(max_size)
        .timeouts(timeouts)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .expect("pool config is valid")
}

/// Servers the tests start themselves (they live in `parapet-testkit`, shared with the other
/// crates' tests).
pub use parapet_testkit::{certs, cluster, pgbouncer, redis_tls};

/// The README's Rust examples, run as doc-tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
