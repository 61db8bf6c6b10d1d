//! Shared set-up for the tenant layer's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use axum::{Router, body::Body, routing::get};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use parapet_tenant::{
    ResolveTenant, StaticDirectory, Tenant, TenantId, TenantLayer, TenantLayerBuilder,
    TenantRecord, TenantStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt, util::BoxCloneSyncService};

pub type App =
    BoxCloneSyncService<Request<Body>, axum::response::Response, std::convert::Infallible>;

pub fn directory() -> StaticDirectory {
    let id = |s: &str| TenantId::parse(s).unwrap();
    StaticDirectory::new()
        .tenant(TenantRecord::new(id("acme")).plan("pro"))
        .tenant(TenantRecord::new(id("globex")))
        .tenant(TenantRecord::new(id("initech")).status(TenantStatus::Suspended))
        .features(&id("acme"), ["exports"])
}

fn router() -> Router {
    async fn whoami(tenant: Tenant) -> String {
        tenant.id().to_string()
    }
    Router::new()
        .route("/whoami", get(whoami))
        .route("/t/{tenant}", get(whoami))
        .route("/t/{tenant}/whoami", get(whoami))
}

/// The router wrapped whole in a `TenantLayer` (so unmatched paths pass through it too).
pub fn app_chain(f: impl FnOnce(TenantLayerBuilder) -> TenantLayerBuilder) -> App {
    let layer = f(TenantLayer::builder(directory())).build();
    BoxCloneSyncService::new(layer.layer(router()))
}

pub fn app(resolver: impl ResolveTenant) -> App {
    app_chain(|b| b.resolver(resolver))
}

/// Sends each request; checks the status, the body of successes, and that refusals are problem
/// documents that do not echo the request.
pub async fn run_table(app: &App, cases: Vec<(&str, Request<Body>, u16)>) {
    let mut failures = Vec::new();
    for (name, req, expected) in cases {
        let echo: Vec<String> = req
            .headers()
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .filter(|v| v.len() > 3)
            .collect();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status.as_u16() != expected {
            failures.push(format!(
                "{name}: expected {expected}, got {status} ({body})"
            ));
            continue;
        }
        if status == StatusCode::OK {
            assert!(
                ["acme", "globex", "initech"].contains(&body.as_str()),
                "{name}: {body}"
            );
            continue;
        }
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{name}"
        );
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], expected, "{name}");
        for sent in &echo {
            assert!(
                !body.contains(sent.as_str()),
                "{name}: body echoes {sent:?}: {body}"
            );
        }
        if expected == 401 {
            assert_eq!(headers["www-authenticate"], "Bearer", "{name}");
        }
    }
    assert!(
        failures.is_empty(),
        "cases failed:\n{}",
        failures.join("\n")
    );
}

pub async fn serve(app: App) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback_service(app);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Writes raw bytes to the server and returns the response status.
pub async fn raw_status(addr: SocketAddr, raw: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buf),
    )
    .await
    .expect("server answered in time")
    .unwrap();
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

/// Base64url without padding, for hand-made tokens.
pub fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
