//! [`RequireFeatureLayer`]: routes only tenants whose subscriptions include a feature may use.

use std::{
    borrow::Cow,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum_core::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Tenant, TenantRejection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Tenant {
    /// `Ok` when the tenant has `feature`, else [`TenantRejection::FeatureNotEnabled`] (403),
    /// for handlers: `tenant.require_feature("exports")?;`.
    pub fn require_feature(&self, feature: &str) -> Result<(), TenantRejection> {
        if self.has_feature(feature) {
            Ok(())
        } else {
            Err(TenantRejection::FeatureNotEnabled {
                feature: feature.to_owned(),
            })
        }
    }
}

/// Answers 403 (`feature-not-enabled`) unless the request's tenant has a feature.
///
/// Goes inside [`TenantLayer`](crate::TenantLayer) (it reads the tenant the layer inserted).
///
/// ```
/// use axum::{Router, routing::get};
/// use parapet_tenant::RequireFeatureLayer;
///
/// let exports: Router = Router::new()
///     .route("/exports", get(|| async { "csv" }))
///     .layer(RequireFeatureLayer::new("exports"));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RequireFeatureLayer {
    feature: Cow<'static, str>,
}

impl RequireFeatureLayer {
    /// Requires `feature`.
    pub fn new(feature: impl Into<Cow<'static, str>>) -> Self {
        Self {
            feature: feature.into(),
        }
    }
}

impl<S> Layer<S> for RequireFeatureLayer {
    type Service = RequireFeature<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireFeature {
            inner,
            feature: self.feature.clone(),
        }
    }
}

/// The service built by [`RequireFeatureLayer`].
#[derive(Debug, Clone)]
pub struct RequireFeature<S> {
    inner: S,
    feature: Cow<'static, str>,
}

impl<S, B, ResBody> Service<Request<B>> for RequireFeature<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = FeatureFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verdict = match req.extensions().get::<Tenant>() {
            Some(tenant) => tenant.require_feature(&self.feature),
            None => Err(TenantRejection::Missing { bearer: false }),
        };
        match verdict {
            Ok(()) => FeatureFuture {
                kind: Kind::Inner {
                    fut: self.inner.call(req),
                },
            },
            Err(rejection) => FeatureFuture {
                kind: Kind::Rejected {
                    response: Some(rejection.into_response()),
                },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequireFeature`].
    pub struct FeatureFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] fut: F },
        Rejected { response: Option<Response> },
    }
}

impl<F> std::fmt::Debug for FeatureFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for FeatureFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx).map_ok(|res| res.map(Body::new)),
            KindProj::Rejected { response } => Poll::Ready(Ok(response.take().unwrap_or_default())),
        }
    }
}
