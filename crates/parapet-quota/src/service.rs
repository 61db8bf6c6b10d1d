//! [`QuotaService`]: the decision before the inner service is called, the headers and the
//! refund of a cache hit after.
//!
//! Paths: no tenant or an unlimited one passes through (the inner future, pin-projected); the
//! local limiter decides synchronously (no box, no allocation once the tenant's cell exists,
//! save the `RateLimit` value of an allowed request); Redis decides in a boxed future (a round
//! trip is I/O anyway), which takes the inner service `poll_ready` made ready.
//!
//! Refusals are cheap: the body and `Retry-After` are pre-rendered per number of seconds and the
//! `RateLimit` fields per policy (`refusal.rs`, `policy.rs`). With Redis, a refusal is
//! remembered in the tenant's local cell until the time Redis named, and the tenant's requests
//! until then are refused without a round trip: under GCRA only a refund (a cache hit giving
//! back part of its charge) can make a tenant allowed earlier than Redis said. This instance's
//! own refunds forget the memo (and a refusal asked before one of them reached Redis is not
//! remembered); another instance's refund is seen at the latest when the memo ends, at most one
//! interval later (the wait of a refusal never exceeds one request's cost).
//!
//! With refusal pacing (`hold.rs`), a refusal with a place among the held ones is rendered at
//! once and answered when its timer fires (the `Held` future, or a sleep in the Redis path).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode};
use parapet_cache::CACHE_STATUS;
use parapet_tenant::TenantId;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::gcra::{Decision, ceil_seconds};
use crate::hold::HeldSlot;
use crate::layer::Shared;
use crate::local::{Cell, LocalLimiter};
use crate::policy::{Policy, RATELIMIT, RATELIMIT_POLICY};
use crate::refusal::too_many_requests;
use crate::stats::Source;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service of a [`QuotaLayer`](crate::QuotaLayer).
#[derive(Debug, Clone)]
pub struct QuotaService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> QuotaService<S> {
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

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for QuotaService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let Some(tenant) = req.extensions().get::<parapet_tenant::Tenant>() else {
            return ResponseFuture::pass(self.inner.call(req));
        };
        let Some(policy) = shared.policy(tenant) else {
            return ResponseFuture::pass(self.inner.call(req));
        };
        let cell = shared.local.cell(tenant.id());
        let source = match &shared.redis {
            Some(redis) => {
                if let Some(decision) = shared.local.remembered_denial(&cell, policy.gcra()) {
                    // Redis refused this tenant until a later time: no round trip.
                    shared.counters.decided(Source::Shared, false);
                    shared.counters.remembered();
                    return refusal(shared, tenant.id(), policy, &decision, &cell);
                }
                if redis.available() {
                    let key = redis.key(tenant.id().as_str());
                    let id = tenant.id().clone();
                    let policy = Arc::clone(policy);
                    let shared = Arc::clone(shared);
                    // Take the instance `poll_ready` made ready; leave a clone for the next call.
                    let ready = self.inner.clone();
                    let inner = std::mem::replace(&mut self.inner, ready);
                    return ResponseFuture::shared(Box::pin(shared_path(
                        shared, inner, req, key, id, policy, cell,
                    )));
                }
                Source::Fallback
            }
            None => Source::Local,
        };
        let decision = shared
            .local
            .charge(&cell.tat, policy.gcra(), policy.gcra().interval());
        shared.counters.decided(source, decision.allowed);
        if !decision.allowed {
            return refusal(shared, tenant.id(), policy, &decision, &cell);
        }
        let charged = Charged {
            shared: Arc::clone(shared),
            policy: Arc::clone(policy),
            used: decision.used,
            refund: Refund::Local(cell),
        };
        ResponseFuture::charged(self.inner.call(req), charged)
    }
}

