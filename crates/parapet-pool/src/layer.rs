//! [`PoolLayer`] and the [`Db`] extractor.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use axum::extract::MatchedPath;
use axum_core::extract::FromRequestParts;
use http::{Request, request::Parts};
use parapet_tenant::Tenant;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Db, DbRejection, TenantPools};

/// Puts a cheap [`PoolHandle`] into every request's extensions; nothing is checked out until a
/// handler takes a [`Db`].
///
/// Goes inside `TenantLayer` (the `Db` extractor needs the request's `Tenant`) and inside the
/// cache layer, so that a cache hit never touches PostgreSQL.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use parapet_pool::{Db, DbError, PoolLayer, TenantPools};
///
/// async fn count(db: Db) -> Result<String, DbError> {
///     let row = db.query_one("SELECT count(*) FROM leads", &[]).await?;
///     Ok(row.get::<_, i64>(0).to_string())
/// }
///
/// # async fn run(tenant_layer: parapet_tenant::TenantLayer) -> Result<(), parapet_pool::PoolError> {
/// let pools = TenantPools::builder("postgres://app@127.0.0.1/crm").build().await?;
/// let app: Router = Router::new()
///     .route("/leads/count", get(count))
///     .layer(PoolLayer::new(pools))
///     .layer(tenant_layer);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PoolLayer {
    pools: TenantPools,
}

impl PoolLayer {
    /// A layer that hands out connections from `pools`.
    pub fn new(pools: TenantPools) -> Self {
        Self { pools }
    }
}

impl<S> Layer<S> for PoolLayer {
    type Service = PoolService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PoolService {
            inner,
            handle: PoolHandle {
                pools: self.pools.clone(),
            },
        }
    }
}

/// The service built by [`PoolLayer`].
#[derive(Debug, Clone)]
pub struct PoolService<S> {
    inner: S,
    handle: PoolHandle,
}

impl<S, B> Service<Request<B>> for PoolService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.handle.clone());
        self.inner.call(req)
    }
}

/// The per-request handle [`PoolLayer`] inserts: a reference to the pools, nothing checked out.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    pools: TenantPools,
}

impl PoolHandle {
    /// The pools.
    pub fn pools(&self) -> &TenantPools {
        &self.pools
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Db {
    type Rejection = DbRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let handle = parts
            .extensions
            .get::<PoolHandle>()
            .ok_or(DbRejection::MissingLayer("PoolLayer"))?;
        let tenant = parts
            .extensions
            .get::<Tenant>()
            .ok_or(DbRejection::MissingLayer("TenantLayer"))?;
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| Arc::from(p.as_str()));
        Ok(handle.pools.checkout_for_route(tenant, route).await?)
    }
}
