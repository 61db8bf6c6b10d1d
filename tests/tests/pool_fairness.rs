//! Fair shares of the shared pool: a tenant that asks for every connection gets its share and
//! no more, another tenant still gets in, waiting tenants are served in turn, and cancelled
//! checkouts give their turn back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::get};
use http::Request;
use parapet_pool::{Db, DbError, PoolError, PoolLayer, TenantPools};
use parapet_tenant::{Features, StaticDirectory, Tenant, TenantId, TenantLayer, TenantRecord};
use parapet_tests::TestDb;
use tower::ServiceExt;

fn tenant(id: &str) -> Tenant {
    Tenant::new(
        Arc::new(TenantRecord::new(TenantId::parse(id).unwrap())),
        Arc::new(Features::new()),
    )
}

fn usage_of(pools: &TenantPools, id: &str) -> (usize, usize) {
    pools
        .tenant_usage(100)
        .into_iter()
        .find(|u| u.tenant.as_ref().is_some_and(|t| t.as_str() == id))
        .map_or((0, 0), |u| (u.in_use, u.waiting))
}

/// Polls `check` until it holds, failing after 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hog_gets_its_share_and_another_tenant_still_gets_in() {
    let db = TestDb::create("pool_fair_hog").await;
    let pools = TenantPools::builder(db.url())
        .budget(20)
        .max_per_pool(8)
        .tenant_share(0.5)
        .wait_timeout(Duration::from_secs(3))
        .build()
        .await
        .unwrap();
    assert_eq!(pools.status().targets.len(), 0);

    // The hog asks for every connection of the pool at once and holds what it gets.
    let (release, released) = tokio::sync::watch::channel(false);
    let hog = tenant("hog");
    let connected = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (pools, hog, mut released) = (pools.clone(), hog.clone(), released.clone());
            let connected = connected.clone();
            tokio::spawn(async move {
                let db = pools.checkout(&hog).await?;
                db.query_one("SELECT 1", &[]).await.unwrap();
                connected.fetch_add(1, Ordering::SeqCst);
                released.wait_for(|r| *r).await.unwrap();
                Ok::<_, PoolError>(())
            })
        })
        .collect();
    eventually("the hog holds its share and waits for more", || {
        connected.load(Ordering::SeqCst) == 4 && usage_of(&pools, "hog") == (4, 4)
    })
    .await;

    // Another tenant gets a connection while the hog holds its share and queues for more.
    let started = Instant::now();
    let other = pools.checkout(&tenant("other")).await.unwrap();
    let waited = started.elapsed();
    eprintln!("another tenant's checkout beside the hog took {waited:?}");
    let row = other.query_one("SELECT 2::int", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    // Well under the hog's wait: the other tenant did not queue behind it. (The aim is 50 ms;
    // the machine is shared, so only a generous correctness bound is asserted and the time is
    // printed.)
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    assert_eq!(
        usage_of(&pools, "hog"),
        (4, 4),
        "the hog never exceeds its share"
    );
    assert_eq!(usage_of(&pools, "other"), (1, 0));
    let status = pools.status();
    assert_eq!(status.targets[0].tenant_share, 4);
    assert!(status.targets[0].size <= 5, "{status:?}");
    assert_eq!(status.targets[0].waiting, 4, "{status:?}");

    // Through a router, the hog's next request waits its timeout and gets the usual 503.
    let app = Router::new()
        .route(
            "/",
            get(|db: Db| async move {
                db.query_one("SELECT 1", &[]).await?;
                Ok::<_, DbError>("ok")
            }),
        )
        .layer(PoolLayer::new(pools.clone()))
        .layer(TenantLayer::new(
            StaticDirectory::new()
                .tenant(TenantRecord::new(TenantId::parse("hog").unwrap()))
                .tenant(TenantRecord::new(TenantId::parse("third").unwrap())),
        ));
    let request = |id: &str| {
        Request::get("/")
            .header("x-tenant-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let res = app.clone().oneshot(request("hog")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["retry-after"], "1");
    let res = app.clone().oneshot(request("third")).await.unwrap();
    assert_eq!(res.status(), 200, "a third tenant is served meanwhile");

    // The hog's checkouts beyond its share timed out; the four it got were real.
    release.send(true).unwrap();
    let mut got = 0;
    let mut timed_out = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => got += 1,
            Err(PoolError::Timeout) => timed_out += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Those beyond the share waited as long as the router's request did, so they timed out
    // unless a turn came in the instant before: at least the share got in.
    assert!(got >= 4, "got {got}, timed out {timed_out}");
    assert_eq!(got + timed_out, 8);
    drop(other);
    eventually("every share is back", || pools.tenant_usage(10).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_two_tenants_are_served_alternately() {
    let db = TestDb::create("pool_fair_turns").await;
    let pools = TenantPools::builder(db.url())
        .budget(20)
        .max_per_pool(1)
        .tenant_share(1.0)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let held = pools.checkout(&tenant("holder")).await.unwrap();

    // Three checkouts of `a` queue first, then three of `b`.
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, id) in ["a", "a", "a", "b", "b", "b"].into_iter().enumerate() {
        let (p, order) = (pools.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let db = p.checkout(&tenant(id)).await.unwrap();
            db.query_one("SELECT 1", &[]).await.unwrap();
            order.lock().unwrap().push(id);
        }));
        eventually("the checkout queued", || {
            pools.status().targets[0].waiting == i + 1
        })
        .await;
    }
    drop(held);
    for task in tasks {
        task.await.unwrap();
    }
    // Without turns the pool serves first come first served: a a a b b b.
    assert_eq!(*order.lock().unwrap(), ["a", "b", "a", "b", "a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_checkouts_give_their_turn_back() {
    let db = TestDb::create("pool_fair_cancel").await;
    let pools = TenantPools::builder(db.url())
        .budget(20)
        .max_per_pool(4)
        .tenant_share(0.5)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let a = tenant("a");
    let first = pools.checkout(&a).await.unwrap();
    let second = pools.checkout(&a).await.unwrap();

    // Twenty checkouts queue behind the tenant's share and are cancelled while waiting.
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let (pools, a) = (pools.clone(), a.clone());
            tokio::spawn(async move { pools.checkout(&a).await.map(drop) })
        })
        .collect();
    eventually("twenty waiters", || usage_of(&pools, "a") == (2, 20)).await;
    for task in &waiting {
        task.abort();
    }
    // Half of them cancelled in the instant a slot is handed over.
    drop(first);
    for task in waiting {
        let _ = task.await;
    }
    eventually("the cancelled waiters are gone", || {
        usage_of(&pools, "a") == (1, 0)
    })
    .await;

    // Cancellation at any point of a checkout (queued, connecting, setting the tenant).
    for i in 0..40u64 {
        let pools = pools.clone();
        let a = a.clone();
        let _ = tokio::time::timeout(Duration::from_micros(i * 150), async move {
            let db = pools.checkout(&a).await.unwrap();
            db.query_one("SELECT 1", &[]).await.unwrap();
        })
        .await;
    }
    drop(second);
    eventually("nothing held, nothing waiting", || {
        pools.tenant_usage(10).is_empty() && pools.status().targets[0].waiting == 0
    })
    .await;

    // The whole share is available again, without waiting.
    let started = Instant::now();
    let one = pools.checkout(&a).await.unwrap();
    let two = pools.checkout(&a).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(usage_of(&pools, "a"), (2, 0));
    drop((one, two));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_usage_is_bounded_to_the_top_and_the_rest() {
    let db = TestDb::create("pool_fair_top").await;
    let pools = TenantPools::builder(db.url())
        .budget(20)
        .max_per_pool(10)
        .tenant_share(0.3)
        .build()
        .await
        .unwrap();
    let mut held = Vec::new();
    for (id, n) in [("t1", 3), ("t2", 2), ("t3", 1), ("t4", 1)] {
        for _ in 0..n {
            held.push(pools.checkout(&tenant(id)).await.unwrap());
        }
    }
    let usage = pools.tenant_usage(2);
    let t = |id: &str| Some(TenantId::parse(id).unwrap());
    assert_eq!(usage.len(), 3, "{usage:?}");
    assert_eq!((usage[0].tenant.clone(), usage[0].in_use), (t("t1"), 3));
    assert_eq!((usage[1].tenant.clone(), usage[1].in_use), (t("t2"), 2));
    assert_eq!(
        (usage[2].tenant.clone(), usage[2].in_use, usage[2].waiting),
        (None, 2, 0),
        "t3 and t4 summed"
    );
    let all: usize = pools.tenant_usage(100).iter().map(|u| u.in_use).sum();
    assert_eq!(all, 7);
    drop(held);
}

#[tokio::test]
async fn a_share_outside_zero_to_one_is_a_start_up_error_naming_it() {
    for share in [0.0, -0.5, 1.5, f64::NAN] {
        let err = TenantPools::builder("postgres://app@127.0.0.1:5432/unused")
            .budget(5)
            .tenant_share(share)
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PoolError::Config(msg) if msg.contains("tenant_share")),
            "{share}: {err}"
        );
    }
}

