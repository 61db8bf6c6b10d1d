//! No tenant ever sees another's rows or settings through a shared pool, in any isolation mode,
//! including after handlers that failed or panicked mid-transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use parapet_pool::{Isolation, TenantPools};
use parapet_tenant::{DatabaseTarget, Features, Tenant, TenantId, TenantRecord};
use parapet_tests::TestDb;

fn tenant(id: &str, database: DatabaseTarget) -> Tenant {
    Tenant::new(
        Arc::new(TenantRecord::new(TenantId::parse(id).unwrap()).database(database)),
        Arc::new(Features::new()),
    )
}

const CHECKOUTS: usize = 10_000;

/// Alternates A and B on a pool of 2 connections. Every 97th checkout of A misbehaves: it leaves
/// a transaction open after an error, changes settings, or panics with the connection in hand.
/// `probe` returns what B (or A) sees; it must always be its own.
async fn alternate(
    pools: &TenantPools,
    a: &Tenant,
    b: &Tenant,
    probe: &str,
    expect: impl Fn(&Tenant) -> String,
) {
    for i in 0..CHECKOUTS {
        let t = if i % 2 == 0 { a } else { b };
        if t == a && i % 97 == 0 {
            misbehave(pools, a, i).await;
            continue;
        }
        let db = pools.checkout(t).await.unwrap();
        let row = db.query_one(probe, &[]).await.unwrap();
        let seen: String = row.get(0);
        assert_eq!(seen, expect(t), "checkout {i} for {}", t.id());
        let app: String = row.get(1);
        assert_eq!(app, "parapet", "checkout {i}: a setting leaked");
    }
}

async fn misbehave(pools: &TenantPools, a: &Tenant, i: usize) {
    match (i / 97) % 3 {
        0 => {
            // An error inside a transaction the handler opened itself and never closed.
            let db = pools.checkout(a).await.unwrap();
            db.batch_execute("BEGIN; SET application_name = 'dirty'; SET search_path = pg_catalog")
                .await
                .unwrap();
            assert!(db.batch_execute("SELECT 1/0").await.is_err());
        }
        1 => {
            // Session-level changes, committed.
            let db = pools.checkout(a).await.unwrap();
            db.batch_execute("SET application_name = 'dirty'; SET search_path = pg_catalog; SELECT set_config('app.tenant_id', 'zzz', false)")
                .await
                .unwrap();
        }
        _ => {
            // A panic with the connection checked out, mid-transaction.
            let pools = pools.clone();
            let a = a.clone();
            let joined = tokio::spawn(async move {
                let mut db = pools.checkout(&a).await.unwrap();
                let tx = db.transaction().await.unwrap();
                tx.batch_execute("SET LOCAL application_name = 'dirty'; SELECT set_config('app.tenant_id', 'zzz', false)")
                    .await
                    .unwrap();
                panic!("handler panicked mid-transaction");
            })
            .await;
            assert!(joined.unwrap_err().is_panic());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_never_leaks() {
    let db = TestDb::migrated("pool_rls").await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO tenants (id, name) VALUES ('a', 'A'), ('b', 'B');
             INSERT INTO leads (org_id, name) SELECT 'a', 'lead a' || g FROM generate_series(1, 5) g;
             INSERT INTO leads (org_id, name) SELECT 'b', 'lead b' || g FROM generate_series(1, 3) g;",
        )
        .await
        .unwrap();
    let url = db.app_role_url().await;
    let pools = TenantPools::builder(url)
        .isolation(Isolation::row_level_security())
        .max_per_pool(2)
        .budget(4)
        .build()
        .await
        .unwrap();
    let (a, b) = (
        tenant("a", DatabaseTarget::Shared),
        tenant("b", DatabaseTarget::Shared),
    );

    // Rows of the other tenant are invisible, and cannot be written either.
    let probe = "SELECT string_agg(DISTINCT org_id, ',') || ':' || count(*) || ':' || current_setting('app.tenant_id'), current_setting('application_name') FROM leads";
    alternate(&pools, &a, &b, probe, |t| {
        let n = if t.id().as_str() == "a" { 5 } else { 3 };
        format!("{0}:{n}:{0}", t.id())
    })
    .await;
    let as_b = pools.checkout(&b).await.unwrap();
    let err = as_b
        .execute(
            "INSERT INTO leads (org_id, name) VALUES ('a', 'planted')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code().unwrap().code(),
        "42501",
        "RLS WITH CHECK refuses: {err}"
    );
    let status = pools.status();
    assert_eq!(
        status.targets.len(),
        1,
        "A and B share one pool: {status:?}"
    );
    assert!(status.targets[0].size <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_per_tenant_never_leaks() {
    let db = TestDb::create("pool_schema").await;
    let url = db.app_role_url().await;
    let role = parapet_tests::user_of(&url);
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA \"tenant_a\"; CREATE SCHEMA \"tenant_b-2\";
             CREATE TABLE \"tenant_a\".items (v text); CREATE TABLE \"tenant_b-2\".items (v text);
             INSERT INTO \"tenant_a\".items VALUES ('a1'), ('a2');
             INSERT INTO \"tenant_b-2\".items VALUES ('b1');
             GRANT USAGE ON SCHEMA \"tenant_a\", \"tenant_b-2\" TO {role};
             GRANT SELECT ON ALL TABLES IN SCHEMA \"tenant_a\", \"tenant_b-2\" TO {role};"
        ))
        .await
        .unwrap();
    let pools = TenantPools::builder(url)
        .isolation(Isolation::schema_per_tenant())
        .max_per_pool(2)
        .budget(4)
        .build()
        .await
        .unwrap();
    let (a, b) = (
        tenant("a", DatabaseTarget::Shared),
        tenant("b-2", DatabaseTarget::Shared),
    );
    let probe = "SELECT current_schema() || ':' || string_agg(v, ',' ORDER BY v), current_setting('application_name') FROM items";
    alternate(&pools, &a, &b, probe, |t| {
        if t.id().as_str() == "a" {
            "tenant_a:a1,a2".into()
        } else {
            "tenant_b-2:b1".into()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_per_tenant_routes_by_connection_string() {
    let (db_a, db_b) = (
        TestDb::create("pool_dba").await,
        TestDb::create("pool_dbb").await,
    );
    for db in [&db_a, &db_b] {
        db.client()
            .await
            .batch_execute(&format!(
                "CREATE TABLE items (v text); INSERT INTO items VALUES ('{}')",
                db.name()
            ))
            .await
            .unwrap();
    }
    let pools = TenantPools::builder(db_a.url())
        .isolation(Isolation::DatabasePerTenant)
        .max_per_pool(2)
        .budget(4)
        .build()
        .await
        .unwrap();
    let a = tenant("a", DatabaseTarget::Dedicated(db_a.url().to_owned()));
    let b = tenant("b", DatabaseTarget::Dedicated(db_b.url().to_owned()));
    let names = (db_a.name().to_owned(), db_b.name().to_owned());
    let probe = "SELECT current_database() || ':' || string_agg(v, ','), current_setting('application_name') FROM items";
    alternate(&pools, &a, &b, probe, |t| {
        let n = if t.id().as_str() == "a" {
            &names.0
        } else {
            &names.1
        };
        format!("{n}:{n}")
    })
    .await;
    assert_eq!(pools.status().targets.len(), 2, "one pool per database");

    // A tenant without a database of its own is refused, not served from the shared one.
    let shared = tenant("c", DatabaseTarget::Shared);
    let err = pools.checkout(&shared).await.unwrap_err();
    assert_eq!(err.status(), 500);
}
