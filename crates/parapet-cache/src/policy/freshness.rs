//! Freshness lifetime (RFC 9111 §4.2.1, §4.2.2) and age (§4.2.3) of a stored response.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::cache_control::ResponseDirectives;
use super::config::PolicyConfig;
use super::fields::{DELTA_SECONDS_MAX, http_date, parse_delta_seconds};

/// Where a freshness lifetime came from, in the order a shared cache looks (§4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshnessSource {
    /// `Cache-Control: s-maxage`.
    SMaxAge,
    /// `Cache-Control: max-age`.
    MaxAge,
    /// `Expires` minus `Date` (or the response time when `Date` is missing).
    Expires,
    /// A fraction of the time since `Last-Modified` (§4.2.2).
    Heuristic,
    /// [`PolicyConfig::default_ttl`].
    DefaultTtl,
}

/// A response's freshness lifetime and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessLifetime {
    /// How long the response stays fresh, counted from its origination (not from storage).
    pub duration: Duration,
    /// Which rule produced it.
    pub source: FreshnessSource,
}

/// The freshness lifetime of a response for a shared cache, or `None` when it has none.
///
/// The directives are those of the first usable targeted field of the config (RFC 9213), or
/// `Cache-Control`. Order (§4.2.1): `s-maxage`, `max-age`, `Expires − Date` (not with a
/// targeted field) (an invalid `Expires` such as `0`
/// means already expired; a missing `Date` means `response_time`), then a heuristic of
/// `fraction × (Date − Last-Modified)` capped at the configured maximum (only for cacheable
/// statuses or `public` responses, §4.2.2), then the configured default TTL (cacheable statuses
/// only).
#[must_use]
pub fn freshness_lifetime(
    status: StatusCode,
    response_headers: &HeaderMap,
    config: &PolicyConfig,
    response_time: SystemTime,
) -> Option<FreshnessLifetime> {
    let directives = ResponseDirectives::for_cache(response_headers, &config.targeted_fields);
    lifetime_with(&directives, status, response_headers, config, response_time)
}

/// [`freshness_lifetime`] with already parsed directives.
pub(crate) fn lifetime_with(
    directives: &ResponseDirectives,
    status: StatusCode,
    response_headers: &HeaderMap,
    config: &PolicyConfig,
    response_time: SystemTime,
) -> Option<FreshnessLifetime> {
    let found = |duration, source| Some(FreshnessLifetime { duration, source });
    if let Some(duration) = directives.s_maxage {
        return found(duration, FreshnessSource::SMaxAge);
    }
    if let Some(duration) = directives.max_age {
        return found(duration, FreshnessSource::MaxAge);
    }
    let date = http_date(response_headers, &header::DATE).unwrap_or(response_time);
    // RFC 9213 §2.2: a targeted field replaces Expires as well as Cache-Control.
    if directives.targeted.is_none() && response_headers.contains_key(header::EXPIRES) {
        // §5.3: an invalid Expires (e.g. "0") represents a time in the past.
        let duration = http_date(response_headers, &header::EXPIRES)
            .and_then(|expires| expires.duration_since(date).ok())
            .unwrap_or(Duration::ZERO);
        return found(duration, FreshnessSource::Expires);
    }
    if config.heuristics_enabled && (config.is_cacheable_status(status) || directives.public) {
        let since_modified = http_date(response_headers, &header::LAST_MODIFIED)
            .and_then(|modified| date.duration_since(modified).ok());
        if let Some(interval) = since_modified {
            let duration =
                Duration::try_from_secs_f64(interval.as_secs_f64() * config.clamped_fraction())
                    .unwrap_or(Duration::ZERO)
                    .min(config.heuristic_max);
            return found(duration, FreshnessSource::Heuristic);
        }
    }
    match config.default_ttl {
        Some(ttl) if config.is_cacheable_status(status) => found(ttl, FreshnessSource::DefaultTtl),
        _ => None,
    }
}

/// The times the age calculation of RFC 9111 §4.2.3 needs, kept with a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredTimes {
    /// When the cache sent the request that produced the response.
    pub request_time: SystemTime,
    /// When the cache received the response.
    pub response_time: SystemTime,
    /// The response's `Date`, if valid.
    pub date: Option<SystemTime>,
    /// The response's `Age`, if valid (first member only, §5.1).
    pub age_header: Option<Duration>,
}

impl StoredTimes {
    /// Reads `Date` and `Age` from a response received at `response_time` for a request sent
    /// at `request_time`.
    #[must_use]
    pub fn from_response(
        request_time: SystemTime,
        response_time: SystemTime,
        response_headers: &HeaderMap,
    ) -> Self {
        let age_header = response_headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(parse_delta_seconds)
            .map(Duration::from_secs);
        Self {
            request_time,
            response_time,
            date: http_date(response_headers, &header::DATE),
            age_header,
        }
    }
}

/// The current age of a stored response at `now`, exactly as RFC 9111 §4.2.3 computes it.
///
/// All subtractions clamp at zero (a `Date` in the future, a clock going back) and additions
/// saturate.
#[must_use]
pub fn current_age(times: &StoredTimes, now: SystemTime) -> Duration {
    let since = |later: SystemTime, earlier: SystemTime| {
        later.duration_since(earlier).unwrap_or(Duration::ZERO)
    };
    let date_value = times.date.unwrap_or(times.response_time);
    let apparent_age = since(times.response_time, date_value);
    let response_delay = since(times.response_time, times.request_time);
    let corrected_age_value = times
        .age_header
        .unwrap_or(Duration::ZERO)
        .saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = since(now, times.response_time);
    corrected_initial_age.saturating_add(resident_time)
}

/// Whether a response with freshness `lifetime` is fresh at `now` (`lifetime > current_age`).
#[must_use]
pub fn is_fresh(lifetime: Duration, times: &StoredTimes, now: SystemTime) -> bool {
    lifetime > current_age(times, now)
}

/// How long the response stays fresh from `now` (zero when already stale): a TTL for storage.
#[must_use]
pub fn remaining_freshness(lifetime: Duration, times: &StoredTimes, now: SystemTime) -> Duration {
    lifetime.saturating_sub(current_age(times, now))
}

/// The `Age` header value for a response of age `current_age`: whole seconds, saturating at
/// 2147483648 (RFC 9111 §5.1, §1.2.2).
#[must_use]
pub fn age_header(current_age: Duration) -> HeaderValue {
    HeaderValue::from(current_age.as_secs().min(DELTA_SECONDS_MAX))
}

#[cfg(test)]
#[path = "freshness_tests.rs"]
mod tests;
