//! `PgDirectory` behind `CachedDirectory` and `TenantLayer`, against the real PostgreSQL server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::get};
use http::Request;
use parapet_tenant::{
    BoxFuture, CachedDirectory, DirectoryError, Features, PgDirectory, Tenant, TenantDirectory,
    TenantId, TenantLayer, TenantRecord, TenantRejection,
};
use parapet_tests::{TestDb, pool_for};
use tower::ServiceExt;

/// Counts the queries that reach the real directory.
struct Counting {
    inner: PgDirectory,
    lookups: AtomicUsize,
    features: AtomicUsize,
}

impl Counting {
    fn new(db: &TestDb) -> Arc<Self> {
        Arc::new(Self {
            inner: PgDirectory::new(db.pool(8)),
            lookups: AtomicUsize::new(0),
            features: AtomicUsize::new(0),
        })
    }
    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl TenantDirectory for Counting {
    fn lookup<'a>(
        &'a self,
        id: &'a TenantId,
    ) -> BoxFuture<'a, Result<Option<TenantRecord>, DirectoryError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.lookup(id)
    }
    fn features<'a>(&'a self, id: &'a TenantId) -> BoxFuture<'a, Result<Features, DirectoryError>> {
        self.features.fetch_add(1, Ordering::SeqCst);
        self.inner.features(id)
    }
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

async fn seed(db: &TestDb) {
    db.client()
        .await
        .batch_execute(
            "INSERT INTO tenants (id, name, plan, status, database_url, settings) VALUES
               ('acme', 'Acme Corp', 'pro', 'active', NULL, '{\"region\": \"eu\"}'),
               ('globex', 'Globex', 'free', 'active', 'postgres://app:secret@db2/globex', '{}'),
               ('initech', 'Initech', 'free', 'suspended', NULL, '{}');
             INSERT INTO tenant_subscriptions (tenant_id, feature, status, period_start, period_end) VALUES
               ('acme', 'pro', 'active', now() - interval '1 day', NULL),
               ('acme', 'exports', 'trialing', now() - interval '1 day', now() + interval '1 day'),
               ('acme', 'sso', 'canceled', now() - interval '1 day', NULL),
               ('acme', 'audit', 'active', now() - interval '10 days', now() - interval '1 day'),
               ('acme', 'future', 'active', now() + interval '1 day', NULL);",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn records_and_features_come_from_the_tables() {
    let db = TestDb::migrated("dir_records").await;
    seed(&db).await;
    let dir = CachedDirectory::new(PgDirectory::new(db.pool(4)));

    let acme = dir.tenant(&id("acme")).await.unwrap();
    assert_eq!(acme.record().name, "Acme Corp");
    assert_eq!(acme.plan(), "pro");
    assert_eq!(acme.record().settings["region"], "eu");
    assert_eq!(
        acme.features()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["exports", "pro"],
        "active and trialing subscriptions whose period covers now, nothing else"
    );
    assert!(acme.has_feature("exports") && !acme.has_feature("sso"));

    let globex = dir.tenant(&id("globex")).await.unwrap();
    assert!(matches!(
        globex.database(),
        parapet_tenant::DatabaseTarget::Dedicated(url) if url.ends_with("/globex")
    ));
    assert!(
        !format!("{globex:?}").contains("secret"),
        "Debug must not print credentials"
    );
    assert_eq!(
        dir.tenant(&id("initech")).await.unwrap_err(),
        TenantRejection::Suspended
    );
    assert_eq!(
        dir.tenant(&id("nobody")).await.unwrap_err(),
        TenantRejection::Unknown
    );
}

#[tokio::test]
async fn ttl_is_honoured_and_invalidation_is_immediate() {
    let db = TestDb::migrated("dir_ttl").await;
    seed(&db).await;
    let counting = Counting::new(&db);
    let dir = CachedDirectory::builder(counting.clone())
        .ttl(Duration::from_millis(800))
        .build();
    let client = db.client().await;

    assert_eq!(
        dir.tenant(&id("acme")).await.unwrap().record().name,
        "Acme Corp"
    );
    client
        .execute("UPDATE tenants SET name = 'Acme 2' WHERE id = 'acme'", &[])
        .await
        .unwrap();
    // Within the TTL: served from the cache, no new query.
    assert_eq!(
        dir.tenant(&id("acme")).await.unwrap().record().name,
        "Acme Corp"
    );
    assert_eq!(counting.lookups(), 1);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        dir.tenant(&id("acme")).await.unwrap().record().name,
        "Acme 2"
    );
    assert_eq!(counting.lookups(), 2, "expired entry is loaded again");

    client
        .execute(
            "UPDATE tenants SET status = 'suspended' WHERE id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    assert!(dir.tenant(&id("acme")).await.is_ok(), "still cached");
    dir.invalidate(&id("acme")).await;
    assert_eq!(
        dir.tenant(&id("acme")).await.unwrap_err(),
        TenantRejection::Suspended,
        "invalidation makes the change visible at once"
    );
    assert_eq!(counting.lookups(), 3);
}

#[tokio::test]
async fn unknown_ids_are_cached_briefly_and_boundedly() {
    let db = TestDb::migrated("dir_negative").await;
    seed(&db).await;
    let counting = Counting::new(&db);
    let dir = CachedDirectory::builder(counting.clone())
        .negative_ttl(Duration::from_millis(800))
        .max_unknown(50)
        .build();

    for _ in 0..20 {
        assert_eq!(dir.record(&id("nobody")).await.unwrap(), None);
    }
    assert_eq!(
        counting.lookups(),
        1,
        "repeats of an unknown id make one query"
    );

    db.client()
        .await
        .execute(
            "INSERT INTO tenants (id, name) VALUES ('nobody', 'Nobody')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        dir.record(&id("nobody")).await.unwrap(),
        None,
        "negative answer still cached"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        dir.record(&id("nobody")).await.unwrap().is_some(),
        "negative TTL expired"
    );

    // Enumeration: 500 random unknown ids never hold more than the bound, and never evict the
    // known tenants (they live in a separate cache).
    dir.tenant(&id("acme")).await.unwrap();
    for i in 0..500 {
        assert_eq!(dir.record(&id(&format!("probe-{i}"))).await.unwrap(), None);
    }
    let stats = dir.stats().await;
    assert!(stats.unknown <= 50, "unknown ids are bounded: {stats:?}");
    let before = counting.lookups();
    dir.tenant(&id("acme")).await.unwrap();
    assert_eq!(
        counting.lookups(),
        before,
        "known tenant still cached: {stats:?}"
    );
}

#[tokio::test]
async fn concurrent_lookups_of_one_id_make_one_query() {
    let db = TestDb::migrated("dir_coalesce").await;
    seed(&db).await;
    let counting = Counting::new(&db);
    let dir = CachedDirectory::new(counting.clone());

    let lookups = (0..100).map(|_| {
        let dir = dir.clone();
        tokio::spawn(async move { dir.tenant(&id("acme")).await })
    });
    let tenants = futures_join_all(lookups).await;
    assert!(
        tenants
            .iter()
            .all(|t| t.as_ref().unwrap().id().as_str() == "acme")
    );
    assert_eq!(counting.lookups(), 1, "100 concurrent lookups, one query");
    assert_eq!(counting.features.load(Ordering::SeqCst), 1);

    let unknown = (0..100).map(|_| {
        let dir = dir.clone();
        tokio::spawn(async move { dir.record(&id("ghost")).await.unwrap() })
    });
    assert!(futures_join_all(unknown).await.iter().all(Option::is_none));
    assert_eq!(
        counting.lookups(),
        2,
        "100 concurrent unknown lookups, one query"
    );
}

async fn futures_join_all<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

fn router(dir: CachedDirectory) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|t: Tenant| async move { t.id().to_string() }),
        )
        .layer(TenantLayer::new(dir))
}

