//! INVALID indexes left by failed concurrent builds are rebuilt.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TempDir, TestDb, history_versions, index_valid};
use parapet_migrate::{MigrateError, MigrationState, Migrator, embedded};

#[tokio::test]
async fn an_invalid_index_of_an_applied_migration_is_rebuilt() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    embedded().run(&client).await.expect("first run");
    let before: u32 = client
        .query_one("SELECT 'leads_org_created_at_idx'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);

    client
        .batch_execute(
            "UPDATE pg_index SET indisvalid = false \
             WHERE indexrelid = 'leads_org_created_at_idx'::regclass",
        )
        .await
        .unwrap();
    assert_eq!(
        index_valid(&client, "leads_org_created_at_idx").await,
        Some(false)
    );

    let status = embedded().status(&client).await.unwrap();
    assert_eq!(status.invalid_indexes.len(), 1, "{status}");
    assert_eq!(
        status.invalid_indexes[0].index,
        "public.leads_org_created_at_idx"
    );
    assert_eq!(status.invalid_indexes[0].version, 2);
    assert!(!status.is_up_to_date());
    assert!(
        status
            .to_string()
            .contains("INVALID index public.leads_org_created_at_idx")
    );

    let report = embedded().run(&client).await.expect("repairing run");
    assert!(report.applied.is_empty(), "{report}");
    assert_eq!(report.repaired.len(), 1, "{report}");
    assert_eq!(report.repaired[0].index, "public.leads_org_created_at_idx");
    assert_eq!(report.repaired[0].version, 2);
    assert_eq!(report.repaired[0].migration, "performance_indexes");
    assert!(!report.is_noop());
    assert!(
        report
            .to_string()
            .contains("rebuilt invalid index public.leads_org_created_at_idx"),
        "{report}"
    );

    assert_eq!(
        index_valid(&client, "leads_org_created_at_idx").await,
        Some(true)
    );
    let after: u32 = client
        .query_one("SELECT 'leads_org_created_at_idx'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(before, after, "the index was built anew");
    let def: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'leads_org_created_at_idx'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        def.contains("ON public.leads USING btree (org_id, created_at DESC)"),
        "{def}"
    );
    assert!(embedded().status(&client).await.unwrap().is_up_to_date());
    assert!(embedded().run(&client).await.unwrap().is_noop());
}

#[tokio::test]
async fn a_failed_unique_concurrent_build_is_retried_after_the_data_is_fixed() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    let dir = TempDir::new();
    dir.write(
        "0001_things.sql",
        "CREATE TABLE things (id int PRIMARY KEY, code text NOT NULL);\n\
         INSERT INTO things VALUES (1, 'a'), (2, 'b'), (3, 'a');\n",
    );
    dir.write(
        "0002_unique_codes.sql",
        "-- no-transaction\n\
         -- Codes must be unique; a ';' in a comment does not split.\n\
         CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS things_code_key ON things (code);\n",
    );
    let migrator = Migrator::from_dir(dir.path()).unwrap();

    let err = migrator
        .run(&client)
        .await
        .expect_err("duplicates make the build fail");
    match &err {
        MigrateError::Migration {
            version: 2,
            name,
            statement: Some(statement),
            source,
        } => {
            assert_eq!(name, "unique_codes");
            assert!(
                statement.contains("CREATE UNIQUE INDEX CONCURRENTLY"),
                "{statement}"
            );
            assert_eq!(
                source.code(),
                Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            );
        }
        other => panic!("expected a Migration error for version 2, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with("migration 2 (unique_codes) failed at statement"),
        "{message}"
    );
    assert!(
        message.contains("could not create unique index"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");

    assert_eq!(
        index_valid(&client, "things_code_key").await,
        Some(false),
        "the failed concurrent build leaves an INVALID index"
    );
    assert_eq!(history_versions(&client).await, [1], "0002 is not recorded");
    let status = migrator.status(&client).await.unwrap();
    assert_eq!(status.migrations[1].state, MigrationState::Pending);
    assert_eq!(status.invalid_indexes.len(), 1, "{status}");

    // `IF NOT EXISTS` alone would keep the invalid index; the runner drops
    // and rebuilds it once the data allows.
    client
        .batch_execute("DELETE FROM things WHERE id = 3")
        .await
        .unwrap();
    let report = migrator.run(&client).await.expect("second run");
    assert_eq!(report.applied_versions(), [2], "{report}");
    assert_eq!(report.repaired.len(), 1, "{report}");
    assert_eq!(report.repaired[0].index, "public.things_code_key");
    assert_eq!(index_valid(&client, "things_code_key").await, Some(true));
    assert_eq!(history_versions(&client).await, [1, 2]);
    let dup = client
        .batch_execute("INSERT INTO things VALUES (4, 'a')")
        .await
        .expect_err("the unique index is enforced");
    assert_eq!(
        dup.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    assert!(migrator.status(&client).await.unwrap().is_up_to_date());
}

#[tokio::test]
async fn no_transaction_migrations_really_run_outside_a_transaction() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    let dir = TempDir::new();
    dir.write("0001_t.sql", "CREATE TABLE t (a int, b text);");
    // Several statements, with semicolons in strings, a dollar-quoted body
    // and a quoted identifier; VACUUM also refuses to run in a transaction.
    dir.write(
        "0002_mixed.sql",
        "-- no-transaction\n\
         INSERT INTO t VALUES (1, 'x;y');\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS \"T a;idx\" ON t (a);\n\
         DO $body$ BEGIN INSERT INTO t VALUES (2, $$;$$); END $body$;\n\
         VACUUM t;\n\
         /* done; */\n",
    );
    let report = Migrator::from_dir(dir.path())
        .unwrap()
        .run(&client)
        .await
        .expect("run");
    assert_eq!(report.applied_versions(), [1, 2]);
    assert_eq!(index_valid(&client, "T a;idx").await, Some(true));
    let rows: Vec<String> = client
        .query("SELECT a || ':' || b FROM t ORDER BY a", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rows, ["1:x;y", "2:;"]);
}
