//! Connection budgets per database server: database-per-tenant across two servers keeps each
//! under its own budget, and three replicas built with `.replicas(3)` stay under one server's
//! `max_connections` together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use parapet_pool::{Isolation, TenantPools};
use parapet_tenant::{DatabaseTarget, Features, Tenant, TenantId, TenantRecord};
use parapet_tests::cluster::TempCluster;

/// A tenant with a database of its own on `cluster`, told apart by `application_name` so that
/// each is a pool of its own.
fn tenant_on(cluster: &TempCluster, app: &str, i: usize) -> Tenant {
    let url = format!("{}?application_name={app}{i}", cluster.url());
    Tenant::new(
        Arc::new(
            TenantRecord::new(TenantId::parse(&format!("t{i}")).unwrap())
                .database(DatabaseTarget::Dedicated(url)),
        ),
        Arc::new(Features::new()),
    )
}

/// Watches the number of `app*` connections of a server and keeps the peak.
struct Watcher {
    peak: Arc<AtomicI64>,
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn start(cluster: &TempCluster, app: &str) -> Self {
        let admin = parapet_tests::connect(&cluster.url()).await;
        let (peak, done) = (
            Arc::new(AtomicI64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let pattern = format!("{app}%");
        let task = {
            let (peak, done) = (peak.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let n: i64 = admin
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                            &[&pattern],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    peak.fetch_max(n, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        Self { peak, done, task }
    }

    async fn peak(self) -> i64 {
        self.done.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// `per_tenant` concurrent checkouts of every tenant, each holding its connection 20 ms.
async fn load(pools: &TenantPools, tenants: &[Tenant], per_tenant: usize) -> Vec<String> {
    let tasks: Vec<_> = tenants
        .iter()
        .flat_map(|t| std::iter::repeat_n(t.clone(), per_tenant))
        .map(|t| {
            let pools = pools.clone();
            tokio::spawn(async move {
                let db = pools.checkout(&t).await.map_err(|e| e.to_string())?;
                db.query_one("SELECT pg_sleep(0.02)::text", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failures.push(e);
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_server_has_its_own_budget() {
    // Budgets read from each server: 30 − 3 superuser-reserved − 2 = 25, and 20 − 3 − 2 = 15.
    let (a, b) = (
        TempCluster::start_with_max_connections(30),
        TempCluster::start_with_max_connections(20),
    );
    let app = format!("psrv{}x", std::process::id());
    let tenants: Vec<Tenant> = (0..24)
        .map(|i| tenant_on(if i % 2 == 0 { &a } else { &b }, &app, i))
        .collect();
    let pools = TenantPools::builder(a.url())
        .isolation(Isolation::DatabasePerTenant)
        .reserve(2)
        .max_per_pool(5)
        .max_pools(100)
        .wait_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let (watch_a, watch_b) = (
        Watcher::start(&a, &app).await,
        Watcher::start(&b, &app).await,
    );
    let failures = load(&pools, &tenants, 10).await;
    let (peak_a, peak_b) = (watch_a.peak().await, watch_b.peak().await);
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let servers: Vec<(String, usize)> = pools
        .status()
        .servers
        .iter()
        .map(|s| (s.server.clone(), s.budget))
        .collect();
    let (key_a, key_b) = (
        format!("127.0.0.1:{}", a.port()),
        format!("127.0.0.1:{}", b.port()),
    );
    let mut expected = vec![(key_a, 25), (key_b, 15)];
    expected.sort();
    assert_eq!(servers, expected);
    eprintln!("peaks: {peak_a} on a (budget 25), {peak_b} on b (budget 15)");
    assert!(
        peak_a <= 25,
        "server a: {peak_a} connections > its budget 25"
    );
    assert!(
        peak_b <= 15,
        "server b: {peak_b} connections > its budget 15"
    );
    assert!(
        peak_a + peak_b > 25,
        "the two servers together held {} connections: no more than one budget",
        peak_a + peak_b
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_stay_under_max_connections_together() {
    // (40 − 3 superuser-reserved − 1) / 3 = 12 connections per replica, 36 together.
    let cluster = TempCluster::start_with_max_connections(40);
    let app = format!("prep{}x", std::process::id());
    let tenants: Vec<Tenant> = (0..8).map(|i| tenant_on(&cluster, &app, i)).collect();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let pools = TenantPools::builder(cluster.url())
            .isolation(Isolation::DatabasePerTenant)
            .replicas(3)
            .reserve(1)
            .max_per_pool(5)
            .wait_timeout(Duration::from_secs(30))
            .build()
            .await
            .unwrap();
        assert_eq!(pools.status().budget, 12, "{:?}", pools.status());
        replicas.push(pools);
    }
    let watcher = Watcher::start(&cluster, &app).await;
    let runs: Vec<_> = replicas
        .iter()
        .map(|pools| {
            let (pools, tenants) = (pools.clone(), tenants.clone());
            tokio::spawn(async move { load(&pools, &tenants, 8).await })
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        failures.extend(run.await.unwrap());
    }
    let peak = watcher.peak().await;
    eprintln!("peak {peak} connections of 3 replicas (36 budgeted, max_connections 40)");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(peak <= 36, "{peak} connections > 3 × 12");
    assert!(
        peak > 12,
        "the replicas together used more than one budget: {peak}"
    );
}
