//! Forwarding a cacheable request and storing the response.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_core::body::Body;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};

use crate::body::buffer;
use crate::entry::{Entry, StoredValue, VaryMarker, compact};
use crate::key::PrimaryKey;
use crate::layer::Shared;
use crate::lookup::serve;
use crate::policy::{
    PolicyConfig, Storability, StoredTimes, VaryFields, current_age, evaluate_conditional,
    secondary_key, storability, vary_fields,
};
use crate::stats::bump;
use crate::status::{CACHE_STATUS, CacheStatus};
use crate::upstream::Upstream;

/// What a cacheable request needs on its way upstream and back.
pub(crate) struct Ctx<B, E> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) upstream: Upstream<B, E>,
    pub(crate) key: PrimaryKey,
}

impl<B, E> Clone for Ctx<B, E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            upstream: self.upstream.clone(),
            key: self.key.clone(),
        }
    }
}

/// Request fields the client's own conditional request is made of; the cache sends its own
/// (or none) upstream and answers the client's itself.
pub(crate) const CLIENT_CONDITIONALS: [HeaderName; 2] =
    [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE];

/// Forwards a request that missed and stores the response when the policy allows.
pub(crate) async fn fetch<B, E>(
    ctx: &Ctx<B, E>,
    parts: Parts,
    body: B,
    marker: Option<VaryMarker>,
    status: CacheStatus,
) -> Result<Response<Body>, E> {
    let client_headers = parts.headers.clone();
    let method = parts.method.clone();
    let policy = ctx.shared.policy_for(&parts);
    let mut forwarded = parts;
    if method == Method::GET {
        for name in CLIENT_CONDITIONALS {
            forwarded.headers.remove(name);
        }
    }
    let request_time = SystemTime::now();
    let response = ctx
        .upstream
        .call(Request::from_parts(forwarded, body))
        .await?;
    let request = Sent {
        method: &method,
        headers: &client_headers,
        policy: &policy,
        request_time,
    };
    Ok(complete(&ctx.shared, &ctx.key, &request, response, marker, status).await)
}

/// The request a response answers.
pub(crate) struct Sent<'a> {
    pub(crate) method: &'a Method,
    /// The client's headers (with its conditionals).
    pub(crate) headers: &'a HeaderMap,
    pub(crate) policy: &'a PolicyConfig,
    pub(crate) request_time: SystemTime,
}

/// Stores a full upstream response when the policy allows and hands it on to the client.
pub(crate) async fn complete(
    shared: &Shared,
    key: &PrimaryKey,
    request: &Sent<'_>,
    response: Response<Body>,
    marker: Option<VaryMarker>,
    status: CacheStatus,
) -> Response<Body> {
    let response_time = SystemTime::now();
    let (mut parts, body) = response.into_parts();
    let tags = shared.take_tags(&mut parts.headers);
    let status = status.fwd_status(parts.status.as_u16());
    let decision = storability(
        request.method,
        request.headers,
        parts.status,
        &parts.headers,
        request.policy,
        response_time,
    );
    let Storability::Store {
        ttl_hint,
        stale_while_revalidate,
        stale_if_error,
        strip_fields,
        ..
    } = decision
    else {
        if let Storability::NoStore(reason) = decision {
            status.detail(reason.as_str()).append_to(&mut parts.headers);
        }
        return Response::from_parts(parts, body);
    };
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = match buffer(body, content_length, shared.max_body_size).await {
        Ok(bytes) => bytes,
        Err((body, why)) => {
            status.detail(why.as_str()).append_to(&mut parts.headers);
            return Response::from_parts(parts, body);
        }
    };
    let times = StoredTimes::from_response(request.request_time, response_time, &parts.headers);
    let mut stored_headers = storable_headers(&parts.headers, &strip_fields);
    // The whole body is known: a HEAD answered from the entry gets the GET's length.
    if parts.status != StatusCode::NO_CONTENT {
        stored_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    let mut entry = Entry::new(parts.status, stored_headers, bytes.clone(), times, ttl_hint);
    entry.stale_while_revalidate = stale_while_revalidate;
    entry.stale_if_error = stale_if_error;
    entry.tags = tags;
    if let VaryFields::Fields(fields) = vary_fields(&parts.headers) {
        for name in &fields {
            for value in request.headers.get_all(name) {
                entry.vary_request.append(name.clone(), value.clone());
            }
        }
        entry.vary_request = compact(&entry.vary_request);
        entry.vary = fields;
    }
    let now = SystemTime::now();
    let retention = entry.retention(now, shared.revalidation_grace);
    let entry = Arc::new(entry);
    let stored = !retention.is_zero()
        && store_entry(
            shared,
            key,
            marker,
            Arc::clone(&entry),
            retention,
            request.headers,
        )
        .await;
    if stored {
        bump(&shared.counters.stored);
        for tag in &entry.tags {
            let index = key.tag_index(tag);
            shared
                .store
                .index_add(&index, key.as_bytes(), retention)
                .await;
        }
    }
    let status = status
        .stored(stored)
        .ttl(entry.lifetime, current_age(&entry.times, now));
    if stored
        && evaluate_conditional(request.headers, entry.status, &entry.headers)
            == Some(StatusCode::NOT_MODIFIED)
    {
        let age = current_age(&entry.times, now);
        return serve(&entry, request.method, request.headers, age, &status);
    }
    status.append_to(&mut parts.headers);
    Response::from_parts(parts, Body::from(bytes))
}

/// Stores an entry under the primary key, or, when it varies, under its variant key with the
/// URI's marker (reusing the marker's generation when its fields are the same). False when
/// nothing was stored.
pub(crate) async fn store_entry(
    shared: &Shared,
    key: &PrimaryKey,
    marker: Option<VaryMarker>,
    entry: Arc<Entry>,
    ttl: Duration,
    request_headers: &HeaderMap,
) -> bool {
    if entry.vary.is_empty() {
        shared
            .store
            .put(key.as_bytes(), StoredValue::Response(entry), ttl)
            .await;
        return true;
    }
    let now = SystemTime::now();
    let expires_at = now + ttl;
    let marker = match marker {
        Some(marker) if marker.fields == entry.vary => VaryMarker {
            expires_at: marker.expires_at.max(expires_at),
            ..marker
        },
        _ => VaryMarker {
            fields: entry.vary.clone(),
            generation: new_generation(),
            expires_at,
        },
    };
    let fields = VaryFields::Fields(entry.vary.clone());
    let Some(secondary) = secondary_key(&fields, request_headers) else {
        return false;
    };
    let variant_key = key.variant(marker.generation, &secondary);
    let marker_ttl = marker.expires_at.duration_since(now).unwrap_or(ttl);
    shared
        .store
        .put(&variant_key, StoredValue::Response(entry), ttl)
        .await;
    shared
        .store
        .put(key.as_bytes(), StoredValue::Vary(marker), marker_ttl)
        .await;
    true
}

/// A random generation number for a new `Vary` marker.
fn new_generation() -> u64 {
    RandomState::new().hash_one(SystemTime::now())
}

/// The response headers worth storing: without hop-by-hop fields (and those `Connection`
/// lists), without `Cache-Status` from upstream caches, and without `strip` fields.
pub(crate) fn storable_headers(headers: &HeaderMap, strip: &[HeaderName]) -> HeaderMap {
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
