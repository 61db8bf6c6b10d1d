//! The [`Migrator`]: loading migrations and applying them.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::Client;

use crate::apply::{apply_in_transaction, apply_without_transaction, duration_ms, repair_indexes};
use crate::error::describe;
use crate::index::{self, ConcurrentIndex};
use crate::report::{
    AppliedMigration, InvalidIndex, MigrationState, MigrationStatus, Report, Status, UnknownApplied,
};
use crate::{MigrateError, Migration, split_statements};

/// The key of the session-level advisory lock a run holds
/// (`pg_try_advisory_lock(ADVISORY_LOCK_KEY)`): the bytes of `"parapetm"`.
pub const ADVISORY_LOCK_KEY: i64 = 0x7061_7261_7065_746d;

/// The table recording applied migrations (created in the first schema of
/// the connection's `search_path`).
pub const HISTORY_TABLE: &str = "parapet_migrations";

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS parapet_migrations (
    version        BIGINT PRIMARY KEY,
    name           TEXT NOT NULL,
    checksum       TEXT NOT NULL,
    no_transaction BOOLEAN NOT NULL,
    applied_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    duration_ms    BIGINT NOT NULL
)";

/// How long to wait between attempts to take the advisory lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// A row of the history table.
struct Applied {
    version: i64,
    name: String,
    checksum: String,
    applied_at: SystemTime,
}

/// An ordered set of migrations, and the runner that applies them.
#[derive(Debug, Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
}

impl Migrator {
    /// A migrator for these migrations, sorted by version.
    ///
    /// Fails with [`MigrateError::DuplicateVersion`] if two share a version.
    pub fn new(mut migrations: Vec<Migration>) -> Result<Self, MigrateError> {
        migrations.sort_by_key(Migration::version);
        if let Some(pair) = migrations
            .windows(2)
            .find(|pair| pair[0].version() == pair[1].version())
        {
            return Err(MigrateError::DuplicateVersion {
                version: pair[0].version(),
                first: pair[0].name().to_owned(),
                second: pair[1].name().to_owned(),
            });
        }
        Ok(Self { migrations })
    }

