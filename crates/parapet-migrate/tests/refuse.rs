//! Runs that must refuse or stop: changed or unknown applied migrations, a
//! failing transactional migration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ADVISORY_LOCKS_HERE, TempDir, TestDb, history_versions, table_exists};
use parapet_migrate::{MigrateError, Migration, MigrationState, Migrator, embedded};

#[tokio::test]
async fn a_changed_applied_migration_is_refused() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    let dir = TempDir::new();
    for m in embedded().migrations() {
        dir.write(&format!("{m}.sql"), m.sql());
    }
    Migrator::from_dir(dir.path())
        .unwrap()
        .run(&client)
        .await
        .expect("first run");

    let edited = format!(
        "{}\n-- an edit after the fact\n",
        embedded().migrations()[0].sql()
    );
    dir.write("0001_crm_schema.sql", &edited);
    dir.write("0099_extra.sql", "CREATE TABLE extra (id int);");
    let migrator = Migrator::from_dir(dir.path()).unwrap();
    let err = migrator.run(&client).await.expect_err("must refuse");
    match &err {
        MigrateError::ChecksumMismatch {
            version,
            name,
            applied_checksum,
            file_checksum,
        } => {
            assert_eq!((*version, name.as_str()), (1, "crm_schema"));
            assert_eq!(applied_checksum, embedded().migrations()[0].checksum());
            assert_eq!(
                file_checksum,
                Migration::new(1, "x", edited.clone()).checksum()
            );
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert_eq!(err.version(), Some(1));
    assert!(
        err.to_string()
            .contains("migration 1 (crm_schema) was changed"),
        "{err}"
    );
    assert!(!table_exists(&client, "extra").await, "nothing else ran");
    assert_eq!(history_versions(&client).await, [1, 2, 3, 4]);

    let status = migrator.status(&client).await.unwrap();
    assert!(matches!(
        status.migrations[0].state,
        MigrationState::ChecksumMismatch { .. }
    ));
    assert_eq!(status.pending_versions(), [99]);
    assert!(!status.is_up_to_date());
}

#[tokio::test]
async fn an_applied_version_without_a_file_is_refused() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    embedded().run(&client).await.expect("first run");
    let only_first = Migrator::new(embedded().migrations()[..1].to_vec()).unwrap();
    let err = only_first.run(&client).await.expect_err("must refuse");
    assert!(
        matches!(&err, MigrateError::UnknownAppliedVersion { version: 2, name } if name == "performance_indexes"),
        "{err:?}"
    );
    let status = only_first.status(&client).await.unwrap();
    assert_eq!(status.unknown_applied.len(), 3);
    assert_eq!(status.unknown_applied[0].version, 2);
    assert_eq!(status.unknown_applied[1].version, 3);
    assert_eq!(status.unknown_applied[2].version, 4);
}

#[tokio::test]
async fn a_failing_transactional_migration_is_rolled_back() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    let migrator = Migrator::new(vec![
        Migration::parse("0001_ok.sql", "CREATE TABLE ok (id int);").unwrap(),
        Migration::parse(
            "0002_broken.sql",
            "CREATE TABLE half (id int);\nINSERT INTO half VALUES ('not a number');",
        )
        .unwrap(),
        Migration::parse("0003_after.sql", "CREATE TABLE after (id int);").unwrap(),
    ])
    .unwrap();
    let err = migrator.run(&client).await.expect_err("0002 fails");
    assert!(
        matches!(&err, MigrateError::Migration { version: 2, name, .. } if name == "broken"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("migration 2 (broken) failed: ERROR: invalid input syntax"),
        "{message}"
    );
    assert!(table_exists(&client, "ok").await);
    assert!(!table_exists(&client, "half").await, "rolled back");
    assert!(!table_exists(&client, "after").await, "stopped");
    assert_eq!(history_versions(&client).await, [1]);
    // The connection is usable and the lock was released.
    assert_eq!(
        migrator.status(&client).await.unwrap().pending_versions(),
        [2, 3]
    );
    let held: i64 = client
        .query_one(ADVISORY_LOCKS_HERE, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0);
}

#[tokio::test]
async fn a_concurrent_index_in_a_transactional_migration_gets_a_hint() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    let migrator = Migrator::new(vec![
        Migration::parse(
            "0001_forgot_the_marker.sql",
            "CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY t_a_idx ON t (a);\n",
        )
        .unwrap(),
    ])
    .unwrap();
    let err = migrator
        .run(&client)
        .await
        .expect_err("CONCURRENTLY fails in a transaction");
    let message = err.to_string();
    assert!(
        message.starts_with("migration 1 (forgot_the_marker) failed: "),
        "{message}"
    );
    assert!(
        message.contains("cannot run inside a transaction block"),
        "{message}"
    );
    assert!(
        message.ends_with(
            "make `-- no-transaction` the first line of the file to run it outside a transaction)"
        ),
        "{message}"
    );
    assert!(!table_exists(&client, "t").await, "rolled back");
    assert!(history_versions(&client).await.is_empty());
}
