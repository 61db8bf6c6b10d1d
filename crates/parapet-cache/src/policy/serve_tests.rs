use super::*;
use crate::policy::test_support::{Pairs, at, date, headers, secs};

fn times() -> StoredTimes {
    StoredTimes {
        request_time: at(0),
        response_time: at(0),
        date: Some(at(0)),
        age_header: None,
    }
}

fn meta(h: &HeaderMap, lifetime: u64) -> StoredMeta<'_> {
    StoredMeta {
        status: StatusCode::OK,
        headers: h,
        times: times(),
        lifetime: secs(lifetime),
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    Fresh(u64),
    Stale(u64, StaleReason),
    Revalidate,
    Gateway,
    NotServable,
    Authorization,
}

fn summarize(d: &Decision) -> Want {
    match d {
        Decision::Fresh { age } => Want::Fresh(age.as_secs()),
        Decision::StaleServable { age, reason } => Want::Stale(age.as_secs(), *reason),
        Decision::Revalidate { .. } => Want::Revalidate,
        Decision::GatewayTimeout => Want::Gateway,
        Decision::NotServable => Want::NotServable,
        Decision::AuthorizationNotShared => Want::Authorization,
    }
}

#[test]
fn decision_table() {
    use StaleReason::{MaxStale, WhileRevalidate};
    use Want::{Fresh, Gateway, NotServable, Revalidate, Stale};
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, u64, &str, u64, Want)> = vec![
        // (name, stored Cache-Control, lifetime, request Cache-Control, now, expected)
        ("fresh", "max-age=60", 60, "", 10, Fresh(10)),
        ("stale at lifetime", "max-age=60", 60, "", 60, Revalidate), // §4.2: fresh iff lifetime > age
        ("stale", "max-age=60", 60, "", 100, Revalidate),
        // §5.2.1.2: max-stale without a value accepts any staleness.
        ("max-stale any", "max-age=60", 60, "max-stale", 10_000, Stale(10_000, MaxStale)),
        ("max-stale within", "max-age=60", 60, "max-stale=30", 90, Stale(90, MaxStale)),
        ("max-stale exceeded", "max-age=60", 60, "max-stale=30", 91, Revalidate),
        // §5.2.1.3: min-fresh.
        ("min-fresh ok", "max-age=60", 60, "min-fresh=20", 40, Fresh(40)),
        ("min-fresh too little", "max-age=60", 60, "min-fresh=20", 41, Revalidate),
        // §5.2.1.1: request max-age bounds the age, fresh or not.
        ("req max-age ok", "max-age=60", 60, "max-age=30", 30, Fresh(30)),
        ("req max-age exceeded", "max-age=60", 60, "max-age=30", 31, Revalidate),
        ("req max-age=0 at age 0", "max-age=60", 60, "max-age=0", 0, Fresh(0)),
        ("req max-age=0", "max-age=60", 60, "max-age=0", 1, Revalidate),
        ("req max-age blocks max-stale", "max-age=60", 60, "max-age=70, max-stale", 80, Revalidate),
        // §5.2.1.4 / §5.2.2.4: no-cache forces revalidation, even when fresh.
        ("req no-cache", "max-age=60", 60, "no-cache", 1, Revalidate),
        ("resp no-cache", "no-cache, max-age=60", 60, "", 1, Revalidate),
        ("qualified no-cache is not revalidation", "no-cache=\"set-cookie\", max-age=60", 60, "", 1, Fresh(1)),
        // §5.2.1.5: request no-store does not prevent serving.
        ("req no-store", "max-age=60", 60, "no-store", 1, Fresh(1)),
        // RFC 5861 §3.
        ("swr inside window", "max-age=60, stale-while-revalidate=30", 60, "", 90, Stale(90, WhileRevalidate)),
        ("swr outside window", "max-age=60, stale-while-revalidate=30", 60, "", 91, Revalidate),
        ("swr not with min-fresh", "max-age=60, stale-while-revalidate=30", 60, "min-fresh=1", 70, Revalidate),
        ("swr not past req max-age", "max-age=60, stale-while-revalidate=30", 60, "max-age=65", 70, Revalidate),
        // §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: no stale use at all.
        ("must-revalidate blocks max-stale", "max-age=60, must-revalidate", 60, "max-stale", 61, Revalidate),
        ("must-revalidate blocks swr", "max-age=60, must-revalidate, stale-while-revalidate=30", 60, "", 61, Revalidate),
        ("proxy-revalidate blocks swr", "max-age=60, proxy-revalidate, stale-while-revalidate=30", 60, "", 61, Revalidate),
        ("s-maxage blocks max-stale", "s-maxage=60", 60, "max-stale", 61, Revalidate),
        ("must-revalidate fresh is fine", "max-age=60, must-revalidate", 60, "", 59, Fresh(59)),
        // §5.2.1.7: only-if-cached.
        ("only-if-cached fresh", "max-age=60", 60, "only-if-cached", 10, Fresh(10)),
        ("only-if-cached stale", "max-age=60", 60, "only-if-cached", 61, Gateway),
        ("only-if-cached + max-stale", "max-age=60", 60, "only-if-cached, max-stale", 61, Stale(61, MaxStale)),
        ("only-if-cached + no-cache", "max-age=60", 60, "only-if-cached, no-cache", 1, Gateway),
    ];
    for (name, stored_cc, lifetime, request_cc, now, expected) in cases {
        let stored = headers(&[("cache-control", stored_cc)]);
        let request = if request_cc.is_empty() {
            HeaderMap::new()
        } else {
            headers(&[("cache-control", request_cc)])
        };
        let d = decide(&Method::GET, &request, &meta(&stored, lifetime), at(now));
        assert_eq!(summarize(&d), expected, "case {name}");
    }
    // Only GET and HEAD can be answered from the cache.
    let stored = headers(&[("cache-control", "max-age=60")]);
    let cases = [
        (Method::HEAD, Fresh(1)),
        (Method::POST, NotServable),
        (Method::PUT, NotServable),
    ];
    for (method, expected) in cases {
        let d = decide(&method, &HeaderMap::new(), &meta(&stored, 60), at(1));
        assert_eq!(summarize(&d), expected, "method {method}");
    }
}

