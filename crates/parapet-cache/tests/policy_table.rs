//! The RFC 9111 policy, driven through the layer against the real Redis (both tiers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;

use common::{
    cache_status, get, header, origin, redis, redis_config, request, send, text, unique_prefix,
};
use http::StatusCode;
use parapet_cache::CacheLayer;

async fn layer(test: &str) -> CacheLayer {
    redis().await;
    CacheLayer::builder()
        .local(8 * 1024 * 1024)
        .redis(redis_config())
        .prefix(unique_prefix(test))
        .build()
        .unwrap()
}

fn h(name: &'static str, value: &str) -> (&'static str, String) {
    (name, value.to_owned())
}

/// A table row: name, request headers, response headers, stored, `Cache-Status` detail.
type Row = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<(&'static str, String)>,
    bool,
    &'static str,
);

/// One row: the origin's response headers, whether a second GET is a hit, and why not.
#[tokio::test]
async fn storability_table() {
    let cases: Vec<Row> = vec![
        (
            "max-age",
            vec![],
            vec![h("cache-control", "max-age=60")],
            true,
            "",
        ),
        (
            "s-maxage",
            vec![],
            vec![h("cache-control", "s-maxage=60, max-age=0")],
            true,
            "",
        ),
        (
            "no-store",
            vec![],
            vec![h("cache-control", "no-store, max-age=60")],
            false,
            "detail=response-no-store",
        ),
        (
            "private",
            vec![],
            vec![h("cache-control", "private, max-age=60")],
            false,
            "detail=private",
        ),
        (
            "set-cookie",
            vec![],
            vec![h("cache-control", "max-age=60"), h("set-cookie", "sid=1")],
            false,
            "detail=set-cookie",
        ),
        (
            "authorization",
            vec![("authorization", "Bearer x")],
            vec![h("cache-control", "max-age=60")],
            false,
            "detail=authorization",
        ),
        (
            "authorization-public",
            vec![("authorization", "Bearer x")],
            vec![h("cache-control", "public, max-age=60")],
            true,
            "",
        ),
        (
            "vary-star",
            vec![],
            vec![h("cache-control", "max-age=60"), h("vary", "*")],
            false,
            "detail=vary-star",
        ),
        ("no-freshness", vec![], vec![], false, "detail=no-freshness"),
        // RFC 9213: a valid CDN-Cache-Control replaces Cache-Control; an invalid one does not.
        (
            "cdn-max-age-over-no-store",
            vec![],
            vec![
                h("cache-control", "no-store"),
                h("cdn-cache-control", "max-age=60"),
            ],
            true,
            "",
        ),
        (
            "cdn-no-store",
            vec![],
            vec![
                h("cache-control", "max-age=60"),
                h("cdn-cache-control", "no-store"),
            ],
            false,
            "detail=response-no-store",
        ),
        (
            "cdn-invalid",
            vec![],
            vec![
                h("cache-control", "no-store"),
                h("cdn-cache-control", "max-age=60,"),
            ],
            false,
            "detail=response-no-store",
        ),
        (
            "request-no-store",
            vec![("cache-control", "no-store")],
            vec![h("cache-control", "max-age=60")],
            false,
            "detail=request-no-store",
        ),
    ];
    let cache = layer("table").await;
    for (name, request_headers, response_headers, hit, detail) in cases {
        let uri = format!("/table/{name}");
        let response_headers = response_headers.clone();
        let (service, calls) =
            origin(move |n, _| (200, response_headers.clone(), format!("body {n}")));
        let first = send(
            &cache,
            service.clone(),
            request("GET", Some("acme"), &uri, &request_headers),
        )
        .await;
        let status = cache_status(&first);
        assert!(status.contains("fwd=uri-miss"), "{name}: {status}");
        assert!(status.contains(detail), "{name}: {status} lacks {detail}");
        assert_eq!(status.contains("stored"), hit, "{name}: {status}");
        assert_eq!(text(first).await, "body 0", "{name}");

        let second = send(
            &cache,
            service,
            request("GET", Some("acme"), &uri, &request_headers),
        )
        .await;
        let status = cache_status(&second);
        assert_eq!(status.contains("hit"), hit, "{name}: {status}");
        if hit {
            assert_eq!(header(&second, "age"), "0", "{name}");
            assert_eq!(text(second).await, "body 0", "{name}: served from cache");
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{name}");
        } else {
            assert_eq!(text(second).await, "body 1", "{name}: went upstream again");
            assert_eq!(calls.load(Ordering::SeqCst), 2, "{name}");
        }
    }
}

