//! [`TenantLayer`]: resolves, validates and looks up the tenant of every request.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum_core::{
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::Request;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    CachedDirectory, HeaderResolver, RequestHead, ResolveTenant, ResolverChain, TenantRejection,
    TenantSlot, directory::BoxFuture,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Puts the request's [`Tenant`](crate::Tenant) into its extensions, or answers with a
/// [`TenantRejection`].
///
/// For every request: the resolvers name a tenant id (they must agree), the cached directory looks
/// it up, unknown and suspended tenants are refused, and the tenant (record and features) is
/// inserted into the request extensions, where the [`Tenant`](crate::Tenant) extractor finds it.
/// The id is left in the request's [`TenantSlot`](crate::TenantSlot) when an outer layer put one
/// there (parapet's telemetry layer does, for its span), and recorded as `tenant.id` on the
/// current tracing span when that span declared the field.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use parapet_tenant::{HostResolver, HeaderResolver, StaticDirectory, Tenant, TenantId, TenantLayer, TenantRecord};
///
/// async fn whoami(tenant: Tenant) -> String {
///     format!("hello {}", tenant.id())
/// }
///
/// let directory = StaticDirectory::new()
///     .tenant(TenantRecord::new(TenantId::parse("acme").unwrap()));
///
/// let app: Router = Router::new()
///     .route("/whoami", get(whoami))
///     .layer(
///         TenantLayer::builder(directory)
///             .resolver(HeaderResolver::new())
///             .resolver(HostResolver::new("example.com"))
///             .build(),
///     );
/// ```
#[derive(Clone)]
#[must_use]
pub struct TenantLayer {
    config: Arc<Config>,
}

struct Config {
    resolvers: ResolverChain,
    directory: CachedDirectory,
    optional: bool,
}

/// Builds a [`TenantLayer`].
#[must_use]
pub struct TenantLayerBuilder {
    resolvers: ResolverChain,
    directory: CachedDirectory,
    optional: bool,
}

impl TenantLayer {
    /// A layer that reads the `x-tenant-id` header and looks tenants up in `directory`
    /// (a [`TenantDirectory`](crate::TenantDirectory), cached with the defaults, or a configured
    /// [`CachedDirectory`]).
    pub fn new(directory: impl Into<CachedDirectory>) -> Self {
        Self::builder(directory).build()
    }

    /// Starts building a layer on `directory`.
    pub fn builder(directory: impl Into<CachedDirectory>) -> TenantLayerBuilder {
        TenantLayerBuilder {
            resolvers: ResolverChain::new(),
            directory: directory.into(),
            optional: false,
        }
    }

    /// The cached directory, to invalidate entries when tenants change.
    pub fn directory(&self) -> &CachedDirectory {
        &self.config.directory
    }
}

impl TenantLayerBuilder {
    /// Adds a resolver; they run in the order added and must agree. Without any, the
    /// [`HeaderResolver`] (`x-tenant-id`) is used. A resolver that authenticates (a
    /// [`JwtResolver`](crate::JwtResolver)) is the authority: every request then needs a valid
    /// credential, and the other resolvers may only name its tenant (see
    /// [`ResolverChain`]).
    pub fn resolver(mut self, resolver: impl ResolveTenant) -> Self {
        self.resolvers = self.resolvers.push(resolver);
        self
    }

    /// Adds a resolver as the authority (see [`ResolverChain::authority`]): for a resolver of
    /// your own that verifies a credential.
    pub fn authority(mut self, resolver: impl ResolveTenant) -> Self {
        self.resolvers = self.resolvers.authority(resolver);
        self
    }

    /// Lets requests that name no tenant through without one (for health checks and public
    /// routes); handlers take `Option<Tenant>`. Malformed, unknown or suspended tenants are still
    /// refused, and so is a request that names a tenant without the credential an authority
    /// requires.
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    /// Builds the layer.
    pub fn build(self) -> TenantLayer {
        let resolvers = if self.resolvers.is_empty() {
            ResolverChain::new().push(HeaderResolver::new())
        } else {
            self.resolvers
        };
        TenantLayer {
            config: Arc::new(Config {
                resolvers,
                directory: self.directory,
                optional: self.optional,
            }),
        }
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service built by [`TenantLayer`].
#[derive(Clone)]
pub struct TenantService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> TenantService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for TenantService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match self
            .config
            .resolvers
            .resolve_borrowed(&RequestHead::new(&req))
        {
            Ok(id) => id,
            Err(TenantRejection::Missing { .. }) if self.config.optional => {
                return ResponseFuture::inner(self.inner.call(req));
            }
            Err(rejection) => return ResponseFuture::answer(rejection.into_response()),
        };
        tracing::Span::current().record("tenant.id", id.as_str());
        // A cached, active tenant: no await, no box and no allocated id; the inner service is
        // called now.
        if let Some(tenant) = self.config.directory.cached(id.as_str()) {
            if let Some(slot) = req.extensions().get::<TenantSlot>() {
                slot.fill(tenant.id().clone());
            }
            drop(id); // it borrows the request
            req.extensions_mut().insert(tenant);
            return ResponseFuture::inner(self.inner.call(req));
        }
        let id = id.into_owned();
        if let Some(slot) = req.extensions().get::<TenantSlot>() {
            slot.fill(id.clone());
        }
        // Call the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        ResponseFuture::boxed(Box::pin(async move {
            match config.directory.tenant(&id).await {
                Ok(tenant) => {
                    req.extensions_mut().insert(tenant);
                }
                Err(rejection) => return Ok(rejection.into_response()),
            }
            inner.call(req).await.map(|res| res.map(Body::new))
        }))
    }
}

pin_project! {
    /// The response future of [`TenantService`]: the inner service's own future when the
    /// tenant was cached (or none was needed), a boxed lookup otherwise, or a rejection.
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        Answer { response: Option<Response> },
        Inner { #[pin] future: F },
        Lookup { future: BoxFuture<'static, Result<Response, E>> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn answer(response: Response) -> Self {
        Self {
            state: State::Answer {
                response: Some(response),
            },
        }
    }

    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    fn boxed(future: BoxFuture<'static, Result<Response, E>>) -> Self {
        Self {
            state: State::Lookup { future },
        }
    }
}

impl<F, E, ResBody> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Answer { response } => Poll::Ready(Ok(response.take().unwrap_or_default())),
            StateProj::Inner { future } => future.poll(cx).map_ok(|res| res.map(Body::new)),
            StateProj::Lookup { future } => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for TenantLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLayer")
            .field("resolvers", &self.config.resolvers)
            .field("directory", &self.config.directory)
            .field("optional", &self.config.optional)
            .finish()
    }
}

impl fmt::Debug for TenantLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLayerBuilder")
            .field("resolvers", &self.resolvers)
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug> fmt::Debug for TenantService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