/// RFC 9111 §3.5 at reuse: a request with `Authorization` gets a stored response only when the
/// response says it may be shared, fresh or not.
#[test]
fn authorization_table() {
    use Want::{Authorization, Fresh, Gateway, Revalidate};
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Pairs<'_>, u64, Want)> = vec![
        // (name, stored Cache-Control, request headers, now, expected); lifetime is 60.
        ("plain fresh", "max-age=60", vec![("authorization", "Bearer b")], 1, Authorization),
        ("plain stale", "max-age=60", vec![("authorization", "Bearer b")], 61, Authorization),
        ("no credentials", "max-age=60", vec![], 1, Fresh(1)),
        ("public", "public, max-age=60", vec![("authorization", "Bearer b")], 1, Fresh(1)),
        ("s-maxage", "s-maxage=60", vec![("authorization", "Bearer b")], 1, Fresh(1)),
        ("must-revalidate", "max-age=60, must-revalidate", vec![("authorization", "Bearer b")], 1, Fresh(1)),
        ("public stale", "public, max-age=60", vec![("authorization", "Bearer b")], 61, Revalidate),
        ("private= is not public", "max-age=60, private=\"x-a\"", vec![("authorization", "Bearer b")], 1, Authorization),
        ("empty credentials count", "max-age=60", vec![("authorization", "")], 1, Authorization),
        ("only-if-cached", "max-age=60", vec![("authorization", "Bearer b"), ("cache-control", "only-if-cached")], 1, Gateway),
    ];
    for (name, stored_cc, request, now, expected) in cases {
        let stored = headers(&[("cache-control", stored_cc)]);
        let d = decide(
            &Method::GET,
            &headers(&request),
            &meta(&stored, 60),
            at(now),
        );
        assert_eq!(summarize(&d), expected, "case {name}");
    }
}

