//! Finding the stored response for a request: the primary key, then the request's `Vary`
//! variant.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use crate::entry::{Entry, StoredValue, VaryMarker};
use crate::key::PrimaryKey;
use crate::policy::variant::{preferred_secondary_key, variant_matches};
use crate::policy::{VaryFields, secondary_key};
use crate::shared::Shared;
use crate::soft::{as_of_soft_purge, as_of_uri_soft_purge};
use crate::status::Fwd;
use crate::store::Tier;

/// A stored response found for a request (fresh or not), and where it lives.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) entry: Arc<Entry>,
    /// The key it is stored under (the primary key or a variant key).
    pub(crate) store_key: Bytes,
    /// The URI's `Vary` marker, when the entry is a variant.
    pub(crate) marker: Option<VaryMarker>,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A stored response for this request.
    Hit { found: Found, tier: Tier },
    /// Nothing usable.
    Miss {
        fwd: Fwd,
        /// The URI's `Vary` marker, when one was found.
        marker: Option<VaryMarker>,
    },
}

impl Lookup {
    /// The stored entry and its tier, or why nothing usable was found.
    pub(crate) fn into_hit(self) -> Result<(Found, Tier), (Fwd, Option<VaryMarker>)> {
        match self {
            Self::Hit { found, tier } => Ok((found, tier)),
            Self::Miss { fwd, marker } => Err((fwd, marker)),
        }
    }
}

/// Looks up the primary key, then, when the URI varies, the request's variant; an entry the
/// tenant's last soft purge (or a variant its URI's last soft purge) covers is found stale.
pub(crate) async fn lookup(shared: &Shared, key: &PrimaryKey, headers: &HeaderMap) -> Lookup {
    match lookup_stored(shared, key, headers).await {
        Lookup::Hit { mut found, tier } => {
            found.entry = as_of_uri_soft_purge(found.marker.as_ref(), found.entry);
            found.entry = as_of_soft_purge(&*shared.store, key.tenant_prefix(), found.entry).await;
            Lookup::Hit { found, tier }
        }
        miss @ Lookup::Miss { .. } => miss,
    }
}

/// The stored response for the request, as stored.
async fn lookup_stored(shared: &Shared, key: &PrimaryKey, headers: &HeaderMap) -> Lookup {
    let Some(found) = shared.store.get(key.as_bytes()).await else {
        return Lookup::Miss {
            fwd: Fwd::UriMiss,
            marker: None,
        };
    };
    match found.value {
        StoredValue::Response(entry)
            if entry.vary.is_empty() && shared.implied_vary().is_empty() =>
        {
            Lookup::Hit {
                found: Found {
                    entry,
                    store_key: key.as_bytes().clone(),
                    marker: None,
                },
                tier: found.tier,
            }
        }
        // A response with Vary is only ever stored under a variant key; keyed on
        // credentials, every response is.
        StoredValue::Response(_) => Lookup::Miss {
            fwd: Fwd::UriMiss,
            marker: None,
        },
        StoredValue::Vary(marker) => {
            // Keyed on credentials: a variant stored without them (by an instance configured
            // otherwise) is never selected.
            let implied = shared.implied_vary();
            if !implied.iter().all(|name| marker.fields.contains(name)) {
                return Lookup::Miss {
                    fwd: Fwd::VaryMiss,
                    marker: None,
                };
            }
            let headers = &*shared.vary_view(headers);
            let fields = VaryFields::Fields(marker.fields.clone());
            // The preferred key first (a variant shared by every request with the same
            // preferred language or coding), then the whole normalised request.
            let preferred = preferred_secondary_key(&fields, headers);
            let whole = secondary_key(&fields, headers);
            let mut keys = preferred.into_iter().chain(whole).peekable();
            if keys.peek().is_none() {
                return Lookup::Miss {
                    fwd: Fwd::VaryMiss,
                    marker: Some(marker),
                };
            }
            for secondary in keys {
                let variant_key = key.variant(marker.generation, &secondary);
                if let Some(found) = shared.store.get(&variant_key).await
                    && let StoredValue::Response(entry) = found.value
                    // Checked again on the stored request fields: a key can never select
                    // another variant's response.
                    && variant_matches(
                        &entry.vary_request,
                        &VaryFields::Fields(entry.vary.clone()),
                        &entry.headers,
                        headers,
                    )
                {
                    return Lookup::Hit {
                        found: Found {
                            entry,
                            store_key: variant_key,
                            marker: Some(marker),
                        },
                        tier: found.tier,
                    };
                }
            }
            Lookup::Miss {
                fwd: Fwd::VaryMiss,
                marker: Some(marker),
            }
        }
    }
}
