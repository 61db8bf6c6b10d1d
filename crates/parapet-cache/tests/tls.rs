//! The Redis tier over TLS (`rediss://`) on a `redis-server --tls-port` the test starts, with a
//! CA the test makes with `openssl`: entries, tags and cross-instance invalidation work with
//! the CA given; an unusable CA is an error when the store is made, naming the server and the
//! reason; a CA that did not sign the server's certificate, or a missing client certificate
//! where one is required, fails open (a miss, never a failed request).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    Origin, RedisCluster, RedisServer, TestPki, cache_status, eventually, free_port, get, send,
    unique_prefix,
};
use parapet_cache::{CacheLayer, RedisConfig, Store};
use parapet_tenant::TenantId;

/// A TLS-only `redis-server` on a free port.
fn tls_server(pki: &TestPki, require_client_cert: bool) -> RedisServer {
    let port = free_port();
    let args = pki.server_args(port, require_client_cert);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RedisServer::start(port, &args)
}

fn rediss(server: &RedisServer) -> String {
    format!("rediss://127.0.0.1:{}", server.port)
}

/// An origin whose GETs are cacheable for 5 min and tagged `all`.
fn origin() -> (impl Origin, Arc<AtomicUsize>) {
    common::origin(|_, request| {
        let headers = if request.method() == http::Method::GET {
            vec![
                ("cache-control", "max-age=300".to_owned()),
                ("cache-tag", "all".to_owned()),
            ]
        } else {
            vec![("cache-control", "no-store".to_owned())]
        };
        (200, headers, request.uri().path().to_owned())
    })
}

fn instance(config: RedisConfig, prefix: &str) -> CacheLayer {
    CacheLayer::builder()
        .local(4 * 1024 * 1024)
        .redis(config.timeout(Duration::from_millis(1000)))
        .prefix(prefix)
        .build()
        .unwrap()
}

async fn status_of(cache: &CacheLayer, path: &str) -> String {
    let (service, _) = origin();
    cache_status(&send(cache, service, get("acme", path)).await)
}

async fn has(cache: &CacheLayer, path: &str) -> bool {
    let tenant = TenantId::parse("acme").unwrap();
    let key = cache.handle().key_for(Some(&tenant), path).await;
    cache.store().get(key.as_bytes()).await.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_tier_tags_and_invalidation_work_over_tls_with_a_private_ca() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, false);
    let prefix = unique_prefix("tls");
    let config = || RedisConfig::new(rediss(&server)).ca_cert_file(pki.path("ca.pem"));
    let (a, b) = (instance(config(), &prefix), instance(config(), &prefix));
    entries_tags_and_invalidation_work(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_serves_tags_and_invalidation_over_sharded_pub_sub() {
    let pki = TestPki::generate();
    let cluster = RedisCluster::start_tls(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
        (&pki.path("client.pem"), &pki.path("client.key")),
    );
    let urls = cluster.urls();
    assert!(
        urls.iter().all(|url| url.starts_with("rediss://")),
        "{urls:?}"
    );
    let prefix = unique_prefix("tls-cluster");
    let config = || RedisConfig::cluster(urls.clone()).ca_cert_file(pki.path("ca.pem"));
    let (a, b) = (instance(config(), &prefix), instance(config(), &prefix));
    entries_tags_and_invalidation_work(&a, &b).await;
    // The subscribers hold a sharded subscription, over TLS, on the channel's node.
    let subscribed: usize = cluster
        .nodes
        .iter()
        .map(|node| {
            let out = cluster.cli(node.port, &["pubsub", "shardchannels"]);
            out.lines().filter(|line| !line.trim().is_empty()).count()
        })
        .sum();
    assert!(subscribed >= 1, "no sharded channel on any node");
}

/// Entries stored by `a` are read from Redis by `b`; a purge by key and by tag on `a` reaches
/// `b`'s local tier through pub/sub.
async fn entries_tags_and_invalidation_work(a: &CacheLayer, b: &CacheLayer) {
    for path in ["/a", "/b", "/c"] {
        let stored = status_of(a, path).await;
        assert!(stored.contains("stored"), "{path}: {stored}");
        let from_redis = status_of(b, path).await;
        assert!(from_redis.ends_with("detail=redis"), "{path}: {from_redis}");
        let local = status_of(b, path).await;
        assert!(local.ends_with("detail=local"), "{path}: {local}");
    }
    // Let B's subscriber (started with its first store operation) subscribe over TLS.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A purge by key on A reaches B's local tier through pub/sub over TLS.
    let acme = TenantId::parse("acme").unwrap();
    a.handle().purge(Some(&acme), "/a").await;
    eventually("/a invalidated on B", Duration::from_secs(3), || async {
        !has(b, "/a").await
    })
    .await;
    assert!(has(b, "/b").await, "other entries stay");

    // Tags live in Redis: a purge by tag on A finds the keys B read and removes them on B.
    assert_eq!(a.handle().purge_tag(Some(&acme), "all").await, 3);
    for path in ["/b", "/c"] {
        eventually(
            "tagged entry invalidated on B",
            Duration::from_secs(3),
            || async { !has(b, path).await },
        )
        .await;
    }
    for (name, cache) in [("a", a), ("b", b)] {
        let stats = cache.stats();
        assert_eq!(stats.redis_errors, 0, "{name}: {stats:?}");
        assert!(stats.redis_hits > 0 || name == "a", "{name}: {stats:?}");
    }
}

#[tokio::test]
async fn an_unusable_ca_is_an_error_at_start_naming_the_server_and_the_reason() {
    let pki = TestPki::generate();
    let port = free_port();
    let url = format!("rediss://:secret@127.0.0.1:{port}");

    // Not a certificate: the server's key instead of the CA.
    let error = CacheLayer::builder()
        .redis(RedisConfig::new(url.clone()).ca_cert_file(pki.path("server.key")))
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("no certificate"), "{error}");
    assert!(!error.contains("secret"), "no password in errors: {error}");

    // A file that is not there.
    let missing = pki.path("missing.pem");
    let error = CacheLayer::builder()
        .redis(RedisConfig::new(url.clone()).ca_cert_file(&missing))
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains(missing.to_str().unwrap()), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");

    // A client certificate with another certificate's key.
    let error = CacheLayer::builder()
        .redis(
            RedisConfig::new(url.clone())
                .ca_cert_file(pki.path("ca.pem"))
                .client_cert_files(pki.path("client.pem"), pki.path("server.key")),
        )
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("client certificate"), "{error}");

    // Certificates for a URL without TLS.
    let error = CacheLayer::builder()
        .redis(
            RedisConfig::new(format!("redis://127.0.0.1:{port}")).ca_cert_file(pki.path("ca.pem")),
        )
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("not rediss://"), "{error}");

    // The same checks for a cluster's seed nodes.
    let error = CacheLayer::builder()
        .redis(
            RedisConfig::cluster([format!("rediss://127.0.0.1:{port}")])
                .ca_cert_pem(b"-----BEGIN NOTHING-----".to_vec()),
        )
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
}