async fn status(app: &Router, tenant: &str) -> (u16, http::HeaderMap) {
    let req = Request::get("/whoami")
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    (res.status().as_u16(), res.headers().clone())
}

#[tokio::test]
async fn the_layer_serves_known_tenants_and_refuses_the_rest() {
    let db = TestDb::migrated("dir_layer").await;
    seed(&db).await;
    let app = router(CachedDirectory::new(PgDirectory::new(db.pool(4))));
    assert_eq!(status(&app, "acme").await.0, 200);
    assert_eq!(status(&app, "initech").await.0, 403);
    assert_eq!(status(&app, "nobody").await.0, 404);
    assert_eq!(status(&app, "no body").await.0, 400);
}

#[tokio::test]
async fn a_directory_outage_answers_503_quickly() {
    // Nothing listens on this port: connections are refused.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = router(CachedDirectory::new(PgDirectory::new(pool_for(
        &format!("postgres://postgres@127.0.0.1:{refused}/x"),
        2,
    ))));
    let started = Instant::now();
    let (code, headers) = status(&app, "acme").await;
    assert_eq!(code, 503);
    assert_eq!(headers["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A server that accepts and never answers: the directory's own timeout answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let dir = CachedDirectory::builder(PgDirectory::new(pool_for(
        &format!("postgres://postgres@127.0.0.1:{port}/x"),
        2,
    )))
    .timeout(Duration::from_millis(300))
    .build();
    let app = router(dir);
    let started = Instant::now();
    assert_eq!(status(&app, "acme").await.0, 503);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
}

/// Behind PgBouncer 1.18 in transaction mode (which keeps no named prepared statement across
/// transactions), every uncached lookup and feature load still answers: nothing is prepared
/// in one round trip and executed in another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_work_through_a_transaction_mode_pooler() {
    let db = TestDb::migrated("dir_pooler").await;
    seed(&db).await;
    let upstream: tokio_postgres::Config = db.url().parse().unwrap();
    let port = upstream.get_ports().first().copied().unwrap_or(5432);
    let bouncer = parapet_tests::pgbouncer::PgBouncer::start(
        db.name(),
        port,
        "transaction",
        2,
        &["postgres"],
    );
    let dir = Arc::new(PgDirectory::connect(&bouncer.url("postgres", db.name())).unwrap());
    let tasks = (0..16).map(|task| {
        let dir = dir.clone();
        tokio::spawn(async move {
            for n in 0..25 {
                let (tenant, plan) = if (task + n) % 2 == 0 {
                    ("acme", "pro")
                } else {
                    ("globex", "free")
                };
                let record = dir.lookup(&id(tenant)).await.unwrap().unwrap();
                assert_eq!(record.plan, plan);
                let features = dir.features(&id(tenant)).await.unwrap();
                assert_eq!(features.contains("pro"), tenant == "acme");
            }
        })
    });
    futures_join_all(tasks).await;
    drop(bouncer);
}
