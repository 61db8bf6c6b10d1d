//! Three demo instances on one Redis Cluster of three masters (started by the test) and one
//! PostgreSQL database, each with its local cache tier on: a list every instance has cached (a
//! `Cache-Status` hit on each) is gone from all three after a write through one of them, and the
//! next read on each shows the write within 2 s. Another tenant's cached list stays cached.
//!
//! Each instance is the demo's stack built from variables (`REDIS_CLUSTER_URLS`), as `main.rs`
//! builds it, with its own local tier and its own invalidation subscriber: they share nothing but
//! the database and the cluster. The cluster's processes are killed when the test ends, on a
//! panic too (its guard's drop).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::{Router, body::Body};
use example_crm::{api, setup};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use parapet_testkit::{RedisCluster, unique_prefix};
use parapet_tests::TestDb;
use serde_json::{Value, json};
use tower::ServiceExt;

const LIST: &str = "/api/leads?limit=5";

/// One demo instance: the stack from variables and the router, as `main.rs` builds them.
async fn instance(app_url: &str, cluster: &RedisCluster, prefix: &str) -> Router {
    let seeds = cluster.urls().join(",");
    let config = parapet::EnvConfig::from_map([
        ("DATABASE_URL", app_url),
        ("PARAPET_TENANT_HOST", "localhost"),
        ("PARAPET_CACHE_DEFAULT_TTL", "/api/=10"),
        ("PARAPET_TELEMETRY", "off"),
        ("REDIS_CLUSTER_URLS", seeds.as_str()),
        ("PARAPET_CACHE_PREFIX", prefix),
    ])
    .unwrap();
    assert_eq!(config.redis_cluster_urls.len(), 3);
    assert!(config.cache_local_bytes > 0, "the local tier is on");
    let stack = config.build().await.unwrap();
    api::router(api::AppState::new(&stack), stack, None)
}

/// A response: status, `Cache-Status`, JSON body.
#[derive(Debug)]
struct Res {
    status: StatusCode,
    cache_status: String,
    body: Value,
}

impl Res {
    fn is_hit(&self) -> bool {
        self.cache_status
            .split(';')
            .any(|member| member.trim() == "hit")
    }

    /// The name of the list's first (newest) lead.
    fn newest(&self) -> &str {
        self.body["items"][0]["name"].as_str().unwrap_or_default()
    }
}

async fn send(router: &Router, request: Request<Body>) -> Res {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Res {
        status: parts.status,
        cache_status: parts
            .headers
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {}",
                parts.status,
                String::from_utf8_lossy(&bytes)
            )
        }),
    }
}

async fn get(router: &Router, tenant: &str, uri: &str) -> Res {
    let request = Request::get(uri)
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap();
    let res = send(router, request).await;
    assert_eq!(res.status, StatusCode::OK, "GET {uri}: {}", res.body);
    res
}

/// Reads the list on every instance until each has it cached (a hit), at most 2 s; returns
/// the name of the newest lead each one serves.
async fn cache_everywhere(instances: &[Router], tenant: &str) -> Vec<String> {
    let mut newest = Vec::new();
    for (i, router) in instances.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let res = get(router, tenant, LIST).await;
            if res.is_hit() {
                newest.push(res.newest().to_owned());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance {i}: {tenant}'s list is never a hit: {}",
                res.cache_status
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    newest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_instance_invalidates_the_cached_read_on_all_three() {
    let cluster = RedisCluster::start();
    let db = TestDb::create("crm_cluster").await;
    let app_url = setup::prepare(db.url(), None, 50)
        .await
        .unwrap_or_else(|e| panic!("prepare failed: {e}"));
    let prefix = unique_prefix("crm-cluster");
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(&app_url, &cluster, &prefix).await);
    }

    // Each instance reports the Cluster as up, asked through its cache's own connection.
    for (i, router) in instances.iter().enumerate() {
        let res = send(router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status, StatusCode::OK, "instance {i}: {}", res.body);
        assert_eq!(res.body["redis"], "up", "instance {i}: {}", res.body);
    }

    // Every instance serves both tenants' lists from its cache.
    let before = cache_everywhere(&instances, "acme").await;
    assert!(before.iter().all(|name| name == &before[0]), "{before:?}");
    let globex = cache_everywhere(&instances, "globex").await;

    // A write through the first instance.
    let name = format!("Cluster lead {}", std::process::id());
    let request = Request::post("/api/leads")
        .header("x-tenant-id", "acme")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "name": name, "email": "cluster@example.com" }).to_string(),
        ))
        .unwrap();
    let created = send(&instances[0], request).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let written = Instant::now();

    // The cached list is gone from all three: the next read on each shows the write.
    for (i, router) in instances.iter().enumerate() {
        let deadline = written + Duration::from_secs(2);
        loop {
            let res = get(router, "acme", LIST).await;
            if res.newest() == name {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance {i} still serves the list from before the write after 2 s \
                 (Cache-Status: {}; newest: {:?})",
                res.cache_status,
                res.newest()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The other tenant's list was not purged: still a hit, unchanged, on every instance.
    for (i, router) in instances.iter().enumerate() {
        let res = get(router, "globex", LIST).await;
        assert!(res.is_hit(), "instance {i}: globex: {}", res.cache_status);
        assert_eq!(res.newest(), globex[i], "instance {i}");
    }
}
