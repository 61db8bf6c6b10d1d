//! The cache's HTTP rules end to end: the proxy in front of a real origin on 127.0.0.1, each
//! rule seen from the client (status, body, `Cache-Status`) and from the origin (what reached
//! it, how often).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, HeaderName, StatusCode};
use hyper_util::client::legacy::Client;
use parapet_cache::CacheLayer;
use support::{Answer, Got, Origin, cc, get};

/// RFC 9111 §3.5 when serving: a response stored for a request without credentials is not
/// served to one with `Authorization` unless it says it may be (`public`, `s-maxage`,
/// `must-revalidate`).
#[tokio::test]
async fn a_stored_response_reaches_an_authorized_request_only_when_shared() {
    let origin = Origin::start(|n, request| {
        let who = request
            .get("authorization")
            .map_or("anonymous", |v| v.to_str().unwrap())
            .to_owned();
        (200, cc("max-age=60"), format!("{n} for {who}"))
    })
    .await;
    let proxy = origin.proxy().await;
    let first = get(proxy, "/a", &[]).await;
    assert_eq!(first.body, "0 for anonymous");
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );

    let authorized = get(proxy, "/a", &[("authorization", "Bearer alice")]).await;
    assert_eq!(authorized.status, StatusCode::OK);
    assert_eq!(authorized.body, "1 for Bearer alice", "went to the origin");
    assert!(
        authorized.cache_status().contains("detail=authorization"),
        "{}",
        authorized.cache_status()
    );
    assert!(!authorized.cache_status().contains("stored"));
    // The authorized response was not stored either: anonymous still gets its own copy.
    let again = get(proxy, "/a", &[]).await;
    assert_eq!(again.body, "0 for anonymous");
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
    assert_eq!(origin.calls(), 2);

    // A response marked public may be shared with authorized requests.
    let public = Origin::start(|n, _| (200, cc("public, max-age=60"), format!("public {n}"))).await;
    let proxy = public.proxy().await;
    assert_eq!(get(proxy, "/p", &[]).await.body, "public 0");
    let shared = get(proxy, "/p", &[("authorization", "Bearer bob")]).await;
    assert_eq!(shared.body, "public 0");
    assert!(
        shared.cache_status().contains("hit"),
        "{}",
        shared.cache_status()
    );
    assert_eq!(public.calls(), 1);
}

/// The origin's answer names the session cookie it saw, so a leak shows in the body.
fn session_origin() -> impl Fn(usize, &HeaderMap) -> Answer + Send + Sync + 'static {
    |n, request| {
        let session = request
            .get("cookie")
            .map_or("none", |v| v.to_str().unwrap())
            .to_owned();
        (200, cc("max-age=60"), format!("{n} for {session}"))
    }
}

/// By default a request carrying `Cookie` (or another configured credential header) is passed
/// through: one user's response is never stored for, or served to, another user.
#[tokio::test]
async fn requests_with_credentials_bypass_the_cache_by_default() {
    let origin = Origin::start(session_origin()).await;
    let proxy = origin.proxy().await;
    let alice = get(proxy, "/me", &[("cookie", "sid=alice")]).await;
    assert_eq!(alice.body, "0 for sid=alice");
    assert!(
        alice
            .cache_status()
            .contains("fwd=bypass; detail=credentials"),
        "{}",
        alice.cache_status()
    );
    let bob = get(proxy, "/me", &[("cookie", "sid=bob")]).await;
    assert_eq!(bob.body, "1 for sid=bob", "alice's response reached bob");
    let anonymous = get(proxy, "/me", &[]).await;
    assert_eq!(anonymous.body, "2 for none", "a cookie response was stored");
    assert!(anonymous.cache_status().contains("stored"));
    // A stored anonymous response is not served to a cookie-bearing request either.
    assert_eq!(
        get(proxy, "/me", &[("cookie", "sid=carol")]).await.body,
        "3 for sid=carol"
    );
    assert_eq!(get(proxy, "/me", &[]).await.body, "2 for none");

    // Another configured credential header behaves the same; Cookie is then cached.
    let origin = Origin::start(|n, request| {
        let key = request
            .get("x-api-key")
            .map_or("none", |v| v.to_str().unwrap())
            .to_owned();
        (200, cc("max-age=60"), format!("{n} for {key}"))
    })
    .await;
    let cache = CacheLayer::builder()
        .single_tenant()
        .credential_headers([HeaderName::from_static("x-api-key")])
        .build()
        .unwrap();
    let proxy = origin.proxy_with(cache).await;
    assert_eq!(
        get(proxy, "/k", &[("x-api-key", "k1")]).await.body,
        "0 for k1"
    );
    assert_eq!(
        get(proxy, "/k", &[("x-api-key", "k2")]).await.body,
        "1 for k2"
    );
    assert_eq!(origin.calls(), 2);
}

