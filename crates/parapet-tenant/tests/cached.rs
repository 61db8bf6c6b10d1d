//! `CachedDirectory`'s two TTLs: a tenant's features are reloaded after the features' TTL
//! without reloading its record, and reloading them does not extend the record's TTL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use parapet_tenant::{
    BoxFuture, CachedDirectory, DirectoryError, Features, TenantDirectory, TenantId, TenantRecord,
};

/// One tenant whose features can change, counting the queries that reach it.
#[derive(Default)]
struct Source {
    features: Mutex<Features>,
    lookups: AtomicUsize,
    feature_loads: AtomicUsize,
}

impl Source {
    fn counts(&self) -> (usize, usize) {
        (
            self.lookups.load(Ordering::SeqCst),
            self.feature_loads.load(Ordering::SeqCst),
        )
    }
}

impl TenantDirectory for Source {
    fn lookup<'a>(
        &'a self,
        id: &'a TenantId,
    ) -> BoxFuture<'a, Result<Option<TenantRecord>, DirectoryError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(Some(TenantRecord::new(id.clone()))) })
    }

    fn features<'a>(
        &'a self,
        _id: &'a TenantId,
    ) -> BoxFuture<'a, Result<Features, DirectoryError>> {
        self.feature_loads.fetch_add(1, Ordering::SeqCst);
        let features = self.features.lock().unwrap().clone();
        Box::pin(async move { Ok(features) })
    }
}

#[tokio::test]
async fn features_refresh_on_their_own_ttl_and_the_record_keeps_its_own() {
    let source = Arc::new(Source::default());
    let dir = CachedDirectory::builder(source.clone())
        .ttl(Duration::from_millis(2000))
        .features_ttl(Duration::from_millis(1400))
        .build();
    let acme = TenantId::parse("acme").unwrap();

    assert!(!dir.tenant(&acme).await.unwrap().has_feature("sso"));
    assert!(!dir.tenant(&acme).await.unwrap().has_feature("sso"));
    assert_eq!(source.counts(), (1, 1), "the second lookup is a hit");

    source.features.lock().unwrap().insert("sso".to_owned());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        dir.tenant(&acme).await.unwrap().has_feature("sso"),
        "features older than their TTL are reloaded"
    );
    assert!(dir.tenant(&acme).await.unwrap().has_feature("sso"));
    assert_eq!(
        source.counts(),
        (1, 2),
        "the record is not reloaded with them"
    );

    // 2.4 s after the record was loaded, 0.8 s after the features were.
    tokio::time::sleep(Duration::from_millis(800)).await;
    dir.tenant(&acme).await.unwrap();
    assert_eq!(
        source.counts(),
        (2, 2),
        "the record expires 2 s after it was loaded, whatever refreshed the features since"
    );
}

#[tokio::test]
async fn invalidation_reaches_the_cached_tenant() {
    let source = Arc::new(Source::default());
    let dir = CachedDirectory::new(source.clone());
    let acme = TenantId::parse("acme").unwrap();

    assert!(!dir.tenant(&acme).await.unwrap().has_feature("sso"));
    source.features.lock().unwrap().insert("sso".to_owned());
    dir.invalidate(&acme).await;
    assert!(dir.tenant(&acme).await.unwrap().has_feature("sso"));
    assert_eq!(source.counts(), (2, 2));

    source.features.lock().unwrap().clear();
    dir.invalidate_all();
    assert!(!dir.tenant(&acme).await.unwrap().has_feature("sso"));
    assert_eq!(source.counts(), (3, 3));
}
