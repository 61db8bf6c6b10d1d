use proptest::prelude::*;

use super::*;
use crate::policy::test_support::{Pairs, at, date, headers, secs};

const OK: StatusCode = StatusCode::OK;

/// Expected lifetime in seconds and its source.
type Expected = Option<(u64, FreshnessSource)>;

#[test]
fn lifetime_sources_and_precedence() {
    let day = 86_400;
    let cfg = PolicyConfig::default();
    let ttl = PolicyConfig::default().default_ttl(secs(30));
    let no_heur = PolicyConfig::default()
        .heuristics_enabled(false)
        .default_ttl(secs(30));
    let d0 = date(0);
    let exp100 = date(100);
    let lm_1000 = httpdate::fmt_http_date(at(0) - secs(1000));
    let lm_old = httpdate::fmt_http_date(at(0) - secs(100 * day));
    let lm_future = date(50);
    let exp100_lower = exp100.to_lowercase();
    #[rustfmt::skip]
    let cases: Vec<(&str, Pairs<'_>, StatusCode, &PolicyConfig, Expected)> = vec![
        // §4.2.1: s-maxage first for a shared cache, then max-age, then Expires.
        ("s-maxage wins", vec![("cache-control", "max-age=10, s-maxage=20"), ("expires", &exp100), ("date", &d0)], OK, &cfg, Some((20, FreshnessSource::SMaxAge))),
        ("max-age over Expires", vec![("cache-control", "max-age=10"), ("expires", &exp100), ("date", &d0)], OK, &cfg, Some((10, FreshnessSource::MaxAge))),
        ("Expires - Date", vec![("expires", &exp100), ("date", &d0)], OK, &cfg, Some((100, FreshnessSource::Expires))),
        // Missing Date: response_time (at(0) below) stands in.
        ("Expires, no Date", vec![("expires", &exp100)], OK, &cfg, Some((100, FreshnessSource::Expires))),
        // RFC 9110 §5.6.7: a recipient reads a date whatever the letter case of its names.
        ("Expires in lower case", vec![("expires", &exp100_lower), ("date", &d0)], OK, &cfg, Some((100, FreshnessSource::Expires))),
        // §5.3: invalid Expires means already expired.
        ("Expires: 0", vec![("expires", "0"), ("date", &d0)], OK, &cfg, Some((0, FreshnessSource::Expires))),
        ("Expires before Date", vec![("expires", &d0), ("date", &exp100)], OK, &cfg, Some((0, FreshnessSource::Expires))),
        ("Expires beats heuristic", vec![("expires", &exp100), ("last-modified", &lm_1000)], OK, &ttl, Some((100, FreshnessSource::Expires))),
        // §4.2.2: 10% of Date - Last-Modified, capped at one day.
        ("heuristic", vec![("date", &d0), ("last-modified", &lm_1000)], OK, &cfg, Some((100, FreshnessSource::Heuristic))),
        ("heuristic capped", vec![("date", &d0), ("last-modified", &lm_old)], OK, &cfg, Some((day, FreshnessSource::Heuristic))),
        ("heuristic beats default ttl", vec![("last-modified", &lm_1000)], OK, &ttl, Some((100, FreshnessSource::Heuristic))),
        ("heuristics off -> default ttl", vec![("last-modified", &lm_1000)], OK, &no_heur, Some((30, FreshnessSource::DefaultTtl))),
        ("Last-Modified in the future", vec![("date", &d0), ("last-modified", &lm_future)], OK, &cfg, None),
        ("heuristic needs cacheable status", vec![("last-modified", &lm_1000)], StatusCode::INTERNAL_SERVER_ERROR, &cfg, None),
        ("public allows heuristic", vec![("cache-control", "public"), ("last-modified", &lm_1000)], StatusCode::INTERNAL_SERVER_ERROR, &cfg, Some((100, FreshnessSource::Heuristic))),
        ("default ttl", vec![], OK, &ttl, Some((30, FreshnessSource::DefaultTtl))),
        ("default ttl needs cacheable status", vec![], StatusCode::INTERNAL_SERVER_ERROR, &ttl, None),
        ("nothing", vec![("etag", "\"x\"")], OK, &cfg, None),
        ("invalid max-age is stale", vec![("cache-control", "max-age=-5"), ("expires", &exp100)], OK, &cfg, Some((0, FreshnessSource::MaxAge))),
    ];
    for (name, h, status, config, expected) in cases {
        let got = freshness_lifetime(status, &headers(&h), config, at(0));
        let expected = expected.map(|(s, source)| FreshnessLifetime {
            duration: secs(s),
            source,
        });
        assert_eq!(got, expected, "case {name}");
    }
}