/// Keyed on credentials, each session gets its own stored copy and never another's.
#[tokio::test]
async fn requests_keyed_on_credentials_get_only_their_own_copy() {
    let origin = Origin::start(session_origin()).await;
    let cache = CacheLayer::builder()
        .single_tenant()
        .key_on_credentials(true)
        .build()
        .unwrap();
    let proxy = origin.proxy_with(cache).await;
    let alice = get(proxy, "/me", &[("cookie", "sid=alice")]).await;
    assert_eq!(alice.body, "0 for sid=alice");
    assert!(
        alice.cache_status().contains("stored"),
        "{}",
        alice.cache_status()
    );
    let bob = get(proxy, "/me", &[("cookie", "sid=bob")]).await;
    assert_eq!(bob.body, "1 for sid=bob", "alice's copy reached bob");
    let anonymous = get(proxy, "/me", &[]).await;
    assert_eq!(anonymous.body, "2 for none");
    // Each one is now a hit of its own copy.
    for (cookie, body) in [
        (Some("sid=alice"), "0 for sid=alice"),
        (Some("sid=bob"), "1 for sid=bob"),
        (None, "2 for none"),
    ] {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        let got = get(proxy, "/me", &headers).await;
        assert_eq!(got.body, body);
        assert!(got.cache_status().contains("hit"), "{}", got.cache_status());
    }
    assert_eq!(origin.calls(), 3);
    // A POST still invalidates every copy of the URI.
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Body>();
    let post = http::Request::post(format!("http://{proxy}/me"))
        .body(Body::empty())
        .unwrap();
    client.request(post).await.unwrap();
    assert_eq!(
        get(proxy, "/me", &[("cookie", "sid=alice")]).await.body,
        "4 for sid=alice"
    );
}

/// A request target over the limit (2 KiB by default) is passed through and never stored.
#[tokio::test]
async fn long_uris_are_passed_through_and_not_stored() {
    let origin = Origin::start(|n, _| (200, cc("max-age=60"), format!("body {n}"))).await;
    let proxy = origin.proxy().await;
    let long = format!("/q?{}", "a".repeat(2100));
    let first = get(proxy, &long, &[]).await;
    assert_eq!(first.body, "body 0");
    assert!(
        first
            .cache_status()
            .contains("fwd=bypass; detail=uri-too-long"),
        "{}",
        first.cache_status()
    );
    assert_eq!(get(proxy, &long, &[]).await.body, "body 1");
    // At the limit it is stored.
    let at_limit = format!("/q?{}", "a".repeat(2048 - 3));
    assert_eq!(get(proxy, &at_limit, &[]).await.body, "body 2");
    assert_eq!(get(proxy, &at_limit, &[]).await.body, "body 2");
    // The limit is configurable.
    let cache = CacheLayer::builder()
        .single_tenant()
        .max_uri_length(16)
        .build()
        .unwrap();
    let proxy = origin.proxy_with(cache).await;
    assert_eq!(get(proxy, "/abcdefghijklmnopq", &[]).await.body, "body 3");
    assert_eq!(get(proxy, "/abcdefghijklmnopq", &[]).await.body, "body 4");
    assert_eq!(get(proxy, "/short", &[]).await.body, "body 5");
    assert_eq!(get(proxy, "/short", &[]).await.body, "body 5");
}

/// A 304 that now says `no-store` (or `private`) removes the entry instead of refreshing it.
#[tokio::test]
async fn a_304_that_forbids_storing_removes_the_entry() {
    for directive in ["no-store", "private"] {
        let origin = Origin::start(move |n, request| {
            let etag = ("etag", "\"v1\"".to_owned());
            if n == 0 {
                return (
                    200,
                    vec![("cache-control", "max-age=0".to_owned()), etag],
                    "v1".into(),
                );
            }
            if request.contains_key("if-none-match") {
                let cc = format!("{directive}, max-age=60");
                return (304, vec![("cache-control", cc), etag], String::new());
            }
            (
                200,
                vec![("cache-control", "max-age=60".to_owned())],
                format!("full {n}"),
            )
        })
        .await;
        let proxy = origin.proxy().await;
        assert_eq!(get(proxy, "/r", &[]).await.body, "v1");
        // Stale at once: revalidated; the 304 answers this request from the stored body...
        let second = get(proxy, "/r", &[]).await;
        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(second.body, "v1", "{directive}");
        assert!(
            second.cache_status().contains("fwd-status=304"),
            "{directive}: {}",
            second.cache_status()
        );
        // ...but the entry is gone: the next request is a plain miss.
        let third = get(proxy, "/r", &[]).await;
        assert!(
            third.cache_status().contains("fwd=uri-miss"),
            "{directive}: {}",
            third.cache_status()
        );
        assert_eq!(third.body, "full 2", "{directive}");
        let seen = origin.seen.lock().unwrap();
        assert!(!seen[2].contains_key("if-none-match"), "{directive}");
    }
}

