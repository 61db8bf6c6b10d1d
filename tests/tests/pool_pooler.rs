//! Behind PgBouncer in transaction mode (2 server connections), transaction scope keeps every
//! tenant to its own rows, and session scope is shown to leak: the problem the scope solves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use parapet_pool::{Db, DbError, Isolation, IsolationScope, TenantPools};
use parapet_tenant::{DatabaseTarget, Features, Tenant, TenantId, TenantRecord};
use parapet_tests::{TestDb, pgbouncer::PgBouncer};

const TENANTS: usize = 20;
const WORKERS: usize = 8;

fn tenant(i: usize) -> Tenant {
    Tenant::new(
        Arc::new(
            TenantRecord::new(TenantId::parse(&format!("t{i:02}")).unwrap())
                .database(DatabaseTarget::Shared),
        ),
        Arc::new(Features::new()),
    )
}

/// What tenant `i` must see: its id, its `i + 1` leads, its setting.
fn expected(i: usize) -> String {
    format!("t{i:02}:{}:t{i:02}", i + 1)
}

/// Leads visible to the checkout, their count and the tenant setting; the parameter makes the
/// statement a prepared (typed) one.
const PROBE: &str = "SELECT coalesce(string_agg(DISTINCT org_id, ','), '') || ':' || count(*) \
    || ':' || coalesce(current_setting('app.tenant_id', true), '') FROM leads WHERE length(name) > $1";

/// A migrated database with 20 tenants (`t00`..`t19`, tenant i owning i + 1 leads), PgBouncer
/// in transaction mode with 2 server connections in front of it, and the app role's URL
/// through PgBouncer.
async fn setup(label: &str) -> (TestDb, PgBouncer, String) {
    let db = TestDb::migrated(label).await;
    let mut sql = String::new();
    for i in 0..TENANTS {
        sql.push_str(&format!(
            "INSERT INTO tenants (id, name) VALUES ('t{i:02}', 'T{i}');
             INSERT INTO leads (org_id, name) SELECT 't{i:02}', 'lead ' || g FROM generate_series(1, {n}) g;",
            n = i + 1
        ));
    }
    db.client().await.batch_execute(&sql).await.unwrap();
    let direct = db.app_role_url().await;
    let role = parapet_tests::user_of(&direct);
    let upstream: tokio_postgres::Config = parapet_tests::admin_url().parse().unwrap();
    let port = upstream.get_ports().first().copied().unwrap_or(5432);
    let bouncer = PgBouncer::start(db.name(), port, "transaction", 2, &[&role]);
    let url = bouncer.url(&role, db.name());
    (db, bouncer, url)
}

