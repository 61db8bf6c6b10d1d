//! A tenant's share of the local tier through the layer: a tenant flooding the cache with
//! distinct responses keeps to its share, the other tenant's responses stay hits, and the bytes
//! per tenant are reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;

use common::{cache_status, get, origin, send};
use parapet_cache::{BuildError, CacheLayer};

const CAPACITY: u64 = 512 * 1024;

#[tokio::test]
async fn a_flooding_tenant_keeps_to_its_share_and_the_other_keeps_its_hits() {
    let cache = CacheLayer::builder()
        .local(CAPACITY)
        .local_tenant_share(0.5)
        .build()
        .unwrap();
    let handle = cache.handle();
    let (service, calls) = origin(|_, _| {
        let headers = vec![("cache-control", "max-age=300".to_owned())];
        (200, headers, "b".repeat(2048))
    });

    for i in 0..40 {
        let res = send(&cache, service.clone(), get("victim", &format!("/v/{i}"))).await;
        assert!(
            cache_status(&res).contains("stored"),
            "{}",
            cache_status(&res)
        );
    }
    let victim_bytes = |handle: &parapet_cache::CacheHandle| {
        handle
            .local_bytes_by_tenant(10)
            .into_iter()
            .find(|b| b.tenant.as_deref() == Some("victim"))
            .map_or(0, |b| b.bytes)
    };
    let before = victim_bytes(&handle);
    assert!(before > 40 * 2048, "{before}");

    // Eight times the tier, each response asked for twice.
    for i in 0..1_600 {
        for _ in 0..2 {
            send(&cache, service.clone(), get("flood", &format!("/f/{i}"))).await;
        }
    }
    let flood = handle
        .local_bytes_by_tenant(10)
        .into_iter()
        .find(|b| b.tenant.as_deref() == Some("flood"))
        .unwrap();
    assert!(flood.bytes <= CAPACITY / 2, "{flood:?}");
    assert!(handle.stats().local_refused > 0);

    let origin_calls = calls.load(Ordering::SeqCst);
    for i in 0..40 {
        let res = send(&cache, service.clone(), get("victim", &format!("/v/{i}"))).await;
        assert!(
            cache_status(&res).contains("hit"),
            "/v/{i}: {}",
            cache_status(&res)
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), origin_calls, "no victim miss");
    assert_eq!(victim_bytes(&handle), before);

    // Bounded to the top: one tenant named, the other summed.
    let top = handle.local_bytes_by_tenant(1);
    assert_eq!(top.len(), 2, "{top:?}");
    assert_eq!(top[1].tenant, None);
    assert_eq!(top[0].bytes + top[1].bytes, flood.bytes + before);
}

#[test]
fn a_share_outside_zero_to_one_is_a_build_error_naming_it() {
    for share in [0.0, -1.0, 1.01, f64::NAN] {
        let err = CacheLayer::builder()
            .local(CAPACITY)
            .local_tenant_share(share)
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::TenantShare(_)), "{share}: {err}");
        assert!(err.to_string().contains("local_tenant_share"), "{err}");
    }
    assert!(
        CacheLayer::builder()
            .local(CAPACITY)
            .local_tenant_share(1.0)
            .build()
            .is_ok()
    );
}