#[tokio::test]
async fn age_counts_time_in_cache_and_upstream_age() {
    let cache = layer("age").await;
    let (service, _) = origin(|_, _| {
        (
            200,
            vec![h("cache-control", "max-age=60"), h("age", "10")],
            "x".into(),
        )
    });
    send(&cache, service.clone(), get("acme", "/age")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = send(&cache, service, get("acme", "/age")).await;
    let age: u64 = header(&second, "age").parse().unwrap();
    assert!((11..=12).contains(&age), "age {age}");
    let status = cache_status(&second);
    assert!(status.contains("hit"), "{status}");
    assert!((47..=49).contains(&common::ttl(&second)), "{status}");
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let cache = layer("vary").await;
    let (service, calls) = origin(|_, request| {
        let lang = request
            .headers()
            .get("accept-language")
            .map_or("none", |v| v.to_str().unwrap())
            .to_owned();
        (
            200,
            vec![
                h("cache-control", "max-age=60"),
                h("vary", "Accept-Language"),
            ],
            lang,
        )
    });
    let ask = |lang: &str| {
        request(
            "GET",
            Some("acme"),
            "/greeting",
            &[("accept-language", lang)],
        )
    };
    assert_eq!(
        text(send(&cache, service.clone(), ask("en")).await).await,
        "en"
    );
    let fr = send(&cache, service.clone(), ask("fr")).await;
    assert!(
        cache_status(&fr).contains("fwd=vary-miss"),
        "{}",
        cache_status(&fr)
    );
    assert_eq!(text(fr).await, "fr");
    for lang in ["en", "fr"] {
        let again = send(&cache, service.clone(), ask(lang)).await;
        assert!(
            cache_status(&again).contains("hit"),
            "{lang}: {}",
            cache_status(&again)
        );
        assert_eq!(text(again).await, lang);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Invalidation removes every variant.
    let post = send(
        &cache,
        service.clone(),
        request("POST", Some("acme"), "/greeting", &[]),
    )
    .await;
    assert!(cache_status(&post).contains("fwd=method; detail=invalidated"));
    let en = send(&cache, service.clone(), ask("en")).await;
    assert!(
        cache_status(&en).contains("fwd=uri-miss"),
        "{}",
        cache_status(&en)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

/// Spellings of one language preference find one variant through both tiers; the
/// conditional request revalidating it carries the variant's own `Accept-Language`.
#[tokio::test]
async fn accept_language_spellings_share_a_variant() {
    let cache = layer("vary-normalised").await;
    let (service, calls) = origin(|n, request| {
        let headers = vec![
            h("cache-control", "max-age=1"),
            h("vary", "accept-language"),
            h("content-language", "en"),
            h("etag", "\"en\""),
        ];
        if n == 2 {
            // The revalidation of the first variant: its validator and its own field.
            assert_eq!(request.headers()["if-none-match"], "\"en\"");
            assert_eq!(request.headers()["accept-language"], "en, de;q=0.5");
            return (304, headers, String::new());
        }
        (200, headers, format!("english {n}"))
    });
    let ask = |lang: &str| request("GET", Some("acme"), "/lang", &[("accept-language", lang)]);
    for lang in ["en, de;q=0.5", "EN", "de;q=0.8, en;q=0.9", " en ,fr"] {
        let response = send(&cache, service.clone(), ask(lang)).await;
        assert_eq!(text(response).await, "english 0", "{lang}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Not the preferred language: its own variant.
    send(&cache, service.clone(), ask("de, en")).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let revalidated = send(&cache, service, ask("en;q=1.0")).await;
    assert!(
        cache_status(&revalidated).contains("fwd-status=304"),
        "{}",
        cache_status(&revalidated)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn vary_star_is_never_served() {
    let cache = layer("vary-star").await;
    let (service, calls) = origin(|n, _| {
        (
            200,
            vec![h("cache-control", "max-age=60"), h("vary", "*")],
            n.to_string(),
        )
    });
    for n in 0..3 {
        let response = send(&cache, service.clone(), get("acme", "/star")).await;
        assert!(!cache_status(&response).contains("hit"));
        assert_eq!(text(response).await, n.to_string());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn if_none_match_is_answered_from_cache() {
    let cache = layer("inm").await;
    let (service, calls) = origin(|_, _| {
        (
            200,
            vec![h("cache-control", "max-age=60"), h("etag", "\"v1\"")],
            "payload".into(),
        )
    });
    send(&cache, service.clone(), get("acme", "/etag")).await;
    let conditional = send(
        &cache,
        service.clone(),
        request("GET", Some("acme"), "/etag", &[("if-none-match", "\"v1\"")]),
    )
    .await;
    assert_eq!(conditional.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&conditional, "etag"), "\"v1\"");
    assert!(cache_status(&conditional).contains("hit"));
    assert_eq!(text(conditional).await, "");
    let other = send(
        &cache,
        service.clone(),
        request("GET", Some("acme"), "/etag", &[("if-none-match", "\"v0\"")]),
    )
    .await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(text(other).await, "payload");
    // A conditional request on a miss is still stored whole and answered with 304.
    let cold = send(
        &cache,
        service.clone(),
        request(
            "GET",
            Some("acme"),
            "/etag-cold",
            &[("if-none-match", "\"v1\"")],
        ),
    )
    .await;
    assert_eq!(cold.status(), StatusCode::NOT_MODIFIED);
    assert!(cache_status(&cold).contains("stored"));
    let warm = send(&cache, service, get("acme", "/etag-cold")).await;
    assert_eq!(text(warm).await, "payload");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// The cache answers a client's conditionals itself: a `GET` miss goes upstream without them
/// (so the full response can be stored), a `HEAD`, which is not stored, with them.
#[tokio::test]
async fn client_conditionals_stay_with_the_cache_on_a_get_miss() {
    let cache = layer("inm-upstream").await;
    // An origin that honours If-None-Match, as a real one does.
    let (service, calls) = origin(|_, request| {
        let status = if request.headers().contains_key("if-none-match") {
            304
        } else {
            200
        };
        let headers = vec![h("cache-control", "max-age=60"), h("etag", "\"v1\"")];
        (status, headers, "payload".into())
    });
    let conditional = [("if-none-match", "\"v1\"")];
    let cold = send(
        &cache,
        service.clone(),
        request("GET", Some("acme"), "/inm-miss", &conditional),
    )
    .await;
    assert_eq!(cold.status(), StatusCode::NOT_MODIFIED);
    assert!(
        cache_status(&cold).contains("stored"),
        "{}",
        cache_status(&cold)
    );
    let warm = send(&cache, service.clone(), get("acme", "/inm-miss")).await;
    assert!(
        cache_status(&warm).contains("hit"),
        "{}",
        cache_status(&warm)
    );
    assert_eq!(text(warm).await, "payload");
    let head = send(
        &cache,
        service,
        request("HEAD", Some("acme"), "/inm-head", &conditional),
    )
    .await;
    assert_eq!(head.status(), StatusCode::NOT_MODIFIED);
    assert!(
        cache_status(&head).contains("fwd-status=304"),
        "{}",
        cache_status(&head)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stale_entries_are_revalidated_and_304_updates_headers() {
    let cache = layer("revalidate").await;
    let (service, calls) = origin(|n, request| {
        if n == 0 {
            return (
                200,
                vec![
                    h("cache-control", "max-age=1"),
                    h("etag", "\"v1\""),
                    h("x-version", "one"),
                ],
                "payload".into(),
            );
        }
        assert_eq!(
            request.headers()["if-none-match"],
            "\"v1\"",
            "conditional request upstream"
        );
        (
            304,
            vec![
                h("cache-control", "max-age=60"),
                h("etag", "\"v1\""),
                h("x-version", "two"),
            ],
            String::new(),
        )
    });
    send(&cache, service.clone(), get("acme", "/reval")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let revalidated = send(&cache, service.clone(), get("acme", "/reval")).await;
    assert_eq!(revalidated.status(), StatusCode::OK);
    let status = cache_status(&revalidated);
    assert!(status.contains("fwd=stale; fwd-status=304"), "{status}");
    assert_eq!(header(&revalidated, "x-version"), "two");
    assert_eq!(text(revalidated).await, "payload");
    // Now fresh for 60 s with the updated headers.
    let hit = send(&cache, service, get("acme", "/reval")).await;
    assert!(cache_status(&hit).contains("hit"));
    assert!(
        (55..=60).contains(&common::ttl(&hit)),
        "{}",
        cache_status(&hit)
    );
    assert_eq!(header(&hit, "x-version"), "two");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.stats().revalidated, 1);
}

#[tokio::test]
async fn unsafe_methods_invalidate_target_and_location() {
    let cache = layer("invalidate").await;
    let (service, calls) = origin(|_, request| {
        if request.method() == http::Method::POST {
            return (201, vec![h("location", "/items/7")], String::new());
        }
        (
            200,
            vec![h("cache-control", "max-age=60")],
            request.uri().path().to_owned(),
        )
    });
    for uri in ["/items", "/items/7", "/other"] {
        send(&cache, service.clone(), get("acme", uri)).await;
        // And the same paths for another tenant, which must survive.
        send(&cache, service.clone(), get("globex", uri)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let post = send(
        &cache,
        service.clone(),
        request("POST", Some("acme"), "/items", &[]),
    )
    .await;
    assert_eq!(post.status(), StatusCode::CREATED);
    for (tenant, uri, hit) in [
        ("acme", "/items", false),
        ("acme", "/items/7", false),
        ("acme", "/other", true),
        ("globex", "/items", true),
        ("globex", "/items/7", true),
    ] {
        let response = send(&cache, service.clone(), get(tenant, uri)).await;
        assert_eq!(
            cache_status(&response).contains("hit"),
            hit,
            "{tenant} {uri}: {}",
            cache_status(&response)
        );
    }
    // A failed unsafe request invalidates nothing.
    let (failing, _) = origin(|_, _| (500, vec![], String::new()));
    send(
        &cache,
        failing,
        request("DELETE", Some("acme"), "/other", &[]),
    )
    .await;
    let response = send(&cache, service, get("acme", "/other")).await;
    assert!(cache_status(&response).contains("hit"));
}

#[tokio::test]
async fn no_tenant_bypasses_unless_single_tenant() {
    let cache = layer("no-tenant").await;
    let (service, calls) = origin(|_, _| (200, vec![h("cache-control", "max-age=60")], "x".into()));
    for _ in 0..2 {
        let response = send(&cache, service.clone(), request("GET", None, "/anon", &[])).await;
        assert_eq!(
            cache_status(&response),
            "parapet; fwd=bypass; detail=no-tenant"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let single = CacheLayer::builder()
        .single_tenant()
        .prefix(unique_prefix("single"))
        .build()
        .unwrap();
    for _ in 0..2 {
        send(&single, service.clone(), request("GET", None, "/anon", &[])).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A request-side row: name, the layer, the URI, the two requests' headers, a `Cache-Status`
/// fragment of the first answer, the second answer's body.
type RequestRow = (
    &'static str,
    CacheLayer,
    String,
    [Vec<(&'static str, &'static str)>; 2],
    &'static str,
    &'static str,
);

/// One row per request-side rule the layer applies before the policy: credentials (bypass by
/// default, keyed when asked), the URI length bound, and a 304 that forbids storing. Each row:
/// the layer's options, the two requests' headers, the second request's expected body and a
/// `Cache-Status` fragment of the first.
#[tokio::test]
async fn request_side_rules_table() {
    let redis_layer = |test: &str| {
        CacheLayer::builder()
            .local(8 * 1024 * 1024)
            .redis(redis_config())
            .prefix(unique_prefix(test))
    };
    redis().await;
    let long = format!("/rules/{}", "a".repeat(2100));
    #[rustfmt::skip]
    let cases: Vec<RequestRow> = vec![
        ("cookie bypass", redis_layer("rules-cookie").build().unwrap(), "/rules/c".into(),
            [vec![("cookie", "sid=a")], vec![("cookie", "sid=a")]], "fwd=bypass; detail=credentials", "body 1"),
        ("cookie not served a stored response", redis_layer("rules-cookie-2").build().unwrap(), "/rules/c".into(),
            [vec![], vec![("cookie", "sid=a")]], "stored", "body 1"),
        ("keyed: own copy", redis_layer("rules-keyed").key_on_credentials(true).build().unwrap(), "/rules/k".into(),
            [vec![("cookie", "sid=a")], vec![("cookie", "sid=a")]], "stored", "body 0"),
        ("keyed: not another's", redis_layer("rules-keyed-2").key_on_credentials(true).build().unwrap(), "/rules/k".into(),
            [vec![("cookie", "sid=a")], vec![("cookie", "sid=b")]], "stored", "body 1"),
        ("other credential header", redis_layer("rules-apikey").credential_headers([http::HeaderName::from_static("x-api-key")]).build().unwrap(), "/rules/x".into(),
            [vec![("x-api-key", "k")], vec![("x-api-key", "k")]], "detail=credentials", "body 1"),
        ("uri too long", redis_layer("rules-long").build().unwrap(), long,
            [vec![], vec![]], "fwd=bypass; detail=uri-too-long", "body 1"),
    ];
    for (name, cache, uri, [first_headers, second_headers], first_status, second_body) in cases {
        let (service, _) = origin(|n, _| {
            (
                200,
                vec![("cache-control", "max-age=60".to_owned())],
                format!("body {n}"),
            )
        });
        let first = send(
            &cache,
            service.clone(),
            request("GET", Some("acme"), &uri, &first_headers),
        )
        .await;
        let status = cache_status(&first);
        assert!(status.contains(first_status), "{name}: {status}");
        let second = send(
            &cache,
            service,
            request("GET", Some("acme"), &uri, &second_headers),
        )
        .await;
        assert_eq!(text(second).await, second_body, "{name}");
    }

    // A 304 that now says no-store or private removes the entry (RFC 9111 §3.2, §4.3.4).
    for directive in ["no-store", "private"] {
        let cache = layer(&format!("rules-304-{directive}")).await;
        let (service, calls) = origin(move |n, request| {
            let etag = ("etag", "\"v1\"".to_owned());
            if n == 0 {
                return (
                    200,
                    vec![("cache-control", "max-age=0".to_owned()), etag],
                    "v1".into(),
                );
            }
            if request.headers().contains_key("if-none-match") {
                let cc = format!("{directive}, max-age=60");
                return (304, vec![("cache-control", cc), etag], String::new());
            }
            (
                200,
                vec![("cache-control", "max-age=60".to_owned())],
                format!("full {n}"),
            )
        });
        let uri = "/rules/304";
        for expected in ["v1", "v1", "full 2"] {
            let got = send(&cache, service.clone(), get("acme", uri)).await;
            assert_eq!(text(got).await, expected, "{directive}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{directive}");
    }
}
