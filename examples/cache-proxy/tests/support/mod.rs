//! The proxy in front of a real origin on 127.0.0.1, for the end-to-end tests of the cache's
//! rules: what the client gets, and what reached the origin.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, body::Body, extract::Request, response::Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use parapet_cache::CacheLayer;

/// What the origin answers: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

/// A real origin on a free port answering call `n` (from 0) with `respond(n, request
/// headers)`; the count and the request headers of every call.
pub struct Origin {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Origin {
    pub async fn start(
        respond: impl Fn(usize, &HeaderMap) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond = Arc::new(respond);
        let (counter, log) = (calls.clone(), seen.clone());
        let app = Router::new().fallback(move |request: Request| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            log.lock().unwrap().push(request.headers().clone());
            let (status, headers, body) = respond(n, request.headers());
            async move {
                let mut response = Response::builder().status(status);
                for (name, value) in headers {
                    response = response.header(name, value);
                }
                response.body(Body::from(body)).unwrap()
            }
        });
        let addr = serve(app).await;
        Self { addr, calls, seen }
    }

    /// An origin answering every request with `headers`: `304` without a body to a conditional
    /// request carrying `If-None-Match`, `200` with the body `"<body> <call number>"` otherwise.
    pub async fn revalidating(headers: Vec<(&'static str, String)>, body: &'static str) -> Self {
        Self::start(move |n, request| {
            if request.contains_key("if-none-match") {
                return (304, headers.clone(), String::new());
            }
            (200, headers.clone(), format!("{body} {n}"))
        })
        .await
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> http::Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// The proxy with the default cache (local tier only) in front of this origin.
    pub async fn proxy(&self) -> SocketAddr {
        let cache = CacheLayer::builder()
            .single_tenant()
            .local(1 << 20)
            .build()
            .unwrap();
        self.proxy_with(cache).await
    }

    pub async fn proxy_with(&self, cache: CacheLayer) -> SocketAddr {
        serve(example_cache_proxy::app_with(self.url(), cache)).await
    }
}

pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A response as the client sees it.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn cache_status(&self) -> &str {
        self.headers
            .get("cache-status")
            .map_or("", |v| v.to_str().unwrap())
    }
}

pub async fn get(proxy: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Body>();
    let mut request = http::Request::builder().uri(format!("http://{proxy}{path}"));
    for (name, value) in headers {
        request = request.header(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = client
        .request(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub fn cc(value: &str) -> Vec<(&'static str, String)> {
    vec![("cache-control", value.to_owned())]
}

/// Requests `path` on `proxy` until its `Cache-Status` contains `status` (e.g. `hit`, or
/// `detail=local`): an instance's subscriber starts with its first request, and Redis delivers
/// announcements asynchronously. Fails the test after 50 tries 10 ms apart.
pub async fn until_status(proxy: SocketAddr, path: &str, status: &str) {
    for _ in 0..50 {
        if get(proxy, path, &[]).await.cache_status().contains(status) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{path} never answered with Cache-Status containing {status:?}");
}
