//! A caching reverse proxy: parapet's [`CacheLayer`] in single-tenant mode in front of a hyper
//! client that forwards to one HTTP upstream.
//!
//! ```sh
//! cargo run --release -p example-cache-proxy -- --listen 127.0.0.1:8002 \
//!     --upstream http://127.0.0.1:8000 [--redis redis://127.0.0.1:6379]
//! ```

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{Router, body::Body, response::IntoResponse};
use http::{HeaderName, Request, Response, StatusCode, Uri, header, uri::PathAndQuery};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use parapet_cache::{CacheLayer, RedisConfig};
use parapet_tenant::problem::Problem;
use tower_layer::Layer;

/// Forwards every request to one upstream (`http://host:port`).
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    base: Uri,
}

impl Upstream {
    /// A forwarder to `base` (scheme and authority; any path is ignored).
    pub fn new(base: Uri) -> Self {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self { client, base }
    }
}

/// Headers that belong to one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

impl tower_service::Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut uri = self.base.clone().into_parts();
        uri.path_and_query = Some(path);
        let client = self.client.clone();
        Box::pin(async move {
            let Ok(uri) = Uri::from_parts(uri) else {
                return Ok(bad_gateway());
            };
            strip_hop_by_hop(&mut parts.headers);
            if let Some(authority) = uri.authority()
                && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
            {
                parts.headers.insert(header::HOST, host);
            }
            parts.uri = uri;
            match client.request(Request::from_parts(parts, body)).await {
                Ok(res) => {
                    let (mut parts, body) = res.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    Ok(Response::from_parts(parts, Body::new(body)))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream request failed");
                    Ok(bad_gateway())
                }
            }
        })
    }
}

fn bad_gateway() -> Response<Body> {
    Problem::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
        .detail("The upstream server could not be reached.")
        .into_response()
}

/// The proxy: a single-tenant `CacheLayer` (local tier of `local_bytes`, plus Redis when given)
/// in front of [`Upstream`].
pub fn app(
    upstream: Uri,
    redis: Option<String>,
    local_bytes: u64,
) -> Result<Router, parapet_cache::BuildError> {
    let mut builder = CacheLayer::builder().single_tenant().local(local_bytes);
    if let Some(url) = redis {
        builder = builder.redis(RedisConfig::new(url));
    }
    Ok(app_with(upstream, builder.build()?))
}

/// The proxy with a cache built by the caller (its options, e.g. which request headers are
/// credentials), in front of [`Upstream`].
pub fn app_with(upstream: Uri, cache: CacheLayer) -> Router {
    Router::new().fallback_service(cache.layer(Upstream::new(upstream)))
}
