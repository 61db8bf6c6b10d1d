//! The inner service, as one request uses it.

use axum_core::body::Body;
use http::{Request, Response};
use tower::ServiceExt;
use tower_service::Service;

/// The inner service as the cache calls it: answering with an axum [`Body`] (the layer maps
/// the inner body with `map_response`), clonable, and sendable to a task.
pub(crate) trait Inner<B>:
    Service<Request<B>, Response = Response<Body>, Future: Send + 'static, Error: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S, B> Inner<B> for S
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
}

/// The inner service for one request.
///
/// A request calls the inner service at most once, on the instance its `poll_ready` made
/// ready: [`CacheService`](crate::CacheService) takes that instance in `call` with
/// `mem::replace` and leaves a clone in its place (the tower-http pattern), and
/// [`call`](Self::call) consumes the `Upstream`, in the request's own future or in the
/// detached task of a coalescing leader, which is still the request's own call. Only a
/// background refresh (`stale-while-revalidate`) outlives the request and needs an instance of
/// its own: [`spare`](Self::spare) clones one, which `call` drives to readiness first. A hit
/// neither clones, locks nor calls anything here.
pub(crate) struct Upstream<S> {
    service: S,
    /// Whether `poll_ready` already returned ready for `service`.
    ready: bool,
}

impl<S> Upstream<S> {
    /// The instance `poll_ready` made ready.
    pub(crate) fn ready(service: S) -> Self {
        Self {
            service,
            ready: true,
        }
    }

    /// A clone for a call outside the request (not ready yet).
    pub(crate) fn spare(&self) -> Self
    where
        S: Clone,
    {
        Self {
            service: self.service.clone(),
            ready: false,
        }
    }

    /// Makes the one call this instance is for.
    pub(crate) async fn call<B>(mut self, request: Request<B>) -> Result<Response<Body>, S::Error>
    where
        S: Inner<B>,
    {
        if self.ready {
            self.service.call(request).await
        } else {
            self.service.oneshot(request).await
        }
    }
}
