//! Randomized isolation: 100,000 requests (bounded in time) over 50 tenants through the whole
//! stack as `EnvConfig` builds it (tenant, cache with its local tier and the real Redis, pools
//! with row-level security on the real PostgreSQL), and every answer proved to belong to the
//! tenant that asked.
//!
//! The mix: the same paths for every tenant, a `Vary`ing header, the four resolvers (header,
//! host, path prefix, JWT), writes (`POST`, which invalidates the URI), tag purges and tenant
//! purges, ambiguous and unknown tenants. Each request carries a nonce the client registers
//! with its tenant, URI and variant; the echo handler returns the nonce of the request it
//! answered, so a response served from the cache names the request that filled it, and that
//! request must have been the same tenant's, for the same URI and variant. The rows handler
//! returns the `org_id` of each row row-level security let it read.
//!
//! The seed is printed; `PARAPET_ISOLATION_SEED=<n>` replays a run's choices (the interleaving
//! of the tasks is the scheduler's).
//!
//! All 100,000 requests must be sent within the time bound, or the test fails saying how many
//! it reached. The workspace's dev profile builds dependencies at `opt-level = 1` for this: in
//! a plain debug build the library's dependencies (the local tier's cache, the Redis client,
//! JWT verification, tokio and `http`) cost about three times as much CPU per request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parapet::{CacheHandle, Db, Tenant, TenantId};
use parapet_tests::TestDb;
use serde_json::{Value, json};
use tower::ServiceExt;

const TENANTS: usize = 50;
const REQUESTS: usize = 100_000;
const WORKERS: usize = 16;
/// The run stops here even if the requests are not all sent, and then fails with the count.
const TIME_BOUND: Duration = Duration::from_secs(150);
const PATHS: usize = 6;
const VARIANTS: [Option<&str>; 3] = [None, Some("a"), Some("b")];
const SECRET: &str = "isolation-random-secret-of-32-bytes-at-least";

fn tenant_id(i: usize) -> String {
    format!("iso{i:02}")
}

/// Versions the echo handler reports, bumped by each tenant's writes.
#[derive(Clone, Default)]
struct AppState {
    versions: Arc<Mutex<HashMap<(String, String), u64>>>,
    cache: Option<CacheHandle>,
}

fn echo_body(tenant: &Tenant, headers: &HeaderMap, path: &str, version: u64) -> Value {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    json!({
        "tenant": tenant.id().as_str(),
        "path": path,
        "nonce": header("x-nonce"),
        "variant": header("x-variant"),
        "version": version,
    })
}

fn cached(body: Value, tags: &'static str) -> Response {
    (
        [
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=30"),
            ),
            (header::VARY, HeaderValue::from_static("x-variant")),
            (
                header::HeaderName::from_static("cache-tag"),
                HeaderValue::from_static(tags),
            ),
        ],
        Json(body),
    )
        .into_response()
}

async fn echo(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(n): Path<String>,
    headers: HeaderMap,
) -> Response {
    let version = *state
        .versions
        .lock()
        .unwrap()
        .get(&(tenant.id().to_string(), n.clone()))
        .unwrap_or(&0);
    cached(echo_body(&tenant, &headers, &n, version), "echo")
}