#[test]
fn pragma_no_cache_forces_revalidation() {
    let stored = headers(&[("cache-control", "max-age=60")]);
    let request = headers(&[("pragma", "no-cache")]);
    let d = decide(&Method::GET, &request, &meta(&stored, 60), at(1));
    assert_eq!(summarize(&d), Want::Revalidate);
}

#[test]
fn upstream_age_counts() {
    let stored = headers(&[("cache-control", "max-age=60")]);
    let mut m = meta(&stored, 60);
    m.times.age_header = Some(secs(50));
    let cases = [(5, Want::Fresh(55)), (10, Want::Revalidate)];
    for (now, expected) in cases {
        let d = decide(&Method::GET, &HeaderMap::new(), &m, at(now));
        assert_eq!(summarize(&d), expected, "now {now}");
    }
}

#[test]
fn revalidation_headers() {
    let lm = date(0);
    let cases: Vec<(Pairs<'_>, Pairs<'_>)> = vec![
        (vec![("etag", "\"v1\"")], vec![("if-none-match", "\"v1\"")]),
        (
            vec![("last-modified", &lm)],
            vec![("if-modified-since", &lm)],
        ),
        // §4.3.1: send both validators when both exist.
        (
            vec![("etag", "W/\"v1\""), ("last-modified", &lm)],
            vec![("if-none-match", "W/\"v1\""), ("if-modified-since", &lm)],
        ),
        (vec![], vec![]),
        // Several ETag lines are malformed: no If-None-Match.
        (vec![("etag", "\"a\""), ("etag", "\"b\"")], vec![]),
    ];
    for (stored, expected) in cases {
        let mut stored = headers(&stored);
        stored.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
        let d = decide(&Method::GET, &HeaderMap::new(), &meta(&stored, 1), at(5));
        assert_eq!(
            d,
            Decision::Revalidate {
                conditional_headers: headers(&expected)
            },
            "{stored:?}"
        );
    }
}

#[test]
fn stale_if_error_table() {
    #[rustfmt::skip]
    let cases = [
        // (stored Cache-Control, request Cache-Control, now, allowed); lifetime is 60.
        ("max-age=60, stale-if-error=30", "", 90, true),
        ("max-age=60, stale-if-error=30", "", 91, false),
        ("max-age=60", "stale-if-error=30", 90, true), // the request's window (RFC 5861 §4)
        ("max-age=60", "stale-if-error=30", 91, false),
        ("max-age=60, stale-if-error=10", "stale-if-error=30", 90, true), // either window
        ("max-age=60", "max-stale=40", 100, true),
        ("max-age=60", "", 61, false),
        ("max-age=60", "", 10, false), // no window at all: nothing allows it
        ("max-age=60, stale-if-error=0", "", 59, true), // fresh: staleness 0
        ("max-age=60, must-revalidate, stale-if-error=30", "", 61, false),
        ("max-age=60, proxy-revalidate, stale-if-error=30", "", 61, false),
        ("s-maxage=60, stale-if-error=30", "", 61, false),
        ("no-cache, max-age=60, stale-if-error=30", "", 61, false),
    ];
    for (stored_cc, request_cc, now, expected) in cases {
        let stored = headers(&[("cache-control", stored_cc)]);
        let request = if request_cc.is_empty() {
            HeaderMap::new()
        } else {
            headers(&[("cache-control", request_cc)])
        };
        let got = stale_if_error_allowed(&meta(&stored, 60), &request, at(now));
        assert_eq!(got, expected, "{stored_cc} / {request_cc} at {now}");
    }
}

