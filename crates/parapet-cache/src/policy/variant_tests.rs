use super::*;
use crate::policy::test_support::{Pairs, headers};

fn norm(name: &'static str, lines: &[&str]) -> Option<String> {
    let pairs: Vec<(&str, &str)> = lines.iter().map(|v| (name, *v)).collect();
    normalize(&headers(&pairs), &HeaderName::from_static(name))
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// Exactly what is normalised, field by field.
#[test]
fn normalisation_table() {
    #[rustfmt::skip]
    let cases: Vec<(&'static str, &[&str], Option<&str>)> = vec![
        ("accept-language", &[], None),
        ("accept-language", &[""], Some("")),
        ("accept-language", &["en-US, fr"], Some("en-us,fr")),
        ("accept-language", &["EN-us ,\tFR"], Some("en-us,fr")),
        // Ties keep the client's order.
        ("accept-language", &["fr, en-US"], Some("fr,en-us")),
        // q-values: canonical, ordered highest first; q=1 is the default.
        ("accept-language", &["fr;q=0.9, en-us"], Some("en-us,fr;q=0.9")),
        ("accept-language", &["en-US;q=1.000", "FR;Q=0.90"], Some("en-us,fr;q=0.9")),
        ("accept-language", &["de;q=0.5, fr;q=0.005, en;q=0.50"], Some("de;q=0.5,en;q=0.5,fr;q=0.005")),
        // Refused members last, sorted; empty members dropped.
        ("accept-language", &["x;q=0, en, , b;q=0.000"], Some("en,b;q=0,x;q=0")),
        // Anything outside token[;q=qvalue]: only whitespace around members is normalised.
        ("accept-language", &["en;level=1 , FR"], Some("en;level=1, FR")),
        ("accept-language", &["en;q=1.5, fr"], Some("en;q=1.5, fr")),
        ("accept-language", &["en, EN"], Some("en, EN")),
        ("accept-encoding", &["GZIP, br;q=0.8", "identity;q=0"], Some("gzip,br;q=0.8,identity;q=0")),
        ("accept-encoding", &["br;q=0.8, gzip"], Some("gzip,br;q=0.8")),
        // Other fields: whitespace around members, never case or order.
        ("x-flavour", &[" A ,b", "C"], Some("A, b, C")),
        ("x-flavour", &["\"a , b\" , c"], Some("\"a , b\", c")),
        ("accept", &["Text/HTML, */*"], Some("Text/HTML, */*")),
    ];
    for (name, lines, expected) in cases {
        assert_eq!(norm(name, lines).as_deref(), expected, "{name}: {lines:?}");
    }
}

/// A response shares a preferred key only when it is what the request wanted most.
#[test]
fn preferred_variants() {
    let al = VaryFields::Fields(vec![header::ACCEPT_LANGUAGE]);
    let both = VaryFields::Fields(vec![header::ACCEPT_ENCODING, header::ACCEPT_LANGUAGE]);
    let other = VaryFields::Fields(vec![HeaderName::from_static("x-flavour")]);
    #[rustfmt::skip]
    let cases: Vec<(&str, &VaryFields, Pairs<'_>, Pairs<'_>, bool)> = vec![
        ("top served", &al, vec![("accept-language", "en-US, fr")], vec![("content-language", "en-US")], true),
        ("top by q", &al, vec![("accept-language", "fr;q=0.9, en-us")], vec![("content-language", "EN-US")], true),
        ("fallback served", &al, vec![("accept-language", "de, en")], vec![("content-language", "en")], false),
        ("prefix is not equal", &al, vec![("accept-language", "en-US")], vec![("content-language", "en")], false),
        ("no content-language", &al, vec![("accept-language", "en")], vec![], false),
        ("several languages", &al, vec![("accept-language", "en")], vec![("content-language", "en, fr")], false),
        ("wildcard top", &al, vec![("accept-language", "*")], vec![("content-language", "*")], false),
        ("refused top", &al, vec![("accept-language", "en;q=0")], vec![("content-language", "en")], false),
        ("no request field", &al, vec![], vec![("content-language", "en")], false),
        ("both fields", &both, vec![("accept-language", "en"), ("accept-encoding", "gzip, br")], vec![("content-language", "en"), ("content-encoding", "gzip")], true),
        ("one of two", &both, vec![("accept-language", "en"), ("accept-encoding", "br, gzip")], vec![("content-language", "en"), ("content-encoding", "gzip")], false),
        ("not weighted", &other, vec![("x-flavour", "a")], vec![("content-language", "a")], false),
    ];
    for (name, vary, request, response, shared) in cases {
        let (request, response) = (headers(&request), headers(&response));
        assert_eq!(
            answers_preferred(vary, &request, &response),
            shared,
            "{name}"
        );
        if shared {
            assert!(preferred_secondary_key(vary, &request).is_some(), "{name}");
        }
    }
    assert_eq!(
        preferred_secondary_key(&other, &headers(&[("x-flavour", "a")])),
        None
    );
    // Requests with the same preferred member share the key; the key is no whole-list key.
    let key = |v: &str| preferred_secondary_key(&al, &headers(&[("accept-language", v)]));
    assert_eq!(key("en-US, fr"), key("fr;q=0.9, EN-us;q=1.0, de;q=0.1"));
    assert_ne!(key("en-US, fr"), key("fr, en-US"));
    assert_eq!(key("*, en"), None);
    assert_ne!(
        key("en"),
        crate::policy::secondary_key(&al, &headers(&[("accept-language", "en")]))
    );
}

/// A stored variant answers a request with the same normalised fields, or with the same
/// preferred member when the response is that member.
#[test]
fn variant_matching() {
    let al = VaryFields::Fields(vec![header::ACCEPT_LANGUAGE]);
    let en = headers(&[("content-language", "en-US")]);
    let none = HeaderMap::new();
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &HeaderMap, &str, bool)> = vec![
        ("same spelling", "en-US, fr", &none, "en-us ,FR", true),
        ("same preferred, served", "en-US, fr", &en, "fr;q=0.9, en-us", true),
        ("same preferred, not served", "en-US, fr", &none, "fr;q=0.9, en-us", false),
        ("other preferred", "en-US, fr", &en, "fr, en-US", false),
        ("stored request preferred another", "fr, en-US", &en, "en-US", false),
    ];
    for (name, stored, response, new, expected) in cases {
        let stored = headers(&[("accept-language", stored)]);
        let new = headers(&[("accept-language", new)]);
        assert_eq!(
            variant_matches(&stored, &al, response, &new),
            expected,
            "{name}"
        );
    }
}
