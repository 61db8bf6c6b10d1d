//! [`QuotaLayer`] and its builder: the plans' and tenants' rules, the Redis the limit is shared
//! through, the share of a request a cache hit costs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parapet_cache::RedisConfig;
use parapet_tenant::{Tenant, TenantId};
use tower_layer::Layer;

use crate::hold::Pacing;
use crate::local::LocalLimiter;
use crate::policy::{Policy, valid_name};
use crate::rate::{RateError, Rule};
use crate::service::QuotaService;
use crate::shared::SharedLimiter;
use crate::stats::{Counters, QuotaStats};

/// The default prefix of the Redis keys.
pub const DEFAULT_PREFIX: &str = "parapet:quota:";
/// The default share of a request that a cache hit costs.
pub const DEFAULT_HIT_COST: f64 = 0.1;
/// The default bound of the refusals held at once, with refusal pacing on.
pub const DEFAULT_MAX_HELD: u64 = 10_000;

/// Why a [`QuotaLayer`] cannot be built; names the plan or tenant and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A plan's rate is unusable.
    #[error("plan {plan}: {source}")]
    Plan {
        /// The plan.
        plan: String,
        /// The field and what is wrong with it.
        source: RateError,
    },
    /// A plan name that cannot be a `RateLimit-Policy` name.
    #[error("plan {plan:?}: a plan name is 1 to 64 ASCII letters, digits, '-', '_' or '.'")]
    PlanName {
        /// The plan.
        plan: String,
    },
    /// A tenant's override is unusable.
    #[error("tenant {tenant}: {source}")]
    Tenant {
        /// The tenant.
        tenant: TenantId,
        /// The field and what is wrong with it.
        source: RateError,
    },
    /// The default rule is unusable.
    #[error("default: {0}")]
    Default(RateError),
    /// The hit cost is not a fraction.
    #[error("hit cost {0}: expected a number from 0 to 1")]
    HitCost(f64),
    /// The Redis settings are unusable (an invalid URL or TLS file).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The running layer's state, shared by every clone and service.
#[derive(Debug)]
pub(crate) struct Shared {
    plans: HashMap<Box<str>, Option<Arc<Policy>>>,
    tenants: HashMap<TenantId, Option<Arc<Policy>>>,
    default: Option<Arc<Policy>>,
    pub(crate) local: LocalLimiter,
    pub(crate) redis: Option<SharedLimiter>,
    pub(crate) counters: Counters,
    pub(crate) pacing: Option<Pacing>,
}

impl Shared {
    /// The policy that applies to `tenant` (its override, else its plan's, else the default);
    /// `None` when it is unlimited.
    pub(crate) fn policy(&self, tenant: &Tenant) -> Option<&Arc<Policy>> {
        if let Some(rule) = self.tenants.get(tenant.id().as_str()) {
            return rule.as_ref();
        }
        match self.plans.get(tenant.plan()) {
            Some(rule) => rule.as_ref(),
            None => self.default.as_ref(),
        }
    }
}

/// Per-tenant rate limits: a tenant over its plan's rate gets `429 Too Many Requests`.
///
/// Place it after `TenantLayer` (it reads the [`Tenant`] from the request extensions; requests
/// without one pass) and before the cache. See the [crate docs](crate) for the whole story.
#[derive(Debug, Clone)]
#[must_use]
pub struct QuotaLayer {
    shared: Arc<Shared>,
}

impl QuotaLayer {
    /// Starts a builder.
    pub fn builder() -> QuotaLayerBuilder {
        QuotaLayerBuilder::default()
    }

    /// The layer's counters.
    #[must_use]
    pub fn stats(&self) -> QuotaStats {
        self.shared.counters.snapshot()
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = QuotaService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        QuotaService::new(inner, Arc::clone(&self.shared))
    }
}

