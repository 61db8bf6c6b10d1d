//! The inner service behind a uniform, cloneable call.

use std::sync::{Arc, Mutex, PoisonError};

use axum_core::body::Body;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, TryFutureExt};
use http::{Request, Response};
use tower::ServiceExt;
use tower_service::Service;

/// One call to the inner service, with the body already turned into an axum `Body`.
type CallFn<B, E> =
    dyn Fn(Request<B>) -> BoxFuture<'static, Result<Response<Body>, E>> + Send + Sync;

/// Calls the inner service; each call uses a fresh clone driven to readiness (`oneshot`).
pub(crate) struct Upstream<B, E> {
    call: Arc<CallFn<B, E>>,
}

impl<B, E> Clone for Upstream<B, E> {
    fn clone(&self) -> Self {
        Self {
            call: Arc::clone(&self.call),
        }
    }
}

impl<B, E> Upstream<B, E> {
    pub(crate) fn new<S, ResBody>(inner: S) -> Self
    where
        S: Service<Request<B>, Response = Response<ResBody>, Error = E> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
        E: Send + 'static,
        ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        ResBody::Error: Into<axum_core::BoxError>,
    {
        let inner = Mutex::new(inner);
        Self {
            call: Arc::new(move |request| {
                let service = inner.lock().unwrap_or_else(PoisonError::into_inner).clone();
                service
                    .oneshot(request)
                    .map_ok(|response| response.map(Body::new))
                    .boxed()
            }),
        }
    }

    pub(crate) fn call(
        &self,
        request: Request<B>,
    ) -> BoxFuture<'static, Result<Response<Body>, E>> {
        (self.call)(request)
    }
}