/// Sends `n` GETs of one path and checks that every one is a 200 that Redis did not serve.
async fn fails_open(cache: &CacheLayer, n: usize) {
    let (service, calls) = origin();
    for _ in 0..n {
        let response = send(cache, service.clone(), get("acme", "/x")).await;
        assert_eq!(response.status(), 200);
        let status = cache_status(&response);
        assert!(!status.contains("detail=redis"), "{status}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        n,
        "every request went upstream"
    );
    assert!(cache.stats().redis_errors > 0, "{:?}", cache.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_did_not_sign_the_server_fails_open_at_request_time() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, false);
    let cache = CacheLayer::builder()
        .redis(
            RedisConfig::new(rediss(&server))
                .ca_cert_file(pki.path("other-ca.pem"))
                .timeout(Duration::from_millis(500)),
        )
        .prefix(unique_prefix("tls-wrong-ca"))
        .build()
        .expect("a CA that parses is accepted at start");
    fails_open(&cache, 3).await;

    // Without a CA, the public roots do not know the test CA either.
    let cache = CacheLayer::builder()
        .redis(RedisConfig::new(rediss(&server)).timeout(Duration::from_millis(500)))
        .prefix(unique_prefix("tls-public-roots"))
        .build()
        .unwrap();
    fails_open(&cache, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, true);
    let prefix = unique_prefix("mtls");
    let with_cert = instance(
        RedisConfig::new(rediss(&server))
            .ca_cert_pem(std::fs::read(pki.path("ca.pem")).unwrap())
            .client_cert_pem(
                std::fs::read(pki.path("client.pem")).unwrap(),
                std::fs::read(pki.path("client.key")).unwrap(),
            ),
        &prefix,
    );
    let other = instance(
        RedisConfig::new(rediss(&server))
            .ca_cert_file(pki.path("ca.pem"))
            .client_cert_files(pki.path("client.pem"), pki.path("client.key")),
        &prefix,
    );
    assert!(status_of(&with_cert, "/m").await.contains("stored"));
    let status = status_of(&other, "/m").await;
    assert!(status.ends_with("detail=redis"), "{status}");

    // The server refuses a client without a certificate: fail open.
    let without = CacheLayer::builder()
        .redis(
            RedisConfig::new(rediss(&server))
                .ca_cert_file(pki.path("ca.pem"))
                .timeout(Duration::from_millis(500)),
        )
        .prefix(prefix)
        .build()
        .unwrap();
    fails_open(&without, 2).await;
}
