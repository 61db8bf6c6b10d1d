//! The few response directives that decide whether a stored response may be reused, small
//! enough to keep with a stored entry so a hit does not parse its `Cache-Control` again.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::cache_control::{NoCache, ResponseDirectives};
use super::targeted::select;

/// What [`decide`](super::decide) reads from a stored response's directives.
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
    /// Reads the directives this cache obeys: the first usable field of `targeted`
    /// (RFC 9213), else every `Cache-Control` line.
    pub(crate) fn from_headers(headers: &HeaderMap, targeted: &[HeaderName]) -> Self {
        Self::of(&ResponseDirectives::for_cache(headers, targeted))
    }

    fn of(all: &ResponseDirectives) -> Self {
        Self {
            no_cache: all.no_cache == NoCache::All,
            forbids_stale: all.forbids_stale(),
            stale_while_revalidate: all.stale_while_revalidate,
            shared_with_authorization: all.shared_with_authorization(),
        }
    }
}

/// [`ReuseDirectives`] parsed once, with the field value they were parsed from and the list of
/// targeted fields they were parsed for, so they are only used while the headers still carry
/// exactly that value (and no higher-ranked targeted field) and the list is the same.
#[derive(Debug, Clone)]
pub(crate) struct ParsedReuse {
    /// The targeted fields (RFC 9213) the parse obeyed.
    targeted: Arc<[HeaderName]>,
    /// The index in `targeted` of the field the directives came from; `None`: `Cache-Control`.
    chosen: Option<usize>,
    /// The single line of the field parsed (`None`: the field was absent).
    source: Option<HeaderValue>,
    /// `None` when the parse cannot be checked cheaply (several lines of the field, or a
    /// higher-ranked targeted field that is present but invalid): parsed on every use.
    directives: Option<ReuseDirectives>,
}

impl ParsedReuse {
    /// Parses the directives of `headers` for the `targeted` fields.
    pub(crate) fn of(headers: &HeaderMap, targeted: &Arc<[HeaderName]>) -> Self {
        let selection = select(headers, targeted);
        let (chosen, directives) = match selection.chosen {
            Some((index, directives)) => (Some(index), directives),
            None => (None, ResponseDirectives::from_headers(headers)),
        };
        let name = chosen.map_or(&header::CACHE_CONTROL, |index| &targeted[index]);
        let mut lines = headers.get_all(name).iter();
        let source = lines.next().cloned();
        let checkable = lines.next().is_none() && !selection.skipped_present;
        Self {
            targeted: Arc::clone(targeted),
            chosen,
            source,
            directives: checkable.then(|| ReuseDirectives::of(&directives)),
        }
    }

    /// The directives of `headers` for the `targeted` fields: the parsed ones while the list
    /// is the same, no targeted field ranked before the parsed one has appeared, and the
    /// parsed field still has exactly the parsed line; parsed again otherwise.
    pub(crate) fn directives_for(
        &self,
        headers: &HeaderMap,
        targeted: &Arc<[HeaderName]>,
    ) -> ReuseDirectives {
        match self.directives {
            Some(parsed) if self.still_holds(headers, targeted) => parsed,
            _ => ReuseDirectives::from_headers(headers, targeted),
        }
    }

    fn still_holds(&self, headers: &HeaderMap, targeted: &Arc<[HeaderName]>) -> bool {
        let same_list = Arc::ptr_eq(&self.targeted, targeted) || *self.targeted == **targeted;
        if !same_list {
            return false;
        }
        let ranked_before = self.chosen.unwrap_or(targeted.len());
        if targeted[..ranked_before]
            .iter()
            .any(|name| headers.contains_key(name))
        {
            return false;
        }
        let name = self
            .chosen
            .map_or(&header::CACHE_CONTROL, |index| &targeted[index]);
        let mut lines = headers.get_all(name).iter();
        lines.next() == self.source.as_ref() && lines.next().is_none()
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
    use crate::policy::{DEFAULT_TARGETED, StoredTimes, decide, decide_parsed};

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
        ReuseDirectives::from_headers(&headers, &DEFAULT_TARGETED)
    }

