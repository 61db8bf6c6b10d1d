//! Extractors: [`Tenant`] and `Option<Tenant>` in handlers.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::{Tenant, TenantRejection};

/// Takes the tenant that [`TenantLayer`](crate::TenantLayer) resolved. Without the layer on the
/// route it rejects with [`TenantRejection::MissingLayer`] (500, and an error in the log).
impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = TenantRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .ok_or(TenantRejection::MissingLayer)
    }
}

/// `Option<Tenant>`: `None` when the request has no tenant (an
/// [`optional`](crate::TenantLayerBuilder::optional) layer let it through).
impl<S: Send + Sync> OptionalFromRequestParts<S> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Tenant>().cloned())
    }
}
