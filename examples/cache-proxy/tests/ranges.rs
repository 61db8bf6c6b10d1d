//! Byte ranges end to end (RFC 9110 §14, RFC 9111 §3.3): one range of a `GET` is answered by
//! the cache from a stored full `200`, fetched whole on a miss; several ranges go to the origin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::{HeaderMap, StatusCode};
use parapet_cache::{CacheLayer, RedisConfig};
use support::{Answer, Origin, cc, get};

const BODY: &str = "0123456789";
const LAST_MODIFIED: &str = "Sat, 01 Jan 2000 00:00:00 GMT";

/// A fresh `200` of [`BODY`] with a strong `ETag` and a strong `Last-Modified`.
fn fixed(_: usize, _: &HeaderMap) -> Answer {
    let mut headers = cc("max-age=60");
    headers.push(("etag", "\"v1\"".to_owned()));
    headers.push(("last-modified", LAST_MODIFIED.to_owned()));
    headers.push(("content-type", "text/plain".to_owned()));
    (200, headers, BODY.to_owned())
}

fn header<'a>(got: &'a support::Got, name: &str) -> &'a str {
    got.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn one_byte_range_is_answered_from_the_stored_response() {
    let origin = Origin::start(fixed).await;
    let proxy = origin.proxy().await;

    // A miss with a range: fetched whole (no Range upstream), stored, the range answered.
    let first = get(proxy, "/r", &[("range", "bytes=2-5")]).await;
    assert_eq!(first.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(first.body, "2345");
    assert_eq!(header(&first, "content-range"), "bytes 2-5/10");
    assert_eq!(header(&first, "content-length"), "4");
    assert_eq!(header(&first, "accept-ranges"), "bytes");
    assert_eq!(header(&first, "etag"), "\"v1\"");
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    {
        let seen = origin.seen.lock().unwrap();
        assert!(
            !seen[0].contains_key("range"),
            "the range was not sent upstream"
        );
    }

    // Hits: every form of a single range, Cache-Status a hit.
    for (range, body, content_range) in [
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=0-0", "0", "bytes 0-0/10"),
        ("bytes=8-100", "89", "bytes 8-9/10"),
        ("bytes=-100", BODY, "bytes 0-9/10"),
    ] {
        let got = get(proxy, "/r", &[("range", range)]).await;
        assert_eq!(got.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(got.body, body, "{range}");
        assert_eq!(header(&got, "content-range"), content_range, "{range}");
        assert_eq!(header(&got, "content-length"), body.len().to_string());
        assert!(got.cache_status().contains("hit"), "{}", got.cache_status());
    }

    // Unsatisfiable: 416 with the length, as a problem.
    for range in ["bytes=10-", "bytes=50-60", "bytes=-0"] {
        let got = get(proxy, "/r", &[("range", range)]).await;
        assert_eq!(got.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header(&got, "content-range"), "bytes */10");
        assert_eq!(header(&got, "content-type"), "application/problem+json");
        assert!(got.cache_status().contains("hit"), "{}", got.cache_status());
    }

    // Syntactically invalid: ignored, the full 200 from the cache.
    for range in ["bytes=5-2", "bytes=x-", "bytes"] {
        let got = get(proxy, "/r", &[("range", range)]).await;
        assert_eq!(got.status, StatusCode::OK, "{range}");
        assert_eq!(got.body, BODY);
        assert!(got.cache_status().contains("hit"), "{}", got.cache_status());
    }

    assert_eq!(origin.calls(), 1, "everything so far came from the cache");

    // Several ranges: the origin's to answer, with the Range it was sent.
    let several = get(proxy, "/r", &[("range", "bytes=0-1,4-5")]).await;
    assert!(
        several.cache_status().contains("fwd=request; detail=range"),
        "{}",
        several.cache_status()
    );
    assert_eq!(origin.calls(), 2);
    let seen = origin.seen.lock().unwrap();
    assert_eq!(seen[1]["range"], "bytes=0-1,4-5");
}

#[tokio::test]
async fn if_range_gives_the_part_only_for_the_current_validator() {
    let origin = Origin::start(fixed).await;
    let proxy = origin.proxy().await;
    assert_eq!(get(proxy, "/r", &[]).await.body, BODY);
    for (if_range, partial) in [
        ("\"v1\"", true),
        ("\"v0\"", false),
        ("W/\"v1\"", false),
        (LAST_MODIFIED, true),
        ("Sat, 01 Jan 2000 00:00:01 GMT", false),
        ("garbage", false),
    ] {
        let got = get(
            proxy,
            "/r",
            &[("range", "bytes=0-3"), ("if-range", if_range)],
        )
        .await;
        if partial {
            assert_eq!(got.status, StatusCode::PARTIAL_CONTENT, "{if_range}");
            assert_eq!(got.body, "0123");
        } else {
            assert_eq!(got.status, StatusCode::OK, "{if_range}");
            assert_eq!(got.body, BODY);
        }
        assert!(got.cache_status().contains("hit"), "{}", got.cache_status());
    }
    // If-Range without Range is ignored (not passed through as a precondition).
    let got = get(proxy, "/r", &[("if-range", "\"v0\"")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.cache_status().contains("hit"), "{}", got.cache_status());
    assert_eq!(origin.calls(), 1);
}

/// A stale entry is revalidated as usual (the origin sees a conditional request without
/// `Range`) and the range is answered from the refreshed entry, or from the new response.
#[tokio::test]
async fn a_stale_entry_is_revalidated_then_the_range_answered() {
    let origin = Origin::start(|n, request| {
        let current = if n < 2 { "\"v1\"" } else { "\"v2\"" };
        let mut headers = cc("max-age=0");
        headers.push(("etag", current.to_owned()));
        if request.get("if-none-match").is_some_and(|v| v == current) {
            return (304, headers, String::new());
        }
        let body = if n < 2 { BODY } else { "abcdefghij" };
        (200, headers, body.to_owned())
    })
    .await;
    let proxy = origin.proxy().await;
    let first = get(proxy, "/s", &[("range", "bytes=0-1")]).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (StatusCode::PARTIAL_CONTENT, "01")
    );

    let second = get(proxy, "/s", &[("range", "bytes=3-4")]).await;
    assert_eq!(
        (second.status, second.body.as_str()),
        (StatusCode::PARTIAL_CONTENT, "34")
    );
    assert!(
        second.cache_status().contains("fwd-status=304"),
        "{}",
        second.cache_status()
    );
    {
        let seen = origin.seen.lock().unwrap();
        assert_eq!(seen[1]["if-none-match"], "\"v1\"");
        assert!(!seen[1].contains_key("range"));
    }

    // The origin changed: the new 200 is stored and the range taken from it; an If-Range of
    // the old validator gets the whole new representation.
    let third = get(
        proxy,
        "/s",
        &[("range", "bytes=-2"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_eq!(
        (third.status, third.body.as_str()),
        (StatusCode::OK, "abcdefghij")
    );
    let fourth = get(
        proxy,
        "/s",
        &[("range", "bytes=-2"), ("if-range", "\"v2\"")],
    )
    .await;
    assert_eq!(
        (fourth.status, fourth.body.as_str()),
        (StatusCode::PARTIAL_CONTENT, "ij")
    );
}

/// The range is of the representation as the origin sent it (its `Content-Encoding`), and
/// the lz4 compression of the Redis tier is invisible: another instance answers the same
/// bytes from the Redis copy.
#[tokio::test]
async fn ranges_apply_to_the_encoded_representation_and_survive_the_redis_tier() {
    parapet_testkit::require_redis().await;
    let encoded: String = "gz".repeat(2000) + "END";
    let body = encoded.clone();
    let origin = Origin::start(move |_, _| {
        let mut headers = cc("max-age=60");
        headers.push(("content-encoding", "gzip".to_owned()));
        (200, headers, body.clone())
    })
    .await;
    let prefix = parapet_testkit::unique_prefix("proxy-ranges");
    let cache = |prefix: &str| {
        CacheLayer::builder()
            .single_tenant()
            .local(1 << 20)
            .redis(RedisConfig::new(parapet_testkit::redis_url()))
            .prefix(prefix)
            .build()
            .unwrap()
    };
    let one = origin.proxy_with(cache(&prefix)).await;
    let first = get(one, "/z", &[("range", "bytes=-3")]).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (StatusCode::PARTIAL_CONTENT, "END")
    );
    assert_eq!(header(&first, "content-encoding"), "gzip");
    assert_eq!(header(&first, "content-range"), "bytes 4000-4002/4003");

    let two = origin.proxy_with(cache(&prefix)).await;
    let got = get(two, "/z", &[("range", "bytes=3998-4000")]).await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.body, "gzE");
    assert!(
        got.cache_status().contains("detail=redis"),
        "{}",
        got.cache_status()
    );
    assert_eq!(header(&got, "content-encoding"), "gzip");
    assert_eq!(origin.calls(), 1);
}

/// RFC 9111 §3.3-3.4 deliberately not implemented: a `206` never enters the store. Several
/// ranges pass to the origin and its `206` is not stored; a `206` the origin sends unasked
/// is refused (`partial-content`); the full `200` that follows is stored and ranges are cut
/// from it.
#[tokio::test]
async fn a_206_from_the_origin_is_never_stored() {
    let origin = Origin::start(|n, request| {
        let mut headers = cc("max-age=60");
        headers.push(("etag", "\"v1\"".to_owned()));
        if n == 1 || request.contains_key("range") {
            headers.push(("content-range", "bytes 0-1/10".to_owned()));
            return (206, headers, "01".to_owned());
        }
        (200, headers, BODY.to_owned())
    })
    .await;
    let proxy = origin.proxy().await;
    let several = get(proxy, "/p", &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!(several.status, StatusCode::PARTIAL_CONTENT);
    assert!(
        several.cache_status().contains("fwd=request; detail=range"),
        "{}",
        several.cache_status()
    );
    // Not stored: the next plain GET goes to the origin, which answers 206 unasked.
    let unasked = get(proxy, "/p", &[]).await;
    assert_eq!(unasked.status, StatusCode::PARTIAL_CONTENT);
    assert!(
        unasked.cache_status().contains("detail=partial-content"),
        "{}",
        unasked.cache_status()
    );
    // Still nothing stored: a single range goes to the origin (without Range) and the full
    // 200 is stored, the range cut from it.
    let single = get(proxy, "/p", &[("range", "bytes=4-5")]).await;
    assert_eq!(
        (single.status, single.body.as_str()),
        (StatusCode::PARTIAL_CONTENT, "45")
    );
    assert_eq!(header(&single, "content-range"), "bytes 4-5/10");
    assert!(
        single.cache_status().contains("stored"),
        "{}",
        single.cache_status()
    );
    let full = get(proxy, "/p", &[]).await;
    assert_eq!((full.status, full.body.as_str()), (StatusCode::OK, BODY));
    assert!(
        full.cache_status().contains("hit"),
        "{}",
        full.cache_status()
    );
    assert_eq!(origin.calls(), 3);
}