    #[test]
    fn the_parse_follows_the_headers() {
        let mut entry = entry(&["max-age=0, stale-while-revalidate=30"]);
        let swr = parsed("stale-while-revalidate=30");
        assert_eq!(entry.reuse_directives(&DEFAULT_TARGETED), swr);
        assert_eq!(
            entry
                .reuse_directives(&DEFAULT_TARGETED)
                .stale_while_revalidate,
            Some(Duration::from_secs(30))
        );
        // Headers changed without a new parse: the entry parses them again.
        entry
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert_eq!(
            entry.reuse_directives(&DEFAULT_TARGETED),
            parsed("no-cache")
        );
        assert!(
            entry.reuse_directives(&DEFAULT_TARGETED).no_cache
                && entry.reuse_directives(&DEFAULT_TARGETED).forbids_stale
        );
        entry
            .headers
            .append(header::CACHE_CONTROL, HeaderValue::from_static("max-age=9"));
        assert_eq!(
            entry.reuse_directives(&DEFAULT_TARGETED),
            parsed("no-cache, max-age=9")
        );
        entry.headers.remove(header::CACHE_CONTROL);
        assert_eq!(
            entry.reuse_directives(&DEFAULT_TARGETED),
            ReuseDirectives::default()
        );
        entry.reparse(&DEFAULT_TARGETED);
        assert_eq!(
            entry.reuse_directives(&DEFAULT_TARGETED),
            ReuseDirectives::default()
        );
        // Several lines are read together, as `ResponseDirectives` reads them.
        let entry = self::entry(&["stale-while-revalidate=5", "must-revalidate"]);
        assert_eq!(
            entry.reuse_directives(&DEFAULT_TARGETED),
            parsed("stale-while-revalidate=5, must-revalidate")
        );
        assert!(entry.reuse_directives(&DEFAULT_TARGETED).forbids_stale);
        // An absent field, then one added later.
        let mut entry = self::entry(&[]);
        assert_eq!(
            entry.reuse_directives(&DEFAULT_TARGETED),
            ReuseDirectives::default()
        );
        entry.headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("s-maxage=1"),
        );
        assert!(entry.reuse_directives(&DEFAULT_TARGETED).forbids_stale);
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
                        let got = decide_parsed(
                            &method,
                            &headers,
                            &meta,
                            entry.reuse_directives(&DEFAULT_TARGETED),
                            now,
                        );
                        assert_eq!(got, expected, "{line} / {request} / {lifetime} {age}");
                        kinds.insert(std::mem::discriminant(&got));
                    }
                }
            }
        }
        // The cases reach every kind of answer.
        assert_eq!(kinds.len(), 5, "{kinds:?}");
    }

    fn entry_with(pairs: &[(&'static str, &'static str)]) -> Entry {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        let now = SystemTime::now();
        let times = StoredTimes::from_response(now, now, &headers);
        Entry::new(StatusCode::OK, headers, Bytes::new(), times, Duration::ZERO)
    }

    /// RFC 9213: the stored parse comes from the targeted field when it applies, and follows
    /// the headers and the cache's list of targeted fields.
    #[test]
    fn the_parse_comes_from_the_targeted_field() {
        let cdn = &DEFAULT_TARGETED;
        let mut entry = entry_with(&[
            ("cache-control", "max-age=600, stale-while-revalidate=30"),
            ("cdn-cache-control", "no-cache"),
        ]);
        assert!(entry.reuse_directives(cdn).no_cache);
        assert_eq!(entry.reuse_directives(cdn).stale_while_revalidate, None);
        // A cache obeying no targeted field reads Cache-Control.
        let none: Arc<[HeaderName]> = Arc::from([]);
        let cc = entry.reuse_directives(&none);
        assert!(!cc.no_cache);
        assert_eq!(cc.stale_while_revalidate, Some(Duration::from_secs(30)));
        // A higher-ranked field of another list wins.
        let ours: Arc<[HeaderName]> = Arc::from([
            HeaderName::from_static("parapet-cache-control"),
            HeaderName::from_static("cdn-cache-control"),
        ]);
        entry.headers.insert(
            "parapet-cache-control",
            HeaderValue::from_static("max-age=5, must-revalidate"),
        );
        let got = entry.reuse_directives(&ours);
        assert!(!got.no_cache && got.forbids_stale);
        entry.reparse(&ours);
        assert_eq!(entry.reuse_directives(&ours), got);
        // An invalid targeted field is ignored: the next one applies.
        entry.headers.insert(
            "parapet-cache-control",
            HeaderValue::from_static("max-age=5,"),
        );
        assert!(entry.reuse_directives(&ours).no_cache);
        entry.reparse(&ours);
        assert!(entry.reuse_directives(&ours).no_cache);
        // Changed after the parse: read again.
        entry
            .headers
            .insert("cdn-cache-control", HeaderValue::from_static("max-age=60"));
        assert!(!entry.reuse_directives(&ours).no_cache);
        entry.headers.remove("parapet-cache-control");
        entry.headers.remove("cdn-cache-control");
        assert_eq!(
            entry.reuse_directives(&ours).stale_while_revalidate,
            Some(Duration::from_secs(30))
        );
        // A targeted field added to an entry parsed from Cache-Control is seen.
        let mut entry = entry_with(&[("cache-control", "max-age=600")]);
        assert!(!entry.reuse_directives(cdn).no_cache);
        entry
            .headers
            .insert("cdn-cache-control", HeaderValue::from_static("no-cache"));
        assert!(entry.reuse_directives(cdn).no_cache);
    }
}
