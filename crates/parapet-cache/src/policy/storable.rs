//! Whether a response may be stored by a shared cache (RFC 9111 §3, §3.5).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, StatusCode, header};

use super::cache_control::{NoCache, Private, RequestDirectives, ResponseDirectives};
use super::config::PolicyConfig;
use super::fields::sort_dedup;
use super::freshness::{FreshnessSource, lifetime_with};
use super::vary::{VaryFields, vary_fields};

/// Whether and how to store a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storability {
    /// Store the response.
    Store {
        /// The freshness lifetime (RFC 9111 §4.2.1), counted from the response's origination;
        /// subtract its current age to get the time left (see
        /// [`remaining_freshness`](super::remaining_freshness)).
        ttl_hint: Duration,
        /// Where the lifetime came from; `None` for a `no-cache` response kept only to be
        /// revalidated.
        source: Option<FreshnessSource>,
        /// `stale-while-revalidate` window, unless the response forbids serving stale.
        stale_while_revalidate: Option<Duration>,
        /// `stale-if-error` window, unless the response forbids serving stale.
        stale_if_error: Option<Duration>,
        /// Unqualified `no-cache`: every reuse must be revalidated first.
        must_revalidate_always: bool,
        /// Header fields to remove before storing (from `no-cache="…"`, `private="…"`, and
        /// `Set-Cookie` when it is allowed only through those), lowercase and sorted.
        strip_fields: Vec<HeaderName>,
    },
    /// Do not store the response.
    NoStore(NotStored),
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotStored {
    /// Only `GET` responses are stored. `HEAD` responses carry no body, so they are not
    /// stored either (a stored `GET` response can still answer a `HEAD` request).
    Method,
    /// The status is 1xx (not final).
    NonFinalStatus,
    /// `206 Partial Content`: range responses are not supported.
    PartialContent,
    /// `304 Not Modified` updates a stored response; it is never stored itself (§4.3.4).
    NotModified,
    /// `must-understand` on a status this policy does not understand (§5.2.2.3).
    MustUnderstand,
    /// The request said `no-store` (§5.2.1.5).
    RequestNoStore,
    /// The response said `no-store` (§5.2.2.5).
    ResponseNoStore,
    /// The response said `private` (§5.2.2.7).
    Private,
    /// `Vary: *` can never be matched (§4.1).
    VaryStar,
    /// The request carried `Authorization` and the response did not allow shared caching
    /// with `public`, `s-maxage` or `must-revalidate` (§3.5).
    Authorization,
    /// The response sets a cookie and the config does not allow storing it.
    SetCookie,
    /// The status is not in the cacheable set and the response has no explicit freshness or
    /// `public` (§3).
    UncacheableStatus,
    /// No freshness lifetime (explicit, heuristic or default TTL), and nothing that makes a
    /// stale copy useful.
    NoFreshness,
}

impl NotStored {
    /// A short stable token, e.g. for a `Cache-Status` `detail` parameter or a metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::NonFinalStatus => "non-final-status",
            Self::PartialContent => "partial-content",
            Self::NotModified => "not-modified",
            Self::MustUnderstand => "must-understand",
            Self::RequestNoStore => "request-no-store",
            Self::ResponseNoStore => "response-no-store",
            Self::Private => "private",
            Self::VaryStar => "vary-star",
            Self::Authorization => "authorization",
            Self::SetCookie => "set-cookie",
            Self::UncacheableStatus => "uncacheable-status",
            Self::NoFreshness => "no-freshness",
        }
    }
}

/// Decides whether a shared cache may store a response, received at `now`.
///
/// The checks run in the order of [`NotStored`]'s variants and the first failure is returned.
#[must_use]
pub fn storability(
    method: &Method,
    request_headers: &HeaderMap,
    status: StatusCode,
    response_headers: &HeaderMap,
    config: &PolicyConfig,
    now: SystemTime,
) -> Storability {
    match check(
        method,
        request_headers,
        status,
        response_headers,
        config,
        now,
    ) {
        Ok(store) => store,
        Err(reason) => Storability::NoStore(reason),
    }
}

