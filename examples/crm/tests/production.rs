//! The demo in production modes, started by [`app::build`] from the variables the README's
//! Deploying section sets:
//!
//! - a TLS-only PostgreSQL (`hostnossl ... reject`) reached with `sslmode=verify-full` and a CA
//!   the test makes, and a TLS-only Redis reached with `rediss://` and `PARAPET_REDIS_CA_CERT`;
//! - PgBouncer 1.18 in transaction mode (2 server connections) in front of PostgreSQL, with
//!   `DATABASE_DIRECT_URL` for the migrations and `PARAPET_ISOLATION_SCOPE=transaction`.
//!
//! In both, tenants never see each other's rows or cached responses. Every server the test
//! starts is stopped by a guard, also when it panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::{Router, body::Body};
use example_crm::{app, setup};
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use parapet_tests::{
    TestDb, certs::TestCa, cluster::TempCluster, pgbouncer::PgBouncer, redis_tls::TlsRedis,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const TENANTS: [&str; 2] = ["acme", "globex"];
const LEADS: u32 = 60;

/// A response with its body read.
#[derive(Debug)]
struct Res {
    status: StatusCode,
    cache_status: String,
    body: Vec<u8>,
}

impl Res {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    fn json(&self, status: StatusCode, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.text());
        serde_json::from_slice(&self.body).unwrap()
    }

    fn is_hit(&self) -> bool {
        self.cache_status.split(';').any(|m| m.trim() == "hit")
    }
}

