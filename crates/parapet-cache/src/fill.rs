//! The miss path: forwarding a cacheable request that found nothing usable, and storing the
//! response when the policy allows.

use axum_core::body::Body;
use http::Response;
use http::request::Parts;

use crate::admit::complete;
use crate::entry::VaryMarker;
use crate::exchange::{Ctx, send};
use crate::status::CacheStatus;
use crate::upstream::Inner;

/// Forwards a request that missed and stores the response when the policy allows.
pub(crate) async fn fetch<S, B>(
    ctx: Ctx<S>,
    parts: Parts,
    body: B,
    marker: Option<VaryMarker>,
    status: CacheStatus,
) -> Result<Response<Body>, S::Error>
where
    S: Inner<B>,
{
    let (sent, response) = send(ctx, parts, body, None).await;
    Ok(complete(&sent, response?, marker, status).await)
}
