//! The cache's HTTP rules end to end: the proxy in front of a real origin on 127.0.0.1, each
//! rule seen from the client (status, body, `Cache-Status`) and from the origin (what reached
//! it, how often).
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
type Answer = (u16, Vec<(&'static str, String)>, String);

/// A real origin on a free port answering call `n` (from 0) with `respond(n, request
/// headers)`; the count and the request headers of every call.
struct Origin {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Origin {
    async fn start(respond: impl Fn(usize, &HeaderMap) -> Answer + Send + Sync + 'static) -> Self {
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

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn url(&self) -> http::Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// The proxy with the default cache (local tier only) in front of this origin.
    async fn proxy(&self) -> SocketAddr {
        let cache = CacheLayer::builder()
            .single_tenant()
            .local(1 << 20)
            .build()
            .unwrap();
        self.proxy_with(cache).await
    }

    async fn proxy_with(&self, cache: CacheLayer) -> SocketAddr {
        serve(example_cache_proxy::app_with(self.url(), cache)).await
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A response as the client sees it.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Got {
    fn cache_status(&self) -> &str {
        self.headers
            .get("cache-status")
            .map_or("", |v| v.to_str().unwrap())
    }
}

async fn get(proxy: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
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

fn cc(value: &str) -> Vec<(&'static str, String)> {
    vec![("cache-control", value.to_owned())]
}

/// RFC 9111 §3.5 when serving: a response stored for a request without credentials is not
/// served to one with `Authorization` unless it says it may be (`public`, `s-maxage`,
/// `must-revalidate`).
#[tokio::test]
async fn a_stored_response_reaches_an_authorized_request_only_when_shared() {
    let origin = Origin::start(|n, request| {
        let who = request
            .get("authorization")
            .map_or("anonymous", |v| v.to_str().unwrap())
            .to_owned();
        (200, cc("max-age=60"), format!("{n} for {who}"))
    })
    .await;
    let proxy = origin.proxy().await;
    let first = get(proxy, "/a", &[]).await;
    assert_eq!(first.body, "0 for anonymous");
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );

    let authorized = get(proxy, "/a", &[("authorization", "Bearer alice")]).await;
    assert_eq!(authorized.status, StatusCode::OK);
    assert_eq!(authorized.body, "1 for Bearer alice", "went to the origin");
    assert!(
        authorized.cache_status().contains("detail=authorization"),
        "{}",
        authorized.cache_status()
    );
    assert!(!authorized.cache_status().contains("stored"));
    // The authorized response was not stored either: anonymous still gets its own copy.
    let again = get(proxy, "/a", &[]).await;
    assert_eq!(again.body, "0 for anonymous");
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
    assert_eq!(origin.calls(), 2);

    // A response marked public may be shared with authorized requests.
    let public = Origin::start(|n, _| (200, cc("public, max-age=60"), format!("public {n}"))).await;
    let proxy = public.proxy().await;
    assert_eq!(get(proxy, "/p", &[]).await.body, "public 0");
    let shared = get(proxy, "/p", &[("authorization", "Bearer bob")]).await;
    assert_eq!(shared.body, "public 0");
    assert!(
        shared.cache_status().contains("hit"),
        "{}",
        shared.cache_status()
    );
    assert_eq!(public.calls(), 1);
}
