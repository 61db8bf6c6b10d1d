//! One upstream exchange of a cacheable request: what is sent in place of the client's
//! request, and the record of it that the response is judged against.

use std::sync::Arc;
use std::time::SystemTime;

use axum_core::body::Body;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, Request, Response, header};

use crate::entry::Entry;
use crate::key::PrimaryKey;
use crate::policy::{PolicyConfig, conditional_headers};
use crate::shared::Shared;
use crate::tenant_stats::TenantSlot;
use crate::upstream::{Inner, Upstream};

/// What a cacheable request carries on its way upstream and back.
pub(crate) struct Ctx<S> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) upstream: Upstream<S>,
    pub(crate) key: PrimaryKey,
    /// The request's tenant's slot in the per-tenant counters.
    pub(crate) slot: TenantSlot,
}

/// Request fields the client's own conditional request is made of; the cache sends its own
/// (or none) upstream and answers the client's itself.
pub(crate) const CLIENT_CONDITIONALS: [HeaderName; 2] =
    [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE];

/// A request sent upstream: the cache and key its response is for, and the request the
/// response answers.
pub(crate) struct Sent {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: PrimaryKey,
    /// The request's tenant's slot in the per-tenant counters.
    pub(crate) slot: TenantSlot,
    pub(crate) method: Method,
    /// The client's headers (with its conditionals).
    pub(crate) headers: HeaderMap,
    /// The policy for the request (with its route's default TTL).
    pub(crate) policy: PolicyConfig,
    /// When the request was sent (RFC 9111 §4.2.3 `request_time`).
    pub(crate) request_time: SystemTime,
    /// The tenant's invalidation epoch before the request was sent: its response is stored
    /// only if no invalidation of the tenant began since.
    pub(crate) epoch: u64,
}

/// Sends a request upstream and returns what was sent with the outcome.
///
/// The client's conditionals are not sent for a `GET` (the cache answers them from the
/// response) nor when revalidating: then `validators` is the stored entry, whose validators
/// are sent instead, with the request fields its `Vary` names as they were when it was
/// stored. A `HEAD` that is not a revalidation keeps the client's.
pub(crate) async fn send<S, B>(
    ctx: Ctx<S>,
    mut parts: Parts,
    body: B,
    validators: Option<&Entry>,
) -> (Sent, Result<Response<Body>, S::Error>)
where
    S: Inner<B>,
{
    let Ctx {
        shared,
        upstream,
        key,
        slot,
    } = ctx;
    let headers = parts.headers.clone();
    let method = parts.method.clone();
    let policy = shared.policy_for(&parts);
    if validators.is_some() || method == Method::GET {
        for name in CLIENT_CONDITIONALS {
            parts.headers.remove(name);
        }
    }
    if let Some(entry) = validators {
        parts.headers.extend(conditional_headers(&entry.headers));
        // RFC 9111 §4.3.1: the request fields that selected the stored variant go with its
        // validators, whichever request triggered the revalidation (a background refresh, a
        // request whose spelling normalised to the same variant). Fields the cache keys on
        // as credentials are kept only as digests: those stay the client's own (they match).
        let implied = shared.implied_vary();
        for name in entry.vary.iter().filter(|name| !implied.contains(name)) {
            parts.headers.remove(name);
            for value in entry.vary_request.get_all(name) {
                parts.headers.append(name.clone(), value.clone());
            }
        }
    }
    // The cache stores full responses and answers a byte range from them itself.
    parts.headers.remove(header::RANGE);
    parts.headers.remove(header::IF_RANGE);
    let epoch = shared.epochs.current(key.tenant_prefix()).await;
    let request_time = SystemTime::now();
    let result = upstream.call(Request::from_parts(parts, body)).await;
    let sent = Sent {
        shared,
        key,
        slot,
        method,
        headers,
        policy,
        request_time,
        epoch,
    };
    (sent, result)
}
