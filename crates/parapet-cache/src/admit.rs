//! Admitting an upstream response into the cache: building the entry when the policy allows
//! it, storing it (under the primary key, or a `Vary` variant and the URI's marker, with its
//! tags indexed), and answering the client.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_core::body::Body;
use bytes::Bytes;
use http::response;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::body::{NotBuffered, buffer};
use crate::entry::{Entry, StoredValue, VaryMarker, compact};
use crate::exchange::Sent;
use crate::policy::variant::{answers_preferred, preferred_secondary_key};
use crate::policy::{
    DEFAULT_TARGETED, NotStored, Storability, StoredTimes, VaryFields, current_age,
    evaluate_conditional, secondary_key, storability, vary_fields,
};
use crate::range::{self, applies};
use crate::respond::serve;
use crate::stats::bump;
use crate::status::{CACHE_STATUS, CacheStatus};

/// Stores a full upstream response when the policy allows and hands it on to the client.
pub(crate) async fn complete(
    sent: &Sent,
    response: Response<Body>,
    marker: Option<VaryMarker>,
    status: CacheStatus,
) -> Response<Body> {
    let response_time = SystemTime::now();
    let (mut parts, body) = response.into_parts();
    let tags = sent.shared.take_tags(&mut parts.headers);
    let status = status.fwd_status(parts.status.as_u16());
    let built = build_entry(sent, &parts, body, response_time).await;
    let (mut entry, bytes) = match built {
        Ok(built) => built,
        Err((body, why)) => {
            if why.starts_a_pass() && !status.is_pass() {
                // The next requests for the key would queue for a response they cannot use.
                sent.shared.passes.start(sent.key.as_bytes()).await;
            }
            status.detail(why.as_str()).append_to(&mut parts.headers);
            return Response::from_parts(parts, body);
        }
    };
    entry.tags = tags;
    let now = SystemTime::now();
    let retention = entry.retention(now, sent.shared.revalidation_grace);
    let entry = Arc::new(entry);
    let stored = store_entry(sent, marker, &entry, retention).await;
    if stored {
        // The origin's answer is storable (again): lookups and coalescing resume.
        sent.shared.passes.end(sent.key.as_bytes()).await;
    }
    let age = current_age(&entry.times, now);
    let status = status.stored(stored).ttl(entry.lifetime, age);
    if stored
        && evaluate_conditional(&sent.headers, entry.status, &entry.headers)
            == Some(StatusCode::NOT_MODIFIED)
    {
        return serve(&entry, &sent.method, &sent.headers, age, &status);
    }
    if let Some(ranged) = applies(
        &sent.method,
        &sent.headers,
        entry.status,
        &entry.headers,
        bytes.len(),
    ) {
        // Fetched whole (the range was not sent upstream): the client gets its part.
        let mut response = range::respond(ranged, &parts.headers, &bytes);
        status.append_to(response.headers_mut());
        return response;
    }
    status.append_to(&mut parts.headers);
    Response::from_parts(parts, Body::from(bytes))
}

/// Why a response was not made an entry.
#[derive(Debug, Clone, Copy)]
enum NotAdmitted {
    /// The policy's reason.
    Policy(NotStored),
    /// Why the body was not buffered.
    Body(NotBuffered),
}

impl NotAdmitted {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Policy(why) => why.as_str(),
            Self::Body(why) => why.as_str(),
        }
    }

    /// Whether the reason lies in the response (and so will likely hold for the next request
    /// of the key), not in the request (`no-store`, `Authorization`, a `HEAD`) or in an
    /// accident (a body that failed): only then does the key pass for a while.
    const fn starts_a_pass(self) -> bool {
        match self {
            Self::Policy(why) => matches!(
                why,
                NotStored::NonFinalStatus
                    | NotStored::MustUnderstand
                    | NotStored::ResponseNoStore
                    | NotStored::Private
                    | NotStored::VaryStar
                    | NotStored::SetCookie
                    | NotStored::UncacheableStatus
                    | NotStored::NoFreshness
            ),
            Self::Body(why) => matches!(why, NotBuffered::TooLarge),
        }
    }
}

