use super::*;
use http_body_util::BodyExt;

fn headers(fields: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        map.append(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn range(value: &str) -> RangeRequest {
    classify(&headers(&[("range", value)]))
}

#[test]
fn range_headers_are_classified() {
    use ByteRange::{From, FromTo, Suffix};
    use RangeRequest::{Full, PassThrough, Single};
    assert_eq!(classify(&HeaderMap::new()), Full);
    let cases = [
        ("bytes=0-499", Single(FromTo(0, 499))),
        ("bytes=500-", Single(From(500))),
        ("bytes=-500", Single(Suffix(500))),
        ("Bytes=5-5", Single(FromTo(5, 5))),
        (" bytes= 1-2 ", Single(FromTo(1, 2))),
        ("bytes=1-2,", Single(FromTo(1, 2))),
        ("bytes=99999999999999999999999-", Single(From(u64::MAX))),
        ("bytes=0-1,5-6", PassThrough),
        ("bytes=0-1, -3", PassThrough),
        ("items=0-1", PassThrough),
        // Syntactically invalid: ignored.
        ("bytes=5-4", Full),
        ("bytes=-", Full),
        ("bytes=", Full),
        ("bytes=a-b", Full),
        ("bytes=1-2,x", Full),
        ("bytes 0-1", Full),
        ("bytes=+1-2", Full),
        ("=0-1", Full),
        ("by tes=0-1", Full),
    ];
    for (value, expected) in cases {
        assert_eq!(range(value), expected, "{value}");
    }
    // Range is not a list field: two lines join into a value that does not parse.
    let two = headers(&[("range", "bytes=0-1"), ("range", "bytes=3-4")]);
    assert_eq!(classify(&two), Full);
}

#[test]
fn ranges_resolve_against_the_length() {
    use ByteRange::{From, FromTo, Suffix};
    assert_eq!(FromTo(0, 4).resolve(10), Some((0, 4)));
    assert_eq!(FromTo(5, 100).resolve(10), Some((5, 9)));
    assert_eq!(FromTo(10, 12).resolve(10), None);
    assert_eq!(From(9).resolve(10), Some((9, 9)));
    assert_eq!(From(10).resolve(10), None);
    assert_eq!(Suffix(3).resolve(10), Some((7, 9)));
    assert_eq!(Suffix(30).resolve(10), Some((0, 9)));
    assert_eq!(Suffix(0).resolve(10), None);
    assert_eq!(From(0).resolve(0), None);
    assert_eq!(Suffix(1).resolve(0), None);
}

#[test]
fn if_range_compares_strong_validators_only() {
    let stored = headers(&[
        ("etag", "\"v1\""),
        ("last-modified", "Sat, 01 Jan 2000 00:00:00 GMT"),
        ("date", "Sat, 01 Jan 2000 00:00:01 GMT"),
    ]);
    let holds = |value: &str| if_range_holds(&headers(&[("if-range", value)]), &stored);
    assert!(if_range_holds(&HeaderMap::new(), &stored));
    assert!(holds("\"v1\""));
    assert!(!holds("\"v2\""));
    assert!(!holds("W/\"v1\""), "weak tags never match");
    assert!(holds("Sat, 01 Jan 2000 00:00:00 GMT"));
    assert!(!holds("Sat, 01 Jan 2000 00:00:01 GMT"), "exact match only");
    assert!(!holds("yesterday"));
    // A weak stored tag matches nothing.
    let weak = headers(&[("etag", "W/\"v1\"")]);
    assert!(!if_range_holds(&headers(&[("if-range", "\"v1\"")]), &weak));
    // Last-Modified less than a second before Date is weak.
    let close = headers(&[
        ("last-modified", "Sat, 01 Jan 2000 00:00:00 GMT"),
        ("date", "Sat, 01 Jan 2000 00:00:00 GMT"),
    ]);
    let date = headers(&[("if-range", "Sat, 01 Jan 2000 00:00:00 GMT")]);
    assert!(!if_range_holds(&date, &close));
    assert!(!if_range_holds(&date, &headers(&[])));
    // Two If-Range lines: no single validator.
    let two = headers(&[("if-range", "\"v1\""), ("if-range", "\"v1\"")]);
    assert!(!if_range_holds(&two, &stored));
}

#[test]
fn a_range_applies_to_a_get_of_a_200_only() {
    let request = headers(&[("range", "bytes=2-4")]);
    let ok = StatusCode::OK;
    let none = HeaderMap::new();
    assert_eq!(
        applies(&Method::GET, &request, ok, &none, 10),
        Some(Ranged::Partial(2, 4))
    );
    assert_eq!(applies(&Method::HEAD, &request, ok, &none, 10), None);
    let not_found = StatusCode::NOT_FOUND;
    assert_eq!(applies(&Method::GET, &request, not_found, &none, 10), None);
    assert_eq!(
        applies(&Method::GET, &request, ok, &none, 2),
        Some(Ranged::Unsatisfiable)
    );
    let stale = headers(&[("range", "bytes=2-4"), ("if-range", "\"old\"")]);
    let current = headers(&[("etag", "\"new\"")]);
    assert_eq!(applies(&Method::GET, &stale, ok, &current, 10), None);
}

#[tokio::test]
async fn partial_and_unsatisfiable_responses() {
    let body = Bytes::from_static(b"0123456789");
    let stored = headers(&[("content-type", "text/plain"), ("content-length", "10")]);
    let response = respond(Ranged::Partial(7, 9), &stored, &body);
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()["content-range"], "bytes 7-9/10");
    assert_eq!(response.headers()["content-length"], "3");
    assert_eq!(response.headers()["accept-ranges"], "bytes");
    assert_eq!(response.headers()["content-type"], "text/plain");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"789");

    let response = respond(Ranged::Unsatisfiable, &stored, &body);
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()["content-range"], "bytes */10");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}
