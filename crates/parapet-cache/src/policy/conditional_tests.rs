use super::*;
use crate::policy::test_support::{Pairs, date, headers};

const NM: Option<StatusCode> = Some(StatusCode::NOT_MODIFIED);

#[test]
fn entity_tag_lists() {
    let cases: &[(&str, &[(bool, &str)])] = &[
        (r#""a""#, &[(false, "a")]),
        (r#"W/"a""#, &[(true, "a")]),
        (
            r#" "a" , W/"b",,"c""#,
            &[(false, "a"), (true, "b"), (false, "c")],
        ),
        (r#""a,b", "c""#, &[(false, "a,b"), (false, "c")]), // commas inside quotes
        (r#""""#, &[(false, "")]),
        ("plain", &[(false, "plain")]), // unquoted, as some servers send
        (r#""open"#, &[(false, "open")]),
        ("", &[]),
    ];
    for (input, expected) in cases {
        let got: Vec<(bool, &[u8])> = entity_tags(input.as_bytes()).collect();
        let expected: Vec<(bool, &[u8])> =
            expected.iter().map(|(w, t)| (*w, t.as_bytes())).collect();
        assert_eq!(got, expected, "input {input:?}");
    }
}

#[test]
fn conditional_table() {
    let lm = date(100);
    let before = date(50);
    let after = date(200);
    let stored_etag = vec![("etag", r#""v1""#), ("last-modified", lm.as_str())];
    let stored_weak = vec![("etag", r#"W/"v1""#)];
    let stored_date_only = vec![("date", lm.as_str())];
    #[rustfmt::skip]
    let cases: Vec<(&str, Pairs<'_>, &Pairs<'_>, Option<StatusCode>)> = vec![
        // RFC 9110 §13.1.2: If-None-Match, weak comparison.
        ("strong = strong", vec![("if-none-match", r#""v1""#)], &stored_etag, NM),
        ("weak request, strong stored", vec![("if-none-match", r#"W/"v1""#)], &stored_etag, NM),
        ("strong request, weak stored", vec![("if-none-match", r#""v1""#)], &stored_weak, NM),
        ("different tag", vec![("if-none-match", r#""v2""#)], &stored_etag, None),
        ("list", vec![("if-none-match", r#""v0", W/"v1""#)], &stored_etag, NM),
        ("list over lines", vec![("if-none-match", r#""v0""#), ("if-none-match", r#""v1""#)], &stored_etag, NM),
        ("star", vec![("if-none-match", "*")], &stored_etag, NM),
        ("star without stored etag", vec![("if-none-match", "*")], &stored_date_only, NM),
        ("tag without stored etag", vec![("if-none-match", r#""v1""#)], &stored_date_only, None),
        // §13.2.2: If-None-Match present → If-Modified-Since ignored.
        ("INM miss beats IMS hit", vec![("if-none-match", r#""v2""#), ("if-modified-since", after.as_str())], &stored_etag, None),
        ("INM hit beats IMS miss", vec![("if-none-match", r#""v1""#), ("if-modified-since", before.as_str())], &stored_etag, NM),
        // §13.1.3: If-Modified-Since.
        ("IMS after LM", vec![("if-modified-since", after.as_str())], &stored_etag, NM),
        ("IMS equal to LM", vec![("if-modified-since", lm.as_str())], &stored_etag, NM),
        ("IMS before LM", vec![("if-modified-since", before.as_str())], &stored_etag, None),
        ("IMS invalid", vec![("if-modified-since", "yesterday")], &stored_etag, None),
        ("IMS with two members", vec![("if-modified-since", after.as_str()), ("if-modified-since", after.as_str())], &stored_etag, None),
        ("IMS against Date", vec![("if-modified-since", after.as_str())], &stored_date_only, NM),
        ("IMS without LM or Date", vec![("if-modified-since", after.as_str())], &stored_weak, None),
        ("no conditionals", vec![], &stored_etag, None),
    ];
    for (name, request, stored, expected) in cases {
        let got = evaluate_conditional(&headers(&request), StatusCode::OK, &headers(stored));
        assert_eq!(got, expected, "case {name}");
    }
}

#[test]
fn conditionals_only_for_2xx() {
    // RFC 9110 §13.2.1: preconditions are ignored when the response would not be 2xx.
    let request = headers(&[("if-none-match", "*")]);
    let stored = headers(&[("etag", r#""v1""#)]);
    let cases = [
        (StatusCode::OK, NM),
        (StatusCode::NO_CONTENT, NM),
        (StatusCode::NOT_FOUND, None),
        (StatusCode::MOVED_PERMANENTLY, None),
    ];
    for (status, expected) in cases {
        assert_eq!(
            evaluate_conditional(&request, status, &stored),
            expected,
            "{status}"
        );
    }
}

#[test]
fn headers_kept_in_304() {
    let d = date(0);
    let stored = headers(&[
        ("cache-control", "max-age=60"),
        ("content-location", "/a"),
        ("date", d.as_str()),
        ("etag", r#""v1""#),
        ("expires", d.as_str()),
        ("vary", "accept"),
        ("vary", "accept-language"),
        ("last-modified", d.as_str()),
        ("content-type", "application/json"),
        ("content-length", "12"),
        ("set-cookie", "a=b"),
    ]);
    let out = headers_for_304(&stored);
    let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cache-control",
            "content-location",
            "date",
            "etag",
            "expires",
            "last-modified",
            "vary"
        ]
    );
    assert_eq!(out.get_all(header::VARY).iter().count(), 2);
}

#[test]
fn update_from_304_table() {
    #[rustfmt::skip]
    let cases: Vec<(&str, Pairs<'_>, Pairs<'_>, Pairs<'_>)> = vec![
        // (name, stored, 304, expected stored afterwards) — RFC 9111 §3.2.
        ("replace and add", vec![("cache-control", "max-age=1"), ("etag", "\"a\""), ("x-keep", "k")],
            vec![("cache-control", "max-age=60"), ("x-new", "n")],
            vec![("cache-control", "max-age=60"), ("etag", "\"a\""), ("x-keep", "k"), ("x-new", "n")]),
        ("all lines replaced", vec![("x-multi", "1"), ("x-multi", "2")],
            vec![("x-multi", "3")],
            vec![("x-multi", "3")]),
        ("framing and body fields kept", vec![("content-length", "10"), ("content-type", "text/plain"), ("content-encoding", "gzip")],
            vec![("content-length", "0"), ("content-type", "text/html"), ("content-encoding", "br"), ("transfer-encoding", "chunked")],
            vec![("content-length", "10"), ("content-type", "text/plain"), ("content-encoding", "gzip")]),
        ("hop-by-hop not stored", vec![],
            vec![("connection", "x-hop"), ("x-hop", "1"), ("keep-alive", "5"), ("upgrade", "h2c"), ("te", "trailers"), ("proxy-connection", "close")],
            vec![]),
        ("no cookie from a 304", vec![("etag", "\"a\"")],
            vec![("set-cookie", "session=1")],
            vec![("etag", "\"a\"")]),
        ("new qualified directives strip", vec![("x-user", "u"), ("x-other", "o")],
            vec![("cache-control", "max-age=5, private=\"x-user\"")],
            vec![("x-other", "o"), ("cache-control", "max-age=5, private=\"x-user\"")]),
    ];
    for (name, stored, from_304, expected) in cases {
        let mut stored = headers(&stored);
        update_stored_headers(&mut stored, &headers(&from_304));
        assert_eq!(stored, headers(&expected), "case {name}");
    }
}

#[test]
fn which_stored_response_a_304_updates() {
    let lm = date(0);
    let other = date(5);
    #[rustfmt::skip]
    let cases: Vec<(Pairs<'_>, Pairs<'_>, bool)> = vec![
        // RFC 9111 §4.3.4.
        (vec![("etag", "\"a\"")], vec![("etag", "\"a\"")], true),
        (vec![("etag", "\"a\"")], vec![("etag", "W/\"a\"")], true),
        (vec![("etag", "\"a\"")], vec![("etag", "\"b\"")], false),
        (vec![], vec![("etag", "\"a\"")], false),
        (vec![("last-modified", lm.as_str())], vec![("last-modified", lm.as_str())], true),
        (vec![("last-modified", lm.as_str())], vec![("last-modified", other.as_str())], false),
        (vec![], vec![], true),
        (vec![("etag", "\"a\"")], vec![], false),
    ];
    for (stored, from_304, expected) in cases {
        let got = not_modified_matches(&headers(&stored), &headers(&from_304));
        assert_eq!(got, expected, "{stored:?} / {from_304:?}");
    }
}
