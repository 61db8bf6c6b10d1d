//! What the cache stores: a response entry, or the marker that lists a URI's `Vary` fields.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::policy::{
    DEFAULT_TARGETED, ParsedReuse, ReuseDirectives, StoredMeta, StoredTimes, remaining_freshness,
};

/// A stored response with everything needed to answer a later request from it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The stored status.
    pub status: StatusCode,
    /// The stored response headers (hop-by-hop and stripped fields removed).
    pub headers: HeaderMap,
    /// The whole response body.
    pub body: Bytes,
    /// Request, response, `Date` and `Age` times (RFC 9111 §4.2.3).
    pub times: StoredTimes,
    /// The freshness lifetime computed when the entry was stored or last revalidated.
    pub lifetime: Duration,
    /// The `stale-while-revalidate` window, if the response allows one.
    pub stale_while_revalidate: Option<Duration>,
    /// The `stale-if-error` window, if the response allows one.
    pub stale_if_error: Option<Duration>,
    /// The request fields the response varies on (lowercase, sorted; empty without `Vary`).
    pub vary: Vec<HeaderName>,
    /// The values of those fields in the request that selected this response.
    pub vary_request: HeaderMap,
    /// Surrogate keys / tags of the response.
    pub tags: Vec<String>,
    /// The reuse directives of `headers` (their `Cache-Control`, or the targeted field that
    /// replaces it, RFC 9213), parsed when the entry was built or decoded (checked against the
    /// headers and the cache's targeted fields at every use, so changing either stays correct).
    reuse: ParsedReuse,
}

impl Entry {
    /// A new entry with no stale windows, `Vary` fields or tags.
    ///
    /// The headers are copied into a map of their own size (a map grown by inserts keeps
    /// room for more, and values parsed by a server can share its read buffer), so what the
    /// entry holds is what [`weight`](Self::weight) counts.
    #[must_use]
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        times: StoredTimes,
        lifetime: Duration,
    ) -> Self {
        Self::of_compact(
            status,
            compact(&headers, ANSWER_ROOM),
            body,
            times,
            lifetime,
        )
    }

    /// [`new`](Self::new) for headers already in a map of their own size with values of their
    /// own (as decoding makes them): not copied again.
    pub(crate) fn of_compact(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        times: StoredTimes,
        lifetime: Duration,
    ) -> Self {
        Self {
            status,
            reuse: ParsedReuse::of(&headers, &DEFAULT_TARGETED),
            headers,
            body,
            times,
            lifetime,
            stale_while_revalidate: None,
            stale_if_error: None,
            vary: Vec::new(),
            vary_request: HeaderMap::new(),
            tags: Vec::new(),
        }
    }

    /// The view of this entry the policy functions take.
    #[must_use]
    pub fn meta(&self) -> StoredMeta<'_> {
        StoredMeta {
            status: self.status,
            headers: &self.headers,
            times: self.times,
            lifetime: self.lifetime,
        }
    }

    /// What [`decide_parsed`](crate::policy::decide_parsed) needs of the stored directives
    /// for a cache obeying the `targeted` fields (RFC 9213), without parsing them again while
    /// the headers and the list are those they were parsed for.
    pub(crate) fn reuse_directives(&self, targeted: &Arc<[HeaderName]>) -> ReuseDirectives {
        self.reuse.directives_for(&self.headers, targeted)
    }

    /// Parses the stored directives again for the `targeted` fields: after the headers
    /// changed (a 304 updated them), or for a cache whose list is not the default one.
    pub(crate) fn reparse(&mut self, targeted: &Arc<[HeaderName]>) {
        self.reuse = ParsedReuse::of(&self.headers, targeted);
    }

    /// Whether the entry carries a validator (`ETag` or `Last-Modified`).
    #[must_use]
    pub fn has_validator(&self) -> bool {
        self.headers.contains_key(header::ETAG) || self.headers.contains_key(header::LAST_MODIFIED)
    }

    /// How long a store should keep the entry from `now`: the remaining freshness plus the
    /// longer stale window, plus `revalidation_grace` when it can be revalidated. Zero means
    /// "do not store".
    #[must_use]
    pub fn retention(&self, now: SystemTime, revalidation_grace: Duration) -> Duration {
        let fresh = remaining_freshness(self.lifetime, &self.times, now);
        let stale = self
            .stale_while_revalidate
            .into_iter()
            .chain(self.stale_if_error)
            .max()
            .unwrap_or(Duration::ZERO);
        let grace = if self.has_validator() {
            revalidation_grace
        } else {
            Duration::ZERO
        };
        fresh.saturating_add(stale.max(grace))
    }

    /// An estimate of the bytes the entry takes in memory: the struct and its `Arc`, the body,
    /// every header slot and the bytes of each name and value, `Vary` fields and tags, plus
    /// what a local-tier slot costs around it (moka's entry and nodes, the key's allocation: 512
    /// bytes, calibrated with `bench/run.sh cache-bytes`).
    #[must_use]
    pub fn weight(&self) -> usize {
        SLOT_OVERHEAD
            + size_of::<Self>()
            + 2 * ALLOCATION
            + self.body.len()
            + header_bytes(&self.headers)
            + self.reuse.heap_bytes()
            + header_bytes(&self.vary_request)
            + self.vary.capacity() * size_of::<HeaderName>()
            + self
                .vary
                .iter()
                .map(|n| n.as_str().len() + ALLOCATION)
                .sum::<usize>()
            + self.tags.capacity() * size_of::<String>()
            + self
                .tags
                .iter()
                .map(|t| t.len() + ALLOCATION)
                .sum::<usize>()
    }
}

