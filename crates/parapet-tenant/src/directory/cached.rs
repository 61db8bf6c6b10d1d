//! [`CachedDirectory`]: a moka cache in front of any [`TenantDirectory`].

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use moka::future::Cache;

use super::servable::{Servable, Stamped, UntilRecordExpires};

use super::{DirectoryError, TenantDirectory};
use crate::{Features, Tenant, TenantId, TenantRecord, TenantRejection, TenantStatus};

/// A cache in front of a [`TenantDirectory`]: known tenants for 300 s, their features for 60 s,
/// unknown ids for 10 s in a small separate cache (so enumerating random ids cannot evict real
/// tenants nor make a query per repeat), one query for any number of concurrent lookups of one
/// id, and a timeout on every query (2 s). Cloning shares the cache.
///
/// ```
/// use std::time::Duration;
/// use parapet_tenant::{CachedDirectory, StaticDirectory, TenantId, TenantRecord};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let acme = TenantId::parse("acme").unwrap();
/// let directory = CachedDirectory::builder(StaticDirectory::new().tenant(TenantRecord::new(acme.clone())))
///     .ttl(Duration::from_secs(60))
///     .build();
/// let tenant = directory.tenant(&acme).await.unwrap();
/// assert_eq!(tenant.id(), &acme);
/// directory.invalidate(&acme).await; // after the record changed
/// # }
/// ```
#[derive(Clone)]
pub struct CachedDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn TenantDirectory>,
    /// What a request reads: active tenants, record and features in one entry, looked up by
    /// `&str` without awaiting. Filled from `records` and `features`, which load (one query
    /// per id at a time) and keep the two TTLs.
    servable: moka::sync::Cache<TenantId, Arc<Servable>>,
    records: Cache<TenantId, Stamped<Arc<TenantRecord>>>,
    unknown: Cache<TenantId, ()>,
    features: Cache<TenantId, Stamped<Arc<Features>>>,
    /// Counts invalidations, so that a load they overlapped does not leave its entry behind.
    generation: AtomicU64,
    ttl: Duration,
    features_ttl: Duration,
    timeout: Duration,
}

/// Builds a [`CachedDirectory`]; see its defaults there.
#[must_use]
pub struct CachedDirectoryBuilder {
    source: Arc<dyn TenantDirectory>,
    ttl: Duration,
    negative_ttl: Duration,
    features_ttl: Duration,
    max_tenants: u64,
    max_unknown: u64,
    timeout: Duration,
}

impl CachedDirectory {
    /// Starts building a cache in front of `source`.
    pub fn builder(source: impl TenantDirectory) -> CachedDirectoryBuilder {
        CachedDirectoryBuilder {
            source: Arc::new(source),
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(10),
            features_ttl: Duration::from_secs(60),
            max_tenants: 100_000,
            max_unknown: 10_000,
            timeout: Duration::from_secs(2),
        }
    }

    /// A cache with the default settings.
    pub fn new(source: impl TenantDirectory) -> Self {
        Self::builder(source).build()
    }

    /// The record of `id` (`None` when unknown), from the cache or the source.
    pub async fn record(&self, id: &TenantId) -> Result<Option<Arc<TenantRecord>>, DirectoryError> {
        Ok(self.stamped_record(id).await?.map(|r| r.value))
    }

    async fn stamped_record(
        &self,
        id: &TenantId,
    ) -> Result<Option<Stamped<Arc<TenantRecord>>>, DirectoryError> {
        let inner = &self.inner;
        if let Some(record) = inner.records.get(id).await {
            return Ok(Some(record));
        }
        if inner.unknown.contains_key(id) {
            return Ok(None);
        }
        let loaded = inner
            .records
            .try_get_with_by_ref(id, async {
                match tokio::time::timeout(inner.timeout, inner.source.lookup(id)).await {
                    Ok(Ok(Some(record))) => Ok(Stamped::now(Arc::new(record))),
                    Ok(Ok(None)) => Err(Load::NotFound),
                    Ok(Err(e)) => Err(Load::Failed(e)),
                    Err(_) => Err(Load::Failed(DirectoryError::Timeout)),
                }
            })
            .await;
        match loaded {
            Ok(record) => Ok(Some(record)),
            Err(e) => match &*e {
                Load::NotFound => {
                    inner.unknown.insert(id.clone(), ()).await;
                    Ok(None)
                }
                Load::Failed(e) => Err(e.clone()),
            },
        }
    }

    /// The features of `id`'s active subscriptions, from the cache or the source.
    pub async fn features(&self, id: &TenantId) -> Result<Arc<Features>, DirectoryError> {
        Ok(self.stamped_features(id).await?.value)
    }

    async fn stamped_features(
        &self,
        id: &TenantId,
    ) -> Result<Stamped<Arc<Features>>, DirectoryError> {
        let inner = &self.inner;
        inner
            .features
            .try_get_with_by_ref(id, async {
                match tokio::time::timeout(inner.timeout, inner.source.features(id)).await {
                    Ok(Ok(features)) => Ok(Stamped::now(Arc::new(features))),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(DirectoryError::Timeout),
                }
            })
            .await
            .map_err(|e| DirectoryError::clone(&e))
    }

    /// Resolves `id` to a servable [`Tenant`]: unknown, suspended and failed lookups become the
    /// matching rejection (the failure itself is logged, never sent to the client).
    pub async fn tenant(&self, id: &TenantId) -> Result<Tenant, TenantRejection> {
        match self.cached(id.as_str()) {
            Some(tenant) => Ok(tenant),
            None => self.load(id).await,
        }
    }

