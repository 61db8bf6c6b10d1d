//! Helpers shared by the integration tests: the real Redis, tenants, and counting origins.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use http_body_util::BodyExt;
use parapet_cache::{CacheLayer, RedisConfig};
use parapet_tenant::{Tenant, TenantId, TenantRecord};
use parapet_testkit::certs::TestCa;
use tower::ServiceExt;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use parapet_testkit::{
    RedisCluster, RedisServer, free_port, free_ports, redis_url, unique_prefix,
};

/// What a test origin answers: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

/// A test origin: an infallible, cloneable service answering `Request<Body>`.
pub trait Origin:
    tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> Origin for S where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// An origin that answers call `n` (from 0) with `respond(n, request)`, and its call count.
pub fn origin(
    respond: impl Fn(usize, &Request<Body>) -> Answer + Send + Sync + 'static,
) -> (impl Origin, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let respond = Arc::new(respond);
    let service = tower::service_fn(move |request: Request<Body>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let (status, headers, body) = respond(n, &request);
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let response = builder.body(Body::from(body)).unwrap();
        async move { Ok::<_, Infallible>(response) }
    });
    (service, calls)
}

/// An origin answering `"x"`: cacheable for 5 min on `GET`, `no-store` otherwise.
pub fn rest_origin() -> (impl Origin, Arc<AtomicUsize>) {
    origin(|_, request| {
        let cache_control = if request.method() == http::Method::GET {
            "max-age=300"
        } else {
            "no-store"
        };
        let headers = vec![("cache-control", cache_control.to_owned())];
        (200, headers, "x".to_owned())
    })
}

/// Polls `done` (every 2 ms) until it holds, failing the test with `what` after `limit`;
/// returns how long it took.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

/// A connection to the real Redis; fails the test (never skips) when it is not running.
pub async fn redis() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let connect = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok::<_, redis::RedisError>(conn)
    };
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "these tests need a real Redis at {url} (REDIS_URL) but it failed: {e}. Start one with: \
             redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no"
        ),
        Err(_) => panic!(
            "these tests need a real Redis at {url} (REDIS_URL) but it did not answer within 3 s. \
             Start one with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no"
        ),
    }
}

/// Redis settings for tests: a generous budget (the machine is shared and busy).
pub fn redis_config() -> RedisConfig {
    RedisConfig::new(redis_url()).timeout(Duration::from_millis(500))
}

/// A `Tenant` with this id.
pub fn tenant(id: &str) -> Tenant {
    let id = TenantId::parse(id).unwrap();
    Tenant::new(Arc::new(TenantRecord::new(id)), Arc::default())
}

/// A request for `tenant` (none when `None`).
pub fn request(
    method: &str,
    tenant_id: Option<&str>,
    uri: &str,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    if let Some(id) = tenant_id {
        request.extensions_mut().insert(tenant(id));
    }
    request
}

/// A GET for `tenant`.
pub fn get(tenant_id: &str, uri: &str) -> Request<Body> {
    request("GET", Some(tenant_id), uri, &[])
}

/// The `Cache-Status` value (all lines joined).
pub fn cache_status(response: &Response<Body>) -> String {
    response
        .headers()
        .get_all("cache-status")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The response's header `name` as text, or "".
pub fn header(response: &Response<Body>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The body as text.
pub async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Sends one request through `layer` in front of `service`.
pub async fn send<S>(layer: &CacheLayer, service: S, request: Request<Body>) -> Response<Body>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    tower::Layer::layer(layer, service)
        .oneshot(request)
        .await
        .unwrap()
}

/// The `ttl` parameter of this cache's `Cache-Status` member.
pub fn ttl(response: &Response<Body>) -> i64 {
    let status = cache_status(response);
    let start = status.find("ttl=").expect("a ttl parameter") + 4;
    let rest = &status[start..];
    let end = rest.find(';').unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

/// A test PKI made with the `openssl` CLI (parapet-testkit's [`TestCa`]), removed on drop: a CA,
/// a server certificate for `localhost` / `127.0.0.1` and a client certificate it signed, and
/// another CA that signed nothing here.
pub struct TestPki {
    ca: TestCa,
    other: TestCa,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

impl TestPki {
    /// Generates the keys and certificates (P-256).
    pub fn generate() -> Self {
        let ca = TestCa::new("ca");
        let server = ca.issue_server("server", &["DNS:localhost", "IP:127.0.0.1"]);
        let client = ca.issue_client("client");
        Self {
            other: TestCa::new("other-ca"),
            ca,
            server,
            client,
        }
    }

    /// A file of the PKI: `ca.pem`, `other-ca.pem`, `server.pem`, `server.key`, `client.pem`,
    /// `client.key`; any other name is a file beside them that does not exist.
    pub fn path(&self, name: &str) -> PathBuf {
        match name {
            "ca.pem" => self.ca.cert(),
            "other-ca.pem" => self.other.cert(),
            "server.pem" => self.server.0.clone(),
            "server.key" => self.server.1.clone(),
            "client.pem" => self.client.0.clone(),
            "client.key" => self.client.1.clone(),
            other => self.ca.cert().with_file_name(other),
        }
    }

    /// `redis-server` arguments serving TLS only, on `port`, with this PKI's server
    /// certificate; clients must present a certificate when `require_client_cert`.
    pub fn server_args(&self, port: u16, require_client_cert: bool) -> Vec<String> {
        let path = |name: &str| self.path(name).to_str().unwrap().to_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path("server.pem"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.pem"),
            "--tls-auth-clients".into(),
            if require_client_cert { "yes" } else { "no" }.into(),
        ]
    }
}
