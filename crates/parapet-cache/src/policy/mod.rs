//! The RFC 9111 shared-cache policy: what to store, for how long, and how to answer from it.
//!
//! Every function is pure and synchronous; times are passed in.
//!
//! - [`storability`]: may a response be stored, with which lifetime and stale windows (§3).
//! - [`freshness_lifetime`], [`StoredTimes`], [`current_age`], [`is_fresh`]: §4.2.
//! - [`decide`]: serve fresh, serve stale, revalidate, or answer 504 (§4, §5.2.1).
//! - [`vary_fields`], [`secondary_key_matches`], [`secondary_key`]: `Vary` (§4.1), with the
//!   request fields normalised as [`variant`] says.
//! - [`evaluate_conditional`], [`headers_for_304`], [`update_stored_headers`]: conditional
//!   requests and 304s (RFC 9110 §13, RFC 9111 §3.2).
//! - [`invalidation_targets`]: unsafe methods invalidate (§4.4).
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
//! use parapet_cache::policy::{
//!     Decision, PolicyConfig, Storability, StoredMeta, StoredTimes, decide, is_fresh,
//!     storability,
//! };
//!
//! let config = PolicyConfig::default();
//! let now = SystemTime::now();
//! let mut response_headers = HeaderMap::new();
//! response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=30"));
//!
//! let decision = storability(
//!     &Method::GET,
//!     &HeaderMap::new(),
//!     StatusCode::OK,
//!     &response_headers,
//!     &config,
//!     now,
//! );
//! let Storability::Store { ttl_hint, .. } = decision else {
//!     panic!("a max-age=30 response is storable");
//! };
//! assert_eq!(ttl_hint, Duration::from_secs(30));
//!
//! // Fresh for 30 seconds after it was received.
//! let times = StoredTimes::from_response(now, now, &response_headers);
//! assert!(is_fresh(ttl_hint, &times, now + Duration::from_secs(29)));
//! assert!(!is_fresh(ttl_hint, &times, now + Duration::from_secs(30)));
//!
//! // A later GET is answered from the cache, with its age.
//! let stored = StoredMeta {
//!     status: StatusCode::OK,
//!     headers: &response_headers,
//!     times,
//!     lifetime: ttl_hint,
//! };
//! let later = now + Duration::from_secs(10);
//! let answer = decide(&Method::GET, &HeaderMap::new(), &stored, later);
//! assert_eq!(answer, Decision::Fresh { age: Duration::from_secs(10) });
//! ```

mod cache_control;
mod conditional;
mod config;
mod fields;
mod freshness;
mod invalidate;
mod reuse;
mod serve;
mod storable;
mod targeted;
pub mod variant;
mod vary;

#[cfg(test)]
mod test_support;

pub use cache_control::{MaxStale, NoCache, Private, RequestDirectives, ResponseDirectives};
pub use conditional::{
    evaluate_conditional, headers_for_304, not_modified_matches, update_stored_headers,
};
pub use config::{ConfigError, PolicyConfig};
pub use freshness::{
    FreshnessLifetime, FreshnessSource, StoredTimes, age_header, current_age, freshness_lifetime,
    is_fresh, remaining_freshness,
};
pub use invalidate::invalidation_targets;
pub(crate) use reuse::{ParsedReuse, ReuseDirectives};
pub use serve::{Decision, StaleReason, StoredMeta, decide, stale_if_error_allowed};
pub(crate) use serve::{conditional_headers, decide_parsed, stale_if_error_allowed_for};
pub use storable::{NotStored, Storability, storability};
pub(crate) use targeted::DEFAULT_TARGETED;
pub use vary::{
    VaryFields, normalized_field_value, secondary_key, secondary_key_matches, vary_fields,
};
