//! `TenantLayer` wiring: extractors, optional mode, features, the span field, service errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::{Router, body::Body, routing::get};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use parapet_tenant::{RequireFeatureLayer, Tenant, TenantLayer};
use tower::ServiceExt;
use tracing::Instrument;
use tracing_subscriber::{Layer, layer::SubscriberExt};

fn get_req(path: &str, tenant: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(t) = tenant {
        b = b.header("x-tenant-id", t);
    }
    b.body(Body::empty()).unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn optional_layer_lets_requests_without_a_tenant_through() {
    let app = Router::new()
        .route(
            "/",
            get(|t: Option<Tenant>| async move {
                t.map_or("anonymous".to_owned(), |t| t.id().to_string())
            }),
        )
        .layer(
            TenantLayer::builder(common::directory())
                .optional(true)
                .build(),
        );
    assert_eq!(
        send(&app, get_req("/", None)).await,
        (StatusCode::OK, "anonymous".into())
    );
    assert_eq!(
        send(&app, get_req("/", Some("acme"))).await,
        (StatusCode::OK, "acme".into())
    );
    // Optional does not mean lenient: bad, unknown and suspended tenants are still refused.
    assert_eq!(
        send(&app, get_req("/", Some("ACME"))).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&app, get_req("/", Some("nobody"))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, get_req("/", Some("initech"))).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn extractor_without_the_layer_is_a_500_without_internals() {
    let app = Router::new().route("/", get(|t: Tenant| async move { t.id().to_string() }));
    let (status, body) = send(&app, get_req("/", Some("acme"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.contains("TenantLayer"), "{body}");
    assert!(body.contains("urn:parapet:problem:internal"), "{body}");
}

#[tokio::test]
async fn require_feature_gates_routes() {
    let app = Router::new()
        .route("/exports", get(|| async { "csv" }))
        .layer(RequireFeatureLayer::new("exports"))
        .route(
            "/sso",
            get(|t: Tenant| async move { t.require_feature("sso").map(|()| "ok") }),
        )
        .layer(TenantLayer::new(common::directory()));
    assert_eq!(
        send(&app, get_req("/exports", Some("acme"))).await,
        (StatusCode::OK, "csv".into())
    );
    let (status, body) = send(&app, get_req("/exports", Some("globex"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("feature-not-enabled"), "{body}");
    assert_eq!(
        send(&app, get_req("/sso", Some("acme"))).await.0,
        StatusCode::FORBIDDEN
    );
}

/// Captures values recorded on spans.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<(String, String)>>>);

impl<S: tracing::Subscriber> Layer<S> for Recorded {
    fn on_record(
        &self,
        _span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct V<'a>(&'a Mutex<Vec<(String, String)>>);
        impl tracing::field::Visit for V<'_> {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0
                    .lock()
                    .unwrap()
                    .push((field.name().into(), value.into()));
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0
                    .lock()
                    .unwrap()
                    .push((field.name().into(), format!("{value:?}")));
            }
        }
        values.record(&mut V(&self.0));
    }
}

#[tokio::test]
async fn tenant_id_is_recorded_on_the_current_span() {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(TenantLayer::new(common::directory()));
    let span = tracing::info_span!("request", tenant.id = tracing::field::Empty);
    let res = app
        .oneshot(get_req("/", Some("acme")))
        .instrument(span)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        recorded.0.lock().unwrap().as_slice(),
        [("tenant.id".to_owned(), "acme".to_owned())]
    );
}

#[tokio::test]
async fn inner_service_errors_pass_through_unchanged() {
    use tower::{Layer as _, service_fn};
    let svc =
        TenantLayer::new(common::directory()).layer(service_fn(|_req: Request<Body>| async {
            Err::<http::Response<Body>, _>(std::io::Error::other("boom"))
        }));
    let err = svc.oneshot(get_req("/", Some("acme"))).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
}
