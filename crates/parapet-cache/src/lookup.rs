//! Finding a stored response for a request, and answering from it.

use std::sync::Arc;
use std::time::Duration;

use axum_core::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};

use crate::entry::{Entry, StoredValue, VaryMarker};
use crate::key::PrimaryKey;
use crate::layer::Shared;
use crate::policy::{
    VaryFields, age_header, evaluate_conditional, headers_for_304, secondary_key,
    secondary_key_matches,
};
use crate::revalidate::Stale;
use crate::status::{CacheStatus, Fwd};
use crate::store::Tier;

/// The outcome of a lookup.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A stored response for this request.
    Hit {
        entry: Arc<Entry>,
        /// The key it is stored under (the primary key or a variant key).
        store_key: Bytes,
        tier: Tier,
        /// The URI's `Vary` marker, when the entry is a variant.
        marker: Option<VaryMarker>,
    },
    /// Nothing usable.
    Miss {
        fwd: Fwd,
        /// The URI's `Vary` marker, when one was found.
        marker: Option<VaryMarker>,
    },
}

impl Lookup {
    /// The stored entry and its tier, or why nothing usable was found.
    pub(crate) fn into_hit(self) -> Result<(Stale, Tier), (Fwd, Option<VaryMarker>)> {
        match self {
            Self::Hit {
                entry,
                store_key,
                tier,
                marker,
            } => Ok((
                Stale {
                    entry,
                    store_key,
                    marker,
                },
                tier,
            )),
            Self::Miss { fwd, marker } => Err((fwd, marker)),
        }
    }
}

/// Looks up the primary key, then, when the URI varies, the request's variant.
pub(crate) async fn lookup(shared: &Shared, key: &PrimaryKey, headers: &HeaderMap) -> Lookup {
    let Some(found) = shared.store.get(key.as_bytes()).await else {
        return Lookup::Miss {
            fwd: Fwd::UriMiss,
            marker: None,
        };
    };
    match found.value {
        StoredValue::Response(entry) if entry.vary.is_empty() => Lookup::Hit {
            entry,
            store_key: key.as_bytes().clone(),
            tier: found.tier,
            marker: None,
        },
        // A response with Vary is only ever stored under a variant key.
        StoredValue::Response(_) => Lookup::Miss {
            fwd: Fwd::UriMiss,
            marker: None,
        },
        StoredValue::Vary(marker) => {
            let fields = VaryFields::Fields(marker.fields.clone());
            let Some(secondary) = secondary_key(&fields, headers) else {
                return Lookup::Miss {
                    fwd: Fwd::VaryMiss,
                    marker: Some(marker),
                };
            };
            let variant_key = key.variant(marker.generation, &secondary);
            match shared.store.get(&variant_key).await {
                Some(found) => match found.value {
                    // Checked again on the stored request fields: a key can never select
                    // another variant's response.
                    StoredValue::Response(entry)
                        if secondary_key_matches(
                            &entry.vary_request,
                            &VaryFields::Fields(entry.vary.clone()),
                            headers,
                        ) =>
                    {
                        Lookup::Hit {
                            entry,
                            store_key: variant_key,
                            tier: found.tier,
                            marker: Some(marker),
                        }
                    }
                    _ => Lookup::Miss {
                        fwd: Fwd::VaryMiss,
                        marker: Some(marker),
                    },
                },
                None => Lookup::Miss {
                    fwd: Fwd::VaryMiss,
                    marker: Some(marker),
                },
            }
        }
    }
}

/// Answers a request from a stored entry of current age `age`: a 304 when the request's
/// conditional headers match it, the stored response otherwise (without a body for `HEAD`).
pub(crate) fn serve(
    entry: &Entry,
    method: &Method,
    request_headers: &HeaderMap,
    age: Duration,
    status: &CacheStatus,
) -> Response<Body> {
    let mut response = if evaluate_conditional(request_headers, entry.status, &entry.headers)
        == Some(StatusCode::NOT_MODIFIED)
    {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.headers_mut() = headers_for_304(&entry.headers);
        response
    } else {
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(entry.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = entry.status;
        *response.headers_mut() = entry.headers.clone();
        response
    };
    response.headers_mut().insert(header::AGE, age_header(age));
    status.append_to(response.headers_mut());
    response
}
