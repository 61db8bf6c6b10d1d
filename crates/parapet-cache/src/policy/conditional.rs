//! Conditional requests answered from the cache (RFC 9110 §13) and 304 handling
//! (RFC 9110 §15.4.5, RFC 9111 §3.2, §4.3.4).

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, StatusCode, header};

use super::cache_control::{NoCache, Private, ResponseDirectives};
use super::fields::http_date;

/// Evaluates `If-None-Match` / `If-Modified-Since` of a `GET` or `HEAD` request against a stored
/// response; `Some(304)` when the client's copy is current.
///
/// Follows RFC 9110 §13.2.2: preconditions apply only when the stored status is 2xx;
/// `If-None-Match` (weak comparison, `*`, lists) takes precedence and, when present,
/// `If-Modified-Since` is ignored; `If-Modified-Since` needs a single valid HTTP-date and a
/// stored `Last-Modified` (or, failing that, `Date`), compared in whole seconds.
///
/// `If-Match`, `If-Unmodified-Since` and `If-Range` are not evaluated here: a layer should
/// forward requests carrying them.
#[must_use]
pub fn evaluate_conditional(
    request_headers: &HeaderMap,
    stored_status: StatusCode,
    stored_headers: &HeaderMap,
) -> Option<StatusCode> {
    if !stored_status.is_success() {
        return None;
    }
    let lines: Vec<&[u8]> = request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if !lines.is_empty() {
        // §13.1.2: If-None-Match uses the weak comparison (the W/ prefix is ignored).
        let current = single_etag(stored_headers).map(|(_, tag)| tag);
        let matched = lines.iter().any(|line| {
            trim(line) == b"*"
                || current.is_some_and(|tag| entity_tags(line).any(|(_, t)| t == tag))
        });
        return matched.then_some(StatusCode::NOT_MODIFIED);
    }
    let mut since = request_headers.get_all(header::IF_MODIFIED_SINCE).iter();
    let (Some(since), None) = (since.next(), since.next()) else {
        return None;
    };
    let since = httpdate::parse_http_date(since.to_str().ok()?.trim()).ok()?;
    let modified: SystemTime = http_date(stored_headers, &header::LAST_MODIFIED)
        .or_else(|| http_date(stored_headers, &header::DATE))?;
    // HTTP-dates have whole seconds, so the comparison is at that resolution.
    (modified <= since).then_some(StatusCode::NOT_MODIFIED)
}

/// Headers a 304 built from a stored response carries (RFC 9110 §15.4.5): `Cache-Control`,
/// `Content-Location`, `Date`, `ETag`, `Expires`, `Vary`, and `Last-Modified`.
///
/// The layer adds `Age`.
#[must_use]
pub fn headers_for_304(stored_headers: &HeaderMap) -> HeaderMap {
    const KEEP: [HeaderName; 7] = [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
    ];
    let mut out = HeaderMap::new();
    for name in KEEP {
        for value in stored_headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Whether a 304 received while revalidating applies to the stored response (§4.3.4).
///
/// If the 304 carries an `ETag`, the stored one must match it (weak comparison: there is only
/// one candidate); otherwise, if it carries `Last-Modified`, the stored one must be equal;
/// a 304 without validators applies only to a stored response without validators.
#[must_use]
pub fn not_modified_matches(stored_headers: &HeaderMap, from_304: &HeaderMap) -> bool {
    if from_304.contains_key(header::ETAG) {
        let stored = single_etag(stored_headers);
        let fresh = single_etag(from_304);
        return matches!((stored, fresh), (Some((_, a)), Some((_, b))) if a == b);
    }
    if from_304.contains_key(header::LAST_MODIFIED) {
        let stored = http_date(stored_headers, &header::LAST_MODIFIED);
        return stored.is_some() && stored == http_date(from_304, &header::LAST_MODIFIED);
    }
    !stored_headers.contains_key(header::ETAG)
        && !stored_headers.contains_key(header::LAST_MODIFIED)
}

/// Updates a stored response's headers from a 304 (RFC 9111 §3.2).
///
/// Each field of the 304 replaces all stored lines of the same name, except fields a cache
/// does not store (`Connection` and the fields it lists, `Proxy-Connection`, `Keep-Alive`,
/// `TE`, `Transfer-Encoding`, `Upgrade`), fields the stored body depends on (`Content-Length`,
/// `Content-Encoding`, `Content-Range`, `Content-Type`), and `Set-Cookie` (a cookie meant for
/// one client must not land in a shared entry). Fields named by `no-cache="…"` or
/// `private="…"` in the updated `Cache-Control` are then removed.
pub fn update_stored_headers(stored: &mut HeaderMap, from_304: &HeaderMap) {
    let connection_listed: Vec<HeaderName> = from_304
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(super::fields::field_names)
        .collect();
    let skipped = |name: &HeaderName| {
        matches!(
            name.as_str(),
            "connection"
                | "proxy-connection"
                | "keep-alive"
                | "te"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
                | "content-encoding"
                | "content-range"
                | "content-type"
                | "set-cookie"
        ) || connection_listed.contains(name)
    };
    for name in from_304.keys() {
        if skipped(name) {
            continue;
        }
        stored.remove(name);
        for value in from_304.get_all(name) {
            stored.append(name.clone(), value.clone());
        }
    }
    let directives = ResponseDirectives::from_headers(stored);
    let mut strip = Vec::new();
    if let NoCache::Fields(fields) = directives.no_cache {
        strip.extend(fields);
    }
    if let Private::Fields(fields) = directives.private {
        strip.extend(fields);
    }
    for name in strip {
        stored.remove(name);
    }
}

/// The stored response's entity-tag as `(weak, opaque-tag)`, when it has exactly one.
fn single_etag(headers: &HeaderMap) -> Option<(bool, &[u8])> {
    let mut lines = headers.get_all(header::ETAG).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return None;
    };
    let mut tags = entity_tags(line.as_bytes());
    match (tags.next(), tags.next()) {
        (Some(tag), None) => Some(tag),
        _ => None,
    }
}

/// Parses a list of entity-tags (`"a", W/"b"`) into `(weak, opaque-tag)` pairs. Commas may
/// appear inside quotes. Unquoted tags (sent by some servers) are read up to the next comma.
fn entity_tags(input: &[u8]) -> impl Iterator<Item = (bool, &[u8])> {
    let mut rest = input;
    std::iter::from_fn(move || {
        loop {
            rest = trim_start(rest);
            match rest {
                [] => return None,
                [b',', tail @ ..] => rest = tail,
                _ => break,
            }
        }
        let weak = rest.starts_with(b"W/");
        if weak {
            rest = &rest[2..];
        }
        let tag = if let [b'"', tail @ ..] = rest {
            let end = tail.iter().position(|b| *b == b'"').unwrap_or(tail.len());
            rest = tail.get(end + 1..).unwrap_or_default();
            &tail[..end]
        } else {
            let end = rest.iter().position(|b| *b == b',').unwrap_or(rest.len());
            let tag = trim(&rest[..end]);
            rest = &rest[end..];
            tag
        };
        // Skip anything up to the next comma.
        let next = rest.iter().position(|b| *b == b',').unwrap_or(rest.len());
        rest = &rest[next..];
        Some((weak, tag))
    })
}

fn trim_start(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', tail @ ..] = bytes {
        bytes = tail;
    }
    bytes
}

fn trim(bytes: &[u8]) -> &[u8] {
    let mut bytes = trim_start(bytes);
    while let [head @ .., b' ' | b'\t'] = bytes {
        bytes = head;
    }
    bytes
}

#[cfg(test)]
#[path = "conditional_tests.rs"]
mod tests;