async fn pools(url: &str, scope: IsolationScope) -> TenantPools {
    TenantPools::builder(url)
        .isolation(Isolation::row_level_security())
        .scope(scope)
        .max_per_pool(WORKERS)
        .budget(WORKERS)
        .wait_timeout(Duration::from_secs(10))
        .recycle_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

/// A small deterministic generator (xorshift), so a failing run can be replayed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What one checkout saw: one string per statement.
async fn one_checkout(db: &mut Db, kind: u64) -> Result<Vec<String>, DbError> {
    let min_len = 0i32;
    let mut seen = Vec::new();
    match kind % 10 {
        // An explicit transaction with two statements.
        0 => {
            let tx = db.transaction().await?;
            seen.push(tx.query_one(PROBE, &[&min_len]).await?.get(0));
            seen.push(tx.query_one(PROBE, &[&min_len]).await?.get(0));
            tx.commit().await?;
        }
        // Two statements in a row, each a transaction of its own.
        1 | 2 => {
            seen.push(db.query_one(PROBE, &[&min_len]).await?.get(0));
            seen.push(db.query_one(PROBE, &[&min_len]).await?.get(0));
        }
        _ => seen.push(db.query_one(PROBE, &[&min_len]).await?.get(0)),
    }
    Ok(seen)
}

#[derive(Debug, Default)]
struct Outcome {
    own: AtomicUsize,
    foreign: AtomicUsize,
    failed: AtomicUsize,
    examples: std::sync::Mutex<Vec<String>>,
}

impl Outcome {
    fn example(&self, line: String) {
        let mut examples = self.examples.lock().unwrap();
        if examples.len() < 5 {
            examples.push(line);
        }
    }
}

/// `checkouts` checkouts by `WORKERS` concurrent workers, each of a random tenant.
async fn interleave(pools: &TenantPools, checkouts: usize, seed: u64) -> Arc<Outcome> {
    let outcome = Arc::new(Outcome::default());
    let left = Arc::new(AtomicU64::new(checkouts as u64));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (pools, outcome, left) = (pools.clone(), outcome.clone(), left.clone());
            tokio::spawn(async move {
                let mut rng = seed + w as u64 * 7919;
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let i = (next(&mut rng) % TENANTS as u64) as usize;
                    let result = match pools.checkout(&tenant(i)).await {
                        Ok(mut db) => one_checkout(&mut db, next(&mut rng)).await,
                        Err(e) => {
                            outcome.failed.fetch_add(1, Ordering::Relaxed);
                            outcome.example(format!("checkout of t{i:02}: {e}"));
                            continue;
                        }
                    };
                    match result {
                        Ok(seen) if seen.iter().all(|s| *s == expected(i)) => {
                            outcome.own.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(seen) => {
                            outcome.foreign.fetch_add(1, Ordering::Relaxed);
                            outcome.example(format!("t{i:02} saw {seen:?}"));
                        }
                        Err(e) => {
                            outcome.failed.fetch_add(1, Ordering::Relaxed);
                            outcome.example(format!("t{i:02}: {e}"));
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_scope_keeps_every_tenant_to_its_rows_behind_pgbouncer() {
    let (_db, bouncer, url) = setup("pool_txscope").await;
    let pools = pools(&url, IsolationScope::Transaction).await;
    let started = Instant::now();
    let outcome = interleave(&pools, 10_000, 0x9E37_79B9_7F4A_7C15).await;
    let (own, foreign, failed) = (
        outcome.own.load(Ordering::Relaxed),
        outcome.foreign.load(Ordering::Relaxed),
        outcome.failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "transaction scope through PgBouncer: {own} own, {foreign} foreign, {failed} failed in {:?}",
        started.elapsed()
    );
    assert_eq!(
        (foreign, failed),
        (0, 0),
        "examples: {:?}\npgbouncer log tail: {}",
        outcome.examples.lock().unwrap(),
        bouncer
            .log()
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(own, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_scope_leaks_behind_pgbouncer() {
    let (_db, _bouncer, url) = setup("pool_sessscope").await;
    let pools = pools(&url, IsolationScope::Session).await;
    let outcome = interleave(&pools, 2_000, 0x2545_F491_4F6C_DD1D).await;
    let (own, foreign, failed) = (
        outcome.own.load(Ordering::Relaxed),
        outcome.foreign.load(Ordering::Relaxed),
        outcome.failed.load(Ordering::Relaxed),
    );
    let examples = outcome.examples.lock().unwrap().clone();
    eprintln!(
        "session scope through PgBouncer: {own} own, {foreign} foreign, {failed} failed; {examples:?}"
    );
    assert!(
        foreign + failed > 0,
        "session scope behind a transaction-mode pooler did not leak nor fail: {own} own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_moved_by_the_pooler_says_to_use_transaction_scope() {
    let (_db, _bouncer, url) = setup("pool_hint").await;
    let pools = pools(&url, IsolationScope::Session).await;
    let db = pools.checkout(&tenant(3)).await.unwrap();
    // Prepared (and cached) on the one server connection PgBouncer has opened so far.
    let sql = "SELECT count(*) FROM leads WHERE length(name) > $1";
    db.query_one(sql, &[&0i32]).await.unwrap();
    // Another client holds that server connection in a transaction: the next statement runs
    // on a new one, which does not have the prepared statement.
    let other = parapet_tests::connect(&url).await;
    other.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let err = db.query_one(sql, &[&0i32]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("26000"), "{err}");
    assert!(
        err.hint()
            .is_some_and(|h| h.contains("IsolationScope::Transaction")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("PARAPET_ISOLATION_SCOPE=transaction"),
        "{err}"
    );
    other.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_per_tenant_in_transaction_scope_behind_pgbouncer() {
    let db = TestDb::create("pool_txschema").await;
    let direct = db.app_role_url().await;
    let role = parapet_tests::user_of(&direct);
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA tenant_a; CREATE SCHEMA \"tenant_b-2\";
             CREATE TABLE tenant_a.items (v text); CREATE TABLE \"tenant_b-2\".items (v text);
             INSERT INTO tenant_a.items VALUES ('a1'), ('a2');
             INSERT INTO \"tenant_b-2\".items VALUES ('b1');
             GRANT USAGE ON SCHEMA tenant_a, \"tenant_b-2\" TO {role};
             GRANT SELECT ON ALL TABLES IN SCHEMA tenant_a, \"tenant_b-2\" TO {role};"
        ))
        .await
        .unwrap();
    let upstream: tokio_postgres::Config = parapet_tests::admin_url().parse().unwrap();
    let port = upstream.get_ports().first().copied().unwrap_or(5432);
    let bouncer = PgBouncer::start(db.name(), port, "transaction", 2, &[&role]);
    let pools = TenantPools::builder(bouncer.url(&role, db.name()))
        .isolation(Isolation::schema_per_tenant())
        .scope(IsolationScope::Transaction)
        .max_per_pool(4)
        .budget(4)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let shared = |id: &str| {
        Tenant::new(
            Arc::new(
                TenantRecord::new(TenantId::parse(id).unwrap()).database(DatabaseTarget::Shared),
            ),
            Arc::new(Features::new()),
        )
    };
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let pools = pools.clone();
            let (a, b) = (shared("a"), shared("b-2"));
            tokio::spawn(async move {
                for i in 0..250 {
                    let (t, want) = if (i + w) % 2 == 0 {
                        (&a, "tenant_a:a1,a2")
                    } else {
                        (&b, "tenant_b-2:b1")
                    };
                    let db = pools.checkout(t).await.unwrap();
                    let seen: String = db
                        .query_one(
                            "SELECT current_schema() || ':' || string_agg(v, ',' ORDER BY v) \
                             FROM items WHERE length(v) > $1",
                            &[&0i32],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(seen, want, "checkout {i} of worker {w} for {}", t.id());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
}