async fn echo_in_path(
    state: State<AppState>,
    tenant: Tenant,
    Path((_, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    echo(state, tenant, Path(n), headers).await
}

async fn write(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(n): Path<String>,
    headers: HeaderMap,
) -> Response {
    let version = {
        let mut versions = state.versions.lock().unwrap();
        let v = versions
            .entry((tenant.id().to_string(), n.clone()))
            .or_default();
        *v += 1;
        *v
    };
    Json(echo_body(&tenant, &headers, &n, version)).into_response()
}

/// The tenant's newest leads as row-level security shows them: each row's `org_id`.
async fn rows(tenant: Tenant, db: Db, headers: HeaderMap) -> Response {
    let rows = match db
        .query("SELECT org_id FROM leads ORDER BY id DESC LIMIT 5", &[])
        .await
    {
        Ok(rows) => rows,
        Err(e) => return e.into_response(),
    };
    let owners: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut body = echo_body(&tenant, &headers, "rows", 0);
    body["owners"] = json!(owners);
    cached(body, "rows")
}

async fn add_row(State(state): State<AppState>, tenant: Tenant, db: Db) -> Response {
    let tenant_id = tenant.id().as_str();
    if let Err(e) = db
        .execute(
            "INSERT INTO leads (org_id, name) VALUES ($1, 'random')",
            &[&tenant_id],
        )
        .await
    {
        return e.into_response();
    }
    drop(db);
    if let Some(cache) = &state.cache {
        cache.purge_tag(Some(tenant.id()), "rows").await;
    }
    (StatusCode::CREATED, Json(json!({ "tenant": tenant_id }))).into_response()
}

/// A small deterministic generator (xorshift64*), so a seed replays the choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How a request names its tenant.
#[derive(Clone, Copy, Debug)]
enum Resolver {
    Header,
    Host,
    Path,
    Jwt,
}

const RESOLVERS: [Resolver; 4] = [
    Resolver::Header,
    Resolver::Host,
    Resolver::Path,
    Resolver::Jwt,
];

/// What a nonce was sent with: tenant, URI, variant.
type Sent = (usize, String, Option<&'static str>);

#[derive(Default)]
struct Ledger {
    nonces: Mutex<HashMap<u64, Sent>>,
    next: AtomicU64,
    wrong: Mutex<Vec<String>>,
    wrong_count: AtomicUsize,
    checked: AtomicUsize,
    hits: AtomicUsize,
    writes: AtomicUsize,
    purges: AtomicUsize,
    refused: AtomicUsize,
}

impl Ledger {
    fn issue(&self, sent: Sent) -> u64 {
        let nonce = self.next.fetch_add(1, Ordering::Relaxed);
        self.nonces.lock().unwrap().insert(nonce, sent);
        nonce
    }

    fn wrong(&self, what: String) {
        self.wrong_count.fetch_add(1, Ordering::Relaxed);
        let mut wrong = self.wrong.lock().unwrap();
        if wrong.len() < 20 {
            wrong.push(what);
        }
    }
}

fn token(tenant: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "client", "tenant_id": tenant, "exp": exp }),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A request for tenant `t` through `resolver` to `/echo/{n}` (or `/t/{tenant}/echo/{n}`).
fn request(
    method: http::Method,
    tenant: &str,
    resolver: Resolver,
    path: &str,
    tokens: &[String],
    t: usize,
) -> http::request::Builder {
    // A JWT is the authority: every request carries its tenant's token, and the source drawn
    // (header, host, path, or the token alone) names the tenant beside it and must agree.
    let builder = Request::builder()
        .method(method)
        .header(header::AUTHORIZATION, format!("Bearer {}", tokens[t]));
    match resolver {
        Resolver::Header => builder.uri(path).header("x-tenant-id", tenant),
        Resolver::Host => builder
            .uri(path)
            .header(header::HOST, format!("{tenant}.localhost")),
        Resolver::Path => builder.uri(format!("/t/{tenant}{path}")),
        Resolver::Jwt => builder.uri(path),
    }
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let res = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&bytes) }));
    (parts.status, parts.headers, body)
}

