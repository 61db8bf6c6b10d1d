//! Parsing of `Cache-Control` (RFC 9111 §5.2) and of the request `Pragma: no-cache` (§5.4).
//!
//! Parsing never fails: unknown directives and garbage are skipped. Where a directive is repeated
//! or invalid, the most restrictive reading wins (§4.2.1): a response `max-age` / `s-maxage` that
//! is invalid or given twice with different values counts as `0` (stale).

use std::time::Duration;

use http::{HeaderMap, HeaderName, header};

use super::fields::{combined_lossy, field_names, parse_delta_seconds, sort_dedup};

/// One directive: lowercased name and its argument with quotes and escapes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
}

/// Splits a comma-separated directive list, honouring quoted strings (`a="x, y"`).
pub(crate) fn parse_directives(input: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return out;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != ',' && *c != '=') {
            name.push(c);
        }
        let mut value = None;
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            let mut arg = String::new();
            if chars.next_if_eq(&'"').is_some() {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {
                            escaped = false;
                            arg.push(c);
                        }
                    }
                }
                // Anything between the closing quote and the next comma is garbage.
                while chars.next_if(|c| *c != ',').is_some() {}
            } else {
                while let Some(c) = chars.next_if(|c| *c != ',') {
                    arg.push(c);
                }
                arg = arg.trim().to_owned();
            }
            value = Some(arg);
        }
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() {
            out.push(Directive { name, value });
        }
    }
}

/// The `no-cache` response directive (RFC 9111 §5.2.2.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NoCache {
    /// The directive is absent.
    #[default]
    No,
    /// Unqualified: the response may be stored but must be revalidated before every reuse.
    All,
    /// Qualified (`no-cache="Set-Cookie"`): the named fields (lowercase, sorted) must not be
    /// reused without revalidation; this policy stores the response without them.
    Fields(Vec<HeaderName>),
}

/// The `private` response directive (RFC 9111 §5.2.2.7), as a shared cache reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Private {
    /// The directive is absent.
    #[default]
    No,
    /// Unqualified: a shared cache must not store the response.
    All,
    /// Qualified (`private="X-User"`): the response may be stored without the named fields
    /// (lowercase, sorted).
    Fields(Vec<HeaderName>),
}

/// The `max-stale` request directive (RFC 9111 §5.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxStale {
    /// `max-stale` without a value: any staleness is acceptable.
    Any,
    /// `max-stale=N`: staleness up to `N` seconds is acceptable.
    Seconds(u64),
}

impl MaxStale {
    /// Whether a response that has been stale for `staleness` is acceptable to the client.
    #[must_use]
    pub fn allows(self, staleness: Duration) -> bool {
        match self {
            Self::Any => true,
            Self::Seconds(limit) => staleness <= Duration::from_secs(limit),
        }
    }
}

/// The response directives a shared cache acts on (RFC 9111 §5.2.2, RFC 5861, RFC 8246).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseDirectives {
    /// `max-age`; invalid or conflicting values read as zero (stale).
    pub max_age: Option<Duration>,
    /// `s-maxage`; invalid or conflicting values read as zero (stale).
    pub s_maxage: Option<Duration>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`, plain or qualified.
    pub no_cache: NoCache,
    /// `private`, plain or qualified.
    pub private: Private,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `must-understand`.
    pub must_understand: bool,
    /// `immutable` (RFC 8246); parsed for the layer, not used by the policy decisions.
    pub immutable: bool,
    /// `stale-while-revalidate` window (RFC 5861 §3); the smallest valid value wins.
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` window (RFC 5861 §4); the smallest valid value wins.
    pub stale_if_error: Option<Duration>,
    /// The targeted field (RFC 9213) these directives were read from; `None` for
    /// `Cache-Control`. When set, the response's `Expires` is ignored too (§2.2).
    pub targeted: Option<HeaderName>,
}