/// RFC 8246 `immutable` only concerns a fresh response: once stale it is revalidated like any
/// other, and a client's `no-cache` still revalidates a fresh one.
#[test]
fn immutable_is_fresh_only() {
    use Want::{Fresh, Revalidate, Stale};
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, u64, Want)> = vec![
        // (name, stored Cache-Control, request Cache-Control, now, expected); lifetime is 60.
        ("fresh", "max-age=60, immutable", "", 10, Fresh(10)),
        ("stale", "max-age=60, immutable", "", 61, Revalidate),
        ("stale long after", "max-age=60, immutable", "", 10_000, Revalidate),
        ("request no-cache", "max-age=60, immutable", "no-cache", 10, Revalidate),
        ("stale windows still apply", "max-age=60, immutable, stale-while-revalidate=30", "", 61, Stale(61, StaleReason::WhileRevalidate)),
        ("must-revalidate still applies", "max-age=60, immutable, must-revalidate", "max-stale", 61, Revalidate),
    ];
    for (name, stored_cc, request_cc, now, expected) in cases {
        let stored = headers(&[("cache-control", stored_cc)]);
        let request = if request_cc.is_empty() {
            HeaderMap::new()
        } else {
            headers(&[("cache-control", request_cc)])
        };
        let d = decide(&Method::GET, &request, &meta(&stored, 60), at(now));
        assert_eq!(summarize(&d), expected, "case {name}");
    }
}

/// RFC 9213: a usable `CDN-Cache-Control` replaces `Cache-Control` for reuse too (`no-cache`,
/// `must-revalidate`, the stale windows, sharing with `Authorization`), both ways; an invalid
/// one changes nothing.
#[test]
fn targeted_field_decides_reuse() {
    use StaleReason::{MaxStale, WhileRevalidate};
    use Want::{Authorization, Fresh, Revalidate, Stale};
    let auth = [("authorization", "Bearer b")];
    let max_stale = [("cache-control", "max-stale")];
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, RequestPairs<'_>, u64, Want)> = vec![
        // (name, Cache-Control, CDN-Cache-Control, request, now, expected); lifetime is 60.
        ("cdn no-cache over fresh cc", "max-age=60", "max-age=60, no-cache", &[], 10, Revalidate),
        ("cdn fresh over cc no-cache", "no-cache", "max-age=60", &[], 10, Fresh(10)),
        ("cdn must-revalidate blocks max-stale", "max-age=60", "max-age=60, must-revalidate", &max_stale, 61, Revalidate),
        ("cc must-revalidate ignored under cdn", "max-age=60, must-revalidate", "max-age=60", &max_stale, 61, Stale(61, MaxStale)),
        ("cdn s-maxage blocks max-stale", "max-age=60", "s-maxage=60", &max_stale, 61, Revalidate),
        ("swr only from cdn", "max-age=60, stale-while-revalidate=30", "max-age=60", &[], 70, Revalidate),
        ("cdn swr", "max-age=60", "max-age=60, stale-while-revalidate=30", &[], 70, Stale(70, WhileRevalidate)),
        ("cdn public shares with auth", "max-age=60", "public, max-age=60", &auth, 10, Fresh(10)),
        ("cc public ignored under cdn", "public, max-age=60", "max-age=60", &auth, 10, Authorization),
        ("invalid cdn: cc no-cache applies", "no-cache", "max-age=60,", &[], 10, Revalidate),
    ];
    for (name, cc, cdn, request, now, expected) in cases {
        let stored = headers(&[("cache-control", cc), ("cdn-cache-control", cdn)]);
        let d = decide(&Method::GET, &headers(request), &meta(&stored, 60), at(now));
        assert_eq!(summarize(&d), expected, "case {name}");
    }
    // stale-if-error follows the same field.
    #[rustfmt::skip]
    let cases = [
        ("max-age=60, stale-if-error=30", "max-age=60, must-revalidate", false),
        ("max-age=60, must-revalidate", "max-age=60, stale-if-error=30", true),
        ("max-age=60, stale-if-error=30", "max-age=60", false),
    ];
    for (cc, cdn, expected) in cases {
        let stored = headers(&[("cache-control", cc), ("cdn-cache-control", cdn)]);
        let got = stale_if_error_allowed(&meta(&stored, 60), &HeaderMap::new(), at(70));
        assert_eq!(got, expected, "{cc} / {cdn}");
    }
}

/// Request header pairs in a table row.
type RequestPairs<'a> = &'a [(&'a str, &'a str)];
