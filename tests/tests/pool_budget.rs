//! A server's connection budget holds across hundreds of pools, and idle pools are dropped with
//! their connections closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use parapet_pool::{Isolation, TenantPools};
use parapet_tenant::{DatabaseTarget, Features, Tenant, TenantId, TenantRecord};
use parapet_tests::{TestDb, connect};

const TENANTS: usize = 300;
const BUDGET: usize = 20;

async fn connections(admin: &tokio_postgres::Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&format!("{app}%")],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_targets_stay_within_the_budget() {
    let db = TestDb::create("pool_budget").await;
    let app = format!("pbudget{}x", std::process::id());
    // 300 targets: the same server, told apart by application_name, so each is its own pool.
    let tenants: Vec<Tenant> = (0..TENANTS)
        .map(|i| {
            let url = format!("{}?application_name={app}{i}", db.url());
            Tenant::new(
                Arc::new(
                    TenantRecord::new(TenantId::parse(&format!("t{i}")).unwrap())
                        .database(DatabaseTarget::Dedicated(url)),
                ),
                Arc::new(Features::new()),
            )
        })
        .collect();
    let pools = TenantPools::builder(db.url())
        .isolation(Isolation::DatabasePerTenant)
        .budget(BUDGET)
        .max_per_pool(5)
        .max_pools(1000)
        .wait_timeout(Duration::from_secs(20))
        .idle_timeout(Duration::from_millis(300))
        .pool_idle_timeout(Duration::from_millis(600))
        .reap_interval(Duration::from_millis(100))
        .build()
        .await
        .unwrap();

    // Watch the server's own count of our connections while the load runs.
    let admin = connect(&parapet_tests::admin_url()).await;
    let peak = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done, app) = (peak.clone(), done.clone(), app.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let n = connections(&admin, &app).await;
                peak.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            admin
        })
    };

    let started = Instant::now();
    let tasks: Vec<_> = tenants
        .iter()
        .cloned()
        .map(|t| {
            let pools = pools.clone();
            tokio::spawn(async move {
                let db = pools.checkout(&t).await?;
                db.query_one("SELECT pg_sleep(0.005)::text", &[])
                    .await
                    .unwrap();
                Ok::<_, parapet_pool::PoolError>(())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let admin = watcher.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak > 0, "the watcher saw the connections");
    assert!(
        peak <= BUDGET as i64,
        "peak {peak} connections > budget {BUDGET}"
    );
    let status = pools.status();
    assert!(status.budget_in_use <= BUDGET, "{status:?}");
    eprintln!("300 targets served in {took:?}, peak {peak} server connections (budget {BUDGET})");

    // Idle connections are closed and idle pools dropped by the reaper.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = connections(&admin, &app).await;
        let status = pools.status();
        if open == 0 && status.targets.is_empty() && status.budget_in_use == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {open} connections and {} pools after 10 s",
            status.targets.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
