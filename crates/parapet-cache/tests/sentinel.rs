//! Sentinel failover under load: a primary, a replica and a `redis-sentinel` started by the
//! test (short `down-after-milliseconds`), the primary killed while requests run through two
//! `CacheLayer` instances found through `redis+sentinel://`. Every request answers 200
//! (fail open), the Redis tier resumes on the promoted replica (an entry stored before the
//! failover is served from it, a new one lands on it), and the invalidation subscriber
//! follows the primary (a purge on one instance reaches the other's local tier again).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{RedisServer, cache_status, eventually, free_ports, get, send, unique_prefix};
use parapet_cache::{CacheLayer, RedisConfig, Store};
use parapet_tenant::TenantId;
use tower::{Layer, ServiceExt};

/// A `redis-sentinel` process watching the primary as `cache`, killed on drop.
struct Sentinel {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sentinel {
    fn start(port: u16, primary: u16) -> Self {
        let dir = std::env::temp_dir().join(unique_prefix("sentinel").replace(':', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor cache 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds cache 1000\n\
                 sentinel failover-timeout cache 5000\n\
                 sentinel parallel-syncs cache 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (with --sentinel; Debian packages redis-server, redis-sentinel) must be installed for this test");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-sentinel did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir }
    }

    fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (Debian package redis-tools) for this test");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn instance(url: &str, prefix: &str, local: bool) -> CacheLayer {
    let mut builder = CacheLayer::builder();
    if local {
        builder = builder.local(4 * 1024 * 1024);
    }
    builder
        .redis(
            RedisConfig::new(url)
                .timeout(Duration::from_millis(300))
                .breaker(3, Duration::from_millis(200))
                // Purges must reach the other instance through pub/sub, not a TTL.
                .generation_ttl(Duration::from_secs(60)),
        )
        .prefix(prefix)
        .build()
        .unwrap()
}

async fn status_of(cache: &CacheLayer, path: &str) -> String {
    let (service, _) = common::rest_origin();
    cache_status(&send(cache, service, get("acme", path)).await)
}

async fn has(cache: &CacheLayer, path: &str) -> bool {
    let tenant = TenantId::parse("acme").unwrap();
    let key = cache.handle().key_for(Some(&tenant), path).await;
    cache.store().get(key.as_bytes()).await.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_tier_follows_a_sentinel_failover() {
    let started = Instant::now();
    let [p, r, s] = free_ports();
    let mut primary = RedisServer::start(p, &[]);
    let replica = RedisServer::start(r, &["--replicaof", "127.0.0.1", &p.to_string()]);
    let sentinel = Sentinel::start(s, p);
    eventually("the replica in sync", Duration::from_secs(10), || async {
        cli(r, &["info", "replication"]).contains("master_link_status:up")
    })
    .await;
    eventually(
        "the sentinel sees the replica",
        Duration::from_secs(10),
        || async {
            sentinel
                .cli(&["sentinel", "replicas", "cache"])
                .contains(&r.to_string())
        },
    )
    .await;

    let url = format!("redis+sentinel://127.0.0.1:{s}/cache");
    let prefix = unique_prefix("sentinel");
    // `redis_only` answers from Redis alone; `a` and `b` have a local tier in front.
    let redis_only = instance(&url, &prefix, false);
    let (a, b) = (instance(&url, &prefix, true), instance(&url, &prefix, true));
    for i in 0..10 {
        let path = format!("/k{i}");
        assert!(status_of(&redis_only, &path).await.contains("stored"));
        let status = status_of(&redis_only, &path).await;
        assert!(status.ends_with("detail=redis"), "{path}: {status}");
    }
    for cache in [&a, &b] {
        assert!(status_of(cache, "/k0").await.ends_with("detail=redis"));
    }
    // Both subscribers are on the primary before it fails.
    eventually(
        "two subscribers on the primary",
        Duration::from_secs(5),
        || async {
            let numsub = cli(p, &["pubsub", "numsub", &format!("{prefix}invalidate")]);
            numsub.lines().nth(1).map(str::trim) == Some("2")
        },
    )
    .await;

    // Load through a Redis-only layer over 20 keys, half of them stored before the failover.
    let (service, _) = common::rest_origin();
    let service = redis_only.layer(service);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (service, stop) = (service.clone(), stop.clone());
            let (ok, failed) = (ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = w;
                // Bounded: at most 30 s of requests even if the test stalls.
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let uri = format!("/k{}", i % 20);
                    match service.clone().oneshot(get("acme", &uri)).await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 4;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    primary.stop();
    let killed = Instant::now();
    eventually(
        "the sentinel promotes the replica",
        Duration::from_secs(15),
        || async {
            sentinel
                .cli(&["sentinel", "get-master-addr-by-name", "cache"])
                .contains(&r.to_string())
        },
    )
    .await;
    eprintln!("failover took {:?}", killed.elapsed());

    // The Redis tier resumes on the new primary: an entry stored before the failover is
    // served from it.
    let took = eventually("the redis tier back", Duration::from_secs(10), || async {
        status_of(&redis_only, "/k3")
            .await
            .ends_with("detail=redis")
    })
    .await;
    eprintln!("redis tier resumed {took:?} after the promotion");
    // A new entry lands on the new primary.
    assert!(status_of(&redis_only, "/after").await.contains("stored"));
    let keys = cli(r, &["--scan", "--pattern", &format!("{prefix}*")]);
    assert!(
        keys.lines().count() >= 11,
        "entries on the new primary: {keys}"
    );

    // The subscribers moved: a purge on A reaches B's local tier.
    eventually(
        "B's subscriber on the new primary",
        Duration::from_secs(5),
        || async {
            let numsub = cli(r, &["pubsub", "numsub", &format!("{prefix}invalidate")]);
            numsub.lines().nth(1).map(str::trim) == Some("2")
        },
    )
    .await;
    // The purged key is one the load above never asks for: a worker's miss on a purged key
    // stores it in Redis again (as it should), and B would then find the new copy there.
    assert!(status_of(&redis_only, "/purged").await.contains("stored"));
    // B's first read fills its local tier (from Redis, or from the origin if B's own data path
    // has not found the new primary yet); the second is answered locally.
    status_of(&b, "/purged").await;
    assert!(status_of(&b, "/purged").await.ends_with("detail=local"));
    // A's own data path has not been used since the failover. Reads through it find the new
    // primary first, so the purge below tests the subscribers' move, not how long an idle
    // instance's first write takes to find it (that path, a failed delete left as a tombstone
    // and retried with backoff, is tested in `tests/invalidation_repair.rs`).
    let took = eventually(
        "A reads from the new primary",
        Duration::from_secs(20),
        || async { has(&a, "/k6").await },
    )
    .await;
    eprintln!("A's data path reached the new primary {took:?} after B's subscriber");
    let acme = TenantId::parse("acme").unwrap();
    a.handle().purge(Some(&acme), "/purged").await;
    let took = eventually("purge reached B", Duration::from_secs(20), || async {
        !has(&b, "/purged").await
    })
    .await;
    eprintln!("the purge reached B {took:?} after it was sent");

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests answered during the failover, {failed} failed");
    assert_eq!(failed, 0, "every request answered 200 (fail open)");
    assert!(ok > 100, "the load ran: {ok}");
    drop(replica);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
}
