//! Whether a stored response may answer a request (RFC 9111 §4, §4.2.4, §5.2.1; RFC 5861).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};

use super::cache_control::{RequestDirectives, ResponseDirectives};
use super::freshness::{StoredTimes, current_age};
use super::reuse::ReuseDirectives;
use super::targeted::DEFAULT_TARGETED;

/// What the cache knows about a stored response when a request finds it.
#[derive(Debug, Clone, Copy)]
pub struct StoredMeta<'a> {
    /// The stored status.
    pub status: StatusCode,
    /// The stored response headers (after any stripping).
    pub headers: &'a HeaderMap,
    /// Request, response, `Date` and `Age` times recorded at storage (or the last revalidation).
    pub times: StoredTimes,
    /// The freshness lifetime computed at storage (the `ttl_hint` of
    /// [`Storability::Store`](super::Storability::Store)).
    pub lifetime: Duration,
}

/// Why a stale response may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Inside the response's `stale-while-revalidate` window: serve it and revalidate in the
    /// background.
    WhileRevalidate,
    /// The request's `max-stale` accepts it: serve it, no revalidation needed.
    MaxStale,
}

/// What to do with a request that found a stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve the stored response; it is fresh and meets the request's constraints.
    Fresh {
        /// Its current age, for the `Age` header.
        age: Duration,
    },
    /// Serve the stored response although it is stale.
    StaleServable {
        /// Its current age, for the `Age` header.
        age: Duration,
        /// Why it may be served.
        reason: StaleReason,
    },
    /// Forward the request upstream with these conditional headers (empty when the stored
    /// response has no validator); a 304 then refreshes the stored response.
    Revalidate {
        /// `If-None-Match` from the stored `ETag`, `If-Modified-Since` from its
        /// `Last-Modified` (§4.3.1).
        conditional_headers: HeaderMap,
    },
    /// The request carried `only-if-cached` and the stored response cannot satisfy it: answer
    /// `504 Gateway Timeout` (§5.2.1.7).
    GatewayTimeout,
    /// A stored response cannot answer this method (only `GET` and `HEAD` can be).
    NotServable,
    /// The request carries `Authorization` and the stored response does not say it may be
    /// shared (`public`, `s-maxage` or `must-revalidate`, RFC 9111 §3.5): forward the request
    /// and do not use the stored response, whatever its freshness.
    AuthorizationNotShared,
}

/// Decides how to answer a request from a stored response at `now`.
///
/// Call it after [`secondary_key_matches`](super::secondary_key_matches). A request `no-store`
/// does not prevent serving a stored response (§5.2.1.5); it only prevents storing a new one.
/// The stored response's directives are those of its `CDN-Cache-Control` when usable (the
/// default targeted field, RFC 9213), else of its `Cache-Control`.
#[must_use]
pub fn decide(
    request_method: &Method,
    request_headers: &HeaderMap,
    stored: &StoredMeta<'_>,
    now: SystemTime,
) -> Decision {
    let response = ReuseDirectives::from_headers(stored.headers, &DEFAULT_TARGETED);
    decide_parsed(request_method, request_headers, stored, response, now)
}

/// [`decide`] with the stored response's directives already parsed (a stored entry keeps them,
/// see `Entry::reuse_directives`); `response` must be what
/// [`ReuseDirectives::from_headers`] reads from `stored.headers` for the cache's targeted fields.
pub(crate) fn decide_parsed(
    request_method: &Method,
    request_headers: &HeaderMap,
    stored: &StoredMeta<'_>,
    response: ReuseDirectives,
    now: SystemTime,
) -> Decision {
    if request_method != Method::GET && request_method != Method::HEAD {
        return Decision::NotServable;
    }
    let request = RequestDirectives::from_headers(request_headers);
    // §3.5: a response stored for one client is reused for a request carrying credentials
    // only when it says it may be.
    if !response.shared_with_authorization && request_headers.contains_key(header::AUTHORIZATION) {
        if request.only_if_cached {
            return Decision::GatewayTimeout;
        }
        return Decision::AuthorizationNotShared;
    }
    let age = current_age(&stored.times, now);

    // §5.2.1.4, §5.2.2.4: no-cache on either side means validate before any reuse.
    if !request.no_cache && !response.no_cache {
        // §5.2.1.1: the client does not want anything older than max-age.
        let age_ok = request.max_age.is_none_or(|max| age <= max);
        if stored.lifetime > age {
            // §5.2.1.3: it must still be fresh min-fresh from now.
            let fresh_enough = request
                .min_fresh
                .is_none_or(|min| stored.lifetime >= age.saturating_add(min));
            if age_ok && fresh_enough {
                return Decision::Fresh { age };
            }
        } else if age_ok && !response.forbids_stale {
            let staleness = age - stored.lifetime;
            if request.max_stale.is_some_and(|m| m.allows(staleness)) {
                return Decision::StaleServable {
                    age,
                    reason: StaleReason::MaxStale,
                };
            }
            // RFC 5861 §3, unless the client asked for a minimum freshness.
            let in_window = response
                .stale_while_revalidate
                .is_some_and(|window| staleness <= window);
            if in_window && request.min_fresh.is_none() {
                return Decision::StaleServable {
                    age,
                    reason: StaleReason::WhileRevalidate,
                };
            }
        }
    }
    if request.only_if_cached {
        return Decision::GatewayTimeout;
    }
    Decision::Revalidate {
        conditional_headers: conditional_headers(stored.headers),
    }
}

/// Whether the stored response may be served because revalidating it failed (an upstream
/// error or a 500, 502, 503 or 504; the layer decides what counts as an error).
///
/// Allowed when the response does not forbid stale use (see
/// [`ResponseDirectives::forbids_stale`]) and its staleness is within the request's or the
/// response's `stale-if-error` window (RFC 5861 §4) or the request's `max-stale`. The
/// response's directives are read as [`decide`] reads them.
#[must_use]
pub fn stale_if_error_allowed(
    stored: &StoredMeta<'_>,
    request_headers: &HeaderMap,
    now: SystemTime,
) -> bool {
    stale_if_error_allowed_for(stored, request_headers, now, &DEFAULT_TARGETED)
}

/// [`stale_if_error_allowed`] for a cache obeying the `targeted` fields (RFC 9213).
pub(crate) fn stale_if_error_allowed_for(
    stored: &StoredMeta<'_>,
    request_headers: &HeaderMap,
    now: SystemTime,
    targeted: &[HeaderName],
) -> bool {
    let response = ResponseDirectives::for_cache(stored.headers, targeted);
    if response.forbids_stale() {
        return false;
    }
    let request = RequestDirectives::from_headers(request_headers);
    let staleness = current_age(&stored.times, now).saturating_sub(stored.lifetime);
    let windows = [request.stale_if_error, response.stale_if_error];
    windows.into_iter().flatten().any(|w| staleness <= w)
        || request.max_stale.is_some_and(|m| m.allows(staleness))
}

/// `If-None-Match` and `If-Modified-Since` built from the stored validators (§4.3.1).
pub(crate) fn conditional_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let etags: Vec<&HeaderValue> = stored.get_all(header::ETAG).iter().collect();
    if let [etag] = etags.as_slice() {
        out.insert(header::IF_NONE_MATCH, (*etag).clone());
    }
    if let Some(modified) = stored.get(header::LAST_MODIFIED) {
        out.insert(header::IF_MODIFIED_SINCE, modified.clone());
    }
    out
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