    /// Reads every `*.sql` file of a directory (other files are ignored) as a
    /// migration named `NNNN_description.sql`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, MigrateError> {
        let dir = dir.as_ref();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| MigrateError::Io { path, source }
        };
        let mut migrations = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let Some(file_name) = path.file_name() else {
                continue;
            };
            if !file_name.to_string_lossy().ends_with(".sql") || !path.is_file() {
                continue;
            }
            let Some(file_name) = file_name.to_str() else {
                return Err(MigrateError::InvalidFileName {
                    file: file_name.to_string_lossy().into_owned(),
                    reason: "it is not valid UTF-8",
                });
            };
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let sql = String::from_utf8(bytes).map_err(|_| MigrateError::NotUtf8 {
                file: file_name.to_owned(),
            })?;
            migrations.push(Migration::parse(file_name, sql)?);
        }
        Self::new(migrations)
    }

    /// The project's own migrations (`migrations/0001_crm_schema.sql`,
    /// `migrations/0002_performance_indexes.sql`, `migrations/0003_row_level_security.sql` and
    /// `migrations/0004_tenant_scoped_ids.sql`), compiled into the crate.
    pub fn crm() -> Self {
        Self {
            migrations: vec![
                Migration::new(
                    1,
                    "crm_schema",
                    include_str!("../../../migrations/0001_crm_schema.sql"),
                ),
                Migration::new(
                    2,
                    "performance_indexes",
                    include_str!("../../../migrations/0002_performance_indexes.sql"),
                ),
                Migration::new(
                    3,
                    "row_level_security",
                    include_str!("../../../migrations/0003_row_level_security.sql"),
                ),
                Migration::new(
                    4,
                    "tenant_scoped_ids",
                    include_str!("../../../migrations/0004_tenant_scoped_ids.sql"),
                ),
            ],
        }
    }

    /// The migrations, in version order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Brings the database up to date.
    ///
    /// Holds the session-level advisory lock [`ADVISORY_LOCK_KEY`] for the
    /// whole run, so concurrent runners (several replicas starting at once)
    /// apply each migration once: the others wait, then find nothing to do.
    /// The lock is taken by polling `pg_try_advisory_lock`, never by a
    /// blocking `pg_advisory_lock`: a session blocked in that call holds a
    /// snapshot, which `CREATE INDEX CONCURRENTLY` in the lock holder waits
    /// for, a deadlock. The lock is released at the end, also on error; if
    /// the returned future is dropped midway, it is released when the
    /// connection closes. Use one client per concurrent run.
    ///
    /// Then: creates the history table [`HISTORY_TABLE`] if missing; refuses
    /// to go on if an applied migration's file changed
    /// ([`MigrateError::ChecksumMismatch`]) or no file has an applied version
    /// ([`MigrateError::UnknownAppliedVersion`]); rebuilds the INVALID
    /// indexes of applied `-- no-transaction` migrations; applies the pending
    /// migrations in order. A transactional migration runs in one
    /// transaction with its history row; a `-- no-transaction` one runs
    /// statement by statement outside any transaction (dropping an INVALID
    /// index of the same name before each `CREATE INDEX CONCURRENTLY`), and
    /// is recorded after its last statement. So a failed `-- no-transaction`
    /// migration is run again from its first statement: write its statements
    /// to be re-runnable (`IF NOT EXISTS`).
    pub async fn run(&self, client: &Client) -> Result<Report, MigrateError> {
        acquire_lock(client).await?;
        let result = self.run_locked(client).await;
        match client
            .query_one("SELECT pg_advisory_unlock($1)", &[&ADVISORY_LOCK_KEY])
            .await
            .and_then(|row| row.try_get::<_, bool>(0))
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the migration advisory lock was not held at the end"),
            Err(e) => tracing::warn!(
                "could not release the migration advisory lock (it is released when the connection closes): {}",
                describe(&e)
            ),
        }
        result
    }

    async fn run_locked(&self, client: &Client) -> Result<Report, MigrateError> {
        // Not `CREATE TABLE IF NOT EXISTS` alone: its NOTICE on every run
        // would be noise in the logs.
        if !history_exists(client).await? {
            client
                .batch_execute(CREATE_HISTORY)
                .await
                .map_err(MigrateError::database("creating the history table"))?;
        }
        let applied = load_applied(client).await?;
        self.verify(&applied)?;

        let mut report = Report {
            already_applied: applied.len(),
            ..Report::default()
        };
        let is_applied = |m: &Migration| {
            applied
                .binary_search_by_key(&m.version(), |a| a.version)
                .is_ok()
        };
        for migration in self.migrations.iter().filter(|m| m.no_transaction()) {
            if is_applied(migration) {
                repair_indexes(client, migration, &mut report).await?;
            }
        }
        for migration in self.migrations.iter().filter(|m| !is_applied(m)) {
            let started = Instant::now();
            if migration.no_transaction() {
                apply_without_transaction(client, migration, started, &mut report).await?;
            } else {
                apply_in_transaction(client, migration, started).await?;
            }
            let duration = started.elapsed();
            tracing::info!(
                version = migration.version(),
                name = migration.name(),
                no_transaction = migration.no_transaction(),
                duration_ms = duration_ms(duration),
                "applied migration {migration} in {} ms",
                duration.as_millis()
            );
            report.applied.push(AppliedMigration {
                version: migration.version(),
                name: migration.name().to_owned(),
                no_transaction: migration.no_transaction(),
                duration,
            });
        }
        Ok(report)
    }

    /// Checks the history against the files: every applied version has a
    /// file, with the same checksum.
    fn verify(&self, applied: &[Applied]) -> Result<(), MigrateError> {
        for row in applied {
            let Some(migration) = self.find(row.version) else {
                return Err(MigrateError::UnknownAppliedVersion {
                    version: row.version,
                    name: row.name.clone(),
                });
            };
            if migration.checksum() != row.checksum {
                return Err(MigrateError::ChecksumMismatch {
                    version: row.version,
                    name: migration.name().to_owned(),
                    applied_checksum: row.checksum.clone(),
                    file_checksum: migration.checksum().to_owned(),
                });
            }
        }
        Ok(())
    }

    fn find(&self, version: i64) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, Migration::version)
            .ok()
            .and_then(|i| self.migrations.get(i))
    }

    /// Where the database stands: each migration applied, pending or
    /// changed; applied versions no file has; INVALID indexes the
    /// `-- no-transaction` migrations create. Reads only; takes no lock and
    /// creates nothing.
    pub async fn status(&self, client: &Client) -> Result<Status, MigrateError> {
        let applied = if history_exists(client).await? {
            load_applied(client).await?
        } else {
            Vec::new()
        };
        let mut migrations = Vec::with_capacity(self.migrations.len());
        for m in &self.migrations {
            let state = match applied.iter().find(|a| a.version == m.version()) {
                None => MigrationState::Pending,
                Some(a) if a.checksum == m.checksum() => MigrationState::Applied {
                    applied_at: a.applied_at,
                },
                Some(a) => MigrationState::ChecksumMismatch {
                    applied_at: a.applied_at,
                    applied_checksum: a.checksum.clone(),
                },
            };
            migrations.push(MigrationStatus {
                version: m.version(),
                name: m.name().to_owned(),
                no_transaction: m.no_transaction(),
                state,
            });
        }
        let unknown_applied = applied
            .iter()
            .filter(|a| self.find(a.version).is_none())
            .map(|a| UnknownApplied {
                version: a.version,
                name: a.name.clone(),
                applied_at: a.applied_at,
            })
            .collect();
        let mut invalid_indexes = Vec::new();
        for m in self.migrations.iter().filter(|m| m.no_transaction()) {
            for statement in split_statements(m.sql()) {
                let Some(index) = ConcurrentIndex::parse(statement) else {
                    continue;
                };
                if let Some(name) = index::find_invalid(client, &index)
                    .await
                    .map_err(MigrateError::database("looking for invalid indexes"))?
                {
                    invalid_indexes.push(InvalidIndex {
                        version: m.version(),
                        migration: m.name().to_owned(),
                        index: name,
                    });
                }
            }
        }
        Ok(Status {
            migrations,
            unknown_applied,
            invalid_indexes,
        })
    }
}

async fn acquire_lock(client: &Client) -> Result<(), MigrateError> {
    let mut waiting = false;
    loop {
        let locked = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&ADVISORY_LOCK_KEY])
            .await
            .and_then(|row| row.try_get::<_, bool>(0))
            .map_err(MigrateError::database("taking the migration advisory lock"))?;
        if locked {
            return Ok(());
        }
        if !waiting {
            tracing::info!("another migration run holds the lock; waiting for it");
            waiting = true;
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

async fn history_exists(client: &Client) -> Result<bool, MigrateError> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await
        .and_then(|row| row.try_get::<_, bool>(0))
        .map_err(MigrateError::database("looking for the history table"))
}

async fn load_applied(client: &Client) -> Result<Vec<Applied>, MigrateError> {
    let context = "reading the history table";
    let rows = client
        .query(
            "SELECT version, name, checksum, applied_at FROM parapet_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(MigrateError::database(context))?;
    rows.iter()
        .map(|row| {
            Ok(Applied {
                version: row.try_get(0)?,
                name: row.try_get(1)?,
                checksum: row.try_get(2)?,
                applied_at: row.try_get(3)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(MigrateError::database(context))
}