async fn send(
    router: &Router,
    method: Method,
    tenant: &str,
    uri: &str,
    body: Option<Value>,
) -> Res {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-tenant-id", tenant);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let res = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    Res {
        status: parts.status,
        cache_status: parts
            .headers
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

async fn get(router: &Router, tenant: &str, uri: &str) -> Res {
    send(router, Method::GET, tenant, uri, None).await
}

/// Creates a lead for `tenant` and returns its id.
async fn create_lead(router: &Router, tenant: &str, name: &str) -> i64 {
    let body = json!({ "name": name, "email": format!("{name}@{tenant}-private.example") });
    let res = send(router, Method::POST, tenant, "/api/leads", Some(body)).await;
    res.json(StatusCode::CREATED, "create a lead")["id"]
        .as_i64()
        .unwrap()
}

/// Asserts that every item of a page of leads belongs to `tenant` (seeded leads have
/// `@<tenant>.example` addresses, created ones `@<tenant>-private.example`).
#[track_caller]
fn assert_own_leads(page: &Value, tenant: &str, what: &str) -> Vec<i64> {
    let items = page["items"].as_array().unwrap();
    for item in items {
        let email = item["email"].as_str().unwrap_or_default();
        assert!(
            email.ends_with(&format!("@{tenant}.example"))
                || email.ends_with(&format!("@{tenant}-private.example")),
            "{what}: {tenant} was answered {item}"
        );
    }
    items.iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

/// The demo tests' isolation checks: by header, lists and single records, and (with the
/// cache on) a cached read is not served to the other tenant and a write invalidates.
async fn isolation_checks(router: &Router, cache: bool) {
    for tenant in TENANTS {
        let page = get(router, tenant, "/api/leads?limit=100").await;
        let ids = assert_own_leads(&page.json(StatusCode::OK, tenant), tenant, "list");
        assert_eq!(ids.len(), LEADS as usize, "{tenant}: every seeded lead");
    }
    let id = create_lead(router, "acme", "ada").await;
    let uri = format!("/api/leads/{id}");
    get(router, "acme", &uri)
        .await
        .json(StatusCode::OK, "acme's own lead");
    let res = get(router, "globex", &uri).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    let page = get(router, "globex", "/api/leads?limit=100").await;
    let ids = assert_own_leads(&page.json(StatusCode::OK, "globex"), "globex", "list");
    assert!(!ids.contains(&id), "globex lists acme's lead");

    if !cache {
        return;
    }
    let list = "/api/leads?limit=5";
    let first = get(router, "acme", list).await;
    let ids = assert_own_leads(&first.json(StatusCode::OK, list), "acme", list);
    assert_eq!(ids[0], id, "acme's newest lead first");
    let again = get(router, "acme", list).await;
    assert!(
        again.is_hit(),
        "acme's repeat is cached: {}",
        again.cache_status
    );
    let other = get(router, "globex", list).await;
    assert!(
        !other.is_hit(),
        "acme's cached list served to globex: {}",
        other.cache_status
    );
    let ids = assert_own_leads(&other.json(StatusCode::OK, list), "globex", list);
    assert!(!ids.contains(&id));
    assert!(
        get(router, "globex", list).await.is_hit(),
        "globex's own copy"
    );

    let newer = create_lead(router, "acme", "grace").await;
    let after = get(router, "acme", list).await;
    assert!(
        !after.is_hit(),
        "a write invalidates: {}",
        after.cache_status
    );
    let ids = assert_own_leads(&after.json(StatusCode::OK, list), "acme", list);
    assert_eq!(ids[0], newer, "the new lead is listed");
    let other = get(router, "globex", list).await;
    let ids = assert_own_leads(&other.json(StatusCode::OK, list), "globex", list);
    assert!(!ids.contains(&newer) && !ids.contains(&id));
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn unique_prefix(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("parapet:crmprod:{label}:{}:{nanos}:", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_postgres_verify_full_and_rediss_tenants_stay_apart() {
    let ca = TestCa::new("crm-prod");
    let (crt, key) = ca.issue_server("server", &["DNS:localhost", "IP:127.0.0.1"]);
    let postgres = TempCluster::start_tls(&crt, &key);
    let redis = TlsRedis::start(&crt, &key, &ca.cert());
    let ca_file = ca.cert().display().to_string();
    let database_url = format!(
        "postgres://postgres@localhost:{}/crm?sslmode=verify-full&sslrootcert={ca_file}",
        postgres.port()
    );
    let redis_url = format!("rediss://localhost:{}", redis.port());
    let prefix = unique_prefix("tls");
    let demo = app::build(
        vars(&[
            ("DATABASE_URL", &database_url),
            ("REDIS_URL", &redis_url),
            ("PARAPET_REDIS_CA_CERT", &ca_file),
            ("PARAPET_CACHE_PREFIX", &prefix),
            ("PARAPET_QUOTA_PREFIX", &format!("{prefix}quota:")),
            ("PARAPET_TELEMETRY", "off"),
        ]),
        LEADS,
    )
    .await
    .unwrap_or_else(|e| panic!("the demo did not start: {e}\n{}", postgres.log()));
    assert!(
        demo.database_url.contains(setup::APP_ROLE)
            && demo.database_url.contains("sslmode=verify-full"),
        "{}",
        demo.database_url
    );

    let ready = demo
        .router
        .clone()
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = ready.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({ "status": "ready", "postgres": "up", "redis": "up" })
    );

    isolation_checks(&demo.router, true).await;

    // The cache used that Redis, over TLS (it has no plain-text port): both tenants' entries
    // are there, under the demo's prefix.
    let keys = redis.cli(&["--scan", "--pattern", &format!("{prefix}*")]);
    for tenant in TENANTS {
        assert!(keys.contains(tenant), "no key of {tenant} in Redis: {keys}");
    }
    let stats = demo.cache.as_ref().unwrap().stats();
    assert_eq!(stats.redis_errors, 0, "{stats:?}");

    // The API's connections are the app role's, encrypted.
    let admin = setup::connect(&database_url.parse().unwrap())
        .await
        .unwrap();
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1",
            &[&setup::APP_ROLE],
        )
        .await
        .unwrap();
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all > 0 && encrypted == all, "{encrypted} of {all} over TLS");
}

/// What the concurrent run saw.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicUsize,
    unavailable: AtomicUsize,
    created: std::sync::Mutex<Vec<(&'static str, i64)>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_pgbouncer_in_transaction_mode_no_tenant_sees_another() {
    const REQUESTS: usize = 2_000;
    const CLIENTS: usize = 32;
    let db = TestDb::create("crm_pgbouncer").await;
    let upstream: tokio_postgres::Config = db.url().parse().unwrap();
    let port = upstream.get_ports().first().copied().unwrap_or(5432);
    let bouncer = PgBouncer::start(db.name(), port, "transaction", 2, &[setup::APP_ROLE]);
    let pooled_url = bouncer.url(setup::APP_ROLE, db.name());
    let demo = app::build(
        vars(&[
            ("DATABASE_URL", &pooled_url),
            ("DATABASE_DIRECT_URL", db.url()),
            ("PARAPET_ISOLATION_SCOPE", "transaction"),
            // Every read reaches PostgreSQL through the pooler.
            ("PARAPET_CACHE", "off"),
            // 2,000 requests by 32 clients as fast as they go would spend globex's free plan.
            ("PARAPET_QUOTA", "off"),
            ("PARAPET_TELEMETRY", "off"),
        ]),
        LEADS,
    )
    .await
    .unwrap_or_else(|e| panic!("the demo did not start: {e}\n{}", bouncer.log()));
    assert_eq!(
        demo.database_url, pooled_url,
        "the API serves through PgBouncer"
    );
    isolation_checks(&demo.router, false).await;

    // 2,000 requests from 32 clients, alternating tenants; every 20th a write.
    let tally = std::sync::Arc::new(Tally::default());
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (router, tally, next) = (demo.router.clone(), tally.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= REQUESTS {
                        return;
                    }
                    let tenant = TENANTS[n % 2];
                    let res = if n % 20 == 0 {
                        let body = json!({ "name": format!("load {n}"), "email": format!("load{n}@{tenant}-private.example") });
                        send(&router, Method::POST, tenant, "/api/leads", Some(body)).await
                    } else {
                        let uri = format!("/api/leads?limit={}", 1 + n % 50);
                        get(&router, tenant, &uri).await
                    };
                    match res.status {
                        StatusCode::OK => {
                            let page: Value = serde_json::from_slice(&res.body).unwrap();
                            assert_own_leads(&page, tenant, &format!("request {n}"));
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        StatusCode::CREATED => {
                            let lead: Value = serde_json::from_slice(&res.body).unwrap();
                            tally.created.lock().unwrap().push((tenant, lead["id"].as_i64().unwrap()));
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        StatusCode::SERVICE_UNAVAILABLE => {
                            tally.unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("request {n} ({tenant}): {other} {}", res.text()),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let (ok, unavailable) = (
        tally.ok.load(Ordering::Relaxed),
        tally.unavailable.load(Ordering::Relaxed),
    );
    eprintln!(
        "{REQUESTS} requests by {CLIENTS} clients through PgBouncer in {:?}: {ok} ok, {unavailable} 503",
        started.elapsed()
    );
    assert_eq!(ok + unavailable, REQUESTS);
    assert!(
        unavailable <= REQUESTS / 100,
        "{unavailable} answers were 503"
    );

    // Every lead written through the pooler is its tenant's, and only its tenant reads it.
    let created = tally.created.lock().unwrap().clone();
    assert!(created.len() >= REQUESTS / 20 - unavailable, "{created:?}");
    let client = db.client().await;
    for (tenant, id) in &created {
        let owner: String = client
            .query_one("SELECT org_id FROM leads WHERE id = $1", &[id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(&owner, tenant, "lead {id}");
    }
    let activity: HashSet<(String, i64)> = client
        .query(
            "SELECT tenant_id, subject_id FROM collab_activity WHERE actor = 'api'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (tenant, id) in created.iter().take(10) {
        assert!(
            activity.contains(&((*tenant).to_owned(), *id)),
            "activity of lead {id}"
        );
        let other = TENANTS.iter().find(|t| *t != tenant).unwrap();
        let res = get(&demo.router, other, &format!("/api/leads/{id}")).await;
        assert_eq!(
            res.status,
            StatusCode::NOT_FOUND,
            "{other} reads {tenant}'s lead {id}"
        );
    }
    drop(demo);
    drop(bouncer);
}
