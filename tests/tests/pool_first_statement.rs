//! Session scope sends the tenant's setting with the checkout's first statement, in its round
//! trip. What that must never cost: a statement that runs without its tenant's setting, or a
//! later statement of the checkout that runs without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use parapet_pool::{Isolation, IsolationScope, TenantPools};
use parapet_tenant::{DatabaseTarget, Features, Tenant, TenantId, TenantRecord};
use parapet_tests::TestDb;

fn tenant(id: &str) -> Tenant {
    Tenant::new(
        Arc::new(TenantRecord::new(TenantId::parse(id).unwrap()).database(DatabaseTarget::Shared)),
        Arc::new(Features::new()),
    )
}

/// A pool of one connection, so consecutive checkouts share it.
async fn one_connection(url: &str, setting: &str) -> TenantPools {
    TenantPools::builder(url)
        .isolation(Isolation::RowLevelSecurity {
            setting: setting.to_owned(),
        })
        .scope(IsolationScope::Session)
        .max_per_pool(1)
        .budget(1)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

async fn backend_pid(db: &parapet_pool::Db) -> i32 {
    db.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// PostgreSQL 15 refuses settings under the `plpgsql.` prefix once PL/pgSQL is loaded in a
/// session: a setting that works on a fresh connection and fails on one that ran a `DO` block.
/// The write that was to carry the failing setting must not land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_setting_never_lets_the_first_statement_run() {
    let db = TestDb::create("pool_first_refused").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE items (v text)")
        .await
        .unwrap();
    let pools = one_connection(db.url(), "plpgsql.tenant").await;
    let a = tenant("a");

    let first = pools.checkout(&a).await.unwrap();
    // The setting goes with this statement; then PL/pgSQL is loaded on this connection.
    let pid = backend_pid(&first).await;
    first.batch_execute("DO $$ BEGIN END $$").await.unwrap();
    drop(first);

    // The same connection, reset: its first statement's setting now fails.
    match pools.checkout(&a).await {
        // Refused at checkout is fine too: nothing ran.
        Err(_) => {}
        Ok(second) => {
            let insert = second
                .execute("INSERT INTO items VALUES ('without its tenant')", &[])
                .await;
            assert!(
                insert.is_err(),
                "a write ran although its tenant's setting failed"
            );
            drop(second);
        }
    }
    let landed: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(landed, 0, "the write without its tenant's setting landed");

    // The connection whose setting failed was closed, not handed to the next checkout.
    let third = pools.checkout(&a).await.unwrap();
    assert_ne!(
        backend_pid(&third).await,
        pid,
        "a connection whose setting failed went back to the pool"
    );
}

/// A first statement that fails takes its setting with it (its transaction rolls back); the
/// checkout's next statement must still run with the tenant's setting, and the next checkout
/// of the same connection with its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setting_survives_a_failing_first_statement() {
    let db = TestDb::create("pool_first_failing").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE items (v text UNIQUE); INSERT INTO items VALUES ('taken')")
        .await
        .unwrap();
    let pools = one_connection(db.url(), "app.tenant_id").await;
    let setting = "SELECT current_setting('app.tenant_id', true)";

    for round in 0..2 {
        let (a, b) = (tenant("a"), tenant("b"));
        // Prepared on the first round, cached on the second: both paths of the pipeline.
        let checkout = pools.checkout(&a).await.unwrap();
        let duplicate = checkout
            .execute("INSERT INTO items VALUES ($1)", &[&"taken"])
            .await;
        assert!(
            duplicate.is_err(),
            "round {round}: the duplicate was refused"
        );
        let seen: Option<String> = checkout.query_one(setting, &[]).await.unwrap().get(0);
        assert_eq!(seen.as_deref(), Some("a"), "round {round}: after a failure");
        drop(checkout);

        let checkout = pools.checkout(&b).await.unwrap();
        let seen: Option<String> = checkout.query_one(setting, &[]).await.unwrap().get(0);
        assert_eq!(
            seen.as_deref(),
            Some("b"),
            "round {round}: the next tenant's"
        );
        // A statement that cannot run in a transaction block gets the setting first, alone.
        let shown: String = checkout
            .query_one("SHOW app.tenant_id", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(shown, "b", "round {round}: SHOW");
        drop(checkout);
    }

    // Raw SQL, a transaction and the bare client each see the setting as their first statement.
    let checkout = pools.checkout(&tenant("c")).await.unwrap();
    checkout
        .batch_execute("CREATE TEMP TABLE seen AS SELECT current_setting('app.tenant_id') AS v")
        .await
        .unwrap();
    let seen: String = checkout
        .query_one("SELECT v FROM seen", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, "c", "raw SQL first");
    drop(checkout);

    let mut checkout = pools.checkout(&tenant("d")).await.unwrap();
    let tx = checkout.transaction().await.unwrap();
    let seen: Option<String> = tx.query_one(setting, &[]).await.unwrap().get(0);
    assert_eq!(seen.as_deref(), Some("d"), "a transaction first");
    tx.commit().await.unwrap();
    drop(checkout);

    let checkout = pools.checkout(&tenant("e")).await.unwrap();
    let rows = checkout
        .client()
        .await
        .unwrap()
        .simple_query(setting)
        .await
        .unwrap();
    let seen = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(seen.as_deref(), Some("e"), "the bare client first");
}