/// `must-revalidate` / `proxy-revalidate`: once stale, a response is revalidated and never
/// served stale, whatever `stale-if-error` or `stale-while-revalidate` say; the origin's error
/// reaches the client. `immutable` only concerns a fresh response: once stale, the usual
/// rules (here its stale windows) apply.
#[tokio::test]
async fn must_revalidate_is_never_served_stale() {
    for directive in ["must-revalidate", "proxy-revalidate", "immutable"] {
        let origin = Origin::start(move |n, _| {
            if n == 0 {
                let cc = format!(
                    "max-age=1, {directive}, stale-if-error=600, stale-while-revalidate=600"
                );
                return (
                    200,
                    vec![("cache-control", cc), ("etag", "\"v1\"".into())],
                    "v1".into(),
                );
            }
            (503, cc("no-store"), format!("down {n}"))
        })
        .await;
        let proxy = origin.proxy().await;
        assert_eq!(get(proxy, "/m", &[]).await.body, "v1");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let stale = get(proxy, "/m", &[]).await;
        let expect_stale_served = directive == "immutable";
        if expect_stale_served {
            // Only the revalidation rules apply to immutable: the windows still hold.
            assert_eq!(stale.body, "v1", "{directive}: {}", stale.cache_status());
            assert!(
                stale
                    .cache_status()
                    .contains("detail=stale-while-revalidate"),
                "{directive}: {}",
                stale.cache_status()
            );
        } else {
            assert_eq!(stale.status, StatusCode::SERVICE_UNAVAILABLE, "{directive}");
            assert_eq!(stale.body, "down 1", "{directive}: served stale");
            assert_eq!(origin.calls(), 2, "{directive}: not revalidated");
        }
    }
}

/// RFC 8246: `immutable` is fresh-only. While fresh the stored response is served without
/// asking the origin; once stale, with no stale window, it is revalidated like any other
/// response (a conditional request upstream, a 304 keeps the stored body).
#[tokio::test]
async fn immutable_is_revalidated_once_stale() {
    let origin = Origin::start(|n, request| {
        let headers = vec![
            ("cache-control", "max-age=1, immutable".to_owned()),
            ("etag", "\"i1\"".to_owned()),
            ("x-call", n.to_string()),
        ];
        if request.get("if-none-match").is_some_and(|v| *v == "\"i1\"") {
            return (304, headers, String::new());
        }
        (200, headers, format!("i1 from call {n}"))
    })
    .await;
    let proxy = origin.proxy().await;
    assert_eq!(get(proxy, "/i", &[]).await.body, "i1 from call 0");
    let fresh = get(proxy, "/i", &[]).await;
    assert_eq!(fresh.body, "i1 from call 0");
    assert!(
        fresh.cache_status().contains("hit"),
        "fresh: {}",
        fresh.cache_status()
    );
    assert_eq!(
        origin.calls(),
        1,
        "a fresh immutable response is not revalidated"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = get(proxy, "/i", &[]).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, "i1 from call 0", "the stored body after a 304");
    assert!(
        stale.cache_status().contains("fwd-status=304"),
        "stale: {}",
        stale.cache_status()
    );
    assert_eq!(origin.calls(), 2, "once stale it is revalidated");
    assert_eq!(origin.seen.lock().unwrap()[1]["if-none-match"], "\"i1\"");
}

/// RFC 9110 §5.6.7: `Expires` in the obsolete RFC 850 and asctime formats, and in a letter case
/// the grammar does not spell, still gives the response its freshness.
#[tokio::test]
async fn expires_in_every_date_format_and_case_makes_a_response_fresh() {
    let imf = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(300));
    // "Wed, 02 Dec 2026 08:00:00 GMT"
    let parts: Vec<&str> = imf.split([',', ' ']).filter(|p| !p.is_empty()).collect();
    let (day, dd, mon, yyyy, time) = (parts[0], parts[1], parts[2], parts[3], parts[4]);
    let full_day = match day {
        "Mon" => "monday",
        "Tue" => "tuesday",
        "Wed" => "wednesday",
        "Thu" => "thursday",
        "Fri" => "friday",
        "Sat" => "saturday",
        _ => "sunday",
    };
    let day_num: u32 = dd.parse().unwrap();
    let formats = [
        ("/imf-lower", imf.to_lowercase()),
        (
            "/rfc850",
            format!(
                "{full_day}, {dd}-{}-{} {time} gmt",
                mon.to_lowercase(),
                &yyyy[2..]
            ),
        ),
        (
            "/asctime",
            format!("{day} {mon} {day_num:>2} {time} {yyyy}").to_uppercase(),
        ),
    ];
    let by_path: Arc<Vec<(&'static str, String)>> = Arc::new(formats.to_vec());
    let answers = by_path.clone();
    let origin = Origin::start(move |n, _| {
        // Each path is asked once; answer with the next format in order.
        let (_, expires) = &answers[n.min(answers.len() - 1)];
        (200, vec![("expires", expires.clone())], format!("call {n}"))
    })
    .await;
    let proxy = origin.proxy().await;
    for (i, (path, expires)) in by_path.iter().enumerate() {
        let first = get(proxy, path, &[]).await;
        assert_eq!(first.body, format!("call {i}"), "{path}");
        assert!(
            first.cache_status().contains("stored"),
            "{path} ({expires}): {}",
            first.cache_status()
        );
        let second = get(proxy, path, &[]).await;
        assert_eq!(
            second.body,
            format!("call {i}"),
            "{path} ({expires}) served from the cache"
        );
        assert!(
            second.cache_status().contains("hit"),
            "{path} ({expires}): {}",
            second.cache_status()
        );
    }
    assert_eq!(origin.calls(), 3, "one origin call per path");
}

