//! Settings of the caching policy.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, StatusCode, header};

use super::targeted::DEFAULT_TARGETED;

/// Status codes that are cacheable by default (RFC 9110 §15.1), minus `206 Partial Content`,
/// which this policy does not store.
const DEFAULT_CACHEABLE: [u16; 10] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414];

/// `501 Not Implemented`, also heuristically cacheable by default.
const NOT_IMPLEMENTED: u16 = 501;

/// Settings of the caching policy.
///
/// The policy always behaves as a *shared* cache (RFC 9111 §1): `private` responses are not
/// stored, `s-maxage` and `proxy-revalidate` apply, and requests carrying `Authorization` are
/// treated per §3.5.
///
/// Setters consume and return the config; call [`PolicyConfig::validate`] once when building the
/// layer to reject settings the policy cannot honour.
///
/// ```
/// use std::time::Duration;
/// use parapet_cache::policy::PolicyConfig;
///
/// let config = PolicyConfig::default()
///     .default_ttl(Duration::from_secs(30))
///     .heuristic_max(Duration::from_secs(3600));
/// assert!(config.validate().is_ok());
/// ```
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub(crate) heuristic_fraction: f64,
    pub(crate) heuristic_max: Duration,
    pub(crate) heuristics_enabled: bool,
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) store_set_cookie: bool,
    pub(crate) cacheable_statuses: Vec<StatusCode>,
    /// The targeted cache-control fields obeyed (RFC 9213), in precedence order.
    pub(crate) targeted_fields: Arc<[HeaderName]>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let cacheable_statuses = DEFAULT_CACHEABLE
            .iter()
            .chain(&[NOT_IMPLEMENTED])
            .filter_map(|code| StatusCode::from_u16(*code).ok())
            .collect();
        Self {
            heuristic_fraction: 0.1,
            heuristic_max: Duration::from_secs(24 * 60 * 60),
            heuristics_enabled: true,
            default_ttl: None,
            store_set_cookie: false,
            cacheable_statuses,
            targeted_fields: Arc::clone(&DEFAULT_TARGETED),
        }
    }
}

impl PolicyConfig {
    /// The default settings (same as [`Default::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Fraction of the time since `Last-Modified` used as a heuristic freshness lifetime
    /// (RFC 9111 §4.2.2 suggests 10%, the default). Must lie in `0.0..=1.0`.
    pub fn heuristic_fraction(mut self, fraction: f64) -> Self {
        self.heuristic_fraction = fraction;
        self
    }

    /// Cap on a heuristic freshness lifetime (default: one day).
    pub fn heuristic_max(mut self, max: Duration) -> Self {
        self.heuristic_max = max;
        self
    }

    /// Whether `Last-Modified` heuristics are used at all (default: true).
    pub fn heuristics_enabled(mut self, enabled: bool) -> Self {
        self.heuristics_enabled = enabled;
        self
    }

    /// Freshness lifetime for responses with a cacheable status that carry no explicit
    /// freshness and allow no heuristic (default: none, such responses are not stored).
    ///
    /// Accepts a `Duration` or `None`. Useful for API JSON that has no `Cache-Control`.
    pub fn default_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.default_ttl = ttl.into();
        self
    }

    /// Whether responses carrying `Set-Cookie` may be stored, cookie included (default: false).
    ///
    /// Leave this off for multi-tenant APIs: a stored `Set-Cookie` is replayed to every client
    /// that gets the cached response.
    pub fn store_set_cookie(mut self, store: bool) -> Self {
        self.store_set_cookie = store;
        self
    }

    /// Status codes cacheable without explicit freshness (default: RFC 9110's heuristically
    /// cacheable set minus 206: 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501).
    ///
    /// 1xx, 206 and 304 are never stored whatever this list says.
    pub fn cacheable_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.cacheable_statuses = statuses.into_iter().collect();
        self
    }

    /// The targeted cache-control fields (RFC 9213) this cache obeys, in precedence order
    /// (default: `CDN-Cache-Control` alone; an empty list obeys only `Cache-Control`).
    ///
    /// The first of them that a response carries with a valid, non-empty Structured Field
    /// Dictionary value replaces `Cache-Control` and `Expires` for every decision of this
    /// cache (storing, freshness, reuse, revalidation); an empty or invalid one is ignored.
    /// The fields are forwarded to clients unchanged. Repeated names count once (the first).
    pub fn targeted_fields(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        let mut list: Vec<HeaderName> = Vec::new();
        for name in names {
            if !list.contains(&name) {
                list.push(name);
            }
        }
        self.targeted_fields = Arc::from(list);
        self
    }

    /// The targeted fields set by [`targeted_fields`](Self::targeted_fields).
    #[must_use]
    pub fn targeted(&self) -> &[HeaderName] {
        &self.targeted_fields
    }

    /// Whether `status` is in the cacheable set (and is one this policy can store at all).
    #[must_use]
    pub fn is_cacheable_status(&self, status: StatusCode) -> bool {
        storable_status_kind(status) && self.cacheable_statuses.contains(&status)
    }

    /// Checks the settings, returning the first problem found.
    ///
    /// # Errors
    ///
    /// [`ConfigError::HeuristicFraction`] when the fraction is not a number in `0.0..=1.0`;
    /// [`ConfigError::UnsupportedStatus`] when the cacheable set holds a 1xx, 206 or 304;
    /// [`ConfigError::TargetedCacheControl`] when `Cache-Control` is listed as a targeted field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.heuristic_fraction) {
            return Err(ConfigError::HeuristicFraction(self.heuristic_fraction));
        }
        if self.targeted_fields.contains(&header::CACHE_CONTROL) {
            return Err(ConfigError::TargetedCacheControl);
        }
        match self
            .cacheable_statuses
            .iter()
            .find(|s| !storable_status_kind(**s))
        {
            Some(status) => Err(ConfigError::UnsupportedStatus(*status)),
            None => Ok(()),
        }
    }

    /// The heuristic fraction, forced into `0.0..=1.0` (NaN reads as 0).
    pub(crate) fn clamped_fraction(&self) -> f64 {
        if self.heuristic_fraction.is_nan() {
            0.0
        } else {
            self.heuristic_fraction.clamp(0.0, 1.0)
        }
    }
}

