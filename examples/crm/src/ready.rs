//! `/readyz`'s probe: PostgreSQL through the API's own pool, Redis through the cache's own
//! connection, one probe at a time, its result shared for [`MAX_AGE`].
//!
//! A probe that opened a connection of its own per call cost PostgreSQL a backend start each
//! time (a few milliseconds of server CPU) and, under a flood of probes, ran the server out of
//! connections: the API, healthy, was reported down. Now a flood costs one checkout and one
//! `SELECT 1` per [`MAX_AGE`], whatever the number of callers: callers within that time read the
//! last result, and callers that arrive while a probe runs wait for it instead of starting their
//! own.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use parapet::{
    CacheHandle, Tenant, TenantPools,
    tenant::{Features, TenantId, TenantRecord},
};

/// How long a probe's result answers `/readyz` before the next call probes again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// The longest a probe of either service may take before it counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The tenant the PostgreSQL probe checks its connection out for. The probe runs `SELECT 1`
/// and reads no table, so whose setting the connection carries does not matter; a name no
/// demo tenant has keeps it apart in the pool's logs.
pub const PROBE_TENANT: &str = "parapet-readiness-probe";

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// PostgreSQL answered `SELECT 1` on a pooled connection within [`CHECK_TIMEOUT`].
    pub postgres: bool,
    /// Redis answered `PING` (`None`: the cache has no shared tier, or the cache is off).
    pub redis: Option<bool>,
}

type Probe = dyn Fn() -> Pin<Box<dyn Future<Output = Report> + Send>> + Send + Sync;

/// The shared, rate-limited readiness probe (cheap to clone).
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

struct Inner {
    probe: Box<Probe>,
    max_age: Duration,
    /// The last result and when its probe ended.
    last: Mutex<Option<(Instant, Report)>>,
    /// Held by the one caller that is probing.
    probing: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("max_age", &self.inner.max_age)
            .field("last", &self.cached())
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Probes PostgreSQL through `pools` (down when there are none) and Redis through `cache`.
    pub fn new(pools: Option<TenantPools>, cache: Option<CacheHandle>) -> Self {
        let tenant = TenantId::parse(PROBE_TENANT).map(|id| {
            Tenant::new(
                Arc::new(TenantRecord::new(id)),
                Arc::new(Features::default()),
            )
        });
        let target = pools.zip(tenant.ok()).map(Arc::new);
        Self::with_probe(MAX_AGE, move || {
            let target = target.clone();
            let cache = cache.clone();
            Box::pin(async move {
                let postgres = async {
                    match target.as_deref() {
                        Some((pools, tenant)) => postgres_answers(pools, tenant).await,
                        None => false,
                    }
                };
                let redis = async {
                    match &cache {
                        Some(cache) => cache.shared_tier_ready().await,
                        None => None,
                    }
                };
                let (postgres, redis) = tokio::join!(postgres, redis);
                Report { postgres, redis }
            })
        })
    }

    /// Runs `probe` at most once per `max_age` (and never twice at once).
    pub fn with_probe<F, Fut>(max_age: Duration, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Report> + Send + 'static,
    {
        Self {
            inner: Arc::new(Inner {
                probe: Box::new(move || Box::pin(probe())),
                max_age,
                last: Mutex::new(None),
                probing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The last result while it is younger than the maximum age, else a new probe's (shared
    /// with every caller that asks while it runs).
    pub async fn check(&self) -> Report {
        if let Some(report) = self.fresh() {
            return report;
        }
        let _probing = self.inner.probing.lock().await;
        // Whoever held the lock before may just have probed.
        if let Some(report) = self.fresh() {
            return report;
        }
        let report = (self.inner.probe)().await;
        *self
            .inner
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), report));
        report
    }

    fn cached(&self) -> Option<(Instant, Report)> {
        *self
            .inner
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self) -> Option<Report> {
        self.cached()
            .filter(|(at, _)| at.elapsed() < self.inner.max_age)
            .map(|(_, report)| report)
    }
}

/// Whether a connection of the API's pool answers `SELECT 1` within [`CHECK_TIMEOUT`] (the
/// checkout's wait included).
async fn postgres_answers(pools: &TenantPools, tenant: &Tenant) -> bool {
    let attempt = async {
        let db = pools.checkout(tenant).await.ok()?;
        db.query_one("SELECT 1", &[]).await.ok()
    };
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, attempt).await,
        Ok(Some(_))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(max_age: Duration) -> (Readiness, Arc<AtomicUsize>) {
        let probes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&probes);
        let readiness = Readiness::with_probe(max_age, move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Alternates, so a test can tell one probe's result from the next one's.
                Report {
                    postgres: n.is_multiple_of(2),
                    redis: Some(true),
                }
            }
        });
        (readiness, probes)
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_probe() {
        let (readiness, probes) = counting(Duration::from_secs(60));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..500 {
            let readiness = readiness.clone();
            calls.spawn(async move { readiness.check().await });
        }
        let reports = calls.join_all().await;
        assert_eq!(reports.len(), 500);
        assert!(reports.iter().all(|r| r.postgres), "{reports:?}");
        assert_eq!(probes.load(Ordering::SeqCst), 1, "one probe for all");
    }

    #[tokio::test]
    async fn a_result_is_reused_while_young_and_probed_again_when_old() {
        let (readiness, probes) = counting(Duration::from_secs(60));
        assert!(readiness.check().await.postgres);
        assert!(readiness.check().await.postgres, "still the first result");
        assert_eq!(probes.load(Ordering::SeqCst), 1);

        let max_age = Duration::from_millis(100);
        let (readiness, probes) = counting(max_age);
        assert!(readiness.check().await.postgres);
        tokio::time::sleep(max_age * 2).await;
        assert!(
            !readiness.check().await.postgres,
            "the second probe's result"
        );
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cancelled_prober_hands_over_to_the_next_caller() {
        let (readiness, probes) = counting(Duration::from_secs(60));
        let first = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.check().await }
        });
        while probes.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        // The abandoned probe left no result; the next caller probes and is answered.
        let report = readiness.check().await;
        assert!(!report.postgres, "the second probe's result: {report:?}");
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }
}
