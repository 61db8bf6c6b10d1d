//! Helpers shared by the integration tests: the real Redis, tenants, and counting origins.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::{Request, Response};
use http_body_util::BodyExt;
use parapet_cache::{CacheLayer, RedisConfig};
use parapet_tenant::{Tenant, TenantId, TenantRecord};
use tower::ServiceExt;

/// `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
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
    match tokio::time::timeout(std::time::Duration::from_secs(3), connect).await {
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

/// A key prefix unique to this test run, so parallel and repeated runs never collide.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("parapet-test:{test}:{}:{nanos}:{n}:", std::process::id())
}

/// Redis settings for tests: a generous budget (the machine is shared and busy).
pub fn redis_config() -> RedisConfig {
    RedisConfig::new(redis_url()).timeout(std::time::Duration::from_millis(500))
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
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
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