/// Builds a [`QuotaLayer`].
///
/// | setting | default |
/// |---|---|
/// | [`plan`](Self::plan) | none: a plan without a rule gets the default rule |
/// | [`tenant`](Self::tenant) | none: a tenant's own rule wins over its plan's |
/// | [`default_rule`](Self::default_rule) | [`Rule::Unlimited`] |
/// | [`hit_cost`](Self::hit_cost) | `0.1`: a cache hit costs a tenth of a request |
/// | [`redis`](Self::redis) | none: each instance limits alone |
/// | [`prefix`](Self::prefix) | `parapet:quota:` |
/// | [`top_tenants`](Self::top_tenants) | `10` tenants with a throttled series of their own |
/// | [`max_tenants`](Self::max_tenants) | `100000` tenants in the local limiter |
/// | [`refusal_delay`](Self::refusal_delay) | none: a refusal is answered at once |
/// | [`max_held_refusals`](Self::max_held_refusals) | `10000` refusals held at once |
/// | [`max_held_per_tenant`](Self::max_held_per_tenant) | a quarter of `max_held_refusals` (at least 1) |
#[derive(Debug, Clone)]
#[must_use]
pub struct QuotaLayerBuilder {
    plans: Vec<(String, Rule)>,
    tenants: Vec<(TenantId, Rule)>,
    default: Rule,
    hit_cost: f64,
    redis: Option<RedisConfig>,
    prefix: String,
    top_tenants: usize,
    max_tenants: u64,
    refusal_delay: Duration,
    max_held: u64,
    max_held_per_tenant: Option<u32>,
}

impl Default for QuotaLayerBuilder {
    fn default() -> Self {
        Self {
            plans: Vec::new(),
            tenants: Vec::new(),
            default: Rule::Unlimited,
            hit_cost: DEFAULT_HIT_COST,
            redis: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            top_tenants: 10,
            max_tenants: 100_000,
            refusal_delay: Duration::ZERO,
            max_held: DEFAULT_MAX_HELD,
            max_held_per_tenant: None,
        }
    }
}

impl QuotaLayerBuilder {
    /// The rule of the tenants whose record names `plan` (`TenantRecord::plan`). The plan's
    /// name is the policy's name in the `RateLimit` fields.
    pub fn plan(mut self, plan: impl Into<String>, rule: impl Into<Rule>) -> Self {
        self.plans.push((plan.into(), rule.into()));
        self
    }

    /// A tenant's own rule, whatever its plan (its policy is called `tenant`).
    pub fn tenant(mut self, tenant: TenantId, rule: impl Into<Rule>) -> Self {
        self.tenants.push((tenant, rule.into()));
        self
    }

    /// The rule of tenants whose plan has none.
    pub fn default_rule(mut self, rule: impl Into<Rule>) -> Self {
        self.default = rule.into();
        self
    }

    /// The share of a request a cache hit costs, from 0 (hits are free) to 1 (a hit costs a
    /// whole request). A request is charged as a whole one before it is answered (the layer
    /// cannot know it will be a hit); a response whose `Cache-Status` says it was a hit of
    /// parapet's cache gives back the difference.
    pub fn hit_cost(mut self, fraction: f64) -> Self {
        self.hit_cost = fraction;
        self
    }

    /// Shares the limit between instances through this Redis (single server, Cluster,
    /// Sentinel; TLS). Its time budget and breaker apply: when Redis does not answer within
    /// the budget, or while the breaker is open, the instance decides alone.
    pub fn redis(mut self, config: RedisConfig) -> Self {
        self.redis = Some(config);
        self
    }

    /// The prefix of the Redis keys (`<prefix>{<tenant>}`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many tenants get a throttled series of their own in [`QuotaStats`] (and the
    /// metrics); the rest count as `other`.
    pub fn top_tenants(mut self, n: usize) -> Self {
        self.top_tenants = n;
        self
    }

    /// How many tenants the local limiter remembers (the least recently seen are forgotten).
    pub fn max_tenants(mut self, n: u64) -> Self {
        self.max_tenants = n;
        self
    }

