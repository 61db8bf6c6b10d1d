use super::*;
use crate::policy::test_support::{Pairs, at, date, headers, secs};

/// Request header pairs in a table row.
type RequestPairs<'a> = &'a [(&'a str, &'a str)];

#[derive(Debug, PartialEq)]
enum Want {
    /// Stored with this lifetime in seconds.
    Store(u64),
    No(NotStored),
}

fn summarize(s: &Storability) -> Want {
    match s {
        Storability::Store { ttl_hint, .. } => Want::Store(ttl_hint.as_secs()),
        Storability::NoStore(reason) => Want::No(*reason),
    }
}

fn run(
    method: &Method,
    request: &[(&str, &str)],
    status: u16,
    response: &[(&str, &str)],
    config: &PolicyConfig,
) -> Storability {
    let status = StatusCode::from_u16(status).unwrap();
    storability(
        method,
        &headers(request),
        status,
        &headers(response),
        config,
        at(0),
    )
}

#[test]
fn storability_table() {
    use NotStored as N;
    use Want::{No, Store};
    let lm = httpdate::fmt_http_date(at(0) - secs(1000));
    let lm = lm.as_str();
    let d0 = date(0);
    let exp = date(60);
    let cfg = PolicyConfig::default();
    let auth = [("authorization", "Bearer t")];
    let cookie = [("set-cookie", "session=1")];
    #[rustfmt::skip]
    let cases: Vec<(&str, Method, RequestPairs<'_>, u16, Pairs<'_>, Want)> = vec![
        ("max-age", Method::GET, &[], 200, vec![("cache-control", "max-age=30")], Store(30)),
        ("Expires", Method::GET, &[], 200, vec![("date", &d0), ("expires", &exp)], Store(60)),
        ("heuristic", Method::GET, &[], 200, vec![("last-modified", lm)], Store(100)),
        // Methods: only GET; HEAD has no body to store.
        ("HEAD", Method::HEAD, &[], 200, vec![("cache-control", "max-age=30")], No(N::Method)),
        ("POST", Method::POST, &[], 200, vec![("cache-control", "max-age=30")], No(N::Method)),
        // Statuses: §3 final status only; 206 unsupported; 304 only updates.
        ("1xx", Method::GET, &[], 103, vec![("cache-control", "max-age=30")], No(N::NonFinalStatus)),
        ("206", Method::GET, &[], 206, vec![("cache-control", "max-age=30")], No(N::PartialContent)),
        ("304", Method::GET, &[], 304, vec![("cache-control", "max-age=30")], No(N::NotModified)),
        ("500 without freshness", Method::GET, &[], 500, vec![("last-modified", lm)], No(N::UncacheableStatus)),
        ("500 with max-age", Method::GET, &[], 500, vec![("cache-control", "max-age=10")], Store(10)),
        ("302 with Expires", Method::GET, &[], 302, vec![("date", &d0), ("expires", &exp)], Store(60)),
        ("500 public + LM", Method::GET, &[], 500, vec![("cache-control", "public"), ("last-modified", lm)], Store(100)),
        ("404 heuristic", Method::GET, &[], 404, vec![("last-modified", lm)], Store(100)),
        // no-store on either side (§5.2.1.5, §5.2.2.5).
        ("request no-store", Method::GET, &[("cache-control", "no-store")], 200, vec![("cache-control", "max-age=30")], No(N::RequestNoStore)),
        ("response no-store", Method::GET, &[], 200, vec![("cache-control", "max-age=30, no-store")], No(N::ResponseNoStore)),
        // §5.2.2.3: must-understand overrides no-store for understood statuses only.
        ("must-understand 200", Method::GET, &[], 200, vec![("cache-control", "max-age=30, no-store, must-understand")], Store(30)),
        ("must-understand 299", Method::GET, &[], 299, vec![("cache-control", "max-age=30, no-store, must-understand")], No(N::MustUnderstand)),
        ("must-understand + request no-store", Method::GET, &[("cache-control", "no-store")], 200, vec![("cache-control", "max-age=30, no-store, must-understand")], No(N::RequestNoStore)),
        // §5.2.2.7: private.
        ("private", Method::GET, &[], 200, vec![("cache-control", "private, max-age=30")], No(N::Private)),
        ("private=x", Method::GET, &[], 200, vec![("cache-control", "private=\"x-user\", max-age=30")], Store(30)),
        // §4.1: Vary: *.
        ("Vary: *", Method::GET, &[], 200, vec![("cache-control", "max-age=30"), ("vary", "*")], No(N::VaryStar)),
        ("Vary: accept", Method::GET, &[], 200, vec![("cache-control", "max-age=30"), ("vary", "accept")], Store(30)),
        // §3.5: Authorization.
        ("auth", Method::GET, &auth, 200, vec![("cache-control", "max-age=30")], No(N::Authorization)),
        ("auth + public", Method::GET, &auth, 200, vec![("cache-control", "public, max-age=30")], Store(30)),
        ("auth + s-maxage", Method::GET, &auth, 200, vec![("cache-control", "s-maxage=30")], Store(30)),
        ("auth + must-revalidate", Method::GET, &auth, 200, vec![("cache-control", "must-revalidate, max-age=30")], Store(30)),
        ("auth + proxy-revalidate", Method::GET, &auth, 200, vec![("cache-control", "proxy-revalidate, max-age=30")], No(N::Authorization)),
        // Set-Cookie: refused by default; fine when only the cookie is no-cache or private.
        ("set-cookie", Method::GET, &[], 200, vec![("cache-control", "max-age=30"), cookie[0]], No(N::SetCookie)),
        ("set-cookie no-cache=", Method::GET, &[], 200, vec![("cache-control", "max-age=30, no-cache=\"Set-Cookie\""), cookie[0]], Store(30)),
        ("set-cookie private=", Method::GET, &[], 200, vec![("cache-control", "max-age=30, private=\"set-cookie\""), cookie[0]], Store(30)),
        // Freshness.
        ("no freshness", Method::GET, &[], 200, vec![("etag", "\"a\"")], No(N::NoFreshness)),
        ("nothing at all", Method::GET, &[], 200, vec![], No(N::NoFreshness)),
        ("max-age=0 with validator", Method::GET, &[], 200, vec![("cache-control", "max-age=0"), ("etag", "\"a\"")], Store(0)),
        ("max-age=0, nothing else", Method::GET, &[], 200, vec![("cache-control", "max-age=0")], No(N::NoFreshness)),
        ("Expires: 0 alone", Method::GET, &[], 200, vec![("expires", "0")], No(N::NoFreshness)),
        ("max-age=0 with stale-if-error", Method::GET, &[], 200, vec![("cache-control", "max-age=0, stale-if-error=60")], Store(0)),
        ("no-cache with validator", Method::GET, &[], 200, vec![("cache-control", "no-cache"), ("etag", "\"a\"")], Store(0)),
        ("no-cache without validator", Method::GET, &[], 200, vec![("cache-control", "no-cache")], No(N::NoFreshness)),
        ("no-cache with Last-Modified", Method::GET, &[], 200, vec![("cache-control", "no-cache"), ("last-modified", lm)], Store(100)),
        // RFC 9213: CDN-Cache-Control, when valid, replaces Cache-Control and Expires.
        ("cdn max-age over cc no-store", Method::GET, &[], 200, vec![("cache-control", "no-store"), ("cdn-cache-control", "max-age=30")], Store(30)),
        ("cdn short max-age wins", Method::GET, &[], 200, vec![("cache-control", "max-age=600"), ("cdn-cache-control", "max-age=5")], Store(5)),
        ("cdn no-store over cc max-age", Method::GET, &[], 200, vec![("cache-control", "max-age=600"), ("cdn-cache-control", "no-store")], No(N::ResponseNoStore)),
        ("cdn private over cc public", Method::GET, &[], 200, vec![("cache-control", "public, max-age=600"), ("cdn-cache-control", "private")], No(N::Private)),
        ("cdn invalid: cc applies", Method::GET, &[], 200, vec![("cache-control", "max-age=30"), ("cdn-cache-control", "max-age=5,")], Store(30)),
        ("cdn empty: cc applies", Method::GET, &[], 200, vec![("cache-control", "max-age=30"), ("cdn-cache-control", "")], Store(30)),
        ("cdn ignores Expires", Method::GET, &[], 200, vec![("date", &d0), ("expires", &exp), ("cdn-cache-control", "none")], No(N::NoFreshness)),
        ("cdn huge max-age saturates", Method::GET, &[], 200, vec![("cdn-cache-control", "max-age=99999999999")], Store(2_147_483_648)),
        ("cdn s-maxage for auth", Method::GET, &auth, 200, vec![("cache-control", "max-age=30"), ("cdn-cache-control", "s-maxage=30")], Store(30)),
    ];
    for (name, method, request, status, response, expected) in cases {
        let got = run(&method, request, status, &response, &cfg);
        assert_eq!(summarize(&got), expected, "case {name}");
    }
}

