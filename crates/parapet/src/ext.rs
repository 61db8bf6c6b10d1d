//! [`ServiceBuilderExt`]: one method per parapet layer on tower's `ServiceBuilder`.

use parapet_cache::CacheLayer;
use parapet_pool::{PoolLayer, TenantPools};
use parapet_telemetry::TelemetryLayer;
use parapet_tenant::TenantLayer;
use tower::ServiceBuilder;
use tower_layer::Stack;

use crate::Parapet;

/// Adds parapet's layers to a [`ServiceBuilder`], one method per layer, in the style of
/// tower-http's `ServiceBuilderExt`. Layers added first are outermost: keep the order
/// telemetry → tenant → cache → pool.
///
/// ```
/// use axum::{Router, routing::get};
/// use parapet::{ServiceBuilderExt, TelemetryLayer, TenantLayer};
/// use parapet::tenant::{HeaderResolver, StaticDirectory, TenantId, TenantRecord};
/// use tower::ServiceBuilder;
///
/// let directory = StaticDirectory::new()
///     .tenant(TenantRecord::new(TenantId::parse("acme").unwrap()).name("Acme"));
/// let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
///     ServiceBuilder::new()
///         .telemetry(TelemetryLayer::new())
///         .tenant(TenantLayer::builder(directory).resolver(HeaderResolver::new()).build()),
/// );
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Adds [`TelemetryLayer`]: a server span and the HTTP metrics for every request.
    fn telemetry(self, layer: TelemetryLayer) -> ServiceBuilder<Stack<TelemetryLayer, L>>;
    /// Adds [`TenantLayer`]: the request's tenant, resolved and validated.
    fn tenant(self, layer: TenantLayer) -> ServiceBuilder<Stack<TenantLayer, L>>;
    /// Adds [`CacheLayer`]: the tenant-scoped response cache.
    fn cache(self, layer: CacheLayer) -> ServiceBuilder<Stack<CacheLayer, L>>;
    /// Adds a [`PoolLayer`] for `pools`: the handle the `Db` extractor checks out from.
    fn tenant_pools(self, pools: TenantPools) -> ServiceBuilder<Stack<PoolLayer, L>>;
    /// Adds the whole stack at once.
    fn parapet(self, parapet: Parapet) -> ServiceBuilder<Stack<Parapet, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn telemetry(self, layer: TelemetryLayer) -> ServiceBuilder<Stack<TelemetryLayer, L>> {
        self.layer(layer)
    }

    fn tenant(self, layer: TenantLayer) -> ServiceBuilder<Stack<TenantLayer, L>> {
        self.layer(layer)
    }

    fn cache(self, layer: CacheLayer) -> ServiceBuilder<Stack<CacheLayer, L>> {
        self.layer(layer)
    }

    fn tenant_pools(self, pools: TenantPools) -> ServiceBuilder<Stack<PoolLayer, L>> {
        self.layer(PoolLayer::new(pools))
    }

    fn parapet(self, parapet: Parapet) -> ServiceBuilder<Stack<Parapet, L>> {
        self.layer(parapet)
    }
}

mod sealed {
    #[allow(unreachable_pub)]
    pub trait Sealed<T> {}
    impl<T> Sealed<T> for tower::ServiceBuilder<T> {}
}
