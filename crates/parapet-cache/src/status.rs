//! The `Cache-Status` response header (RFC 9211).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The `Cache-Status` header name.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The cache's name in `Cache-Status`.
const NAME: &str = "parapet";

/// Why a request was forwarded (RFC 9211 §2.2 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fwd {
    /// Not handled by the cache at all.
    Bypass,
    /// The method is not cacheable.
    Method,
    /// Nothing stored for the URI.
    UriMiss,
    /// Something stored for the URI, but not for this request's `Vary` fields.
    VaryMiss,
    /// The request asked for a fresh response (`no-cache`).
    Request,
    /// A stored response was stale and had to be revalidated.
    Stale,
}

impl Fwd {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Method => "method",
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Request => "request",
            Self::Stale => "stale",
        }
    }
}

/// One `Cache-Status` member for this cache.
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheStatus {
    hit: bool,
    fwd: Option<Fwd>,
    fwd_status: Option<u16>,
    ttl: Option<i64>,
    stored: bool,
    collapsed: bool,
    /// Hit-for-pass: forwarded without coalescing because the key's last response could not
    /// be stored; rendered as `detail=pass` unless this response is stored.
    pass: bool,
    detail: Option<&'static str>,
}

impl CacheStatus {
    /// Served from the cache; `ttl` is the remaining freshness (negative when stale).
    pub(crate) fn hit(lifetime: Duration, age: Duration) -> Self {
        Self {
            hit: true,
            ..Self::default()
        }
        .ttl(lifetime, age)
    }

    /// Forwarded to the inner service.
    pub(crate) fn fwd(fwd: Fwd) -> Self {
        Self {
            fwd: Some(fwd),
            ..Self::default()
        }
    }

    pub(crate) fn fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    pub(crate) fn stored(mut self, stored: bool) -> Self {
        self.stored = stored;
        self
    }

    pub(crate) fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }

    /// Forwarded on a hit-for-pass (see [`Passes`](crate::coalesce::Passes)).
    pub(crate) fn pass(mut self) -> Self {
        self.pass = true;
        self
    }

    pub(crate) fn is_pass(&self) -> bool {
        self.pass
    }

    pub(crate) fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The remaining freshness in whole seconds, rounded down: a response stale by any
    /// amount has a negative `ttl` (RFC 9211 §2.5).
    pub(crate) fn ttl(mut self, lifetime: Duration, age: Duration) -> Self {
        let diff = signed_millis(lifetime).saturating_sub(signed_millis(age));
        self.ttl = Some(diff.div_euclid(1000));
        self
    }

    /// The header value, e.g. `parapet; hit; ttl=30`.
    #[cfg(test)]
    pub(crate) fn to_value(&self) -> HeaderValue {
        value_of(self.render())
    }

    /// The member's text, built in one allocation of exactly its length, which the header
    /// value then takes over without another (numbers rendered with `itoa`, not through `fmt`).
    fn render(&self) -> String {
        let detail = self.detail.unwrap_or_default();
        // A pass that was not stored says so after the reason (an sf-token may hold `/`):
        // `detail=response-no-store/pass`; a stored response ended the pass and says `stored`.
        let pass = self.pass && !self.stored;
        let mut status_digits = itoa::Buffer::new();
        let status = self.fwd_status.map(|status| status_digits.format(status));
        let mut ttl_digits = itoa::Buffer::new();
        let ttl = self.ttl.map(|ttl| ttl_digits.format(ttl));
        let pass_suffix = match (pass, self.detail.is_some()) {
            (false, _) => "",
            (true, true) => "/pass",
            (true, false) => "pass",
        };
        let parts: [(bool, &str, &str); 7] = [
            (self.hit, "; hit", ""),
            (
                self.fwd.is_some(),
                "; fwd=",
                self.fwd.map_or("", Fwd::as_str),
            ),
            (
                status.is_some(),
                "; fwd-status=",
                status.unwrap_or_default(),
            ),
            (ttl.is_some(), "; ttl=", ttl.unwrap_or_default()),
            (self.stored, "; stored", ""),
            (self.collapsed, "; collapsed", ""),
            (self.detail.is_some() || pass, "; detail=", detail),
        ];
        let len = NAME.len()
            + parts
                .iter()
                .filter(|(present, ..)| *present)
                .map(|(_, label, value)| label.len() + value.len())
                .sum::<usize>()
            + pass_suffix.len();
        // Exactly `len`: a `Bytes` made from a `String` whose capacity is its length keeps its
        // buffer; any other capacity costs one more allocation.
        let mut out = String::with_capacity(len);
        out.push_str(NAME);
        for (present, label, value) in parts {
            if present {
                out.push_str(label);
                out.push_str(value);
            }
        }
        out.push_str(pass_suffix);
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Appends this member after any `Cache-Status` an upstream cache added (RFC 9211 §2:
    /// the cache closest to the client is last), and records it as `cache.status` on the
    /// current span when that span declared the field.
    pub(crate) fn append_to(&self, headers: &mut HeaderMap) {
        let text = self.render();
        tracing::Span::current().record("cache.status", text.as_str());
        headers.append(CACHE_STATUS, value_of(text));
    }
}

/// The header value of a rendered member, without copying it.
fn value_of(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(text)).unwrap_or(HeaderValue::from_static(NAME))
}