/// False for status codes this policy never stores: 1xx (not final), 206 (partial content is
/// not supported) and 304 (it updates a stored response, RFC 9111 §4.3.4).
pub(crate) fn storable_status_kind(status: StatusCode) -> bool {
    !status.is_informational()
        && status != StatusCode::PARTIAL_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

/// A setting of [`PolicyConfig`] the policy cannot honour.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The heuristic fraction is not a number between 0 and 1.
    #[error("heuristic fraction must be a number between 0 and 1, got {0}")]
    HeuristicFraction(f64),
    /// The cacheable status set holds a status the policy never stores.
    #[error("status {0} is never stored (1xx, 206 and 304 are not cacheable here)")]
    UnsupportedStatus(StatusCode),
    /// `Cache-Control` is listed as a targeted field: it is the fallback of the targeted
    /// fields, parsed with its own grammar.
    #[error("cache-control cannot be a targeted field (it is what targeted fields replace)")]
    TargetedCacheControl,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = PolicyConfig::default();
        assert_eq!(c, PolicyConfig::new());
        assert!((c.heuristic_fraction - 0.1).abs() < f64::EPSILON);
        assert_eq!(c.heuristic_max, Duration::from_secs(86_400));
        assert!(c.heuristics_enabled);
        assert_eq!(c.default_ttl, None);
        assert!(!c.store_set_cookie);
        assert_eq!(c.targeted(), [HeaderName::from_static("cdn-cache-control")]);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn targeted_fields_keep_their_order_once() {
        let ours = HeaderName::from_static("parapet-cache-control");
        let cdn = HeaderName::from_static("cdn-cache-control");
        let c = PolicyConfig::new().targeted_fields([ours.clone(), cdn.clone(), ours.clone()]);
        assert_eq!(c.targeted(), [ours, cdn]);
        assert!(c.validate().is_ok());
        assert!(
            PolicyConfig::new()
                .targeted_fields([])
                .targeted()
                .is_empty()
        );
        assert_eq!(
            PolicyConfig::new()
                .targeted_fields([header::CACHE_CONTROL])
                .validate(),
            Err(ConfigError::TargetedCacheControl)
        );
    }

    #[test]
    fn default_cacheable_statuses() {
        let c = PolicyConfig::default();
        let cases = [
            (200, true),
            (203, true),
            (204, true),
            (206, false), // partial content is not supported
            (300, true),
            (301, true),
            (302, false),
            (304, false),
            (308, true),
            (404, true),
            (405, true),
            (410, true),
            (414, true),
            (500, false),
            (501, true),
            (503, false),
        ];
        for (code, expected) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(c.is_cacheable_status(status), expected, "status {code}");
        }
    }

    #[test]
    fn setters_and_validation() {
        let c = PolicyConfig::new()
            .default_ttl(Duration::from_secs(30))
            .store_set_cookie(true)
            .heuristics_enabled(false)
            .cacheable_statuses([StatusCode::OK, StatusCode::PARTIAL_CONTENT]);
        assert_eq!(c.default_ttl, Some(Duration::from_secs(30)));
        assert!(c.store_set_cookie && !c.heuristics_enabled);
        assert_eq!(
            c.validate(),
            Err(ConfigError::UnsupportedStatus(StatusCode::PARTIAL_CONTENT))
        );
        // Even when configured, 206 is never treated as cacheable.
        assert!(!c.is_cacheable_status(StatusCode::PARTIAL_CONTENT));
        assert_eq!(c.default_ttl(None).default_ttl, None);

        for (fraction, ok, clamped) in [(0.5, true, 0.5), (1.5, false, 1.0), (-1.0, false, 0.0)] {
            let c = PolicyConfig::new().heuristic_fraction(fraction);
            assert_eq!(c.validate().is_ok(), ok, "fraction {fraction}");
            assert!((c.clamped_fraction() - clamped).abs() < f64::EPSILON);
        }
        let nan = PolicyConfig::new().heuristic_fraction(f64::NAN);
        assert!(matches!(
            nan.validate(),
            Err(ConfigError::HeuristicFraction(_))
        ));
        assert!(nan.clamped_fraction().abs() < f64::EPSILON);
        assert_eq!(
            ConfigError::HeuristicFraction(2.0).to_string(),
            "heuristic fraction must be a number between 0 and 1, got 2"
        );
    }
}