    /// The active tenant named `id` when the cache holds its record and its features, both
    /// within their TTL: one lookup, no await, no allocation. `None` means: ask
    /// [`tenant`](Self::tenant) (unknown, suspended, not cached or too old).
    pub(crate) fn cached(&self, id: &str) -> Option<Tenant> {
        let servable = self.inner.servable.get(id)?;
        (Instant::now() < servable.features_until).then(|| servable.tenant.clone())
    }

    /// The slow path of [`tenant`](Self::tenant): the record and the features through their
    /// loading caches, then one servable entry for the next requests.
    async fn load(&self, id: &TenantId) -> Result<Tenant, TenantRejection> {
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let record = match self.stamped_record(id).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(TenantRejection::Unknown),
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "tenant lookup failed");
                return Err(TenantRejection::DirectoryUnavailable);
            }
        };
        if record.value.status == TenantStatus::Suspended {
            return Err(TenantRejection::Suspended);
        }
        let features = self.stamped_features(id).await.map_err(|e| {
            tracing::warn!(tenant.id = %id, error = %e, "tenant features lookup failed");
            TenantRejection::DirectoryUnavailable
        })?;
        let inner = &self.inner;
        let tenant = Tenant::new(record.value, features.value);
        inner.servable.insert(
            id.clone(),
            Arc::new(Servable {
                tenant: tenant.clone(),
                record_until: record.loaded + inner.ttl,
                features_until: features.loaded + inner.features_ttl,
            }),
        );
        // An invalidation that ran while this was loading may have missed the entry just
        // inserted (and what was loaded may predate it): take it out again.
        if inner.generation.load(Ordering::SeqCst) != generation {
            inner.servable.invalidate(id);
        }
        Ok(tenant)
    }

    /// Forgets everything cached about `id` (its record, features and any negative answer).
    pub async fn invalidate(&self, id: &TenantId) {
        let inner = &self.inner;
        inner.records.invalidate(id).await;
        inner.unknown.invalidate(id).await;
        inner.features.invalidate(id).await;
        // After the loading caches, so that a load that read them before is seen (see `load`).
        inner.generation.fetch_add(1, Ordering::SeqCst);
        inner.servable.invalidate(id);
    }

    /// How many entries each cache holds, after applying pending evictions.
    pub async fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        inner.servable.run_pending_tasks();
        inner.records.run_pending_tasks().await;
        inner.unknown.run_pending_tasks().await;
        inner.features.run_pending_tasks().await;
        CacheStats {
            tenants: inner.records.entry_count(),
            unknown: inner.unknown.entry_count(),
            features: inner.features.entry_count(),
        }
    }

    /// Forgets everything cached.
    pub fn invalidate_all(&self) {
        let inner = &self.inner;
        inner.records.invalidate_all();
        inner.unknown.invalidate_all();
        inner.features.invalidate_all();
        inner.generation.fetch_add(1, Ordering::SeqCst);
        inner.servable.invalidate_all();
    }
}
/// Entry counts of a [`CachedDirectory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Known tenants' records.
    pub tenants: u64,
    /// Ids remembered as unknown.
    pub unknown: u64,
    /// Tenants' feature sets.
    pub features: u64,
}

/// Why the loader did not produce a record (not cached by `try_get_with`).
enum Load {
    NotFound,
    Failed(DirectoryError),
}

impl CachedDirectoryBuilder {
    /// How long a known tenant's record is kept (default 300 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an unknown id is remembered as unknown (default 10 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// How long a tenant's features are kept (default 60 s).
    pub fn features_ttl(mut self, ttl: Duration) -> Self {
        self.features_ttl = ttl;
        self
    }

    /// How many known tenants are kept (default 100,000).
    pub fn max_tenants(mut self, n: u64) -> Self {
        self.max_tenants = n;
        self
    }

    /// How many unknown ids are remembered (default 10,000).
    pub fn max_unknown(mut self, n: u64) -> Self {
        self.max_unknown = n;
        self
    }

    /// How long one query to the source may take before the lookup fails (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> CachedDirectory {
        CachedDirectory {
            inner: Arc::new(Inner {
                source: self.source,
                servable: moka::sync::Cache::builder()
                    .max_capacity(self.max_tenants)
                    .expire_after(UntilRecordExpires)
                    .build(),
                records: Cache::builder()
                    .max_capacity(self.max_tenants)
                    .time_to_live(self.ttl)
                    .build(),
                unknown: Cache::builder()
                    .max_capacity(self.max_unknown)
                    .time_to_live(self.negative_ttl)
                    .build(),
                features: Cache::builder()
                    .max_capacity(self.max_tenants)
                    .time_to_live(self.features_ttl)
                    .build(),
                generation: AtomicU64::new(0),
                ttl: self.ttl,
                features_ttl: self.features_ttl,
                timeout: self.timeout,
            }),
        }
    }
}

impl fmt::Debug for CachedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedDirectory")
            .field("tenants", &self.inner.records.entry_count())
            .field("unknown", &self.inner.unknown.entry_count())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CachedDirectoryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedDirectoryBuilder")
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("features_ttl", &self.features_ttl)
            .field("max_tenants", &self.max_tenants)
            .field("max_unknown", &self.max_unknown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<D: TenantDirectory> From<D> for CachedDirectory {
    fn from(source: D) -> Self {
        Self::new(source)
    }
}
