//! The proxy in front of a real origin with several tenants: each tenant's responses are its
//! own, and the requests per tenant are counted with bounded cardinality (the top tenants by
//! traffic, the rest summed as one "other" entry).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use axum::extract::Request;
use parapet_cache::CacheLayer;
use parapet_tenant::{Tenant, TenantId, TenantRecord};
use support::{Origin, cc, get, serve};

/// The proxy with a multi-tenant cache; the tenant is named by `x-tenant` (a stand-in for
/// the tenant layer an application puts in front).
async fn proxy(origin: &Origin, cache: CacheLayer) -> std::net::SocketAddr {
    let app = example_cache_proxy::app_with(origin.url(), cache).layer(
        axum::middleware::map_request(|mut request: Request| async move {
            let id = request
                .headers()
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| TenantId::parse(v).ok());
            if let Some(id) = id {
                let tenant = Tenant::new(Arc::new(TenantRecord::new(id)), Arc::default());
                request.extensions_mut().insert(tenant);
            }
            request
        }),
    );
    serve(app).await
}

#[tokio::test]
async fn tenants_are_cached_apart_and_counted_with_bounded_cardinality() {
    let origin = Origin::start(|n, _| (200, cc("max-age=60"), format!("call {n}"))).await;
    let cache = CacheLayer::builder().local(1 << 20).build().unwrap();
    let handle = cache.handle();
    let proxy = proxy(&origin, cache).await;

    // acme: a miss, then hits; globex asks the same URI and gets its own response.
    for expected in ["call 0", "call 0", "call 0", "call 0"] {
        let got = get(proxy, "/p", &[("x-tenant", "acme")]).await;
        assert_eq!(got.body, expected);
    }
    let globex = get(proxy, "/p", &[("x-tenant", "globex")]).await;
    assert_eq!(globex.body, "call 1", "acme's entry reached globex");
    assert_eq!(
        get(proxy, "/p", &[("x-tenant", "globex")]).await.body,
        "call 1"
    );
    // Without a tenant nothing is cached, and nothing is counted per tenant.
    let anonymous = get(proxy, "/p", &[]).await;
    assert_eq!(anonymous.body, "call 2");
    assert!(
        anonymous.cache_status().contains("detail=no-tenant"),
        "{}",
        anonymous.cache_status()
    );
    // Forty small tenants, one miss each.
    for i in 0..40 {
        let tenant = format!("small-{i:02}");
        get(proxy, "/p", &[("x-tenant", tenant.as_str())]).await;
    }
    assert_eq!(origin.calls(), 43);

    let top = handle.requests_by_tenant(2);
    assert_eq!(top.len(), 3, "two tenants and the others: {top:?}");
    assert_eq!(top[0].tenant.as_deref(), Some("acme"));
    assert_eq!((top[0].hits, top[0].misses), (3, 1));
    assert_eq!(top[1].tenant.as_deref(), Some("globex"));
    assert_eq!((top[1].hits, top[1].misses), (1, 1));
    assert_eq!(top[2].tenant, None, "the rest as one entry");
    assert_eq!((top[2].hits, top[2].misses), (0, 40));
    let total: u64 = top.iter().map(|t| t.total()).sum();
    assert_eq!(
        total, 46,
        "every tenant request counted once, the anonymous one not"
    );
    // Asking for more than there are lists them all, without an "other" entry.
    let all = handle.requests_by_tenant(100);
    assert_eq!(all.len(), 42);
    assert!(all.iter().all(|t| t.tenant.is_some()));
}