impl ResponseDirectives {
    /// Parses every `Cache-Control` line of a response.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Self {
        combined_lossy(headers, &header::CACHE_CONTROL)
            .map(|value| Self::parse(&value))
            .unwrap_or_default()
    }

    /// The directives this cache obeys (RFC 9213 §2.2): those of the first field of
    /// `targeted` (in order) that is present, a valid Structured Field Dictionary and not
    /// empty, which replace `Cache-Control` (and `Expires`); otherwise `Cache-Control`'s.
    #[must_use]
    pub fn for_cache(headers: &HeaderMap, targeted: &[HeaderName]) -> Self {
        match super::targeted::select(headers, targeted).chosen {
            Some((_, directives)) => directives,
            None => Self::from_headers(headers),
        }
    }

    /// Parses one (combined) `Cache-Control` value.
    pub(crate) fn parse(input: &str) -> Self {
        let mut out = Self::default();
        let mut no_cache = Qualified::default();
        let mut private = Qualified::default();
        for Directive { name, value } in parse_directives(input) {
            let value = value.as_deref();
            match name.as_str() {
                "max-age" => strict_delta(&mut out.max_age, value),
                "s-maxage" => strict_delta(&mut out.s_maxage, value),
                "no-store" => out.no_store = true,
                "no-cache" => no_cache.add(value),
                "private" => private.add(value),
                "public" => out.public = true,
                "must-revalidate" => out.must_revalidate = true,
                "proxy-revalidate" => out.proxy_revalidate = true,
                "must-understand" => out.must_understand = true,
                "immutable" => out.immutable = true,
                "stale-while-revalidate" => min_delta(&mut out.stale_while_revalidate, value),
                "stale-if-error" => min_delta(&mut out.stale_if_error, value),
                _ => {}
            }
        }
        out.no_cache = match no_cache.finish() {
            None => NoCache::No,
            Some(None) => NoCache::All,
            Some(Some(fields)) => NoCache::Fields(fields),
        };
        out.private = match private.finish() {
            None => Private::No,
            Some(None) => Private::All,
            Some(Some(fields)) => Private::Fields(fields),
        };
        out
    }

    /// Whether a shared cache may never serve this response stale (RFC 9111 §4.2.4).
    ///
    /// True with `must-revalidate`, `proxy-revalidate`, `s-maxage` (which implies
    /// `proxy-revalidate`, §5.2.2.10) or unqualified `no-cache`. It also disables the
    /// `stale-while-revalidate` and `stale-if-error` windows.
    #[must_use]
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate
            || self.proxy_revalidate
            || self.s_maxage.is_some()
            || self.no_cache == NoCache::All
    }
}

impl ResponseDirectives {
    /// Whether a shared cache may store this response for, and serve it to, a request that
    /// carries `Authorization` (RFC 9111 §3.5): only with `public`, `s-maxage` or
    /// `must-revalidate`.
    #[must_use]
    pub fn shared_with_authorization(&self) -> bool {
        self.public || self.s_maxage.is_some() || self.must_revalidate
    }
}

/// The request directives a shared cache acts on (RFC 9111 §5.2.1, RFC 5861 §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestDirectives {
    /// `max-age`: the client wants a response no older than this; invalid values are ignored and
    /// the smallest valid one wins.
    pub max_age: Option<Duration>,
    /// `max-stale`: the most restrictive one wins.
    pub max_stale: Option<MaxStale>,
    /// `min-fresh`: the largest valid value wins.
    pub min_fresh: Option<Duration>,
    /// `no-cache`, or `Pragma: no-cache` on a request without `Cache-Control`.
    pub no_cache: bool,
    /// `no-store`: do not store the response; serving a stored one is still allowed.
    pub no_store: bool,
    /// `only-if-cached`.
    pub only_if_cached: bool,
    /// `stale-if-error` window; the smallest valid value wins.
    pub stale_if_error: Option<Duration>,
}

