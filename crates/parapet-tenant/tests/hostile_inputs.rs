//! Every resolver faced with hostile input, through a real `Router` wrapped in `TenantLayer`:
//! each case has the status it must get, and no refusal may echo what the client sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parapet_tenant::{HeaderResolver, HostResolver, JwtResolver, PathResolver};
use tower::ServiceExt;

const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

fn header_req(values: &[&[u8]]) -> Request<Body> {
    let mut b = Request::get("/whoami");
    for v in values {
        b = b.header("x-tenant-id", http::HeaderValue::from_bytes(v).unwrap());
    }
    b.body(Body::empty()).unwrap()
}

fn host_req(hosts: &[&[u8]]) -> Request<Body> {
    let mut b = Request::get("/whoami");
    for h in hosts {
        b = b.header("host", http::HeaderValue::from_bytes(h).unwrap());
    }
    b.body(Body::empty()).unwrap()
}

fn path_req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn bearer_req(token: &str) -> Request<Body> {
    Request::get("/whoami")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn header_resolver_table() {
    let app = app(HeaderResolver::new());
    let long = "a".repeat(64);
    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        ("valid", header_req(&[b"acme"]), 200),
        ("63 chars", header_req(&["a".repeat(63).as_bytes()]), 404),
        ("missing", path_req("/whoami"), 400),
        ("empty", header_req(&[b""]), 400),
        ("64+ chars", header_req(&[long.as_bytes()]), 400),
        ("uppercase", header_req(&[b"ACME"]), 400),
        (
            "unicode look-alike",
            header_req(&["\u{0430}cme".as_bytes()]),
            400,
        ),
        ("fullwidth", header_req(&["\u{ff41}cme".as_bytes()]), 400),
        ("dot dot slash", header_req(&[b"../etc"]), 400),
        ("percent-encoded dots", header_req(&[b"%2e%2e"]), 400),
        ("tab inside", header_req(&[b"ac\tme"]), 400),
        ("sql metacharacters", header_req(&[b"acme' OR '1'='1"]), 400),
        ("sql comment", header_req(&[b"acme;--"]), 400),
        (
            "two different headers",
            header_req(&[b"acme", b"globex"]),
            400,
        ),
        ("two equal headers", header_req(&[b"acme", b"acme"]), 400),
        ("unknown", header_req(&[b"nobody"]), 404),
        ("suspended", header_req(&[b"initech"]), 403),
    ];
    run_table(&app, cases).await;
}

#[tokio::test]
async fn host_resolver_table() {
    let app = app(HostResolver::new("example.com"));
    let long = format!("{}.example.com", "a".repeat(64));
    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        ("valid", host_req(&[b"acme.example.com"]), 200),
        (
            "valid with port",
            host_req(&[b"acme.example.com:8080"]),
            200,
        ),
        (
            "uppercase (DNS is case-insensitive)",
            host_req(&[b"ACME.EXAMPLE.COM"]),
            200,
        ),
        ("no host", path_req("/whoami"), 400),
        ("base domain only", host_req(&[b"example.com"]), 400),
        ("empty", host_req(&[b""]), 400),
        ("64+ chars", host_req(&[long.as_bytes()]), 400),
        (
            "unicode look-alike",
            host_req(&["\u{0430}cme.example.com".as_bytes()]),
            400,
        ),
        ("punycode", host_req(&[b"xn--cme-8cd.example.com"]), 404),
        ("dot dot", host_req(&[b"..example.com"]), 400),
        (
            "percent-encoded dots",
            host_req(&[b"%2e%2e.example.com"]),
            400,
        ),
        ("two labels", host_req(&[b"a.acme.example.com"]), 400),
        ("foreign host", host_req(&[b"evil.com"]), 400),
        (
            "base as a prefix",
            host_req(&[b"acme.example.com.evil.com"]),
            400,
        ),
        ("userinfo", host_req(&[b"evil@acme.example.com"]), 400),
        (
            "sql metacharacters",
            host_req(&[b"acme'--.example.com"]),
            400,
        ),
        (
            "two host headers",
            host_req(&[b"acme.example.com", b"globex.example.com"]),
            400,
        ),
        ("unknown", host_req(&[b"nobody.example.com"]), 404),
        ("suspended", host_req(&[b"initech.example.com"]), 403),
    ];
    run_table(&app, cases).await;
}

