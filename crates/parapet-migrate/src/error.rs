//! The error type of the migration runner.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Everything that can go wrong while loading or running migrations.
///
/// Each variant that concerns one migration names its version (and name), so
/// that a message on its own tells which file to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The migration directory or one of its files could not be read.
    #[error("cannot read migrations from {}: {source}", .path.display())]
    Io {
        /// The directory or file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A migration file name does not follow `NNNN_description.sql`.
    #[error("invalid migration file name {file:?}: {reason} (expected NNNN_description.sql)")]
    InvalidFileName {
        /// The offending file name.
        file: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A migration file is not valid UTF-8.
    #[error("migration file {file:?} is not valid UTF-8")]
    NotUtf8 {
        /// The offending file name.
        file: String,
    },

    /// Two migrations share a version number.
    #[error("duplicate migration version {version}: {first:?} and {second:?}")]
    DuplicateVersion {
        /// The version both migrations claim.
        version: i64,
        /// The name of the first migration with that version.
        first: String,
        /// The name of the second migration with that version.
        second: String,
    },

    /// An already-applied migration's file was changed afterwards. Nothing
    /// was run.
    #[error(
        "migration {version} ({name}) was changed after it was applied \
         (checksum {applied_checksum} in the database, {file_checksum} in the file); \
         refusing to run: restore the file and add a new migration instead"
    )]
    ChecksumMismatch {
        /// The version of the changed migration.
        version: i64,
        /// The name of the changed migration.
        name: String,
        /// The SHA-256 recorded when the migration was applied.
        applied_checksum: String,
        /// The SHA-256 of the file as it is now.
        file_checksum: String,
    },

    /// The database records an applied migration that no file has. Nothing
    /// was run.
    #[error(
        "the database has migration {version} ({name}) applied, but no migration file has \
         that version; refusing to run"
    )]
    UnknownAppliedVersion {
        /// The version recorded in the database.
        version: i64,
        /// The name recorded in the database.
        name: String,
    },

    /// A statement of a migration failed. A transactional migration was
    /// rolled back; a `-- no-transaction` one stopped at this statement and
    /// was not recorded as applied.
    #[error(
        "migration {version} ({name}) failed{}: {}{}",
        statement_suffix(.statement.as_deref()),
        describe(.source),
        transaction_hint(.source, .statement.is_some())
    )]
    Migration {
        /// The version of the failing migration.
        version: i64,
        /// The name of the failing migration.
        name: String,
        /// The failing statement, for a `-- no-transaction` migration (which
        /// runs statement by statement).
        statement: Option<String>,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Rebuilding an INVALID index of an already-applied migration failed.
    #[error("rebuilding invalid index {index} of migration {version} ({name}) failed: {}", describe(.source))]
    Repair {
        /// The version of the migration that creates the index.
        version: i64,
        /// The name of the migration that creates the index.
        name: String,
        /// The index being rebuilt.
        index: String,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A query of the runner itself (locking, the history table) failed.
    #[error("database error while {context}: {}", describe(.source))]
    Database {
        /// What the runner was doing.
        context: &'static str,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl MigrateError {
    /// The version of the migration this error concerns, if it concerns one.
    pub fn version(&self) -> Option<i64> {
        match self {
            Self::DuplicateVersion { version, .. }
            | Self::ChecksumMismatch { version, .. }
            | Self::UnknownAppliedVersion { version, .. }
            | Self::Migration { version, .. }
            | Self::Repair { version, .. } => Some(*version),
            _ => None,
        }
    }

    pub(crate) fn database(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| Self::Database { context, source }
    }
}

/// ` at statement `CREATE …``, shortened to one line of at most 80 chars.
fn statement_suffix(statement: Option<&str>) -> String {
    let Some(statement) = statement else {
        return String::new();
    };
    let code = crate::split::strip_leading_comments(statement);
    let one_line = code.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut short: String = one_line.chars().take(80).collect();
    if short.len() < one_line.len() {
        short.push('…');
    }
    format!(" at statement `{short}`")
}

/// For a statement that cannot run in a transaction block, run as part of a
/// transactional migration: how to fix it.
fn transaction_hint(error: &tokio_postgres::Error, no_transaction: bool) -> &'static str {
    if !no_transaction
        && error.code() == Some(&tokio_postgres::error::SqlState::ACTIVE_SQL_TRANSACTION)
    {
        " (make `-- no-transaction` the first line of the file to run it outside a transaction)"
    } else {
        ""
    }
}

/// A one-line description of a `tokio_postgres::Error`, including the
/// server's message (its `Display` alone says only "db error").
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut out = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            let _ = write!(out, "; DETAIL: {detail}");
        }
        if let Some(hint) = db.hint() {
            let _ = write!(out, "; HINT: {hint}");
        }
        return out.replace('\n', " ");
    }
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out.replace('\n', " ")
}
