//! Applying one migration, and rebuilding the INVALID indexes of one.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::index::{self, ConcurrentIndex};
use crate::report::{RepairedIndex, Report};
use crate::{MigrateError, Migration, split_statements};

const INSERT_HISTORY: &str = "INSERT INTO parapet_migrations \
    (version, name, checksum, no_transaction, duration_ms) VALUES ($1, $2, $3, $4, $5)";

/// Runs a migration and its history row in one transaction.
pub(crate) async fn apply_in_transaction(
    client: &Client,
    migration: &Migration,
    started: Instant,
) -> Result<(), MigrateError> {
    let failed = |source| MigrateError::Migration {
        version: migration.version(),
        name: migration.name().to_owned(),
        statement: None,
        source,
    };
    client.batch_execute("BEGIN").await.map_err(failed)?;
    let result = async {
        client.batch_execute(migration.sql()).await?;
        record(client, migration, started).await?;
        client.batch_execute("COMMIT").await
    }
    .await;
    if result.is_err() {
        // Best effort: on a lost connection the server rolls back by itself.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result.map_err(failed)
}

/// Runs a `-- no-transaction` migration statement by statement, then records
/// it.
pub(crate) async fn apply_without_transaction(
    client: &Client,
    migration: &Migration,
    started: Instant,
    report: &mut Report,
) -> Result<(), MigrateError> {
    let failed = |statement: Option<&str>| {
        let statement = statement.map(str::to_owned);
        move |source| MigrateError::Migration {
            version: migration.version(),
            name: migration.name().to_owned(),
            statement,
            source,
        }
    };
    for statement in split_statements(migration.sql()) {
        if let Some(index) = ConcurrentIndex::parse(statement) {
            let invalid = index::find_invalid(client, &index)
                .await
                .map_err(failed(Some(statement)))?;
            if let Some(name) = invalid {
                tracing::warn!(
                    version = migration.version(),
                    "dropping invalid index {name} left by an earlier failed build, to build it again"
                );
                index::drop_concurrently(client, &name)
                    .await
                    .map_err(failed(Some(statement)))?;
                report.repaired.push(RepairedIndex {
                    version: migration.version(),
                    migration: migration.name().to_owned(),
                    index: name,
                });
            }
        }
        tracing::debug!(version = migration.version(), "executing {statement}");
        client
            .batch_execute(statement)
            .await
            .map_err(failed(Some(statement)))?;
    }
    record(client, migration, started)
        .await
        .map_err(failed(None))
}

/// Drops and builds again each INVALID index an applied `-- no-transaction`
/// migration creates.
pub(crate) async fn repair_indexes(
    client: &Client,
    migration: &Migration,
    report: &mut Report,
) -> Result<(), MigrateError> {
    for statement in split_statements(migration.sql()) {
        let Some(index) = ConcurrentIndex::parse(statement) else {
            continue;
        };
        let failed = |index: &str| {
            let index = index.to_owned();
            move |source| MigrateError::Repair {
                version: migration.version(),
                name: migration.name().to_owned(),
                index,
                source,
            }
        };
        let Some(name) = index::find_invalid(client, &index)
            .await
            .map_err(failed(&index.name))?
        else {
            continue;
        };
        let started = Instant::now();
        index::drop_concurrently(client, &name)
            .await
            .map_err(failed(&name))?;
        client
            .batch_execute(statement)
            .await
            .map_err(failed(&name))?;
        tracing::info!(
            version = migration.version(),
            duration_ms = duration_ms(started.elapsed()),
            "rebuilt invalid index {name} of migration {migration}"
        );
        report.repaired.push(RepairedIndex {
            version: migration.version(),
            migration: migration.name().to_owned(),
            index: name,
        });
    }
    Ok(())
}

async fn record(
    client: &Client,
    migration: &Migration,
    started: Instant,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            INSERT_HISTORY,
            &[
                &migration.version(),
                &migration.name(),
                &migration.checksum(),
                &migration.no_transaction(),
                &duration_ms(started.elapsed()),
            ],
        )
        .await
        .map(drop)
}

pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
