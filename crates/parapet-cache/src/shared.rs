//! [`Shared`]: what every service of one layer shares, and what it derives per request (the
//! cache key, the policy, the response's tags).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, HeaderName};

use crate::coalesce::Flights;
use crate::epoch::Epochs;
use crate::key::{PrimaryKey, tenant_prefix};
use crate::policy::PolicyConfig;
use crate::stats::Counters;
use crate::store::{Store, TenantLedger};

/// A per-request default TTL, for responses that carry no freshness information.
pub(crate) type TtlFn = dyn Fn(&Parts) -> Option<Duration> + Send + Sync;

/// Everything the services of one layer share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) policy: PolicyConfig,
    pub(crate) route_ttls: Vec<(String, Duration)>,
    pub(crate) ttl_fn: Option<Arc<TtlFn>>,
    pub(crate) prefix: String,
    pub(crate) max_body_size: usize,
    pub(crate) single_tenant: bool,
    pub(crate) coalesce_wait: Duration,
    pub(crate) revalidation_grace: Duration,
    pub(crate) tag_headers: Vec<HeaderName>,
    pub(crate) expose_tags: bool,
    pub(crate) counters: Arc<Counters>,
    /// Bytes per tenant in the local tier (`None` without a local tier).
    pub(crate) tenants: Option<Arc<TenantLedger>>,
    pub(crate) flights: Arc<Flights>,
    pub(crate) refreshes: Arc<Flights>,
    /// Per-tenant invalidation counters: a fill that overlapped an invalidation does not store.
    pub(crate) epochs: Epochs,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("store", &self.store)
            .field("policy", &self.policy)
            .field("route_ttls", &self.route_ttls)
            .field("ttl_fn", &self.ttl_fn.as_ref().map(|_| "Fn(&Parts)"))
            .field("prefix", &self.prefix)
            .field("max_body_size", &self.max_body_size)
            .field("single_tenant", &self.single_tenant)
            .field("coalesce_wait", &self.coalesce_wait)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The primary key of `path_and_query` for a tenant (`None`: the single-tenant keys), with
    /// the tenant's current generation: the one place a request's or a purge's key is made.
    pub(crate) async fn key_for(&self, tenant: Option<&str>, path_and_query: &str) -> PrimaryKey {
        let tenant_prefix = tenant_prefix(&self.prefix, tenant);
        let generation = self.store.generation(&tenant_prefix).await;
        PrimaryKey::under(&tenant_prefix, generation, path_and_query)
    }

    /// Reads the tags of a response, removing the tag headers unless they are exposed.
    pub(crate) fn take_tags(&self, headers: &mut HeaderMap) -> Vec<String> {
        let mut tags = Vec::new();
        for name in &self.tag_headers {
            for value in headers.get_all(name) {
                let Ok(value) = value.to_str() else { continue };
                tags.extend(
                    value
                        .split([',', ' ', '\t'])
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                );
            }
            if !self.expose_tags {
                headers.remove(name);
            }
        }
        tags.sort();
        tags.dedup();
        tags
    }

    /// The policy for a request: the configured one, with the route's default TTL if any
    /// (the closure first, then the longest matching path prefix).
    pub(crate) fn policy_for(&self, parts: &Parts) -> PolicyConfig {
        let from_fn = self.ttl_fn.as_ref().and_then(|f| f(parts));
        let path = parts.uri.path();
        let from_prefix = self
            .route_ttls
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, ttl)| *ttl);
        match from_fn.or(from_prefix) {
            Some(ttl) => self.policy.clone().default_ttl(ttl),
            None => self.policy.clone(),
        }
    }
}
