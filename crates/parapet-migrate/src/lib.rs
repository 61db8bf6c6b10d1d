//! PostgreSQL schema migrations for parapet, on `tokio-postgres`, that can
//! build indexes with `CREATE INDEX CONCURRENTLY`.
//!
//! # Why another runner
//!
//! A multi-tenant SaaS database is live and shared: a plain `CREATE INDEX`
//! locks its table against writes for every tenant while it builds.
//! `CREATE INDEX CONCURRENTLY` does not, but it cannot run inside a
//! transaction block. refinery runs every migration in a transaction and has
//! no per-file opt-out (rust-db/refinery#277), so such a migration fails
//! there. And a concurrent build that fails (a duplicate key, a cancelled
//! statement, a lost connection) leaves an INVALID index behind, which
//! `CREATE INDEX CONCURRENTLY IF NOT EXISTS` then silently keeps: the index
//! exists but is never used, and a unique one still slows every write.
//!
//! # What it does
//!
//! - Migrations are files named `NNNN_description.sql`, applied in version
//!   order ([`Migrator::from_dir`]), or this project's own CRM schema
//!   compiled in ([`embedded`]).
//! - A file whose first line is `-- no-transaction` (the convention of sqlx)
//!   runs outside any transaction. Since PostgreSQL runs a multi-statement
//!   query string as one implicit transaction, such a file is split into
//!   statements ([`split_statements`]) and sent one at a time. Any other file
//!   runs in one transaction together with its history row.
//! - Before each `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name`,
//!   an INVALID index of that name is dropped (concurrently) so the build
//!   really happens; on every run, INVALID indexes of already-applied
//!   `-- no-transaction` migrations are rebuilt and reported.
//! - Applied migrations are recorded in `parapet_migrations` with the
//!   SHA-256 of their file; a changed or unknown applied migration stops the
//!   run before anything happens.
//! - A session-level advisory lock makes concurrent runners (replicas
//!   starting together) safe: each migration is applied once.
//!
//! The `parapet-migrate` binary (feature `cli`, on by default) wraps this as
//! `parapet-migrate up` and `parapet-migrate status`. It connects to
//! `DATABASE_DIRECT_URL` when that is set, else to `DATABASE_URL` (or
//! `--database-url`): session advisory locks and `CREATE INDEX CONCURRENTLY`
//! need a direct connection, not a transaction-mode pooler (PgBouncer,
//! Supavisor, ...). Connection strings take libpq's TLS parameters
//! (`sslmode=verify-full`, `sslrootcert=<file>`, ...: see
//! [`parapet_postgres::PgConfig`]).
//!
//! # Example
//!
//! ```
//! use parapet_migrate::{Migration, Migrator, split_statements};
//!
//! let index = Migration::parse(
//!     "0100_deal_titles.sql",
//!     "-- no-transaction\n\
//!      CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_title_idx ON deals (title);\n\
//!      CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_email_idx ON leads (email);\n",
//! )?;
//! assert!(index.no_transaction());
//! assert_eq!(split_statements(index.sql()).len(), 2);
//!
//! // The project's migrations plus our own.
//! let mut migrations = parapet_migrate::embedded().migrations().to_vec();
//! migrations.push(index);
//! let migrator = Migrator::new(migrations)?;
//! assert_eq!(migrator.migrations().len(), 5);
//! # Ok::<(), parapet_migrate::MigrateError>(())
//! ```
//!
//! Running it needs a server:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = parapet_postgres::PgConfig::parse("postgres://postgres@127.0.0.1/app?sslmode=prefer")?;
//! let client = config.client().await?;
//! let report = parapet_migrate::embedded().run(&client).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod apply;
mod database;
mod error;
mod index;
mod migration;
mod report;
mod runner;
mod split;

pub use database::create_database_if_missing;
pub use error::MigrateError;
pub use migration::{Migration, NO_TRANSACTION_MARKER};
pub use report::{
    AppliedMigration, InvalidIndex, MigrationState, MigrationStatus, RepairedIndex, Report, Status,
    UnknownApplied, format_utc,
};
pub use runner::{ADVISORY_LOCK_KEY, HISTORY_TABLE, Migrator};
pub use split::split_statements;

/// The project's own migrations (the CRM schema and its indexes), compiled
/// in; the same as [`Migrator::crm`].
pub fn embedded() -> Migrator {
    Migrator::crm()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_match_their_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let from_dir = Migrator::from_dir(dir).unwrap();
        assert_eq!(from_dir.migrations(), embedded().migrations());
        let versions: Vec<_> = embedded()
            .migrations()
            .iter()
            .map(Migration::version)
            .collect();
        assert_eq!(versions, [1, 2, 3, 4]);
        assert!(!embedded().migrations()[0].no_transaction());
        assert!(embedded().migrations()[1].no_transaction());
        assert!(!embedded().migrations()[2].no_transaction());
        assert!(!embedded().migrations()[3].no_transaction());
    }

    #[test]
    fn embedded_index_migration_has_six_concurrent_index_builds() {
        let migrator = embedded();
        let names: Vec<_> = split_statements(migrator.migrations()[1].sql())
            .into_iter()
            .filter_map(index::ConcurrentIndex::parse)
            .map(|index| index.name)
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
    }

    #[test]
    fn duplicate_versions_are_refused() {
        let err = Migrator::new(vec![
            Migration::new(1, "a", ""),
            Migration::new(2, "b", ""),
            Migration::new(1, "c", ""),
        ])
        .unwrap_err();
        assert!(
            matches!(err, MigrateError::DuplicateVersion { version: 1, .. }),
            "{err}"
        );
    }
}
