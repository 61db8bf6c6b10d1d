//! [`CacheService`]: the request flow of the cache.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use parapet_tenant::problem::Problem;
use parapet_tenant::{Tenant, TenantId};
use tokio::sync::watch;
use tower::ServiceExt;
use tower_service::Service;

use crate::coalesce::{FlightGuard, Join, wait};
use crate::entry::VaryMarker;
use crate::exchange::Ctx;
use crate::fill::fetch;
use crate::forward::{forward_other, pass, passed_through};
use crate::key::uri_path_and_query;
use crate::lookup::{Found, Lookup, lookup};
use crate::policy::{Decision, RequestDirectives, StaleReason, decide_parsed};
use crate::respond::serve;
use crate::revalidate::{revalidate, spawn_refresh};
use crate::shared::Shared;
use crate::stats::bump;
use crate::status::{CacheStatus, Fwd};
use crate::store::Tier;
use crate::tenant_stats::Outcome;
use crate::upstream::{Inner, Upstream};

/// The service made by [`CacheLayer`](crate::CacheLayer): answers `GET` and `HEAD` from the
/// cache when it can, stores what it may, and invalidates after unsafe methods.
#[derive(Debug, Clone)]
pub struct CacheService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> CacheService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the cache, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for CacheService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Default + Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum_core::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // `poll_ready` readied `self.inner`: that instance serves this request (see `Upstream`),
        // and a clone waits for the next `poll_ready`.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let into_body: fn(Response<ResBody>) -> Response<Body> = |r| r.map(Body::new);
        let upstream = Upstream::ready(ready.map_response(into_body));
        handle(Arc::clone(&self.shared), upstream, request).boxed()
    }
}

