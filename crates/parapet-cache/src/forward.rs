//! Requests the cache does not answer from storage: passed through (no tenant, preconditions,
//! several ranges), and other methods, after which a successful unsafe one invalidates its targets.

use axum_core::body::Body;
use http::{Request, Response};

use crate::policy::invalidation_targets;
use crate::range::{RangeRequest, classify};
use crate::shared::Shared;
use crate::stats::bump;
use crate::status::{CacheStatus, Fwd};
use crate::tenant_stats::{Outcome, TenantSlot};
use crate::upstream::{Inner, Upstream};

/// Forwards a request the cache does not answer, with `status` as its `Cache-Status`.
pub(crate) async fn pass<S, B>(
    shared: &Shared,
    upstream: Upstream<S>,
    slot: TenantSlot,
    request: Request<B>,
    status: CacheStatus,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
{
    let mut response = forward(shared, upstream, slot, request).await?;
    status.append_to(response.headers_mut());
    Ok(response)
}

/// Forwards a request the cache does not answer, and takes the tag headers off the response.
async fn forward<S, B>(
    shared: &Shared,
    upstream: Upstream<S>,
    slot: TenantSlot,
    request: Request<B>,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
{
    bump(&shared.counters.bypass);
    shared.tenant_counters.count(slot, Outcome::Bypass);
    let mut response = upstream.call(request).await?;
    shared.take_tags(response.headers_mut());
    Ok(response)
}

/// Methods the cache does not answer: forwarded; a successful unsafe one invalidates its
/// targets for the tenant (RFC 9111 §4.4).
pub(crate) async fn forward_other<S, B>(
    shared: &Shared,
    upstream: Upstream<S>,
    slot: TenantSlot,
    tenant: Option<&str>,
    request: Request<B>,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
{
    let method = request.method().clone();
    let uri = request.uri().clone();
    let headers = request.headers().clone();
    let mut response = forward(shared, upstream, slot, request).await?;
    let targets = invalidation_targets(
        &method,
        response.status(),
        &uri,
        &headers,
        response.headers(),
    );
    if !targets.is_empty() {
        let tenant_prefix = crate::key::tenant_prefix(&shared.prefix, tenant);
        shared.epochs.bump(&tenant_prefix).await;
    }
    let mut keys = Vec::with_capacity(targets.len());
    for target in &targets {
        keys.push(shared.key_for(tenant, target).await.as_bytes().clone());
        bump(&shared.counters.invalidations);
    }
    // One round trip and one announcement for all the targets.
    shared.store.delete_many(&keys).await;
    // The targets changed: their next misses are coalesced again (a pass is this instance's).
    for key in &keys {
        shared.passes.end(key).await;
    }
    let status = CacheStatus::fwd(Fwd::Method);
    let status = if targets.is_empty() {
        status
    } else {
        status.detail("invalidated")
    };
    status.append_to(response.headers_mut());
    Ok(response)
}

/// Why a `GET` or `HEAD` must go to the origin untouched, if it must: several byte ranges or
/// another range unit (one byte range is answered from the stored response, and `Range` means
/// nothing on a `HEAD`), and preconditions the cache does not evaluate. `If-Range` is not one:
/// it only qualifies a `Range` (and is ignored without one, RFC 9110 §13.1.5).
pub(crate) fn passed_through(
    method: &http::Method,
    headers: &http::HeaderMap,
) -> Option<&'static str> {
    if method == http::Method::GET && classify(headers) == RangeRequest::PassThrough {
        return Some("range");
    }
    let preconditions = [http::header::IF_MATCH, http::header::IF_UNMODIFIED_SINCE];
    preconditions
        .iter()
        .any(|name| headers.contains_key(name))
        .then_some("precondition")
}