/// RFC 9213 §2.2: the cache's own list of targeted fields, in its order.
#[test]
fn configured_targeted_fields() {
    let ours = HeaderName::from_static("parapet-cache-control");
    let cdn = HeaderName::from_static("cdn-cache-control");
    let both = PolicyConfig::default().targeted_fields([ours.clone(), cdn]);
    let none = PolicyConfig::default().targeted_fields([]);
    let only_ours = PolicyConfig::default().targeted_fields([ours]);
    let response = [
        ("cache-control", "max-age=600"),
        ("cdn-cache-control", "max-age=60"),
        ("parapet-cache-control", "max-age=6"),
    ];
    #[rustfmt::skip]
    let cases: Vec<(&str, &PolicyConfig, RequestPairs<'_>, Want)> = vec![
        ("first of the list", &both, &response, Want::Store(6)),
        ("no targeted field", &none, &response, Want::Store(600)),
        ("cdn not listed", &only_ours, &response[..2], Want::Store(600)),
        ("first invalid, next used", &both, &[("cache-control", "max-age=600"), ("cdn-cache-control", "max-age=60"), ("parapet-cache-control", "max-age=\"6")], Want::Store(60)),
    ];
    for (name, config, response, expected) in cases {
        let got = run(&Method::GET, &[], 200, response, config);
        assert_eq!(summarize(&got), expected, "case {name}");
    }
}