/// A request decided by Redis (or, if Redis does not answer, by the local fallback).
async fn shared_path<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<ReqBody>,
    key: String,
    id: TenantId,
    policy: Arc<Policy>,
    cell: Cell,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let cost = policy.gcra().interval();
    let redis = shared.redis.as_ref();
    // Read before the round trip: Redis decides after this, so the refusal it names ends no
    // earlier than `asked + wait` on this clock.
    let asked = shared.local.now();
    let refunds = LocalLimiter::refunds_so_far(&cell);
    let answer = match redis {
        Some(redis) => redis.charge(&key, policy.gcra(), cost).await,
        None => None,
    };
    let (decision, refund) = match answer {
        Some(decision) => {
            shared.counters.decided(Source::Shared, decision.allowed);
            if !decision.allowed {
                LocalLimiter::remember_denial(&cell, asked, decision.wait, refunds);
            }
            (decision, Refund::Shared(key, cell))
        }
        None => {
            let decision = shared.local.charge(&cell.tat, policy.gcra(), cost);
            shared.counters.decided(Source::Fallback, decision.allowed);
            (decision, Refund::Local(cell))
        }
    };
    if !decision.allowed {
        let (Refund::Local(cell) | Refund::Shared(_, cell)) = &refund;
        return Ok(match HeldSlot::take(&shared, cell) {
            Some(slot) => {
                let delay = slot.delay();
                let response = refuse(&shared, &id, &policy, &decision.later(delay));
                tokio::time::sleep(delay).await;
                drop(slot);
                response
            }
            None => refuse(&shared, &id, &policy, &decision),
        });
    }
    let response = inner.call(req).await?;
    Ok(Charged {
        shared,
        policy,
        used: decision.used,
        refund,
    }
    .finish(response))
}

/// A refusal's future: held for the pacing delay when pacing is on and there is a place,
/// answered at once otherwise.
fn refusal<F, E>(
    shared: &Arc<Shared>,
    id: &TenantId,
    policy: &Policy,
    decision: &Decision,
    cell: &Cell,
) -> ResponseFuture<F, E> {
    match HeldSlot::take(shared, cell) {
        Some(slot) => {
            let delay = slot.delay();
            let response = refuse(shared, id, policy, &decision.later(delay));
            ResponseFuture::held(response, delay, slot)
        }
        None => ResponseFuture::refused(refuse(shared, id, policy, decision)),
    }
}

/// The 429: problem+json, `Retry-After`, the `RateLimit` fields, all pre-rendered for the
/// usual waits (no JSON, no number formatting, no allocation but the response's own).
fn refuse(shared: &Shared, id: &TenantId, policy: &Policy, decision: &Decision) -> Response<Body> {
    shared.counters.throttled(id);
    let wait = u32::try_from(ceil_seconds(decision.wait).max(1)).unwrap_or(u32::MAX);
    let mut response = too_many_requests(wait);
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_POLICY, policy.policy_field());
    headers.insert(RATELIMIT, policy.ratelimit_field(decision.used));
    response
}

/// Where a charge was made, to give part of it back there.
enum Refund {
    Local(Cell),
    /// The tenant's key, and its cell whose remembered refusal the refund makes stale.
    Shared(String, Cell),
}

/// An allowed request's charge: what its response needs.
struct Charged {
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    used: u64,
    refund: Refund,
}

impl Charged {
    /// The response with the `RateLimit` fields; a cache hit gives back the rest of its
    /// charge (on Redis in a task of its own, so the response does not wait for it).
    fn finish<B>(self, mut response: Response<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let amount = self.policy.hit_refund();
        if amount > 0 && is_hit(response.headers()) {
            self.shared.counters.refunded();
            match self.refund {
                Refund::Local(cell) => {
                    self.shared
                        .local
                        .refund(&cell.tat, self.policy.gcra(), amount);
                }
                Refund::Shared(key, cell) => {
                    let shared = Arc::clone(&self.shared);
                    let policy = Arc::clone(&self.policy);
                    tokio::spawn(async move {
                        if let Some(redis) = &shared.redis {
                            let _ = redis.refund(&key, policy.gcra(), amount).await;
                        }
                        // A refusal remembered meanwhile may not hold any more: ask Redis.
                        LocalLimiter::forget_denial(&cell);
                    });
                }
            }
        }
        let headers = response.headers_mut();
        headers.insert(RATELIMIT_POLICY, self.policy.policy_field());
        headers.insert(RATELIMIT, self.policy.ratelimit_field(self.used));
        response.map(Body::new)
    }
}