impl RequestDirectives {
    /// Parses every `Cache-Control` line of a request, falling back on `Pragma: no-cache` when
    /// the request carries no `Cache-Control` at all (RFC 9111 §5.4).
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Self {
        if let Some(value) = combined_lossy(headers, &header::CACHE_CONTROL) {
            return Self::parse(&value);
        }
        let pragma_no_cache = combined_lossy(headers, &header::PRAGMA).is_some_and(|value| {
            parse_directives(&value)
                .iter()
                .any(|d| d.name == "no-cache")
        });
        Self {
            no_cache: pragma_no_cache,
            ..Self::default()
        }
    }

    /// Parses one (combined) `Cache-Control` value.
    pub(crate) fn parse(input: &str) -> Self {
        let mut out = Self::default();
        for Directive { name, value } in parse_directives(input) {
            let value = value.as_deref();
            match name.as_str() {
                "max-age" => min_delta(&mut out.max_age, value),
                "min-fresh" => max_delta(&mut out.min_fresh, value),
                "max-stale" => {
                    let new = match value {
                        None => MaxStale::Any,
                        Some(v) => match parse_delta_seconds(v) {
                            Some(secs) => MaxStale::Seconds(secs),
                            None => continue,
                        },
                    };
                    out.max_stale = Some(match (out.max_stale, new) {
                        (Some(MaxStale::Seconds(a)), MaxStale::Seconds(b)) => {
                            MaxStale::Seconds(a.min(b))
                        }
                        (Some(MaxStale::Seconds(a)), MaxStale::Any) => MaxStale::Seconds(a),
                        (_, new) => new,
                    });
                }
                "no-cache" => out.no_cache = true,
                "no-store" => out.no_store = true,
                "only-if-cached" => out.only_if_cached = true,
                "stale-if-error" => min_delta(&mut out.stale_if_error, value),
                _ => {}
            }
        }
        out
    }
}

/// Accumulates a directive that may be qualified with field names (`no-cache`, `private`).
#[derive(Default)]
struct Qualified {
    seen: bool,
    all: bool,
    fields: Vec<HeaderName>,
}

impl Qualified {
    fn add(&mut self, value: Option<&str>) {
        self.seen = true;
        let names = value.map(field_names).unwrap_or_default();
        // An unqualified directive, or a qualified one we cannot read, covers the whole response.
        if names.is_empty() {
            self.all = true;
        }
        self.fields.extend(names);
    }

    /// `None`: absent; `Some(None)`: the whole response; `Some(Some(fields))`: those fields.
    fn finish(mut self) -> Option<Option<Vec<HeaderName>>> {
        if !self.seen {
            return None;
        }
        if self.all {
            return Some(None);
        }
        sort_dedup(&mut self.fields);
        Some(Some(self.fields))
    }
}

/// A response freshness directive: invalid reads as 0, conflicting values read as 0.
fn strict_delta(slot: &mut Option<Duration>, value: Option<&str>) {
    let new = Duration::from_secs(value.and_then(parse_delta_seconds).unwrap_or(0));
    *slot = Some(match *slot {
        Some(old) if old != new => Duration::ZERO,
        _ => new,
    });
}

/// Keeps the smallest valid value; invalid values are ignored.
fn min_delta(slot: &mut Option<Duration>, value: Option<&str>) {
    if let Some(secs) = value.and_then(parse_delta_seconds) {
        let new = Duration::from_secs(secs);
        *slot = Some(slot.map_or(new, |old| old.min(new)));
    }
}

/// Keeps the largest valid value; invalid values are ignored.
fn max_delta(slot: &mut Option<Duration>, value: Option<&str>) {
    if let Some(secs) = value.and_then(parse_delta_seconds) {
        let new = Duration::from_secs(secs);
        *slot = Some(slot.map_or(new, |old| old.max(new)));
    }
}

#[cfg(test)]
#[path = "cache_control_tests.rs"]
mod tests;