/// The entry for a response to `sent` (without tags) and its body, or the body back with why
/// it is not stored (the policy's reason, or why the body was not buffered).
async fn build_entry(
    sent: &Sent,
    parts: &response::Parts,
    body: Body,
    response_time: SystemTime,
) -> Result<(Entry, Bytes), (Body, NotAdmitted)> {
    let decision = storability(
        &sent.method,
        &sent.headers,
        parts.status,
        &parts.headers,
        &sent.policy,
        response_time,
    );
    let (ttl_hint, stale_while_revalidate, stale_if_error, strip_fields) = match decision {
        Storability::Store {
            ttl_hint,
            stale_while_revalidate,
            stale_if_error,
            strip_fields,
            ..
        } => (
            ttl_hint,
            stale_while_revalidate,
            stale_if_error,
            strip_fields,
        ),
        Storability::NoStore(reason) => return Err((body, NotAdmitted::Policy(reason))),
    };
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = buffer(body, content_length, sent.shared.max_body_size)
        .await
        .map_err(|(body, why)| (body, NotAdmitted::Body(why)))?;
    let times = StoredTimes::from_response(sent.request_time, response_time, &parts.headers);
    let mut stored_headers = storable_headers(&parts.headers, &strip_fields);
    // The whole body is known: a HEAD answered from the entry gets the GET's length.
    if parts.status != StatusCode::NO_CONTENT {
        stored_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    let mut entry = Entry::new(parts.status, stored_headers, bytes.clone(), times, ttl_hint);
    if !Arc::ptr_eq(&sent.policy.targeted_fields, &DEFAULT_TARGETED) {
        // Parsed for the default targeted fields: this cache obeys others.
        entry.reparse(&sent.policy.targeted_fields);
    }
    entry.stale_while_revalidate = stale_while_revalidate;
    entry.stale_if_error = stale_if_error;
    if let VaryFields::Fields(mut fields) = vary_fields(&parts.headers) {
        let implied = sent.shared.implied_vary();
        if !implied.is_empty() {
            fields.extend(implied.iter().cloned());
            fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            fields.dedup();
        }
        let request = sent.shared.vary_view(&sent.headers);
        for name in &fields {
            for value in request.get_all(name) {
                entry.vary_request.append(name.clone(), value.clone());
            }
        }
        entry.vary_request = compact(&entry.vary_request, 0);
        entry.vary = fields;
    }
    Ok((entry, bytes))
}

/// Stores an entry for `retention` under the primary key, or, when it varies, under its
/// variant key with the URI's marker (reusing the marker's generation when its fields are the
/// same), and adds the key to the indexes of its tags. False when nothing was stored.
async fn store_entry(
    sent: &Sent,
    marker: Option<VaryMarker>,
    entry: &Arc<Entry>,
    retention: Duration,
) -> bool {
    let (shared, key) = (&sent.shared, &sent.key);
    if retention.is_zero() {
        return false;
    }
    // Invalidations of the tenant wait until the entry and its tag indexes are stored; one
    // that began after the request was sent means the response may predate it: not stored.
    let Some(_no_invalidation) = shared
        .epochs
        .store_guard(key.tenant_prefix(), sent.epoch)
        .await
    else {
        bump(&shared.counters.store_skipped);
        return false;
    };
    let value = StoredValue::Response(Arc::clone(entry));
    if entry.vary.is_empty() {
        shared.store.put(key.as_bytes(), value, retention).await;
    } else {
        let now = SystemTime::now();
        let expires_at = now + retention;
        let marker = match marker {
            Some(marker) if marker.fields == entry.vary => VaryMarker {
                expires_at: marker.expires_at.max(expires_at),
                ..marker
            },
            _ => VaryMarker {
                fields: entry.vary.clone(),
                generation: new_generation(),
                expires_at,
                stale_before: None,
            },
        };
        let fields = VaryFields::Fields(entry.vary.clone());
        let request = shared.vary_view(&sent.headers);
        // The answer to every request preferring what it is goes under the preferred key.
        let secondary = if answers_preferred(&fields, &request, &entry.headers) {
            preferred_secondary_key(&fields, &request)
        } else {
            secondary_key(&fields, &request)
        };
        let Some(secondary) = secondary else {
            return false;
        };
        let variant_key = key.variant(marker.generation, &secondary);
        let marker_ttl = marker.expires_at.duration_since(now).unwrap_or(retention);
        shared.store.put(&variant_key, value, retention).await;
        let marker = StoredValue::Vary(marker);
        shared.store.put(key.as_bytes(), marker, marker_ttl).await;
    }
    bump(&shared.counters.stored);
    for tag in &entry.tags {
        let index = key.tag_index(tag);
        shared
            .store
            .index_add(&index, key.as_bytes(), retention)
            .await;
    }
    true
}

/// Stores an entry updated by the 304 answering `sent` back under `store_key`, where it was
/// found, and keeps the URI's `Vary` marker (when it is a variant) at least as long: a variant
/// must stay reachable as long as it is kept.
pub(crate) async fn restore(
    sent: &Sent,
    store_key: &Bytes,
    marker: Option<&VaryMarker>,
    entry: &Arc<Entry>,
    now: SystemTime,
) {
    let (shared, key) = (&sent.shared, &sent.key);
    let retention = entry.retention(now, shared.revalidation_grace);
    if retention.is_zero() {
        return;
    }
    // As in `store_entry`: an invalidation since the revalidation was sent wins.
    let Some(_no_invalidation) = shared
        .epochs
        .store_guard(key.tenant_prefix(), sent.epoch)
        .await
    else {
        bump(&shared.counters.store_skipped);
        return;
    };
    let value = StoredValue::Response(Arc::clone(entry));
    shared.store.put(store_key, value, retention).await;
    if let Some(marker) = marker {
        let expires_at = now + retention;
        if expires_at > marker.expires_at {
            let marker = VaryMarker {
                expires_at,
                ..marker.clone()
            };
            shared
                .store
                .put(key.as_bytes(), StoredValue::Vary(marker), retention)
                .await;
        }
    }
}

/// A random generation number for a new `Vary` marker.
fn new_generation() -> u64 {
    RandomState::new().hash_one(SystemTime::now())
}

/// The response headers worth storing: without hop-by-hop fields (and those `Connection`
/// lists), without `Cache-Status` from upstream caches, and without `strip` fields.
fn storable_headers(headers: &HeaderMap, strip: &[HeaderName]) -> HeaderMap {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut out = headers.clone();
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        CACHE_STATUS,
    ] {
        out.remove(name);
    }
    for name in strip {
        out.remove(name);
    }
    for name in listed {
        out.remove(name.as_str());
    }
    out
}