/// An origin answering every call with these headers and the body `call <n>`.
async fn fixed(headers: &[(&'static str, &str)]) -> Origin {
    let headers: Vec<(&'static str, String)> =
        headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    Origin::start(move |n, _| (200, headers.clone(), format!("call {n}"))).await
}

/// The `ttl` of the proxy's `Cache-Status`.
fn ttl(got: &Got) -> u64 {
    let status = got.cache_status();
    status
        .split("ttl=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|ttl| ttl.parse().ok())
        .unwrap_or_else(|| panic!("no ttl: {status}"))
}

fn value<'a>(got: &'a Got, name: &str) -> &'a str {
    got.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

/// RFC 9213: `CDN-Cache-Control`, when valid, replaces `Cache-Control` (and `Expires`) for the
/// cache's decisions, both ways, and reaches the client unchanged; an invalid one is ignored.
#[tokio::test]
async fn cdn_cache_control_replaces_cache_control() {
    // (Cache-Control, CDN-Cache-Control, stored, detail when not stored)
    let cases = [
        ("no-store", "max-age=60", true, ""),
        ("max-age=60", "no-store", false, "detail=response-no-store"),
        ("public, max-age=60", "private", false, "detail=private"),
        // Not a Dictionary (trailing comma): ignored, Cache-Control applies.
        ("no-store", "max-age=60,", false, "detail=response-no-store"),
        ("max-age=60", "", true, ""),
    ];
    for (cc, cdn, stored, detail) in cases {
        let origin = fixed(&[("cache-control", cc), ("cdn-cache-control", cdn)]).await;
        let proxy = origin.proxy().await;
        let first = get(proxy, "/t", &[]).await;
        let case = format!("{cc} / {cdn}: {}", first.cache_status());
        assert_eq!(first.cache_status().contains("stored"), stored, "{case}");
        assert!(first.cache_status().contains(detail), "{case}");
        // Forwarded unchanged.
        assert_eq!(value(&first, "cdn-cache-control"), cdn, "{case}");
        assert_eq!(value(&first, "cache-control"), cc, "{case}");
        let second = get(proxy, "/t", &[]).await;
        assert_eq!(
            second.body,
            if stored { "call 0" } else { "call 1" },
            "{case}"
        );
        if stored {
            assert!(second.cache_status().contains("hit"), "{case}");
            assert_eq!(value(&second, "cdn-cache-control"), cdn, "{case}");
        }
    }

    // Huge values saturate at 2^31 seconds.
    let origin = fixed(&[("cdn-cache-control", "max-age=99999999999")]).await;
    let first = get(origin.proxy().await, "/huge", &[]).await;
    // 2^31 seconds less the time the exchange took.
    let status = first.cache_status();
    assert!(
        (2_147_483_646..=2_147_483_648).contains(&ttl(&first)),
        "{status}"
    );
    assert!(status.contains("stored"), "{status}");
    // The targeted field replaces Expires too: without freshness of its own, nothing is kept.
    let expires = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(300));
    let origin = fixed(&[("expires", &expires), ("cdn-cache-control", "public")]).await;
    let first = get(origin.proxy().await, "/expires", &[]).await;
    assert!(
        first.cache_status().contains("detail=no-freshness"),
        "{}",
        first.cache_status()
    );

    // A short targeted max-age wins over a long Cache-Control one, and the stored entry's
    // reuse rules come from the targeted field: no stale-while-revalidate from
    // Cache-Control, the targeted one instead.
    let short = fixed(&[
        ("cache-control", "max-age=600, stale-while-revalidate=600"),
        ("cdn-cache-control", "max-age=1"),
        ("etag", "\"a\""),
    ])
    .await;
    let windowed = fixed(&[
        ("cache-control", "max-age=1"),
        ("cdn-cache-control", "max-age=1, stale-while-revalidate=600"),
        ("etag", "\"b\""),
    ])
    .await;
    let (short_proxy, windowed_proxy) = (short.proxy().await, windowed.proxy().await);
    let primed = get(short_proxy, "/s", &[]).await;
    assert!(ttl(&primed) <= 1, "{}", primed.cache_status());
    get(windowed_proxy, "/w", &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = get(short_proxy, "/s", &[]).await;
    assert!(
        stale.cache_status().contains("fwd=stale"),
        "not served stale: {}",
        stale.cache_status()
    );
    assert_eq!(short.calls(), 2);
    let served = get(windowed_proxy, "/w", &[]).await;
    assert!(
        served
            .cache_status()
            .contains("detail=stale-while-revalidate"),
        "{}",
        served.cache_status()
    );
    assert_eq!(served.body, "call 0");
}

/// The cache's own list of targeted fields, in its order; a targeted field it does not list
/// changes nothing.
#[tokio::test]
async fn targeted_fields_follow_the_configured_list() {
    let ours = || {
        CacheLayer::builder()
            .single_tenant()
            .targeted_fields(["Parapet-Cache-Control", "CDN-Cache-Control"])
            .build()
            .unwrap()
    };
    // (Parapet-Cache-Control, CDN-Cache-Control, Cache-Control, stored with our list)
    let cases = [
        ("no-store", "max-age=60", "max-age=60", false),
        ("max-age=60", "no-store", "no-store", true),
        ("max-age=60,", "no-store", "max-age=60", false),
        ("max-age=60,", "max-age=60", "no-store", true),
    ];
    for (parapet, cdn, cc, stored) in cases {
        let origin = fixed(&[
            ("parapet-cache-control", parapet),
            ("cdn-cache-control", cdn),
            ("cache-control", cc),
        ])
        .await;
        let proxy = origin.proxy_with(ours()).await;
        get(proxy, "/o", &[]).await;
        let second = get(proxy, "/o", &[]).await;
        assert_eq!(
            second.cache_status().contains("hit"),
            stored,
            "{parapet} / {cdn} / {cc}: {}",
            second.cache_status()
        );
        assert_eq!(value(&second, "parapet-cache-control"), parapet);
    }
    // The default cache does not list Parapet-Cache-Control: it obeys CDN-Cache-Control.
    let origin = fixed(&[
        ("parapet-cache-control", "no-store"),
        ("cdn-cache-control", "max-age=60"),
        ("cache-control", "no-store"),
    ])
    .await;
    let proxy = origin.proxy().await;
    get(proxy, "/d", &[]).await;
    assert_eq!(get(proxy, "/d", &[]).await.body, "call 0");
    // An invalid name is a build error.
    let error = CacheLayer::builder()
        .targeted_fields(["bad name"])
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("\"bad name\""), "{error}");
}

/// `Cache-Control: no-cache` responses are stored and revalidated on every use: each request
/// sends a conditional request upstream and a 304 serves the stored body with refreshed
/// headers; a changed resource replaces it.
#[tokio::test]
async fn no_cache_responses_are_stored_and_revalidated_on_every_use() {
    for cc in ["no-cache", "no-cache, max-age=600"] {
        let origin = Origin::start(move |n, request| {
            let version = if n < 3 { "v1" } else { "v2" };
            let etag = format!("\"{version}\"");
            let headers = vec![
                ("cache-control", cc.to_owned()),
                ("etag", etag.clone()),
                ("x-call", n.to_string()),
            ];
            if request.get("if-none-match").is_some_and(|v| *v == *etag) {
                return (304, headers, String::new());
            }
            (200, headers, format!("{version} from call {n}"))
        })
        .await;
        let proxy = origin.proxy().await;
        let first = get(proxy, "/n", &[]).await;
        assert!(
            first.cache_status().contains("stored"),
            "{cc}: {}",
            first.cache_status()
        );
        for call in 1..3 {
            let got = get(proxy, "/n", &[]).await;
            assert_eq!(got.status, StatusCode::OK, "{cc}");
            assert_eq!(got.body, "v1 from call 0", "{cc}: the stored body");
            assert!(
                got.cache_status().contains("fwd-status=304"),
                "{cc}: {}",
                got.cache_status()
            );
            assert_eq!(
                value(&got, "x-call"),
                call.to_string(),
                "{cc}: refreshed headers"
            );
            let seen = origin.seen.lock().unwrap();
            assert_eq!(
                seen[call]["if-none-match"], "\"v1\"",
                "{cc}: conditional upstream"
            );
        }
        assert_eq!(origin.calls(), 3, "{cc}: one upstream request per use");
        // The resource changed: the full response replaces the stored one.
        assert_eq!(get(proxy, "/n", &[]).await.body, "v2 from call 3", "{cc}");
        let again = get(proxy, "/n", &[]).await;
        assert_eq!(again.body, "v2 from call 3", "{cc}");
        assert_eq!(origin.seen.lock().unwrap()[4]["if-none-match"], "\"v2\"");
    }
}

/// RFC 9111 §4.3.1: a conditional request revalidating a stored variant carries the request
/// fields its `Vary` names with the values that selected it, whether the client that
/// triggered it spelled them otherwise (foreground) or the refresh runs in the background.
#[tokio::test]
async fn generated_conditionals_carry_the_variants_vary_fields() {
    for (cc, background) in [
        ("max-age=1", false),
        ("max-age=1, stale-while-revalidate=60", true),
    ] {
        let origin = Origin::revalidating(
            vec![
                ("cache-control", cc.to_owned()),
                ("vary", "Accept-Language".to_owned()),
                ("content-language", "en-US".to_owned()),
                ("etag", "\"en\"".to_owned()),
            ],
            "english",
        )
        .await;
        let proxy = origin.proxy().await;
        get(proxy, "/v", &[("accept-language", "en-US, fr")]).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Another spelling of the same preference selects the stored variant.
        let got = get(proxy, "/v", &[("accept-language", "fr;q=0.5, EN-us")]).await;
        assert_eq!(got.body, "english 0", "{cc}");
        if background {
            assert!(
                got.cache_status().contains("detail=stale-while-revalidate"),
                "{}",
                got.cache_status()
            );
            let waited = std::time::Instant::now();
            while origin.calls() < 2 {
                assert!(waited.elapsed() < Duration::from_secs(5), "no refresh");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            assert!(
                got.cache_status().contains("fwd-status=304"),
                "{}",
                got.cache_status()
            );
        }
        let seen = origin.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{cc}");
        assert_eq!(seen[1]["if-none-match"], "\"en\"", "{cc}");
        assert_eq!(
            seen[1]["accept-language"], "en-US, fr",
            "{cc}: the variant's value"
        );
        assert_eq!(seen[1].get_all("accept-language").iter().count(), 1, "{cc}");
    }
}

/// Spellings of one preference share a variant; the same spellings of a field the cache does
/// not normalise each get their own. Counted at the origin: one call per stored variant.
#[tokio::test]
async fn normalised_requests_share_variants() {
    let spellings = [
        "en-US, fr",
        "en-us,fr",
        "EN-US , FR",
        "fr;q=0.9, en-us",
        "en-US;q=1.0, fr;q=0.5",
        "en-us;q=1, de;q=0.8, fr;q=0.1",
    ];
    let english = |vary: &'static str| {
        Origin::start(move |n, _| {
            let headers = vec![
                ("cache-control", "max-age=60".to_owned()),
                ("vary", vary.to_owned()),
                ("content-language", "en-US".to_owned()),
            ];
            (200, headers, format!("english {n}"))
        })
    };
    let normalised = english("Accept-Language").await;
    let proxy = normalised.proxy().await;
    for spelling in spellings {
        let got = get(proxy, "/n", &[("accept-language", spelling)]).await;
        assert_eq!(got.body, "english 0", "{spelling}: {}", got.cache_status());
    }
    assert_eq!(normalised.calls(), 1, "one variant for six spellings");
    // An answer that is not the preferred language is shared only by the same normalised list.
    for (spelling, body) in [
        ("fr, en-US", "english 1"),
        ("FR ,en-us", "english 1"),
        ("fr;q=1.0, en-us;q=0.5", "english 2"),
        ("en-US, fr", "english 0"),
    ] {
        let got = get(proxy, "/n", &[("accept-language", spelling)]).await;
        assert_eq!(got.body, body, "{spelling}: {}", got.cache_status());
    }
    assert_eq!(normalised.calls(), 3);

    let raw = english("X-Lang").await;
    let proxy = raw.proxy().await;
    for spelling in spellings {
        get(proxy, "/n", &[("x-lang", spelling)]).await;
    }
    assert_eq!(raw.calls(), spellings.len(), "a variant per spelling");
}

/// Keyed on credentials, the stored variant keeps only a digest of the cookie: the conditional
/// request revalidating it carries the client's own cookie, never the digest.
#[tokio::test]
async fn conditionals_keyed_on_credentials_carry_the_clients_cookie() {
    let origin = Origin::revalidating(
        vec![
            ("cache-control", "max-age=1".to_owned()),
            ("etag", "\"s\"".to_owned()),
        ],
        "session",
    )
    .await;
    let cache = CacheLayer::builder()
        .single_tenant()
        .key_on_credentials(true)
        .build()
        .unwrap();
    let proxy = origin.proxy_with(cache).await;
    get(proxy, "/me", &[("cookie", "sid=alice")]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let got = get(proxy, "/me", &[("cookie", "sid=alice")]).await;
    assert_eq!(got.body, "session 0");
    assert!(
        got.cache_status().contains("fwd-status=304"),
        "{}",
        got.cache_status()
    );
    let seen = origin.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1]["cookie"], "sid=alice");
    assert_eq!(seen[1]["if-none-match"], "\"s\"");
}

/// A path, the validators the origin sends, and the `If-None-Match` and `If-Modified-Since`
/// the cache's conditional request is expected to carry.
type ConditionalCase<'a> = (
    &'a str,
    &'a [(&'static str, &'static str)],
    Option<&'a str>,
    Option<&'a str>,
);

