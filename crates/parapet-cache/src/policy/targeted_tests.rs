use super::*;
use crate::policy::test_support::{Pairs, headers, secs};

fn directives(value: &str) -> Option<ResponseDirectives> {
    parse_field(
        &headers(&[("cdn-cache-control", value)]),
        &HeaderName::from_static("cdn-cache-control"),
    )
}

fn with(f: impl FnOnce(&mut ResponseDirectives)) -> Option<ResponseDirectives> {
    let mut d = ResponseDirectives {
        targeted: Some(HeaderName::from_static("cdn-cache-control")),
        ..ResponseDirectives::default()
    };
    f(&mut d);
    Some(d)
}

/// RFC 8941 Dictionaries read as RFC 9213 §2.1 asks; empty or invalid fields are `None`.
#[test]
fn targeted_field_table() {
    let fields = |list: &[&'static str]| list.iter().map(|n| HeaderName::from_static(n)).collect();
    #[rustfmt::skip]
    let cases: Vec<(&str, Option<ResponseDirectives>)> = vec![
        ("max-age=60", with(|d| d.max_age = Some(secs(60)))),
        ("max-age=60, no-store", with(|d| { d.max_age = Some(secs(60)); d.no_store = true; })),
        ("  s-maxage=5 ,\tmust-revalidate", with(|d| { d.s_maxage = Some(secs(5)); d.must_revalidate = true; })),
        // Saturation at 2^31 (RFC 9111 §1.2.2) within RFC 8941's 15 digits.
        ("max-age=999999999999999", with(|d| d.max_age = Some(secs(2_147_483_648)))),
        // Sixteen digits are not an sf-integer: the field does not parse.
        ("max-age=9999999999999999", None),
        // A max-age of the wrong type reads as stale, as an invalid Cache-Control one does.
        ("max-age=-1", with(|d| d.max_age = Some(Duration::ZERO))),
        ("max-age=1.5", with(|d| d.max_age = Some(Duration::ZERO))),
        ("max-age=\"60\"", with(|d| d.max_age = Some(Duration::ZERO))),
        // Duplicate keys: the last wins (RFC 8941 §4.2.2).
        ("max-age=60, max-age=5", with(|d| d.max_age = Some(secs(5)))),
        // Parameters are ignored.
        ("max-age=60;foo=bar, public;x", with(|d| { d.max_age = Some(secs(60)); d.public = true; })),
        ("no-store=?0, public=?0, private=?0", with(|_| {})),
        ("no-cache=\"Set-Cookie, X-A\"", with(|d| d.no_cache = NoCache::Fields(fields(&["set-cookie", "x-a"])))),
        ("private=\"\"", with(|d| d.private = Private::All)),
        ("private=1", with(|d| d.private = Private::All)),
        ("public=1, immutable", with(|d| d.immutable = true)),
        ("stale-while-revalidate=30, stale-if-error=x", with(|d| d.stale_while_revalidate = Some(secs(30)))),
        // "none": not a directive, but a valid non-empty field (RFC 9213 §3.1).
        ("none", with(|_| {})),
        ("max-age=60, (a b);p=1, x=:aGk=:, y=@1", None),
        ("max-age=60, y=(a b);p=1, x=:aGk=:, z=1.25", with(|d| d.max_age = Some(secs(60)))),
        // Not Dictionaries.
        ("", None),
        ("   ", None),
        ("max-age=60,", None),
        ("Max-Age=60", None),
        ("max-age=60 no-store", None),
        ("max-age=60;", None),
        ("no-cache=\"unterminated", None),
        ("max-age=60, , public", None),
        ("max-age=6O", None),
    ];
    for (value, expected) in cases {
        assert_eq!(directives(value), expected, "{value:?}");
    }
}

/// RFC 9213 §2.2: the first usable field in the cache's order; invalid ones fall through.
#[test]
fn selection_follows_the_list() {
    let ours = HeaderName::from_static("parapet-cache-control");
    let cdn = HeaderName::from_static("cdn-cache-control");
    let list = [ours.clone(), cdn.clone()];
    #[rustfmt::skip]
    type Row<'a> = (Pairs<'a>, Option<(usize, u64)>, bool);
    let cases: Vec<Row<'_>> = vec![
        (vec![("cache-control", "max-age=1")], None, false),
        (
            vec![("cdn-cache-control", "max-age=2")],
            Some((1, 2)),
            false,
        ),
        (
            vec![
                ("cdn-cache-control", "max-age=2"),
                ("parapet-cache-control", "max-age=3"),
            ],
            Some((0, 3)),
            false,
        ),
        (
            vec![
                ("cdn-cache-control", "max-age=2"),
                ("parapet-cache-control", "max-age=3,"),
            ],
            Some((1, 2)),
            true,
        ),
        (
            vec![("cdn-cache-control", ""), ("parapet-cache-control", "")],
            None,
            true,
        ),
        // Several lines are one Dictionary.
        (
            vec![
                ("cdn-cache-control", "no-store"),
                ("cdn-cache-control", "max-age=4"),
            ],
            Some((1, 4)),
            false,
        ),
        (
            vec![
                ("cdn-cache-control", "max-age=4"),
                ("cdn-cache-control", ""),
            ],
            None,
            true,
        ),
    ];
    for (pairs, expected, skipped) in cases {
        let got = select(&headers(&pairs), &list);
        let summary = got
            .chosen
            .map(|(i, d)| (i, d.max_age.unwrap_or_default().as_secs()));
        assert_eq!(summary, expected, "{pairs:?}");
        assert_eq!(got.skipped_present, skipped, "{pairs:?}");
    }
    // The directives name their field; Cache-Control is the fallback.
    let h = headers(&[
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=9"),
    ]);
    let d = ResponseDirectives::for_cache(&h, &list);
    assert_eq!(d.targeted, Some(cdn));
    assert!(!d.no_store);
    let d = ResponseDirectives::for_cache(&h, &[ours]);
    assert_eq!(d.targeted, None);
    assert!(d.no_store);
}
