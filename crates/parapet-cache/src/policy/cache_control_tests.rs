use proptest::prelude::*;

use super::*;
use crate::policy::fields::combined_lossy;
use crate::policy::test_support::{headers, secs};

fn names(list: &[&'static str]) -> Vec<HeaderName> {
    list.iter().map(|n| HeaderName::from_static(n)).collect()
}

#[test]
fn splits_directives() {
    let d = |name: &str, value: Option<&str>| Directive {
        name: name.to_owned(),
        value: value.map(str::to_owned),
    };
    let cases: Vec<(&str, Vec<Directive>)> = vec![
        ("", vec![]),
        (" , ,, ", vec![]),
        ("Max-Age=30", vec![d("max-age", Some("30"))]),
        (
            "a, b=1 ,c",
            vec![d("a", None), d("b", Some("1")), d("c", None)],
        ),
        // Quoted strings may hold commas and escapes (RFC 9110 §5.6.4).
        (
            r#"no-cache="Set-Cookie, X-A", x"#,
            vec![d("no-cache", Some("Set-Cookie, X-A")), d("x", None)],
        ),
        (r#"a="q\"uote""#, vec![d("a", Some("q\"uote"))]),
        (r#"a="x"junk, b"#, vec![d("a", Some("x")), d("b", None)]),
        (
            r#"a="unterminated, b"#,
            vec![d("a", Some("unterminated, b"))],
        ),
        ("=5, b", vec![d("b", None)]),
        ("a=, b", vec![d("a", Some("")), d("b", None)]),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_directives(input), expected, "input {input:?}");
    }
}

#[test]
fn response_directives_table() {
    let no_cache_fields = |list| NoCache::Fields(names(list));
    let cases: Vec<(&str, ResponseDirectives)> = vec![
        (
            "max-age=30",
            ResponseDirectives {
                max_age: Some(secs(30)),
                ..Default::default()
            },
        ),
        // §5.2: the quoted form is accepted too.
        (
            r#"MAX-AGE="30", S-MaxAge=60"#,
            ResponseDirectives {
                max_age: Some(secs(30)),
                s_maxage: Some(secs(60)),
                ..Default::default()
            },
        ),
        // §4.2.1: invalid freshness information reads as stale.
        (
            "max-age=abc",
            ResponseDirectives {
                max_age: Some(secs(0)),
                ..Default::default()
            },
        ),
        (
            "max-age",
            ResponseDirectives {
                max_age: Some(secs(0)),
                ..Default::default()
            },
        ),
        // §4.2.1: conflicting duplicates read as stale; equal duplicates are fine.
        (
            "max-age=30, max-age=60",
            ResponseDirectives {
                max_age: Some(secs(0)),
                ..Default::default()
            },
        ),
        (
            "max-age=30, max-age=30",
            ResponseDirectives {
                max_age: Some(secs(30)),
                ..Default::default()
            },
        ),
        // §1.2.2: overflow saturates at 2^31.
        (
            "s-maxage=99999999999999999999",
            ResponseDirectives {
                s_maxage: Some(secs(2_147_483_648)),
                ..Default::default()
            },
        ),
        (
            "no-store, public, must-revalidate, proxy-revalidate, must-understand, immutable",
            ResponseDirectives {
                no_store: true,
                public: true,
                must_revalidate: true,
                proxy_revalidate: true,
                must_understand: true,
                immutable: true,
                ..Default::default()
            },
        ),
        (
            "no-cache",
            ResponseDirectives {
                no_cache: NoCache::All,
                ..Default::default()
            },
        ),
        // §5.2.2.4: qualified form lists field names; names are lowercased, sorted, deduped.
        (
            r#"no-cache="X-B, Set-Cookie", no-cache="x-b""#,
            ResponseDirectives {
                no_cache: no_cache_fields(&["set-cookie", "x-b"]),
                ..Default::default()
            },
        ),
        // Unqualified wins over qualified (most restrictive).
        (
            r#"no-cache="set-cookie", no-cache"#,
            ResponseDirectives {
                no_cache: NoCache::All,
                ..Default::default()
            },
        ),
        // A qualified list we cannot read covers the whole response.
        (
            r#"no-cache="""#,
            ResponseDirectives {
                no_cache: NoCache::All,
                ..Default::default()
            },
        ),
        (
            "private",
            ResponseDirectives {
                private: Private::All,
                ..Default::default()
            },
        ),
        (
            r#"private="X-User""#,
            ResponseDirectives {
                private: Private::Fields(names(&["x-user"])),
                ..Default::default()
            },
        ),
        // RFC 5861: windows; invalid ignored, the smallest valid value wins.
        (
            "stale-while-revalidate=60, stale-while-revalidate=10, stale-if-error=x",
            ResponseDirectives {
                stale_while_revalidate: Some(secs(10)),
                ..Default::default()
            },
        ),
        ("unknown=\"a,b\", fOO", ResponseDirectives::default()),
    ];
    for (input, expected) in cases {
        assert_eq!(
            ResponseDirectives::parse(input),
            expected,
            "input {input:?}"
        );
    }
}

#[test]
fn response_directives_combine_lines() {
    let h = headers(&[("cache-control", "public"), ("cache-control", "max-age=5")]);
    let d = ResponseDirectives::from_headers(&h);
    assert!(d.public);
    assert_eq!(d.max_age, Some(secs(5)));
    assert_eq!(
        ResponseDirectives::from_headers(&HeaderMap::new()),
        ResponseDirectives::default()
    );
}

#[test]
fn forbids_stale_table() {
    let cases = [
        ("max-age=5", false),
        ("max-age=5, must-revalidate", true),
        ("max-age=5, proxy-revalidate", true),
        ("s-maxage=5", true), // §5.2.2.10: implies proxy-revalidate
        ("no-cache", true),
        (r#"no-cache="set-cookie""#, false),
    ];
    for (input, expected) in cases {
        let d = ResponseDirectives::parse(input);
        assert_eq!(d.forbids_stale(), expected, "input {input:?}");
    }
}

#[test]
fn request_directives_table() {
    let cases: Vec<(&str, RequestDirectives)> = vec![
        (
            "max-age=0",
            RequestDirectives {
                max_age: Some(secs(0)),
                ..Default::default()
            },
        ),
        (
            "max-age=abc",
            RequestDirectives::default(), // invalid request values are ignored
        ),
        (
            "max-age=10, max-age=5, min-fresh=3, min-fresh=7",
            RequestDirectives {
                max_age: Some(secs(5)),
                min_fresh: Some(secs(7)),
                ..Default::default()
            },
        ),
        (
            "max-stale",
            RequestDirectives {
                max_stale: Some(MaxStale::Any),
                ..Default::default()
            },
        ),
        (
            "max-stale=30, max-stale, max-stale=10",
            RequestDirectives {
                max_stale: Some(MaxStale::Seconds(10)),
                ..Default::default()
            },
        ),
        ("max-stale=nope", RequestDirectives::default()),
        (
            "No-Cache, no-store, only-if-cached, stale-if-error=20",
            RequestDirectives {
                no_cache: true,
                no_store: true,
                only_if_cached: true,
                stale_if_error: Some(secs(20)),
                ..Default::default()
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(RequestDirectives::parse(input), expected, "input {input:?}");
    }
}

#[test]
fn pragma_only_without_cache_control() {
    // RFC 9111 §5.4: Pragma: no-cache counts only when Cache-Control is absent.
    let cases = [
        (headers(&[("pragma", "no-cache")]), true),
        (headers(&[("pragma", "x, No-Cache")]), true),
        (headers(&[("pragma", "other")]), false),
        (
            headers(&[("pragma", "no-cache"), ("cache-control", "max-age=5")]),
            false,
        ),
        (HeaderMap::new(), false),
    ];
    for (h, expected) in cases {
        assert_eq!(
            RequestDirectives::from_headers(&h).no_cache,
            expected,
            "{h:?}"
        );
    }
}

#[test]
fn max_stale_allows() {
    assert!(MaxStale::Any.allows(secs(1_000_000)));
    assert!(MaxStale::Seconds(10).allows(secs(10)));
    assert!(!MaxStale::Seconds(10).allows(secs(11)));
}

proptest! {
    #[test]
    fn parsing_arbitrary_text_never_panics(input in ".{0,200}") {
        let d = ResponseDirectives::parse(&input);
        let r = RequestDirectives::parse(&input);
        // Every duration is bounded by the 2^31 saturation.
        for v in [d.max_age, d.s_maxage, r.max_age, r.min_fresh].into_iter().flatten() {
            prop_assert!(v <= secs(2_147_483_648));
        }
    }

    #[test]
    fn parsing_arbitrary_header_bytes_never_panics(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4)
    ) {
        let mut map = HeaderMap::new();
        for line in &lines {
            if let Ok(value) = http::HeaderValue::from_bytes(line) {
                map.append(header::CACHE_CONTROL, value.clone());
                map.append(header::PRAGMA, value);
            }
        }
        let d = ResponseDirectives::from_headers(&map);
        let r = RequestDirectives::from_headers(&map);
        // Qualified field lists are never empty, and are sorted and deduplicated.
        let lists = [
            match &d.no_cache { NoCache::Fields(f) => Some(f), _ => None },
            match &d.private { Private::Fields(f) => Some(f), _ => None },
        ];
        for list in lists.into_iter().flatten() {
            prop_assert!(!list.is_empty());
            prop_assert!(list.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
        }
        // With Cache-Control present, the (identical) Pragma lines change nothing.
        if let Some(cc) = combined_lossy(&map, &header::CACHE_CONTROL) {
            prop_assert_eq!(r, RequestDirectives::parse(&cc));
        }
    }
}