    /// Refusal pacing: answers a refused request up to `delay` late instead of at once (zero,
    /// the default, turns it off). Each hold is between half of `delay` and all of it, spread
    /// evenly, so that connections refused together (a flood's, at its start) do not all come
    /// back together, again and again, as one wave the other tenants' requests queue behind.
    ///
    /// A client that sends its next request as soon as the last one is answered (a script in
    /// a loop, a load tool, a retry without backoff) is then slowed to about one request per
    /// `delay` on each of its connections, and each of those costs a timer while it waits instead of
    /// a decision, a response and a write per attempt: the CPU a flood takes from the other
    /// tenants shrinks by the same factor. A client that honours `Retry-After` loses at most
    /// `delay` (the held answer's `Retry-After` counts from when it is sent, never below one
    /// second). Held refusals keep their connections open, so they are
    /// bounded ([`max_held_refusals`](Self::max_held_refusals),
    /// [`max_held_per_tenant`](Self::max_held_per_tenant)); a refusal over a bound is answered
    /// at once, and one whose client goes away gives its place back. Needs Tokio's time driver
    /// (`tokio::time`), as every Axum server has.
    pub fn refusal_delay(mut self, delay: Duration) -> Self {
        self.refusal_delay = delay;
        self
    }

    /// The most refusals held at once by [`refusal_delay`](Self::refusal_delay), in all.
    pub fn max_held_refusals(mut self, n: u64) -> Self {
        self.max_held = n;
        self
    }

    /// The most refusals of one tenant held at once by
    /// [`refusal_delay`](Self::refusal_delay), so that one tenant's flood cannot take every
    /// place (default: a quarter of [`max_held_refusals`](Self::max_held_refusals)).
    pub fn max_held_per_tenant(mut self, n: u32) -> Self {
        self.max_held_per_tenant = Some(n);
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the plan or tenant and the field when a rule is unusable (a zero
    /// count or burst), a plan name cannot be a policy name, the hit cost is not in `[0, 1]`,
    /// or the Redis settings are invalid. Redis being down is not an error.
    pub fn build(self) -> Result<QuotaLayer, BuildError> {
        if !(0.0..=1.0).contains(&self.hit_cost) {
            return Err(BuildError::HitCost(self.hit_cost));
        }
        let hit_cost = self.hit_cost;
        let mut longest = Duration::ZERO;
        let mut policy = |name: &str, rule: &Rule| -> Result<Option<Arc<Policy>>, RateError> {
            match rule {
                Rule::Unlimited => Ok(None),
                Rule::Limited(rate) => {
                    rate.check()?;
                    let policy = Policy::new(name, rate, hit_cost);
                    longest = longest.max(Duration::from_micros(policy.gcra().tolerance()));
                    Ok(Some(Arc::new(policy)))
                }
            }
        };
        let mut plans = HashMap::new();
        for (plan, rule) in &self.plans {
            if !valid_name(plan) {
                return Err(BuildError::PlanName { plan: plan.clone() });
            }
            let built = policy(plan, rule).map_err(|source| BuildError::Plan {
                plan: plan.clone(),
                source,
            })?;
            plans.insert(plan.as_str().into(), built);
        }
        let mut tenants = HashMap::new();
        for (tenant, rule) in &self.tenants {
            let built = policy("tenant", rule).map_err(|source| BuildError::Tenant {
                tenant: tenant.clone(),
                source,
            })?;
            tenants.insert(tenant.clone(), built);
        }
        let default = policy("default", &self.default).map_err(BuildError::Default)?;
        let redis = match self.redis {
            Some(config) => Some(SharedLimiter::new(config, self.prefix)?),
            None => None,
        };
        // A tenant forgotten by the local limiter starts with its whole burst: forget only
        // tenants idle for longer than the longest refill.
        let idle = longest.max(Duration::from_secs(600));
        let pacing = (!self.refusal_delay.is_zero() && self.max_held > 0).then(|| Pacing {
            delay: self.refusal_delay,
            max_held: self.max_held,
            max_per_tenant: self
                .max_held_per_tenant
                .unwrap_or_else(|| u32::try_from(self.max_held / 4).unwrap_or(u32::MAX).max(1)),
        });
        Ok(QuotaLayer {
            shared: Arc::new(Shared {
                plans,
                tenants,
                default,
                local: LocalLimiter::new(self.max_tenants, idle),
                counters: Counters::new(redis.is_some(), self.top_tenants),
                redis,
                pacing,
            }),
        })
    }
}