/// What one value costs the local tier beyond the value itself: moka's entry (its node, the
/// access-order, write-order and timer-wheel nodes, the hash-table slot), the slot struct and
/// the copied key's allocation. Measured with `bench/run.sh cache-bytes` (1,000,000 small
/// entries): with it, resident memory tracks the weighted size.
pub(crate) const SLOT_OVERHEAD: usize = 512;

/// What the allocator adds to each heap allocation (its header and rounding), on average.
const ALLOCATION: usize = 16;

/// The heap bytes of a header map: every slot it has room for (used or not, with its index)
/// and each name's and value's bytes.
fn header_bytes(map: &HeaderMap) -> usize {
    if map.capacity() == 0 {
        return 0;
    }
    let slot = size_of::<(HeaderName, HeaderValue)>() + 40;
    let data: usize = map
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 2 * ALLOCATION)
        .sum();
    map.capacity() * slot + 2 * ALLOCATION + data
}

/// How many fields an answer from an entry adds to a copy of its headers (`Age` and
/// `Cache-Status`): the stored map keeps room for them, so that copy never grows (and rehashes)
/// its table on every hit.
pub(crate) const ANSWER_ROOM: usize = 2;

/// A copy of `headers` in a map of their own size and `room` more names, with values in
/// allocations of their own.
pub(crate) fn compact(headers: &HeaderMap, room: usize) -> HeaderMap {
    // Room for the names; extra values of a name need none (and `len()`, which counts them,
    // can exceed what `with_capacity` accepts).
    let mut out =
        HeaderMap::try_with_capacity(headers.keys_len().saturating_add(room)).unwrap_or_default();
    for (name, value) in headers {
        let mut copy = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
            .unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

/// Stored under a URI's primary key when its response varies: which request fields select a
/// variant, and the generation that variant keys are derived from.
///
/// Deleting the marker makes every variant of the URI unreachable at once: a new marker gets a
/// new generation, so variants written under the old one are never read again (they expire).
/// A soft purge of the URI keeps the marker and sets `stale_before` instead: every variant
/// received until then is found stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryMarker {
    /// The fields named by `Vary`, lowercase and sorted.
    pub fields: Vec<HeaderName>,
    /// A random generation number, part of every variant key.
    pub generation: u64,
    /// Until when the marker is kept (the latest retention of its variants).
    pub expires_at: SystemTime,
    /// The time of the URI's last soft purge: a variant received no later than this is stale.
    pub stale_before: Option<SystemTime>,
}

/// A value held by a [`Store`](crate::store::Store); cloning is cheap.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredValue {
    /// A response.
    Response(Arc<Entry>),
    /// The `Vary` marker of a URI whose variants live under variant keys.
    Vary(VaryMarker),
}

impl StoredValue {
    /// An estimate of the bytes the value takes in memory.
    #[must_use]
    pub fn weight(&self) -> usize {
        match self {
            Self::Response(entry) => entry.weight(),
            Self::Vary(marker) => {
                SLOT_OVERHEAD
                    + size_of::<VaryMarker>()
                    + ALLOCATION
                    + marker
                        .fields
                        .iter()
                        .map(|n| size_of::<HeaderName>() + n.as_str().len() + ALLOCATION)
                        .sum::<usize>()
            }
        }
    }
}