/// Checks an echo or rows answer against the ledger; returns why it is wrong.
fn judge(
    ledger: &Ledger,
    t: usize,
    uri: &str,
    variant: Option<&str>,
    body: &Value,
) -> Option<String> {
    let tenant = tenant_id(t);
    if body["tenant"] != tenant.as_str() {
        return Some(format!("tenant {} in the body", body["tenant"]));
    }
    let nonce: u64 = body["nonce"].as_str()?.parse().ok()?;
    let Some((sent_t, sent_uri, sent_variant)) = ledger.nonces.lock().unwrap().get(&nonce).cloned()
    else {
        return Some(format!("nonce {nonce} was never sent"));
    };
    if sent_t != t || sent_uri != uri || sent_variant != variant {
        return Some(format!(
            "the answer of a request for {} {sent_uri} variant {sent_variant:?}",
            tenant_id(sent_t)
        ));
    }
    if body["variant"].as_str() != variant {
        return Some(format!("variant {} in the body", body["variant"]));
    }
    if let Some(owners) = body["owners"].as_array()
        && owners.iter().any(|o| o != tenant.as_str())
    {
        return Some(format!("rows of {owners:?}"));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_belongs_to_the_tenant_that_asked() {
    parapet_testkit::require_redis().await;
    let db = TestDb::migrated("isolation_random").await;
    let admin = db.client().await;
    for t in 0..TENANTS {
        let id = tenant_id(t);
        admin
            .execute(
                "INSERT INTO tenants (id, name, plan) VALUES ($1, $1, 'pro')",
                &[&id],
            )
            .await
            .unwrap();
        admin
            .execute(
                "INSERT INTO leads (org_id, name) SELECT $1, 'seed ' || i FROM generate_series(1, 5) i",
                &[&id],
            )
            .await
            .unwrap();
    }
    let app_url = db.app_role_url().await;
    let prefix = parapet_testkit::unique_prefix("isolation-random");
    let config = parapet::EnvConfig::from_map([
        ("DATABASE_URL", app_url.as_str()),
        ("REDIS_URL", parapet_testkit::redis_url().as_str()),
        ("PARAPET_CACHE_PREFIX", prefix.as_str()),
        ("PARAPET_TENANT_HOST", "localhost"),
        ("PARAPET_TENANT_PATH_PREFIX", "/t"),
        ("PARAPET_TENANT_JWT_SECRET", SECRET),
        // Beside a JWT the header is off unless named; it may then only narrow the token.
        ("PARAPET_TENANT_HEADER", "x-tenant-id"),
        ("PARAPET_TELEMETRY", "off"),
    ])
    .unwrap();
    let stack = config.build().await.unwrap();
    let cache = stack.cache().expect("the cache is on");
    let state = AppState {
        versions: Arc::default(),
        cache: Some(cache.clone()),
    };
    let router = Router::new()
        .route("/echo/{n}", get(echo).post(write))
        .route(
            "/t/{tenant}/echo/{n}",
            get(echo_in_path).post(write_in_path),
        )
        .route("/rows", get(rows).post(add_row))
        .route("/t/{tenant}/rows", get(rows).post(add_row))
        .layer(stack)
        .with_state(state);

    let seed = std::env::var("PARAPET_ISOLATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("isolation_random: seed {seed} (PARAPET_ISOLATION_SEED={seed} to replay)");
    let tokens: Arc<Vec<String>> = Arc::new((0..TENANTS).map(|t| token(&tenant_id(t))).collect());
    let ledger = Arc::new(Ledger::default());
    let sent = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + TIME_BOUND;
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (router, tokens, ledger, sent, cache) = (
                router.clone(),
                tokens.clone(),
                ledger.clone(),
                sent.clone(),
                cache.clone(),
            );
            let mut rng =
                Rng(seed.wrapping_add((w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
            tokio::spawn(async move {
                while sent.fetch_add(1, Ordering::Relaxed) < REQUESTS && Instant::now() < deadline {
                    one(&router, &tokens, &ledger, &cache, &mut rng).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let took = started.elapsed();

    let checked = ledger.checked.load(Ordering::Relaxed);
    let refused = ledger.refused.load(Ordering::Relaxed);
    eprintln!(
        "isolation_random: {checked} answers checked, {} hits, {} writes, {} purges, {refused} \
         refused as intended, in {took:?}",
        ledger.hits.load(Ordering::Relaxed),
        ledger.writes.load(Ordering::Relaxed),
        ledger.purges.load(Ordering::Relaxed),
    );
    assert_eq!(
        ledger.wrong_count.load(Ordering::Relaxed),
        0,
        "wrong-tenant or wrong answers (seed {seed}): {:#?}",
        ledger.wrong.lock().unwrap()
    );
    let total = checked + refused + ledger.purges.load(Ordering::Relaxed);
    // A debug build on two cores shared with other test binaries sends the 100,000 well inside
    // the bound; a machine that cannot has not proved what this test promises.
    assert!(
        total >= REQUESTS,
        "only {total} of {REQUESTS} requests in {took:?} (the bound is {TIME_BOUND:?}): the \
         machine may be too slow or too busy for this test (seed {seed})"
    );
    assert!(
        ledger.hits.load(Ordering::Relaxed) > checked / 4,
        "the cache served a good share of the answers"
    );
    assert!(ledger.writes.load(Ordering::Relaxed) > 0 && ledger.purges.load(Ordering::Relaxed) > 0);
}

async fn write_in_path(
    state: State<AppState>,
    tenant: Tenant,
    Path((_, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    write(state, tenant, Path(n), headers).await
}

/// One random step: a read, a write, a purge, or a request that must be refused.
async fn one(
    router: &Router,
    tokens: &[String],
    ledger: &Ledger,
    cache: &CacheHandle,
    rng: &mut Rng,
) {
    let t = rng.below(TENANTS);
    let tenant = tenant_id(t);
    let resolver = RESOLVERS[rng.below(RESOLVERS.len())];
    let roll = rng.below(1000);
    if roll < 5 {
        // A tag purge or a tenant purge, as an operator or a write elsewhere would.
        let id = TenantId::parse(&tenant).unwrap();
        if roll < 3 {
            cache.purge_tag(Some(&id), ["echo", "rows"][roll % 2]).await;
        } else {
            cache.purge_tenant(Some(&id)).await;
        }
        ledger.purges.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if roll < 25 {
        // Two sources naming different tenants, or a tenant that does not exist: refused, and
        // never anyone's data.
        let other = tenant_id((t + 1 + rng.below(TENANTS - 1)) % TENANTS);
        let req = if roll < 15 {
            // The token's tenant, and a host naming another: 403.
            Request::get("/echo/1")
                .header(header::AUTHORIZATION, format!("Bearer {}", tokens[t]))
                .header("x-tenant-id", &tenant)
                .header(header::HOST, format!("{other}.localhost"))
        } else {
            // A tenant named without a token: 401.
            Request::get("/echo/1").header("x-tenant-id", format!("nosuch{t}"))
        };
        let (status, _, body) = send(router, req.body(Body::empty()).unwrap()).await;
        if !(status.is_client_error() && body.get("nonce").is_none()) {
            ledger.wrong(format!("a refused request got {status}: {body}"));
        }
        ledger.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let variant = VARIANTS[rng.below(VARIANTS.len())];
    let (method, path) = if roll < 60 {
        (http::Method::POST, format!("/echo/{}", rng.below(PATHS)))
    } else if roll < 70 {
        (http::Method::POST, "/rows".to_owned())
    } else if roll < 150 {
        (http::Method::GET, "/rows".to_owned())
    } else {
        (http::Method::GET, format!("/echo/{}", rng.below(PATHS)))
    };
    let builder = request(method.clone(), &tenant, resolver, &path, tokens, t);
    let uri = builder.uri_ref().unwrap().to_string();
    let nonce = ledger.issue((t, uri.clone(), variant));
    let mut builder = builder.header("x-nonce", nonce.to_string());
    if let Some(v) = variant {
        builder = builder.header("x-variant", v);
    }
    let (status, headers, body) = send(router, builder.body(Body::empty()).unwrap()).await;
    let expected = if method == http::Method::POST && path == "/rows" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if status != expected {
        ledger.wrong(format!("{method} {uri} for {tenant}: {status} {body}"));
        return;
    }
    if method == http::Method::POST {
        ledger.writes.fetch_add(1, Ordering::Relaxed);
    }
    let problem = if status == StatusCode::CREATED {
        (body["tenant"] != tenant.as_str()).then(|| format!("created for {}", body["tenant"]))
    } else {
        judge(ledger, t, &uri, variant, &body)
    };
    if let Some(problem) = problem {
        ledger.wrong(format!(
            "{method} {uri} for {tenant} variant {variant:?} ({:?}): {problem}: {body}",
            headers.get("cache-status")
        ));
    }
    let hit = headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').any(|m| m.trim() == "hit"));
    if hit {
        ledger.hits.fetch_add(1, Ordering::Relaxed);
    }
    ledger.checked.fetch_add(1, Ordering::Relaxed);
}
