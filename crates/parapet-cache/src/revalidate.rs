//! Revalidating stale entries upstream: in the foreground, in the background
//! (`stale-while-revalidate`), and falling back on the stale entry on errors
//! (`stale-if-error`).

use std::sync::Arc;
use std::time::SystemTime;

use axum_core::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};

use crate::coalesce::Join;
use crate::entry::{Entry, StoredValue, VaryMarker};
use crate::fill::{CLIENT_CONDITIONALS, Ctx, Sent, complete};
use crate::key::PrimaryKey;
use crate::layer::Shared;
use crate::lookup::serve;
use crate::policy::{
    PolicyConfig, ResponseDirectives, StoredTimes, conditional_headers, current_age,
    freshness_lifetime, not_modified_matches, stale_if_error_allowed, update_stored_headers,
};
use crate::stats::bump;
use crate::status::{CacheStatus, Fwd};

/// A stale entry found for a request, and where it lives.
pub(crate) struct Stale {
    pub(crate) entry: Arc<Entry>,
    pub(crate) store_key: Bytes,
    pub(crate) marker: Option<VaryMarker>,
}

/// Revalidates `stale` with a conditional request and answers the client: from the updated
/// entry after a matching 304, with the new response otherwise, or with the stale entry when
/// upstream fails and `stale-if-error` allows it.
pub(crate) async fn revalidate<B, E>(
    ctx: &Ctx<B, E>,
    parts: Parts,
    body: B,
    stale: Stale,
    fwd: Fwd,
) -> Result<Response<Body>, E> {
    let client_headers = parts.headers.clone();
    let method = parts.method.clone();
    let policy = ctx.shared.policy_for(&parts);
    let forwarded = conditional_parts(parts, &stale.entry);
    let request_time = SystemTime::now();
    let result = ctx
        .upstream
        .call(Request::from_parts(forwarded, body))
        .await;
    let now = SystemTime::now();
    let status = CacheStatus::fwd(fwd);
    let serve_stale = |status: CacheStatus| {
        bump(&ctx.shared.counters.stale);
        let age = current_age(&stale.entry.times, now);
        let status = status
            .ttl(stale.entry.lifetime, age)
            .detail("stale-if-error");
        serve(&stale.entry, &method, &client_headers, age, &status)
    };
    let response = match result {
        Err(error) => {
            if stale_if_error_allowed(&stale.entry.meta(), &client_headers, now) {
                return Ok(serve_stale(status));
            }
            return Err(error);
        }
        Ok(response) => response,
    };
    let code = response.status();
    let server_error = matches!(code.as_u16(), 500 | 502 | 503 | 504);
    if server_error && stale_if_error_allowed(&stale.entry.meta(), &client_headers, now) {
        return Ok(serve_stale(status.fwd_status(code.as_u16())));
    }
    if code == StatusCode::NOT_MODIFIED
        && not_modified_matches(&stale.entry.headers, response.headers())
    {
        let updated = refreshed(
            &ctx.shared,
            &ctx.key,
            &stale,
            response.headers(),
            &policy,
            request_time,
        )
        .await;
        bump(&ctx.shared.counters.revalidated);
        let age = current_age(&updated.times, now);
        let status = status.fwd_status(304).ttl(updated.lifetime, age);
        return Ok(serve(&updated, &method, &client_headers, age, &status));
    }
    let request = Sent {
        method: &method,
        headers: &client_headers,
        policy: &policy,
        request_time,
    };
    Ok(complete(
        &ctx.shared,
        &ctx.key,
        &request,
        response,
        stale.marker,
        status,
    )
    .await)
}

/// Starts one background revalidation of `stale` (none if one is already running for its key).
pub(crate) fn spawn_refresh<B, E>(ctx: &Ctx<B, E>, parts: &Parts, stale: Stale)
where
    B: Default + Send + 'static,
    E: Send + 'static,
{
    let Join::Leader(guard) = ctx.shared.refreshes.join(&stale.store_key) else {
        return;
    };
    let mut parts = parts.clone();
    parts.method = Method::GET;
    let policy = ctx.shared.policy_for(&parts);
    let client_headers = parts.headers.clone();
    let forwarded = conditional_parts(parts, &stale.entry);
    let shared = Arc::clone(&ctx.shared);
    let upstream = ctx.upstream.clone();
    let key = ctx.key.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let request_time = SystemTime::now();
        let Ok(response) = upstream
            .call(Request::from_parts(forwarded, B::default()))
            .await
        else {
            return;
        };
        if response.status() == StatusCode::NOT_MODIFIED {
            if not_modified_matches(&stale.entry.headers, response.headers()) {
                refreshed(
                    &shared,
                    &key,
                    &stale,
                    response.headers(),
                    &policy,
                    request_time,
                )
                .await;
                bump(&shared.counters.revalidated);
            }
            return;
        }
        let mut headers = client_headers;
        for name in CLIENT_CONDITIONALS {
            headers.remove(name);
        }
        let request = Sent {
            method: &Method::GET,
            headers: &headers,
            policy: &policy,
            request_time,
        };
        let status = CacheStatus::fwd(Fwd::Stale);
        // Buffers and stores the body; the response itself has no client.
        drop(
            complete(
                &shared,
                &key,
                &request,
                response,
                stale.marker.clone(),
                status,
            )
            .await,
        );
    });
}

/// The request to send upstream: the client's without its own conditionals, with the
/// stored entry's validators instead.
fn conditional_parts(mut parts: Parts, entry: &Entry) -> Parts {
    for name in CLIENT_CONDITIONALS {
        parts.headers.remove(name);
    }
    parts.headers.extend(conditional_headers(&entry.headers));
    parts
}

/// Applies a 304 to a stored entry (RFC 9111 §3.2, §4.3.4), stores the result and returns it.
async fn refreshed(
    shared: &Shared,
    key: &PrimaryKey,
    stale: &Stale,
    from_304: &HeaderMap,
    policy: &PolicyConfig,
    request_time: SystemTime,
) -> Arc<Entry> {
    let response_time = SystemTime::now();
    let mut entry = Entry::clone(&stale.entry);
    update_stored_headers(&mut entry.headers, from_304);
    entry.times = StoredTimes::from_response(request_time, response_time, from_304);
    entry.lifetime = freshness_lifetime(entry.status, &entry.headers, policy, response_time)
        .map_or(std::time::Duration::ZERO, |l| l.duration);
    let directives = ResponseDirectives::from_headers(&entry.headers);
    (entry.stale_while_revalidate, entry.stale_if_error) = if directives.forbids_stale() {
        (None, None)
    } else {
        (directives.stale_while_revalidate, directives.stale_if_error)
    };
    let retention = entry.retention(response_time, shared.revalidation_grace);
    let entry = Arc::new(entry);
    if !retention.is_zero() {
        shared
            .store
            .put(
                &stale.store_key,
                StoredValue::Response(Arc::clone(&entry)),
                retention,
            )
            .await;
        // A variant must stay reachable as long as it is kept.
        if let Some(marker) = &stale.marker {
            let expires_at = response_time + retention;
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
    entry
}
