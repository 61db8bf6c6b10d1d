//! Test helpers: a fresh PostgreSQL database per test (parapet-testkit's `TestDb`), a temporary
//! migration directory, and queries on the runner's results.

#![allow(dead_code, unused_imports, unreachable_pub)] // Each test binary uses a part of this.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::Client;

pub use parapet_testkit::{TestDb, require_postgres};

/// Advisory locks held in the current database (pg_locks is cluster-wide).
pub const ADVISORY_LOCKS_HERE: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary directory, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "parapet_migrate_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }

    pub fn write(&self, file: &str, contents: &str) {
        std::fs::write(self.path.join(file), contents).expect("write migration file");
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `pg_index.indisvalid` of an index, or `None` if it does not exist.
pub async fn index_valid(client: &Client, index: &str) -> Option<bool> {
    client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1",
            &[&index],
        )
        .await
        .expect("query pg_index")
        .map(|row| row.get(0))
}

/// The versions recorded in the history table, in order.
pub async fn history_versions(client: &Client) -> Vec<i64> {
    client
        .query(
            "SELECT version FROM parapet_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read history")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Whether a table exists in the public schema.
pub async fn table_exists(client: &Client, table: &str) -> bool {
    client
        .query_one(
            "SELECT to_regclass('public.' || quote_ident($1)) IS NOT NULL",
            &[&table],
        )
        .await
        .expect("to_regclass")
        .get(0)
}