/// Every checkout reports how long it waited, with its tenant and pool (what
/// `db.client.connection.wait_time` records): a tenant that waits for another's connection
/// reports the wait, one that finds a connection free reports almost none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_report_their_wait() {
    let db = TestDb::create("pool_fair_wait_time").await;
    let pools = TenantPools::builder(db.url())
        .budget(4)
        .max_per_pool(1)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let waits: Arc<Mutex<Vec<(String, String, Duration)>>> = Arc::default();
    pools.observe_waits({
        let waits = Arc::clone(&waits);
        move |tenant, pool, wait| {
            waits
                .lock()
                .unwrap()
                .push((tenant.to_string(), pool.to_owned(), wait));
        }
    });
    let held = pools.checkout(&tenant("first")).await.unwrap();
    held.query_one("SELECT 1", &[]).await.unwrap();
    let second = tokio::spawn({
        let pools = pools.clone();
        async move {
            let db = pools.checkout(&tenant("second")).await.unwrap();
            db.query_one("SELECT 1", &[]).await.unwrap();
        }
    });
    eventually("the second tenant waits", || {
        usage_of(&pools, "second").1 == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(held);
    second.await.unwrap();
    let waits = waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 2, "{waits:?}");
    assert_eq!(
        (waits[0].0.as_str(), waits[0].1.as_str()),
        ("first", "shared")
    );
    assert_eq!(
        (waits[1].0.as_str(), waits[1].1.as_str()),
        ("second", "shared")
    );
    assert!(waits[1].2 >= Duration::from_millis(200), "{waits:?}");
    assert!(waits[0].2 < waits[1].2, "{waits:?}");
}