#[tokio::test]
async fn path_resolver_table() {
    let app = app(PathResolver::new("/t"));
    let long = format!("/t/{}/whoami", "a".repeat(64));
    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        ("valid", path_req("/t/acme/whoami"), 200),
        ("valid, no trailing segment", path_req("/t/acme"), 200),
        ("outside the prefix", path_req("/whoami"), 400),
        ("empty segment", path_req("/t//whoami"), 400),
        ("64+ chars", path_req(&long), 400),
        ("uppercase", path_req("/t/ACME/whoami"), 400),
        ("unicode look-alike", path_req("/t/%D0%B0cme/whoami"), 400),
        ("dot dot", path_req("/t/../whoami"), 400),
        ("percent-encoded dots", path_req("/t/%2e%2e/whoami"), 400),
        ("encoded slash", path_req("/t/acme%2Fglobex/whoami"), 400),
        ("NUL", path_req("/t/acme%00/whoami"), 400),
        ("CR LF", path_req("/t/acme%0D%0ASet-Cookie:x/whoami"), 400),
        (
            "sql metacharacters",
            path_req("/t/acme'%20OR%201=1/whoami"),
            400,
        ),
        ("unknown", path_req("/t/nobody/whoami"), 404),
        ("suspended", path_req("/t/initech/whoami"), 403),
    ];
    run_table(&app, cases).await;
}

fn exp_in(seconds: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now + seconds
}

fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn claims(tenant: &str) -> serde_json::Value {
    serde_json::json!({ "sub": "u1", "tenant_id": tenant, "aud": "crm", "iss": "https://auth.test", "exp": exp_in(600) })
}

/// A token with `alg: none` and no signature (the classic bypass).
fn unsigned_token(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

#[tokio::test]
async fn jwt_resolver_table() {
    let app = app(JwtResolver::hs256(SECRET)
        .unwrap()
        .audience("crm")
        .issuer("https://auth.test"));
    let with = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut c = claims("acme");
        f(c.as_object_mut().unwrap());
        c
    };
    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        ("valid", bearer_req(&hs256(claims("acme"), SECRET)), 200),
        ("no token", path_req("/whoami"), 401),
        (
            "another scheme",
            Request::get("/whoami")
                .header("authorization", "Basic YTpi")
                .body(Body::empty())
                .unwrap(),
            401,
        ),
        ("garbage", bearer_req("not.a.jwt"), 401),
        ("empty bearer", bearer_req(""), 401),
        (
            "alg none",
            bearer_req(&unsigned_token(&claims("acme"))),
            401,
        ),
        (
            "wrong key",
            bearer_req(&hs256(
                claims("acme"),
                b"another-secret-another-secret-1234",
            )),
            401,
        ),
        (
            "expired",
            bearer_req(&hs256(
                with(&|c| {
                    c.insert("exp".into(), exp_in(-3600).into());
                }),
                SECRET,
            )),
            401,
        ),
        (
            "no exp",
            bearer_req(&hs256(
                with(&|c| {
                    c.remove("exp");
                }),
                SECRET,
            )),
            401,
        ),
        (
            "wrong audience",
            bearer_req(&hs256(
                with(&|c| {
                    c.insert("aud".into(), "other".into());
                }),
                SECRET,
            )),
            401,
        ),
        (
            "no audience",
            bearer_req(&hs256(
                with(&|c| {
                    c.remove("aud");
                }),
                SECRET,
            )),
            401,
        ),
        (
            "wrong issuer",
            bearer_req(&hs256(
                with(&|c| {
                    c.insert("iss".into(), "https://evil".into());
                }),
                SECRET,
            )),
            401,
        ),
        (
            "missing claim",
            bearer_req(&hs256(
                with(&|c| {
                    c.remove("tenant_id");
                }),
                SECRET,
            )),
            401,
        ),
        (
            "claim not a string",
            bearer_req(&hs256(
                with(&|c| {
                    c.insert("tenant_id".into(), 7.into());
                }),
                SECRET,
            )),
            401,
        ),
        (
            "not valid yet",
            bearer_req(&hs256(
                with(&|c| {
                    c.insert("nbf".into(), exp_in(3600).into());
                }),
                SECRET,
            )),
            401,
        ),
        (
            "aud of another type",
            bearer_req(&hs256(
                with(&|c| {
                    c.insert("aud".into(), serde_json::json!({ "aud": "crm" }));
                }),
                SECRET,
            )),
            401,
        ),
        (
            "lower-case scheme",
            Request::get("/whoami")
                .header(
                    "authorization",
                    format!("bearer {}", hs256(claims("acme"), SECRET)),
                )
                .body(Body::empty())
                .unwrap(),
            200,
        ),
        (
            "uppercase claim",
            bearer_req(&hs256(claims("ACME"), SECRET)),
            400,
        ),
        (
            "dot dot claim",
            bearer_req(&hs256(claims("../etc"), SECRET)),
            400,
        ),
        ("unknown", bearer_req(&hs256(claims("nobody"), SECRET)), 404),
        (
            "suspended",
            bearer_req(&hs256(claims("initech"), SECRET)),
            403,
        ),
    ];
    run_table(&app, cases).await;
}