fn signed_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let s = |c: CacheStatus| c.to_value().to_str().unwrap().to_owned();
        let secs = Duration::from_secs;
        assert_eq!(
            s(CacheStatus::hit(secs(60), secs(10))),
            "parapet; hit; ttl=50"
        );
        assert_eq!(
            s(CacheStatus::hit(secs(5), secs(10))),
            "parapet; hit; ttl=-5"
        );
        assert_eq!(
            s(CacheStatus::fwd(Fwd::UriMiss).fwd_status(200).stored(true)),
            "parapet; fwd=uri-miss; fwd-status=200; stored"
        );
        assert_eq!(
            s(CacheStatus::fwd(Fwd::Bypass).detail("no-tenant")),
            "parapet; fwd=bypass; detail=no-tenant"
        );
        assert_eq!(
            s(CacheStatus::hit(secs(1), secs(0)).collapsed()),
            "parapet; hit; ttl=1; collapsed"
        );
        assert_eq!(
            s(CacheStatus::fwd(Fwd::UriMiss)
                .pass()
                .fwd_status(200)
                .detail("response-no-store")),
            "parapet; fwd=uri-miss; fwd-status=200; detail=response-no-store/pass"
        );
        assert_eq!(
            s(CacheStatus::fwd(Fwd::UriMiss).pass().fwd_status(200)),
            "parapet; fwd=uri-miss; fwd-status=200; detail=pass"
        );
        assert_eq!(
            s(CacheStatus::fwd(Fwd::UriMiss)
                .pass()
                .fwd_status(200)
                .stored(true)),
            "parapet; fwd=uri-miss; fwd-status=200; stored"
        );
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_STATUS, HeaderValue::from_static("origin; hit"));
        CacheStatus::fwd(Fwd::Method).append_to(&mut headers);
        let all: Vec<_> = headers.get_all(CACHE_STATUS).iter().collect();
        assert_eq!(all, ["origin; hit", "parapet; fwd=method"]);
    }

    #[test]
    fn rendered_without_fmt_at_the_extremes() {
        let s = |c: CacheStatus| c.to_value().to_str().unwrap().to_owned();
        let longest = CacheStatus::fwd(Fwd::VaryMiss)
            .fwd_status(u16::MAX)
            .ttl(Duration::ZERO, Duration::MAX)
            .stored(true)
            .collapsed()
            .detail("stale-while-revalidate");
        assert_eq!(
            s(longest),
            "parapet; fwd=vary-miss; fwd-status=65535; ttl=-9223372036854776; stored; \
             collapsed; detail=stale-while-revalidate"
        );
        assert_eq!(
            s(CacheStatus::hit(Duration::MAX, Duration::ZERO)),
            "parapet; hit; ttl=9223372036854775"
        );
        assert_eq!(
            s(CacheStatus::hit(Duration::from_millis(999), Duration::ZERO).detail("local")),
            "parapet; hit; ttl=0; detail=local"
        );
        // A detail that is not a valid field value falls back to the bare name.
        assert_eq!(s(CacheStatus::fwd(Fwd::Bypass).detail("a\nb")), "parapet");
    }
}