/// RFC 9111 §4.3.1: the conditional request the cache generates carries a weak `ETag` as it
/// was stored, and `If-Modified-Since` from `Last-Modified` (alone when there is no `ETag`);
/// the 304 serves the stored body.
#[tokio::test]
async fn generated_conditionals_use_weak_etags_and_last_modified() {
    const LM: &str = "Sat, 01 Jan 2000 00:00:00 GMT";
    // (path, validators the origin sends, If-None-Match expected, If-Modified-Since expected)
    let cases: [ConditionalCase<'_>; 3] = [
        ("/weak", &[("etag", "W/\"w1\"")], Some("W/\"w1\""), None),
        ("/lm", &[("last-modified", LM)], None, Some(LM)),
        (
            "/both",
            &[("etag", "W/\"w1\""), ("last-modified", LM)],
            Some("W/\"w1\""),
            Some(LM),
        ),
    ];
    for (path, validators, inm, ims) in cases {
        let validators: Vec<(&'static str, String)> = validators
            .iter()
            .map(|(n, v)| (*n, (*v).to_owned()))
            .collect();
        let origin = Origin::start(move |n, request| {
            let mut headers = cc("max-age=0");
            headers.extend(validators.iter().cloned());
            let conditional =
                request.contains_key("if-none-match") || request.contains_key("if-modified-since");
            if conditional {
                return (304, headers, String::new());
            }
            (200, headers, format!("full {n}"))
        })
        .await;
        let proxy = origin.proxy().await;
        let first = get(proxy, path, &[]).await;
        assert!(
            first.cache_status().contains("stored"),
            "{path}: {}",
            first.cache_status()
        );
        let second = get(proxy, path, &[]).await;
        assert_eq!(second.body, "full 0", "{path}: the stored body");
        assert!(
            second.cache_status().contains("fwd-status=304"),
            "{path}: {}",
            second.cache_status()
        );
        let seen = origin.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{path}");
        let sent = |name: &str| seen[1].get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(sent("if-none-match").as_deref(), inm, "{path}");
        assert_eq!(sent("if-modified-since").as_deref(), ims, "{path}");
    }
}

/// RFC 9111 §5.3: an `Expires` that is not a valid date means already expired: with a
/// validator the response is stored but revalidated before its first reuse (no heuristic
/// freshness from `Last-Modified` in its place); without one it is not stored.
#[tokio::test]
async fn an_invalid_expires_means_already_expired() {
    const LM: &str = "Sat, 01 Jan 2000 00:00:00 GMT";
    for expires in ["0", "-1", "tomorrow", "Thu, 31 Feb 2099 25:00:00 GMT"] {
        let origin = Origin::revalidating(
            vec![
                ("expires", expires.to_owned()),
                ("etag", "\"e1\"".to_owned()),
                ("last-modified", LM.to_owned()),
            ],
            "full",
        )
        .await;
        let proxy = origin.proxy().await;
        let first = get(proxy, "/x", &[]).await;
        assert!(
            first.cache_status().contains("stored"),
            "{expires}: {}",
            first.cache_status()
        );
        let second = get(proxy, "/x", &[]).await;
        assert_eq!(second.body, "full 0", "{expires}");
        assert!(
            second.cache_status().contains("fwd=stale; fwd-status=304"),
            "{expires}: served without revalidation: {}",
            second.cache_status()
        );
        assert_eq!(origin.calls(), 2, "{expires}");

        // Without a validator there is nothing to keep.
        let bare = fixed(&[("expires", expires)]).await;
        let proxy = bare.proxy().await;
        let first = get(proxy, "/y", &[]).await;
        assert!(
            first.cache_status().contains("detail=no-freshness"),
            "{expires}: {}",
            first.cache_status()
        );
        assert_eq!(get(proxy, "/y", &[]).await.body, "call 1", "{expires}");
    }
}

/// Variant selection normalises `Accept-Encoding` like `Accept-Language`: spellings of one
/// preference share the variant the origin encoded in that preferred coding.
#[tokio::test]
async fn accept_encoding_spellings_share_a_variant() {
    let origin = Origin::start(|n, request| {
        let coding = request
            .get("accept-encoding")
            .map_or("", |v| v.to_str().unwrap())
            .to_ascii_lowercase();
        // The origin prefers br when the client lists it first at full weight, else gzip.
        let br_first = coding.starts_with("br") && !coding.starts_with("br;q=0.");
        let coding = if br_first { "br" } else { "gzip" };
        let headers = vec![
            ("cache-control", "max-age=60".to_owned()),
            ("vary", "Accept-Encoding".to_owned()),
            ("content-encoding", coding.to_owned()),
        ];
        (200, headers, format!("{coding} {n}"))
    })
    .await;
    let proxy = origin.proxy().await;
    for spelling in [
        "gzip, br",
        "GZIP ,br",
        "br;q=0.5, gzip",
        "gzip;q=1.0, br;q=0.8, identity;q=0",
    ] {
        let got = get(proxy, "/e", &[("accept-encoding", spelling)]).await;
        assert_eq!(got.body, "gzip 0", "{spelling}: {}", got.cache_status());
        assert_eq!(value(&got, "content-encoding"), "gzip", "{spelling}");
    }
    assert_eq!(origin.calls(), 1, "one variant for four spellings");
    // Another preferred coding is another variant.
    let br = get(proxy, "/e", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(br.body, "br 1");
    assert_eq!(
        get(proxy, "/e", &[("accept-encoding", "BR , gzip")])
            .await
            .body,
        "br 1"
    );
    assert_eq!(
        get(proxy, "/e", &[("accept-encoding", "gzip, br")])
            .await
            .body,
        "gzip 0"
    );
    assert_eq!(origin.calls(), 2);
}

/// RFC 9111 §4.3.2: a client's own `If-None-Match` / `If-Modified-Since` is answered `304` from
/// a fresh stored response, without the origin.
#[tokio::test]
async fn client_conditionals_are_answered_from_the_store() {
    const LM: &str = "Sat, 01 Jan 2000 00:00:00 GMT";
    let origin = fixed(&[
        ("cache-control", "max-age=60"),
        ("etag", "\"c1\""),
        ("last-modified", LM),
    ])
    .await;
    let proxy = origin.proxy().await;
    assert_eq!(get(proxy, "/c", &[]).await.body, "call 0");
    for (name, sent, status) in [
        ("if-none-match", "\"c1\"", StatusCode::NOT_MODIFIED),
        ("if-none-match", "W/\"c1\"", StatusCode::NOT_MODIFIED),
        ("if-none-match", "\"c0\"", StatusCode::OK),
        ("if-modified-since", LM, StatusCode::NOT_MODIFIED),
        (
            "if-modified-since",
            "Fri, 31 Dec 1999 00:00:00 GMT",
            StatusCode::OK,
        ),
    ] {
        let got = get(proxy, "/c", &[(name, sent)]).await;
        assert_eq!(got.status, status, "{name}: {sent}");
        assert!(
            got.cache_status().contains("hit"),
            "{name}: {sent}: {}",
            got.cache_status()
        );
        if status == StatusCode::NOT_MODIFIED {
            assert_eq!(got.body, "", "{name}: {sent}");
            assert_eq!(value(&got, "etag"), "\"c1\"");
        } else {
            assert_eq!(got.body, "call 0");
        }
    }
    assert_eq!(origin.calls(), 1);
}

/// RFC 9213: the targeted field governs reuse as well as storing. `CDN-Cache-Control:
/// no-cache` over a long `Cache-Control` lifetime revalidates on every use;
/// `CDN-Cache-Control: must-revalidate` forbids the stale use `Cache-Control` allows.
#[tokio::test]
async fn targeted_no_cache_and_must_revalidate_govern_reuse() {
    let origin = Origin::revalidating(
        vec![
            ("cache-control", "max-age=600".to_owned()),
            ("cdn-cache-control", "no-cache".to_owned()),
            ("etag", "\"t1\"".to_owned()),
        ],
        "full",
    )
    .await;
    let proxy = origin.proxy().await;
    get(proxy, "/n", &[]).await;
    for _ in 0..2 {
        let got = get(proxy, "/n", &[]).await;
        assert_eq!(got.body, "full 0");
        assert!(
            got.cache_status().contains("fwd-status=304"),
            "{}",
            got.cache_status()
        );
    }
    assert_eq!(origin.calls(), 3, "every use revalidated");

    let origin = Origin::start(|n, _| {
        if n == 0 {
            let headers = vec![
                (
                    "cache-control",
                    "max-age=1, stale-if-error=600, stale-while-revalidate=600".to_owned(),
                ),
                ("cdn-cache-control", "max-age=1, must-revalidate".to_owned()),
                ("etag", "\"t1\"".to_owned()),
            ];
            return (200, headers, "v1".to_owned());
        }
        (503, cc("no-store"), format!("down {n}"))
    })
    .await;
    let proxy = origin.proxy().await;
    assert_eq!(get(proxy, "/m", &[]).await.body, "v1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = get(proxy, "/m", &[]).await;
    assert_eq!(stale.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        stale.body,
        "down 1",
        "served stale: {}",
        stale.cache_status()
    );
}

/// A response carrying `Set-Cookie` is not stored (one user's session would reach the next
/// client); `no-cache="Set-Cookie"` or `private="Set-Cookie"` stores it without the field.
#[tokio::test]
async fn responses_setting_cookies_are_not_shared() {
    let origin = fixed(&[("cache-control", "max-age=60"), ("set-cookie", "sid=first")]).await;
    let proxy = origin.proxy().await;
    let first = get(proxy, "/s", &[]).await;
    assert!(
        first.cache_status().contains("detail=set-cookie"),
        "{}",
        first.cache_status()
    );
    let second = get(proxy, "/s", &[]).await;
    assert_eq!(
        second.body, "call 1",
        "a cookie response was served from the cache"
    );
    assert_eq!(origin.calls(), 2);

    for cc in [
        "max-age=60, no-cache=\"Set-Cookie\"",
        "max-age=60, private=\"set-cookie\"",
    ] {
        let origin = fixed(&[("cache-control", cc), ("set-cookie", "sid=first")]).await;
        let proxy = origin.proxy().await;
        let first = get(proxy, "/q", &[]).await;
        assert!(
            first.cache_status().contains("stored"),
            "{cc}: {}",
            first.cache_status()
        );
        let hit = get(proxy, "/q", &[]).await;
        assert_eq!(hit.body, "call 0", "{cc}");
        assert!(
            hit.cache_status().contains("hit"),
            "{cc}: {}",
            hit.cache_status()
        );
        assert!(
            !hit.headers.contains_key("set-cookie"),
            "{cc}: the cookie reached another client"
        );
    }
}