fn check(
    method: &Method,
    request_headers: &HeaderMap,
    status: StatusCode,
    response_headers: &HeaderMap,
    config: &PolicyConfig,
    now: SystemTime,
) -> Result<Storability, NotStored> {
    if method != Method::GET {
        return Err(NotStored::Method);
    }
    if status.is_informational() {
        return Err(NotStored::NonFinalStatus);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(NotStored::PartialContent);
    }
    if status == StatusCode::NOT_MODIFIED {
        return Err(NotStored::NotModified);
    }
    // RFC 9213 §2.2: a targeted field, when usable, replaces Cache-Control and Expires.
    let response = ResponseDirectives::for_cache(response_headers, &config.targeted_fields);
    // §5.2.2.3: must-understand limits storage to understood statuses, and then overrides
    // no-store.
    let understood = status_understood(status);
    if response.must_understand && !understood {
        return Err(NotStored::MustUnderstand);
    }
    if RequestDirectives::from_headers(request_headers).no_store {
        return Err(NotStored::RequestNoStore);
    }
    if response.no_store && !(response.must_understand && understood) {
        return Err(NotStored::ResponseNoStore);
    }
    if response.private == Private::All {
        return Err(NotStored::Private);
    }
    if vary_fields(response_headers) == VaryFields::Star {
        return Err(NotStored::VaryStar);
    }
    if request_headers.contains_key(header::AUTHORIZATION) && !response.shared_with_authorization()
    {
        return Err(NotStored::Authorization);
    }

    let mut strip_fields = Vec::new();
    if let NoCache::Fields(fields) = &response.no_cache {
        strip_fields.extend(fields.iter().cloned());
    }
    if let Private::Fields(fields) = &response.private {
        strip_fields.extend(fields.iter().cloned());
    }
    sort_dedup(&mut strip_fields);
    if response_headers.contains_key(header::SET_COOKIE)
        && !config.store_set_cookie
        && !strip_fields.contains(&header::SET_COOKIE)
    {
        return Err(NotStored::SetCookie);
    }

    let explicit = response.max_age.is_some()
        || response.s_maxage.is_some()
        || (response.targeted.is_none() && response_headers.contains_key(header::EXPIRES));
    if !(config.is_cacheable_status(status) || explicit || response.public) {
        return Err(NotStored::UncacheableStatus);
    }

    let lifetime = lifetime_with(&response, status, response_headers, config, now);
    let must_revalidate_always = response.no_cache == NoCache::All;
    let has_validator = response_headers.contains_key(header::ETAG)
        || response_headers.contains_key(header::LAST_MODIFIED);
    let (stale_while_revalidate, stale_if_error) = if response.forbids_stale() {
        (None, None)
    } else {
        (response.stale_while_revalidate, response.stale_if_error)
    };
    let ttl_hint = lifetime.map_or(Duration::ZERO, |l| l.duration);
    // A copy that is stale on arrival, cannot be revalidated and may not be served stale is
    // useless; a no-cache response without any lifetime is kept only when it can be revalidated.
    let useful = match lifetime {
        Some(_) => {
            !ttl_hint.is_zero()
                || has_validator
                || stale_while_revalidate.is_some()
                || stale_if_error.is_some()
        }
        None => must_revalidate_always && has_validator,
    };
    if !useful {
        return Err(NotStored::NoFreshness);
    }
    Ok(Storability::Store {
        ttl_hint,
        source: lifetime.map(|l| l.source),
        stale_while_revalidate,
        stale_if_error,
        must_revalidate_always,
        strip_fields,
    })
}

/// Final status codes whose semantics this policy implements (RFC 9110 §15), 206 excluded.
fn status_understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

#[cfg(test)]
#[path = "storable_tests.rs"]
mod tests;
