//! [`Shared`]: what every service of one layer shares, and what it derives per request (the
//! cache key, the policy, the response's tags).

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::coalesce::{Flights, Passes};
use crate::epoch::Epochs;
use crate::key::PrimaryKey;
use crate::policy::{PolicyConfig, normalized_field_value};
use crate::stats::Counters;
use crate::store::{Store, TenantLedger};
use crate::tenant_stats::TenantCounters;

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
    /// Keys whose last response could not be stored: not coalesced for a while.
    pub(crate) passes: Passes,
    pub(crate) revalidation_grace: Duration,
    pub(crate) tag_headers: Vec<HeaderName>,
    pub(crate) expose_tags: bool,
    /// Request headers holding a client's credentials (besides `Authorization`).
    pub(crate) credential_headers: Vec<HeaderName>,
    /// Whether requests with credentials are cached per credential instead of passed through.
    pub(crate) key_on_credentials: bool,
    /// The longest path and query stored.
    pub(crate) max_uri_length: usize,
    pub(crate) counters: Arc<Counters>,
    /// Requests per tenant by outcome.
    pub(crate) tenant_counters: TenantCounters,
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
    /// Whether the request carries one of the credential headers.
    pub(crate) fn has_credentials(&self, headers: &HeaderMap) -> bool {
        self.credential_headers
            .iter()
            .any(|name| headers.contains_key(name))
    }

    /// The request fields every stored response varies on besides its own `Vary`: the
    /// credential headers when requests are keyed on them.
    pub(crate) fn implied_vary(&self) -> &[HeaderName] {
        if self.key_on_credentials {
            &self.credential_headers
        } else {
            &[]
        }
    }

    /// The request headers as secondary keys and stored `Vary` values see them: with the
    /// values of the implied credential fields replaced by their SHA-256 digest (hex), so no
    /// credential is kept as sent.
    pub(crate) fn vary_view<'a>(&self, headers: &'a HeaderMap) -> Cow<'a, HeaderMap> {
        let implied = self.implied_vary();
        if !implied.iter().any(|name| headers.contains_key(name)) {
            return Cow::Borrowed(headers);
        }
        let mut view = headers.clone();
        for name in implied {
            let Some(value) = normalized_field_value(headers, name) else {
                continue;
            };
            let digest = Sha256::digest(&value);
            let mut hex = String::with_capacity(2 * digest.len());
            for byte in digest {
                let _ = write!(hex, "{byte:02x}");
            }
            view.insert(
                name.clone(),
                HeaderValue::from_str(&hex).unwrap_or(HeaderValue::from_static("-")),
            );
        }
        Cow::Owned(view)
    }

    /// The primary key of `path_and_query` for a tenant (`None`: the single-tenant keys), with
    /// the tenant's current generation: the one place a request's or a purge's key is made.
    pub(crate) async fn key_for(&self, tenant: Option<&str>, path_and_query: &str) -> PrimaryKey {
        // One allocation: the generation is read under the key's own start.
        let start = PrimaryKey::start(&self.prefix, tenant, path_and_query);
        let generation = match self.store.generation_now(&start) {
            Some(generation) => generation,
            None => self.store.generation(&start).await,
        };
        PrimaryKey::finish(start, generation, path_and_query)
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
