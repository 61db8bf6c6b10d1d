//! Helpers shared by the policy's unit tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

/// Builds a header map, appending (so repeated names make several lines).
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// A fixed instant plus `secs` seconds (whole seconds, so HTTP-dates round-trip).
pub(crate) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// [`at`] formatted as an HTTP-date.
pub(crate) fn date(secs: u64) -> String {
    httpdate::fmt_http_date(at(secs))
}

/// Shorthand for `Duration::from_secs`.
pub(crate) const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Header pairs in a test table row.
pub(crate) type Pairs<'a> = Vec<(&'a str, &'a str)>;