#[test]
fn config_changes_storability() {
    let cookie = [("set-cookie", "a=1"), ("cache-control", "max-age=30")];
    let lm = httpdate::fmt_http_date(at(0) - secs(1000));
    let get = Method::GET;
    let with_ttl = PolicyConfig::default().default_ttl(secs(30));
    #[rustfmt::skip]
    let cases: Vec<(&str, PolicyConfig, u16, Pairs<'_>, Want)> = vec![
        ("cookie opt-in", PolicyConfig::default().store_set_cookie(true), 200, cookie.to_vec(), Want::Store(30)),
        ("default ttl", with_ttl.clone(), 200, vec![("content-type", "application/json")], Want::Store(30)),
        ("default ttl, uncacheable status", with_ttl, 500, vec![], Want::No(NotStored::UncacheableStatus)),
        ("heuristics off", PolicyConfig::default().heuristics_enabled(false), 200, vec![("last-modified", lm.as_str())], Want::No(NotStored::NoFreshness)),
        ("custom status set", PolicyConfig::default().cacheable_statuses([StatusCode::OK]), 404, vec![("last-modified", lm.as_str())], Want::No(NotStored::UncacheableStatus)),
    ];
    for (name, config, status, response, expected) in cases {
        let got = run(&get, &[], status, &response, &config);
        assert_eq!(summarize(&got), expected, "case {name}");
    }
}

#[test]
fn store_details() {
    let cfg = PolicyConfig::default();
    let h = [(
        "cache-control",
        "max-age=30, stale-while-revalidate=10, stale-if-error=60",
    )];
    let got = run(&Method::GET, &[], 200, &h, &cfg);
    assert_eq!(
        got,
        Storability::Store {
            ttl_hint: secs(30),
            source: Some(FreshnessSource::MaxAge),
            stale_while_revalidate: Some(secs(10)),
            stale_if_error: Some(secs(60)),
            must_revalidate_always: false,
            strip_fields: vec![],
        }
    );
    // must-revalidate (and s-maxage, no-cache) removes the stale windows.
    let h = [(
        "cache-control",
        "s-maxage=30, stale-while-revalidate=10, stale-if-error=60",
    )];
    let Storability::Store {
        stale_while_revalidate,
        stale_if_error,
        source,
        ..
    } = run(&Method::GET, &[], 200, &h, &cfg)
    else {
        panic!("storable");
    };
    assert_eq!((stale_while_revalidate, stale_if_error), (None, None));
    assert_eq!(source, Some(FreshnessSource::SMaxAge));
    // Unqualified no-cache: stored only to be revalidated.
    let h = [("cache-control", "no-cache"), ("etag", "\"a\"")];
    let Storability::Store {
        must_revalidate_always,
        source,
        ..
    } = run(&Method::GET, &[], 200, &h, &cfg)
    else {
        panic!("storable");
    };
    assert!(must_revalidate_always);
    assert_eq!(source, None);
    // Qualified no-cache and private: the named fields are stripped.
    let h = [
        (
            "cache-control",
            "max-age=30, no-cache=\"Set-Cookie, X-Debug\", private=\"X-User, x-debug\"",
        ),
        ("set-cookie", "a=1"),
    ];
    let Storability::Store {
        strip_fields,
        must_revalidate_always,
        ..
    } = run(&Method::GET, &[], 200, &h, &cfg)
    else {
        panic!("storable");
    };
    assert!(!must_revalidate_always);
    let names: Vec<&str> = strip_fields.iter().map(HeaderName::as_str).collect();
    assert_eq!(names, ["set-cookie", "x-debug", "x-user"]);
}

#[test]
fn reason_tokens_are_distinct() {
    use NotStored as N;
    let all = [
        N::Method,
        N::NonFinalStatus,
        N::PartialContent,
        N::NotModified,
        N::MustUnderstand,
        N::RequestNoStore,
        N::ResponseNoStore,
        N::Private,
        N::VaryStar,
        N::Authorization,
        N::SetCookie,
        N::UncacheableStatus,
        N::NoFreshness,
    ];
    let mut tokens: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), all.len());
    assert_eq!(N::SetCookie.as_str(), "set-cookie");
}
