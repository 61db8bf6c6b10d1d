//! Revalidating stale entries upstream: in the foreground, in the background
//! (`stale-while-revalidate`), and falling back on the stale entry on errors
//! (`stale-if-error`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_core::body::Body;
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};

use crate::admit::{complete, restore};
use crate::coalesce::Join;
use crate::entry::Entry;
use crate::exchange::{CLIENT_CONDITIONALS, Ctx, Sent, send};
use crate::lookup::Found;
use crate::policy::{
    NotStored, ResponseDirectives, Storability, StoredTimes, current_age, freshness_lifetime,
    not_modified_matches, stale_if_error_allowed_for, storability, update_stored_headers,
};
use crate::respond::serve;
use crate::stats::bump;
use crate::status::{CacheStatus, Fwd};
use crate::tenant_stats::Outcome;
use crate::upstream::Inner;

/// Revalidates `stale` with a conditional request and answers the client: from the updated
/// entry after a matching 304, with the new response otherwise, or with the stale entry when
/// upstream fails and `stale-if-error` allows it.
pub(crate) async fn revalidate<S, B>(
    ctx: Ctx<S>,
    parts: Parts,
    body: B,
    stale: Found,
    fwd: Fwd,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
{
    let (sent, result) = send(ctx, parts, body, Some(&stale.entry)).await;
    let now = SystemTime::now();
    let targeted = &sent.policy.targeted_fields;
    let status = CacheStatus::fwd(fwd);
    let serve_stale = |status: CacheStatus| {
        bump(&sent.shared.counters.stale);
        sent.shared.tenant_counters.count(sent.slot, Outcome::Stale);
        let age = current_age(&stale.entry.times, now);
        let status = status
            .ttl(stale.entry.lifetime, age)
            .detail("stale-if-error");
        serve(&stale.entry, &sent.method, &sent.headers, age, &status)
    };
    let response = match result {
        Err(error) => {
            if stale_if_error_allowed_for(&stale.entry.meta(), &sent.headers, now, targeted) {
                return Ok(serve_stale(status));
            }
            return Err(error);
        }
        Ok(response) => response,
    };
    let code = response.status();
    let server_error = matches!(code.as_u16(), 500 | 502 | 503 | 504);
    if server_error && stale_if_error_allowed_for(&stale.entry.meta(), &sent.headers, now, targeted)
    {
        return Ok(serve_stale(status.fwd_status(code.as_u16())));
    }
    if code == StatusCode::NOT_MODIFIED
        && not_modified_matches(&stale.entry.headers, response.headers())
    {
        let (updated, removed) = refreshed(&sent, &stale, response.headers()).await;
        bump(&sent.shared.counters.revalidated);
        let age = current_age(&updated.times, now);
        let status = status.fwd_status(304);
        // Validated for this request; but a 304 that forbids storing removed the entry.
        let status = match removed {
            Some(reason) => status.detail(reason.as_str()),
            None => status.ttl(updated.lifetime, age),
        };
        return Ok(serve(&updated, &sent.method, &sent.headers, age, &status));
    }
    Ok(complete(&sent, response, stale.marker, status).await)
}

/// Starts one background revalidation of `stale` (none if one is already running for its key),
/// on a spare instance of the inner service.
pub(crate) fn spawn_refresh<S, B>(ctx: &Ctx<S>, parts: &Parts, stale: Found)
where
    S: Inner<B>,
    B: Default + Send + 'static,
{
    let Join::Leader(guard) = ctx.shared.refreshes.join(&stale.store_key) else {
        return;
    };
    let mut parts = parts.clone();
    parts.method = Method::GET;
    let refresh = Ctx {
        shared: Arc::clone(&ctx.shared),
        upstream: ctx.upstream.spare(),
        key: ctx.key.clone(),
        slot: ctx.slot,
    };
    tokio::spawn(async move {
        let _guard = guard;
        let (mut sent, result) = send(refresh, parts, B::default(), Some(&stale.entry)).await;
        let Ok(response) = result else {
            return;
        };
        if response.status() == StatusCode::NOT_MODIFIED {
            if not_modified_matches(&stale.entry.headers, response.headers()) {
                refreshed(&sent, &stale, response.headers()).await;
                bump(&sent.shared.counters.revalidated);
            }
            return;
        }
        // The response has no client: it is buffered and stored as the answer to a plain GET
        // (without the client's conditionals), then dropped.
        for name in CLIENT_CONDITIONALS {
            sent.headers.remove(name);
        }
        let status = CacheStatus::fwd(Fwd::Stale);
        drop(complete(&sent, response, stale.marker, status).await);
    });
}

/// Applies a 304 to a stored entry (RFC 9111 §3.2, §4.3.4), stores the result and returns it.
///
/// The updated response is checked for storability again: when the 304 says `no-store` or
/// `private` (or anything else that forbids storing) now, the entry is deleted instead, and
/// the reason is returned with the updated response (which still answers the request that
/// revalidated it).
async fn refreshed(
    sent: &Sent,
    stale: &Found,
    from_304: &HeaderMap,
) -> (Arc<Entry>, Option<NotStored>) {
    let response_time = SystemTime::now();
    let mut entry = Entry::clone(&stale.entry);
    update_stored_headers(&mut entry.headers, from_304);
    // The entry answers GET (a HEAD may have revalidated it).
    let decision = storability(
        &Method::GET,
        &sent.headers,
        entry.status,
        &entry.headers,
        &sent.policy,
        response_time,
    );
    match decision {
        Storability::Store { strip_fields, .. } => {
            for name in strip_fields {
                entry.headers.remove(name);
            }
        }
        Storability::NoStore(reason) => {
            entry.reparse(&sent.policy.targeted_fields);
            entry.times = StoredTimes::from_response(sent.request_time, response_time, from_304);
            entry.lifetime = Duration::ZERO;
            sent.shared.store.delete(&stale.store_key).await;
            return (Arc::new(entry), Some(reason));
        }
    }
    entry.reparse(&sent.policy.targeted_fields);
    entry.times = StoredTimes::from_response(sent.request_time, response_time, from_304);
    entry.lifetime = freshness_lifetime(entry.status, &entry.headers, &sent.policy, response_time)
        .map_or(Duration::ZERO, |l| l.duration);
    let directives = ResponseDirectives::for_cache(&entry.headers, &sent.policy.targeted_fields);
    (entry.stale_while_revalidate, entry.stale_if_error) = if directives.forbids_stale() {
        (None, None)
    } else {
        (directives.stale_while_revalidate, directives.stale_if_error)
    };
    let entry = Arc::new(entry);
    let marker = stale.marker.as_ref();
    restore(sent, &stale.store_key, marker, &entry, response_time).await;
    (entry, None)
}