async fn handle<S, B>(
    shared: Arc<Shared>,
    upstream: Upstream<S>,
    request: Request<B>,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
    B: Default + Send + 'static,
{
    // The id is shared (a reference count), not copied.
    let tenant: Option<TenantId> = request.extensions().get::<Tenant>().map(|t| t.id().clone());
    let slot = shared.tenant_counters.slot(tenant.as_ref());
    let tenant = tenant.as_ref().map(TenantId::as_str);
    let cacheable_method = matches!(*request.method(), Method::GET | Method::HEAD);
    if tenant.is_none() && !shared.single_tenant {
        let status = CacheStatus::fwd(Fwd::Bypass).detail("no-tenant");
        return Box::pin(pass(&shared, upstream, slot, request, status)).await;
    }
    if !cacheable_method {
        return Box::pin(forward_other(&shared, upstream, slot, tenant, request)).await;
    }
    if let Some(detail) = passed_through(request.method(), request.headers()) {
        // Preconditions the policy does not evaluate, and multiple ranges, are the origin's.
        let status = CacheStatus::fwd(Fwd::Request).detail(detail);
        return Box::pin(pass(&shared, upstream, slot, request, status)).await;
    }
    let path_and_query = uri_path_and_query(request.uri());
    if path_and_query.len() > shared.max_uri_length {
        // Not stored: a client must not fill the tiers with huge keys.
        let status = CacheStatus::fwd(Fwd::Bypass).detail("uri-too-long");
        return Box::pin(pass(&shared, upstream, slot, request, status)).await;
    }
    if !shared.key_on_credentials && shared.has_credentials(request.headers()) {
        // One user's response must not reach another user of the tenant.
        let status = CacheStatus::fwd(Fwd::Bypass).detail("credentials");
        return Box::pin(pass(&shared, upstream, slot, request, status)).await;
    }
    let (parts, body) = request.into_parts();
    let path_and_query = uri_path_and_query(&parts.uri);
    let key = shared.key_for(tenant, path_and_query).await;
    // Read before the lookup: a miss that becomes a leader looks again only if a fill ended
    // since (it may have stored what this lookup missed).
    let ended = shared.flights.ended();
    let ctx = Ctx {
        shared,
        upstream,
        key,
        slot,
    };
    match lookup(&ctx.shared, &ctx.key, &parts.headers)
        .await
        .into_hit()
    {
        Ok((found, tier)) => answer_from_entry(ctx, parts, body, found, tier, true).await,
        Err((fwd, marker)) => Box::pin(miss(ctx, parts, body, Missed { fwd, marker, ended })).await,
    }
}

/// Why a lookup found nothing usable, and when.
struct Missed {
    fwd: Fwd,
    /// The URI's `Vary` marker, when one was found.
    marker: Option<VaryMarker>,
    /// [`Flights::ended`](crate::coalesce::Flights::ended) before the lookup.
    ended: u64,
}

/// A stored entry was found: serve it, revalidate it, or refuse (`only-if-cached`).
///
/// Serving it awaits nothing; every other way is boxed, so the request's future (boxed once
/// by [`CacheService`], which allocates and moves it on every request) stays small.
async fn answer_from_entry<S, B>(
    ctx: Ctx<S>,
    parts: Parts,
    body: B,
    found: Found,
    tier: Tier,
    coalesce: bool,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
    B: Default + Send + 'static,
{
    let now = SystemTime::now();
    let entry = &found.entry;
    let decision = decide_parsed(
        &parts.method,
        &parts.headers,
        &entry.meta(),
        entry.reuse_directives(&ctx.shared.policy.targeted_fields),
        now,
    );
    match decision {
        Decision::Fresh { age } => {
            bump(&ctx.shared.counters.hits);
            ctx.shared.tenant_counters.count(ctx.slot, Outcome::Hit);
            let status = CacheStatus::hit(entry.lifetime, age).detail(tier.as_str());
            Ok(serve(entry, &parts.method, &parts.headers, age, &status))
        }
        Decision::StaleServable { age, reason } => {
            bump(&ctx.shared.counters.stale);
            ctx.shared.tenant_counters.count(ctx.slot, Outcome::Stale);
            let detail = match reason {
                StaleReason::WhileRevalidate => "stale-while-revalidate",
                StaleReason::MaxStale => "max-stale",
            };
            let status = CacheStatus::hit(entry.lifetime, age).detail(detail);
            let response = serve(entry, &parts.method, &parts.headers, age, &status);
            if reason == StaleReason::WhileRevalidate {
                spawn_refresh(&ctx, &parts, found);
            }
            Ok(response)
        }
        Decision::Revalidate { .. } => {
            if RequestDirectives::from_headers(&parts.headers).no_cache {
                return Box::pin(revalidate(ctx, parts, body, found, Fwd::Request)).await;
            }
            if !coalesce || parts.method != Method::GET {
                return Box::pin(revalidate(ctx, parts, body, found, Fwd::Stale)).await;
            }
            // Concurrent requests on an expired entry revalidate it once.
            match ctx.shared.flights.join(ctx.key.as_bytes()) {
                Join::Leader(guard) => {
                    let revalidation = revalidate(ctx, parts, body, found, Fwd::Stale);
                    Box::pin(detached(guard, revalidation)).await
                }
                Join::Waiter(rx) => Box::pin(after_wait(ctx, parts, body, rx)).await,
            }
        }
        Decision::GatewayTimeout => Ok(only_if_cached()),
        Decision::AuthorizationNotShared => {
            bump(&ctx.shared.counters.bypass);
            ctx.shared.tenant_counters.count(ctx.slot, Outcome::Bypass);
            let status = CacheStatus::fwd(Fwd::Request).detail("authorization");
            Box::pin(fetch(ctx, parts, body, found.marker, status)).await
        }
        Decision::NotServable => {
            bump(&ctx.shared.counters.bypass);
            ctx.shared.tenant_counters.count(ctx.slot, Outcome::Bypass);
            Box::pin(fetch(ctx, parts, body, None, CacheStatus::fwd(Fwd::Method))).await
        }
    }
}

/// Nothing usable was stored: one request per key goes upstream, the others wait for it;
/// a key on a hit-for-pass goes upstream at once.
async fn miss<S, B>(
    ctx: Ctx<S>,
    parts: Parts,
    body: B,
    missed: Missed,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
    B: Default + Send + 'static,
{
    let Missed { fwd, marker, ended } = missed;
    let request = RequestDirectives::from_headers(&parts.headers);
    if request.only_if_cached {
        return Ok(only_if_cached());
    }
    if parts.method == Method::HEAD {
        bump(&ctx.shared.counters.misses);
        ctx.shared.tenant_counters.count(ctx.slot, Outcome::Miss);
        // HEAD responses are not stored; only a GET fills the entry.
        return fetch(ctx, parts, body, marker, CacheStatus::fwd(fwd)).await;
    }
    if ctx.shared.passes.passes(ctx.key.as_bytes()) {
        return pass_through(ctx, parts, body, marker, fwd).await;
    }
    match ctx.shared.flights.join(ctx.key.as_bytes()) {
        Join::Leader(guard) => {
            // A previous leader may have stored it between our lookup and now: only if one
            // ended since, look again.
            if ctx.shared.flights.ended_since(ended)
                && let Ok((found, tier)) = lookup(&ctx.shared, &ctx.key, &parts.headers)
                    .await
                    .into_hit()
            {
                drop(guard);
                // We hold this key's flight: revalidating must not wait for ourselves.
                return answer_from_entry(ctx, parts, body, found, tier, false).await;
            }
            bump(&ctx.shared.counters.misses);
            ctx.shared.tenant_counters.count(ctx.slot, Outcome::Miss);
            detached(
                guard,
                fetch(ctx, parts, body, marker, CacheStatus::fwd(fwd)),
            )
            .await
        }
        Join::Waiter(rx) => after_wait(ctx, parts, body, rx).await,
    }
}

/// Runs a coalescing leader's call to the inner service and store in a task of its own,
/// holding the flight until it is stored: when the leader's client goes away (its future is
/// dropped), the fill still completes and the waiters are served from it instead of all
/// going upstream.
async fn detached<F, E>(guard: FlightGuard, fill: F) -> Result<Response<Body>, E>
where
    F: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Send + 'static,
{
    let task = tokio::spawn(async move {
        let response = fill.await;
        drop(guard);
        response
    });
    match task.await {
        Ok(response) => response,
        Err(error) => match error.try_into_panic() {
            // The inner service panicked: as it would have without the task.
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only when the runtime shuts down.
            Err(_) => Ok(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                "Shutting down",
            )
            .into_response()),
        },
    }
}

/// A waiter of a coalesced request, once the leader is done (or the wait is over): the entry
/// the leader stored when it is fresh; otherwise its own revalidation or fetch.
async fn after_wait<S, B>(
    ctx: Ctx<S>,
    parts: Parts,
    body: B,
    rx: watch::Receiver<()>,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
{
    bump(&ctx.shared.counters.coalesced);
    wait(rx, ctx.shared.coalesce_wait).await;
    if ctx.shared.passes.passes(ctx.key.as_bytes()) {
        // The leader's response could not be stored: nothing to look up.
        return pass_through(ctx, parts, body, None, Fwd::UriMiss).await;
    }
    let found = lookup(&ctx.shared, &ctx.key, &parts.headers).await;
    let decision = match &found {
        Lookup::Hit { found, .. } => Some(decide_parsed(
            &parts.method,
            &parts.headers,
            &found.entry.meta(),
            found
                .entry
                .reuse_directives(&ctx.shared.policy.targeted_fields),
            SystemTime::now(),
        )),
        Lookup::Miss { .. } => None,
    };
    if let Some(Decision::Fresh { age }) = decision
        && let Lookup::Hit { found, .. } = &found
    {
        bump(&ctx.shared.counters.hits);
        ctx.shared.tenant_counters.count(ctx.slot, Outcome::Hit);
        let entry = &found.entry;
        let status = CacheStatus::hit(entry.lifetime, age).collapsed();
        return Ok(serve(entry, &parts.method, &parts.headers, age, &status));
    }
    match found.into_hit() {
        // The leader's response is not for this request's credentials (§3.5).
        Ok((found, _)) if decision == Some(Decision::AuthorizationNotShared) => {
            bump(&ctx.shared.counters.bypass);
            ctx.shared.tenant_counters.count(ctx.slot, Outcome::Bypass);
            let status = CacheStatus::fwd(Fwd::Request).detail("authorization");
            fetch(ctx, parts, body, found.marker, status).await
        }
        Ok((stale, _)) => revalidate(ctx, parts, body, stale, Fwd::Stale).await,
        Err((fwd, marker)) => {
            bump(&ctx.shared.counters.misses);
            ctx.shared.tenant_counters.count(ctx.slot, Outcome::Miss);
            fetch(ctx, parts, body, marker, CacheStatus::fwd(fwd)).await
        }
    }
}

/// Hit-for-pass: forwards a request for a key whose last response could not be stored,
/// without coalescing; its response is still judged, and stored (ending the pass) when it may.
async fn pass_through<S, B>(
    ctx: Ctx<S>,
    parts: Parts,
    body: B,
    marker: Option<VaryMarker>,
    fwd: Fwd,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
{
    bump(&ctx.shared.counters.misses);
    ctx.shared.tenant_counters.count(ctx.slot, Outcome::Miss);
    bump(&ctx.shared.counters.passes);
    fetch(ctx, parts, body, marker, CacheStatus::fwd(fwd).pass()).await
}

/// `504` for `only-if-cached` requests the cache cannot answer (RFC 9111 §5.2.1.7).
fn only_if_cached() -> Response<Body> {
    let mut response = Problem::new(
        StatusCode::GATEWAY_TIMEOUT,
        "cache-only-if-cached",
        "Not in cache",
    )
    .detail("the request said only-if-cached and no usable stored response was found")
    .into_response();
    CacheStatus::fwd(Fwd::Request)
        .detail("only-if-cached")
        .append_to(response.headers_mut());
    response
}