#[test]
fn heuristic_fraction_is_configurable() {
    let lm = httpdate::fmt_http_date(at(0) - secs(1000));
    let h = headers(&[("date", &date(0)), ("last-modified", &lm)]);
    let cfg = PolicyConfig::default().heuristic_fraction(0.5);
    let got = freshness_lifetime(OK, &h, &cfg, at(0)).map(|l| l.duration);
    assert_eq!(got, Some(secs(500)));
}

fn times(request: u64, response: u64, date: Option<u64>, age: Option<u64>) -> StoredTimes {
    StoredTimes {
        request_time: at(request),
        response_time: at(response),
        date: date.map(at),
        age_header: age.map(secs),
    }
}

#[test]
fn current_age_table() {
    // RFC 9111 §4.2.3, values in seconds relative to at(0).
    #[rustfmt::skip]
    let cases = [
        // (request_time, response_time, Date, Age, now, expected current_age)
        (10, 10, Some(10), None, 10, 0),        // fresh off the wire
        (10, 10, Some(10), None, 25, 15),       // resident_time only
        (10, 10, None, None, 25, 15),           // no Date: date_value = response_time
        (10, 10, Some(4), None, 10, 6),         // apparent_age = response_time - Date
        (10, 10, Some(20), None, 10, 0),        // Date in the future: apparent_age clamps to 0
        (7, 10, Some(10), None, 10, 3),         // response_delay added to the Age value
        (7, 10, Some(10), Some(30), 10, 33),    // upstream Age + response_delay
        (7, 10, Some(0), Some(2), 12, 12),      // apparent_age (10) beats corrected age (5)
        (10, 10, Some(10), Some(60), 100, 150), // Age from upstream + resident time
        (12, 10, Some(10), None, 10, 0),        // request after response (clock skew): delay 0
        (10, 10, Some(10), None, 5, 0),         // now before response_time: resident time 0
    ];
    for (req, resp, date, age, now, expected) in cases {
        let t = times(req, resp, date, age);
        assert_eq!(current_age(&t, at(now)), secs(expected), "{t:?} now={now}");
    }
}

#[test]
fn stored_times_from_response() {
    let h = headers(&[("date", &date(3)), ("age", "12, 40")]);
    let t = StoredTimes::from_response(at(1), at(5), &h);
    // §5.1: a list-valued Age uses its first member.
    assert_eq!(t, times(1, 5, Some(3), Some(12)));
    let bad = headers(&[("date", "yesterday"), ("age", "-3")]);
    let t = StoredTimes::from_response(at(1), at(5), &bad);
    assert_eq!(t, times(1, 5, None, None));
}

#[test]
fn freshness_checks() {
    let t = times(0, 0, Some(0), None);
    let cases = [
        // (lifetime, now, fresh, remaining)
        (30, 0, true, 30),
        (30, 29, true, 1),
        (30, 30, false, 0), // §4.2: fresh only while lifetime > current_age
        (30, 100, false, 0),
        (0, 0, false, 0),
    ];
    for (lifetime, now, fresh, remaining) in cases {
        assert_eq!(is_fresh(secs(lifetime), &t, at(now)), fresh, "now={now}");
        assert_eq!(
            remaining_freshness(secs(lifetime), &t, at(now)),
            secs(remaining)
        );
    }
}

#[test]
fn age_header_values() {
    let cases = [
        (secs(0), "0"),
        (Duration::from_millis(1_999), "1"),
        (secs(42), "42"),
        (secs(2_147_483_648), "2147483648"),
        (secs(u64::MAX), "2147483648"), // §1.2.2: saturate at 2^31
    ];
    for (age, expected) in cases {
        assert_eq!(age_header(age), expected, "age {age:?}");
    }
}

proptest! {
    #[test]
    fn current_age_is_monotonic_in_now(
        request in 0u64..1_000,
        delay in 0u64..1_000,
        date_offset in -2_000i64..2_000,
        age in proptest::option::of(0u64..1_000_000),
        now_a in 0u64..10_000,
        step in 0u64..10_000,
    ) {
        let response = request + delay;
        let date = response.saturating_add_signed(date_offset);
        let t = times(request, response, Some(date), age);
        let earlier = current_age(&t, at(now_a));
        let later = current_age(&t, at(now_a + step));
        prop_assert!(earlier <= later);
        // Once resident, age grows exactly with the clock.
        if now_a >= response {
            prop_assert_eq!(later - earlier, secs(step));
        }
    }
}
