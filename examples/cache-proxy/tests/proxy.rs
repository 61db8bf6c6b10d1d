//! The proxy against a real upstream on 127.0.0.1: cacheable responses are served from the cache,
//! others pass through, unsafe methods invalidate, a dead upstream is a 502.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, body::Body, extract::State, routing::get};
use http::{Request, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn send(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Body>();
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Body::empty())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let cache = res
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, cache, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn caches_in_front_of_a_real_upstream() {
    let hits = Arc::new(AtomicUsize::new(0));
    let upstream = Router::new()
        .route(
            "/cached",
            get(|State(h): State<Arc<AtomicUsize>>| async move {
                let n = h.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    [(header::CACHE_CONTROL, "max-age=60")],
                    format!("cached {n}"),
                )
            })
            .post(|| async { "changed" }),
        )
        .route(
            "/private",
            get(|State(h): State<Arc<AtomicUsize>>| async move {
                let n = h.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    [(header::CACHE_CONTROL, "no-store")],
                    format!("private {n}"),
                )
            }),
        )
        .with_state(hits.clone());
    let upstream = serve(upstream).await;
    let proxy =
        example_cache_proxy::app(format!("http://{upstream}").parse().unwrap(), None, 1 << 20)
            .unwrap();
    let proxy = serve(proxy).await;

    let (status, cache, body) = send(proxy, "GET", "/cached").await;
    assert_eq!((status, body.as_str()), (200, "cached 1"));
    assert!(cache.contains("stored"), "{cache}");
    let (_, cache, body) = send(proxy, "GET", "/cached").await;
    assert_eq!(body, "cached 1");
    assert!(cache.contains("hit"), "{cache}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    assert_eq!(send(proxy, "GET", "/private").await.2, "private 2");
    assert_eq!(send(proxy, "GET", "/private").await.2, "private 3");

    // A POST to the URI invalidates it.
    assert_eq!(send(proxy, "POST", "/cached").await.2, "changed");
    assert_eq!(send(proxy, "GET", "/cached").await.2, "cached 4");
}

#[tokio::test]
async fn a_dead_upstream_is_a_502_problem() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = example_cache_proxy::app(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        None,
        1 << 20,
    )
    .unwrap();
    let proxy = serve(proxy).await;
    let (status, _, body) = send(proxy, "GET", "/x").await;
    assert_eq!(status, 502);
    assert!(body.contains("bad-gateway"), "{body}");
}
