//! The few response directives that decide whether a stored response may be reused, small
//! enough to keep with a stored entry so a hit does not parse its `Cache-Control` again.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

use super::cache_control::{NoCache, ResponseDirectives};

/// What [`decide`](super::decide) reads from a stored response's `Cache-Control`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReuseDirectives {
    /// Unqualified `no-cache` (RFC 9111 §5.2.2.4).
    pub(crate) no_cache: bool,
    /// See [`ResponseDirectives::forbids_stale`].
    pub(crate) forbids_stale: bool,
    /// The `stale-while-revalidate` window (RFC 5861 §3).
    pub(crate) stale_while_revalidate: Option<Duration>,
    /// See [`ResponseDirectives::shared_with_authorization`].
    pub(crate) shared_with_authorization: bool,
}

impl ReuseDirectives {
    /// Parses every `Cache-Control` line of a response.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let all = ResponseDirectives::from_headers(headers);
        Self {
            no_cache: all.no_cache == NoCache::All,
            forbids_stale: all.forbids_stale(),
            stale_while_revalidate: all.stale_while_revalidate,
            shared_with_authorization: all.shared_with_authorization(),
        }
    }
}

/// [`ReuseDirectives`] parsed once, with the `Cache-Control` value they were parsed from, so
/// they are only used while the headers still carry exactly that value.
#[derive(Debug, Clone)]
pub(crate) struct ParsedReuse {
    /// The single `Cache-Control` line parsed (`None`: the field was absent).
    source: Option<HeaderValue>,
    /// `None` when the headers carried several `Cache-Control` lines (rare: those are parsed
    /// on every use).
    directives: Option<ReuseDirectives>,
}

impl ParsedReuse {
    /// Parses the `Cache-Control` of `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut lines = headers.get_all(header::CACHE_CONTROL).iter();
        let source = lines.next().cloned();
        if lines.next().is_some() {
            return Self {
                source: None,
                directives: None,
            };
        }
        Self {
            source,
            directives: Some(ReuseDirectives::from_headers(headers)),
        }
    }

    /// The directives of `headers`: the parsed ones while `headers` still carry the parsed
    /// `Cache-Control` line and no other, parsed again otherwise.
    pub(crate) fn directives_for(&self, headers: &HeaderMap) -> ReuseDirectives {
        let mut lines = headers.get_all(header::CACHE_CONTROL).iter();
        match self.directives {
            Some(parsed) if lines.next() == self.source.as_ref() && lines.next().is_none() => {
                parsed
            }
            _ => ReuseDirectives::from_headers(headers),
        }
    }

    /// The heap bytes held beyond the entry's own header map: sharing the value's buffer
    /// gives it a reference count of its own.
    pub(crate) fn heap_bytes(&self) -> usize {
        if self.source.is_some() { 48 } else { 0 }
    }
}

/// Equal whatever was parsed: the parse is derived from the headers, which the owner compares.
impl PartialEq for ParsedReuse {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

    use super::*;
    use crate::Entry;
    use crate::policy::{StoredTimes, decide, decide_parsed};

    fn entry(cache_control: &[&'static str]) -> Entry {
        let mut headers = HeaderMap::new();
        for line in cache_control {
            headers.append(header::CACHE_CONTROL, HeaderValue::from_static(line));
        }
        let now = SystemTime::now();
        let times = StoredTimes::from_response(now, now, &headers);
        Entry::new(StatusCode::OK, headers, Bytes::new(), times, Duration::ZERO)
    }

    fn parsed(line: &str) -> ReuseDirectives {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(line).unwrap());
        ReuseDirectives::from_headers(&headers)
    }

    #[test]
    fn the_parse_follows_the_headers() {
        let mut entry = entry(&["max-age=0, stale-while-revalidate=30"]);
        let swr = parsed("stale-while-revalidate=30");
        assert_eq!(entry.reuse_directives(), swr);
        assert_eq!(
            entry.reuse_directives().stale_while_revalidate,
            Some(Duration::from_secs(30))
        );
        // Headers changed without a new parse: the entry parses them again.
        entry
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert_eq!(entry.reuse_directives(), parsed("no-cache"));
        assert!(entry.reuse_directives().no_cache && entry.reuse_directives().forbids_stale);
        entry
            .headers
            .append(header::CACHE_CONTROL, HeaderValue::from_static("max-age=9"));
        assert_eq!(entry.reuse_directives(), parsed("no-cache, max-age=9"));
        entry.headers.remove(header::CACHE_CONTROL);
        assert_eq!(entry.reuse_directives(), ReuseDirectives::default());
        entry.reparse();
        assert_eq!(entry.reuse_directives(), ReuseDirectives::default());
        // Several lines are read together, as `ResponseDirectives` reads them.
        let entry = self::entry(&["stale-while-revalidate=5", "must-revalidate"]);
        assert_eq!(
            entry.reuse_directives(),
            parsed("stale-while-revalidate=5, must-revalidate")
        );
        assert!(entry.reuse_directives().forbids_stale);
        // An absent field, then one added later.
        let mut entry = self::entry(&[]);
        assert_eq!(entry.reuse_directives(), ReuseDirectives::default());
        entry.headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("s-maxage=1"),
        );
        assert!(entry.reuse_directives().forbids_stale);
        // Two entries of the same headers are equal whatever each has parsed.
        let mut a = self::entry(&["no-cache"]);
        let b = self::entry(&["public"]);
        a.headers = b.headers.clone();
        a.times = b.times;
        assert_eq!(a, b);
    }

    #[test]
    fn decide_parsed_decides_as_decide() {
        let lines = [
            "max-age=60",
            "no-cache",
            "must-revalidate",
            "stale-while-revalidate=30",
            "s-maxage=5, stale-while-revalidate=30",
            "no-cache=\"set-cookie\", stale-while-revalidate=30",
        ];
        let requests = ["", "no-cache", "max-stale", "min-fresh=5", "only-if-cached"];
        let mut kinds = std::collections::HashSet::new();
        for line in lines {
            let entry = entry(&[line]);
            for (lifetime, age) in [(60, 10), (5, 10), (5, 100)] {
                let mut meta = entry.meta();
                meta.lifetime = Duration::from_secs(lifetime);
                let now = meta.times.response_time + Duration::from_secs(age);
                for request in requests {
                    let mut headers = HeaderMap::new();
                    if !request.is_empty() {
                        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(request));
                    }
                    for method in [Method::GET, Method::HEAD, Method::POST] {
                        let expected = decide(&method, &headers, &meta, now);
                        let got =
                            decide_parsed(&method, &headers, &meta, entry.reuse_directives(), now);
                        assert_eq!(got, expected, "{line} / {request} / {lifetime} {age}");
                        kinds.insert(std::mem::discriminant(&got));
                    }
                }
            }
        }
        // The cases reach every kind of answer.
        assert_eq!(kinds.len(), 5, "{kinds:?}");
    }
}
