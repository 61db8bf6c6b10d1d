//! Session scope: what one tenant's checkout leaves on its connection (temporary tables,
//! advisory locks, LISTEN, prepared statements, WITH HOLD cursors, SET ROLE, settings, sequence
//! state, open transactions) is gone for the next tenant's, and returning connections leaves no
//! "there is no transaction in progress" warning in the server's log, in either scope.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use parapet_pool::{Isolation, IsolationScope, TenantPools};
use parapet_tenant::{DatabaseTarget, Features, Tenant, TenantId, TenantRecord};
use parapet_tests::cluster::TempCluster;

fn tenant(id: &str) -> Tenant {
    Tenant::new(
        Arc::new(TenantRecord::new(TenantId::parse(id).unwrap()).database(DatabaseTarget::Shared)),
        Arc::new(Features::new()),
    )
}

/// A pool of one connection on `cluster`, so consecutive checkouts share it.
async fn one_connection(cluster: &TempCluster, scope: IsolationScope) -> TenantPools {
    TenantPools::builder(cluster.url())
        .isolation(Isolation::row_level_security())
        .scope(scope)
        .max_per_pool(1)
        .budget(1)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_one_checkout_reaches_the_next() {
    let cluster = TempCluster::start();
    parapet_tests::connect(&cluster.url())
        .await
        .batch_execute(
            "CREATE TABLE items (v text); INSERT INTO items VALUES ('shared');
             CREATE SEQUENCE counter; CREATE ROLE someone;
             GRANT SELECT ON items TO someone;",
        )
        .await
        .unwrap();
    let pools = one_connection(&cluster, IsolationScope::Session).await;
    let (a, b) = (tenant("a"), tenant("b"));

    let db = pools.checkout(&a).await.unwrap();
    let pid_a: i32 = db
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    db.batch_execute(
        "CREATE TEMP TABLE items (v text); INSERT INTO items VALUES ('a-temp');
         SELECT pg_advisory_lock(4242);
         LISTEN tenant_a;
         PREPARE a_statement AS SELECT 'a';
         BEGIN; DECLARE a_cursor CURSOR WITH HOLD FOR SELECT 'a'; COMMIT;
         SELECT nextval('counter');
         SET app.secret = 'a-secret';
         SET search_path = pg_catalog, public;",
    )
    .await
    .unwrap();
    let seen: String = db
        .query_one("SELECT string_agg(v, ',') FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, "a-temp",
        "tenant a's TEMP table shadows the shared one"
    );
    db.batch_execute("SET ROLE someone").await.unwrap();
    let role: String = db
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "someone");
    drop(db);

    let db = pools.checkout(&b).await.unwrap();
    let row = db
        .query_one(
            "SELECT pg_backend_pid(),
                (SELECT string_agg(v, ',') FROM items),
                (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
                (SELECT count(*) FROM pg_listening_channels()),
                (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),
                (SELECT count(*) FROM pg_cursors WHERE is_holdable),
                current_user::text, session_user::text,
                coalesce(current_setting('app.secret', true), ''),
                current_setting('app.tenant_id'),
                current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), pid_a, "the same server connection");
    assert_eq!(row.get::<_, String>(1), "shared", "the TEMP table is gone");
    assert_eq!(row.get::<_, i64>(2), 0, "the advisory lock is released");
    assert_eq!(row.get::<_, i64>(3), 0, "LISTEN is gone");
    assert_eq!(row.get::<_, i64>(4), 0, "the prepared statement is gone");
    assert_eq!(row.get::<_, i64>(5), 0, "the WITH HOLD cursor is gone");
    assert_eq!(row.get::<_, String>(6), "postgres", "SET ROLE is gone");
    assert_eq!(row.get::<_, String>(7), "postgres");
    assert_eq!(row.get::<_, String>(8), "", "the custom setting is gone");
    assert_eq!(row.get::<_, String>(9), "b", "b's own tenant");
    assert_eq!(
        row.get::<_, String>(10),
        "\"$user\", public",
        "search_path is reset"
    );
    let err = db
        .query_one("SELECT currval('counter')", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code().map(|c| c.code()),
        Some("55000"),
        "sequence state is gone: {err}"
    );
    // The prepared statement's name is free again.
    db.batch_execute("PREPARE a_statement AS SELECT 'b'; DEALLOCATE a_statement")
        .await
        .unwrap();
}

/// Checkouts of every kind, `rounds` times: those that open no transaction must not make the
/// reset send a `ROLLBACK` (the server would log a warning).
async fn checkouts_of_every_kind(pools: &TenantPools, scope: IsolationScope, rounds: usize) {
    let (a, b) = (tenant("a"), tenant("b"));
    pools
        .checkout(&a)
        .await
        .unwrap()
        .execute("TRUNCATE log", &[])
        .await
        .unwrap();
    for round in 0..rounds {
        let t = if round % 2 == 0 { &a } else { &b };
        // Plain statements.
        let db = pools.checkout(t).await.unwrap();
        db.query_one("SELECT 1", &[]).await.unwrap();
        db.execute("INSERT INTO log VALUES ('plain')", &[])
            .await
            .unwrap();
        drop(db);
        // A transaction committed, and one dropped (rolled back by the driver).
        let mut db = pools.checkout(t).await.unwrap();
        let tx = db.transaction().await.unwrap();
        tx.execute("INSERT INTO log VALUES ('committed')", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let tx = db.transaction().await.unwrap();
        tx.execute("INSERT INTO log VALUES ('dropped')", &[])
            .await
            .unwrap();
        drop(tx);
        drop(db);
        // Raw SQL without a transaction, and the raw client.
        let db = pools.checkout(t).await.unwrap();
        db.batch_execute("SELECT 1; INSERT INTO log VALUES ('batch')")
            .await
            .unwrap();
        db.client()
            .await
            .unwrap()
            .simple_query("SELECT 1")
            .await
            .unwrap();
        drop(db);
        if scope == IsolationScope::Session {
            // Raw BEGIN ... COMMIT, and a transaction left open, then failed.
            let db = pools.checkout(t).await.unwrap();
            db.batch_execute("BEGIN; INSERT INTO log VALUES ('raw'); COMMIT")
                .await
                .unwrap();
            drop(db);
            let db = pools.checkout(t).await.unwrap();
            db.batch_execute("BEGIN; INSERT INTO log VALUES ('left open')")
                .await
                .unwrap();
            assert!(db.batch_execute("SELECT 1/0").await.is_err());
            drop(db);
        }
    }
    // The last reset has run once the one connection can be checked out again.
    let db = pools.checkout(&a).await.unwrap();
    let rows: Vec<String> = db
        .query("SELECT DISTINCT what FROM log ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected = vec!["batch", "committed", "plain"];
    if scope == IsolationScope::Session {
        expected.push("raw");
    }
    assert_eq!(rows, expected, "what was committed, and only that");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_a_connection_leaves_no_warning_in_the_server_log() {
    let cluster = TempCluster::start();
    parapet_tests::connect(&cluster.url())
        .await
        .batch_execute("CREATE TABLE log (what text)")
        .await
        .unwrap();
    for scope in [IsolationScope::Session, IsolationScope::Transaction] {
        let pools = one_connection(&cluster, scope).await;
        checkouts_of_every_kind(&pools, scope, 20).await;
    }
    let log = cluster.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("there is no transaction in progress"))
        .count();
    assert_eq!(warnings, 0, "server log:\n{log}");
    assert!(
        log.contains("division by zero"),
        "the server log is the one the statements went to:\n{log}"
    );
}