impl std::fmt::Debug for Charged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charged")
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

/// Whether parapet's cache answered from its store: a `Cache-Status` member `parapet; hit`.
fn is_hit(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_STATUS).iter().any(|value| {
        value.as_bytes().split(|b| *b == b',').any(|member| {
            let member = member.trim_ascii_start();
            let mut parts = member.split(|b| *b == b';').map(<[u8]>::trim_ascii);
            parts.next() == Some(b"parapet") && parts.any(|p| p == b"hit")
        })
    })
}

pin_project! {
    /// The response future of [`QuotaService`].
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        Pass { #[pin] fut: F },
        Charged { #[pin] fut: F, charged: Option<Charged> },
        Refused { response: Option<Response<Body>> },
        Held {
            sleep: Pin<Box<tokio::time::Sleep>>,
            response: Option<Response<Body>>,
            slot: Option<HeldSlot>,
        },
        Shared { fut: BoxFuture<'static, Result<Response<Body>, E>> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn pass(fut: F) -> Self {
        Self {
            kind: Kind::Pass { fut },
        }
    }

    fn charged(fut: F, charged: Charged) -> Self {
        Self {
            kind: Kind::Charged {
                fut,
                charged: Some(charged),
            },
        }
    }

    fn refused(response: Response<Body>) -> Self {
        Self {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }

    fn held(response: Response<Body>, delay: Duration, slot: HeldSlot) -> Self {
        Self {
            kind: Kind::Held {
                sleep: Box::pin(tokio::time::sleep(delay)),
                response: Some(response),
                slot: Some(slot),
            },
        }
    }

    fn shared(fut: BoxFuture<'static, Result<Response<Body>, E>>) -> Self {
        Self {
            kind: Kind::Shared { fut },
        }
    }
}

impl<F, E> std::fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E, B> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Pass { fut } => Poll::Ready(ready!(fut.poll(cx)).map(|r| r.map(Body::new))),
            KindProj::Charged { fut, charged } => {
                let response = ready!(fut.poll(cx))?;
                Poll::Ready(Ok(match charged.take() {
                    Some(charged) => charged.finish(response),
                    None => response.map(Body::new),
                }))
            }
            KindProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| StatusCode::TOO_MANY_REQUESTS.into_response()))),
            KindProj::Held {
                sleep,
                response,
                slot,
            } => {
                ready!(sleep.as_mut().poll(cx));
                // The place is free as soon as the answer is.
                drop(slot.take());
                Poll::Ready(Ok(response
                    .take()
                    .unwrap_or_else(|| StatusCode::TOO_MANY_REQUESTS.into_response())))
            }
            KindProj::Shared { fut } => fut.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn hits_are_parapet_hit_members() {
        let hit = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(CACHE_STATUS, HeaderValue::from_str(v).unwrap());
            }
            is_hit(&headers)
        };
        assert!(hit(&["parapet; hit; ttl=9"]));
        assert!(hit(&["cdn; fwd=uri-miss, parapet; hit; ttl=-2; fwd=stale"]));
        assert!(hit(&["cdn; hit", "parapet;hit"]));
        assert!(!hit(&[
            "parapet; fwd=uri-miss; fwd-status=200; ttl=10; stored"
        ]));
        assert!(!hit(&["cdn; hit"]));
        assert!(!hit(&["parapet; fwd=stale; fwd-status=304; detail=hit"]));
        assert!(!hit(&[]));
    }
}