#[tokio::test]
async fn jwt_rs256_and_algorithm_confusion() {
    let public = include_bytes!("fixtures/rsa_public.pem");
    let private = EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa_private.pem")).unwrap();
    let other = EncodingKey::from_rsa_pem(include_bytes!("fixtures/other_private.pem")).unwrap();
    let app = app(JwtResolver::rs256_pem(public)
        .unwrap()
        .audience("crm")
        .issuer("https://auth.test"));
    let rs256 = |key: &EncodingKey| {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims("acme"), key).unwrap()
    };
    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        ("valid RS256", bearer_req(&rs256(&private)), 200),
        ("signed by another key", bearer_req(&rs256(&other)), 401),
        // HS256 "signed" with the public key as the HMAC secret must not verify.
        (
            "HS256 with the public key as secret",
            bearer_req(&hs256(claims("acme"), public)),
            401,
        ),
        (
            "alg none",
            bearer_req(&unsigned_token(&claims("acme"))),
            401,
        ),
    ];
    run_table(&app, cases).await;
    assert!(JwtResolver::rs256_pem(b"not a pem").is_err());
}

/// A JWT beside the identifying sources: the token decides, they may only narrow it.
#[tokio::test]
async fn beside_a_jwt_no_source_names_a_tenant_without_a_token() {
    let app = app_chain(|b| {
        b.resolver(HeaderResolver::new())
            .resolver(HostResolver::new("example.com"))
            .resolver(PathResolver::new("/t"))
            .resolver(
                JwtResolver::hs256(SECRET)
                    .unwrap()
                    .audience("crm")
                    .issuer("https://auth.test"),
            )
    });
    let acme = hs256(claims("acme"), SECRET);
    let req = |headers: &[(&str, String)], path: &str| {
        let mut b = Request::get(path);
        for (name, value) in headers {
            b = b.header(*name, value);
        }
        b.body(Body::empty()).unwrap()
    };
    let bearer = ("authorization", format!("Bearer {acme}"));
    let header = |t: &str| ("x-tenant-id", t.to_owned());
    let host = |h: &str| ("host", h.to_owned());
    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        ("header alone", req(&[header("globex")], "/whoami"), 401),
        (
            "host alone",
            req(&[host("globex.example.com")], "/whoami"),
            401,
        ),
        ("path alone", req(&[], "/t/globex/whoami"), 401),
        ("nothing", req(&[], "/whoami"), 401),
        ("token", req(std::slice::from_ref(&bearer), "/whoami"), 200),
        (
            "token and agreeing sources",
            req(
                &[bearer.clone(), header("acme"), host("acme.example.com")],
                "/t/acme/whoami",
            ),
            200,
        ),
        (
            "token for acme, header globex",
            req(&[bearer.clone(), header("globex")], "/whoami"),
            403,
        ),
        (
            "token for acme, host globex",
            req(&[bearer.clone(), host("globex.example.com")], "/whoami"),
            403,
        ),
        (
            "token for acme, path globex",
            req(std::slice::from_ref(&bearer), "/t/globex/whoami"),
            403,
        ),
        (
            "expired token, header acme",
            req(
                &[
                    (
                        "authorization",
                        format!(
                            "Bearer {}",
                            hs256(
                                serde_json::json!({ "tenant_id": "acme", "aud": "crm", "iss": "https://auth.test", "exp": exp_in(-3600) }),
                                SECRET
                            )
                        ),
                    ),
                    header("acme"),
                ],
                "/whoami",
            ),
            401,
        ),
    ];
    run_table(&app, cases).await;

    // An optional layer lets a request that names nothing through, but not one that names a
    // tenant without a token.
    let optional = app_chain(|b| {
        b.resolver(HeaderResolver::new())
            .resolver(JwtResolver::hs256(SECRET).unwrap())
            .optional(true)
    });
    let res = optional
        .clone()
        .oneshot(req(&[header("globex")], "/whoami"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn resolvers_that_disagree_are_rejected() {
    let app = app_chain(|b| {
        b.resolver(HeaderResolver::new())
            .resolver(HostResolver::new("example.com"))
            .resolver(PathResolver::new("/t"))
    });
    let req = |tenant: &str, host: &str, path: &str| {
        Request::get(path)
            .header("x-tenant-id", tenant)
            .header("host", host)
            .body(Body::empty())
            .unwrap()
    };
    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        (
            "all agree",
            req("acme", "acme.example.com", "/t/acme/whoami"),
            200,
        ),
        (
            "header vs host",
            req("acme", "globex.example.com", "/whoami"),
            400,
        ),
        (
            "host vs path",
            req("acme", "acme.example.com", "/t/globex/whoami"),
            400,
        ),
        (
            "one malformed",
            req("acme", "ACME_.example.com", "/whoami"),
            400,
        ),
    ];
    run_table(&app, cases).await;
}

/// NUL, CR and LF cannot even be put in an `http::HeaderValue`; over a real socket, hyper refuses
/// them before any layer runs. Either way the request never reaches a handler.
#[tokio::test]
async fn control_characters_in_headers_never_reach_the_handler() {
    for bad in [&b"ac\0me"[..], b"acme\r\nx-tenant-id: globex", b"acme\r"] {
        assert!(http::HeaderValue::from_bytes(bad).is_err());
    }
    let addr = serve(app(HeaderResolver::new())).await;
    for raw in [
        "GET /whoami HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: ac\0me\r\nConnection: close\r\n\r\n",
        "GET /whoami HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: acme\rglobex\r\nConnection: close\r\n\r\n",
        "GET /whoami HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: \u{0430}cme\r\nConnection: close\r\n\r\n",
        "GET /whoami HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: acme\r\nX-Tenant-Id: globex\r\nConnection: close\r\n\r\n",
    ] {
        let status = raw_status(addr, raw.as_bytes()).await;
        assert_eq!(status, 400, "{raw:?}");
    }
    let ok = raw_status(
        addr,
        b"GET /whoami HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: acme\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(ok, 200);
}

#[test]
fn status_code_sanity() {
    // The table uses bare numbers; make sure they mean what the docs say.
    assert_eq!(StatusCode::UNAUTHORIZED.as_u16(), 401);
}
