//! `Vary` and secondary cache keys (RFC 9111 §4.1).
//!
//! Field values are compared after the normalisation of [`variant`](super::variant): lines
//! combined, whitespace around list members removed, and `Accept-Language` /
//! `Accept-Encoding` read as weighted lists (tokens lowercased, q-values canonical, ordered by
//! q-value; ties keep the client's order, so `gzip, br` and `br, gzip` do not match). Values
//! are compared as bytes, never through a lossy text conversion.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, header};

use super::fields::{combined_lossy, field_names, sort_dedup};

/// The fields a response varies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaryFields {
    /// `Vary: *`: no later request can match; the response must not be stored.
    Star,
    /// The listed fields, lowercase, sorted and deduplicated (empty when there is no `Vary`).
    Fields(Vec<HeaderName>),
}

/// Reads every `Vary` line of a response.
#[must_use]
pub fn vary_fields(response_headers: &HeaderMap) -> VaryFields {
    let Some(value) = combined_lossy(response_headers, &header::VARY) else {
        return VaryFields::Fields(Vec::new());
    };
    if value.split(',').any(|member| member.trim() == "*") {
        return VaryFields::Star;
    }
    let mut names = field_names(&value);
    sort_dedup(&mut names);
    VaryFields::Fields(names)
}

/// The value of `name` as used in a secondary key, normalised (see
/// [`variant`](super::variant)); `None` when the field is absent.
#[must_use]
pub fn normalized_field_value(headers: &HeaderMap, name: &HeaderName) -> Option<Bytes> {
    super::variant::normalize(headers, name)
}

/// Whether a new request matches the request a stored response was selected by (§4.1).
///
/// `stored_request_headers` needs to hold only the fields named in `vary` (the layer may keep
/// just those). A field missing from both requests matches; `Vary: *` never matches.
#[must_use]
pub fn secondary_key_matches(
    stored_request_headers: &HeaderMap,
    vary: &VaryFields,
    new_request_headers: &HeaderMap,
) -> bool {
    match vary {
        VaryFields::Star => false,
        VaryFields::Fields(names) => names.iter().all(|name| {
            normalized_field_value(stored_request_headers, name)
                == normalized_field_value(new_request_headers, name)
        }),
    }
}

/// A canonical byte string of the varied request fields, for use in (or hashed into) a cache
/// key; `None` for `Vary: *`.
///
/// Two requests get the same key exactly when [`secondary_key_matches`] holds between them:
/// each field is written as `name`, then `:` and the normalized value or `\x01` when absent,
/// then `\n`. Neither names nor values can contain `\n`, and names cannot contain `:` or
/// `\x01`, so the encoding is unambiguous.
#[must_use]
pub fn secondary_key(vary: &VaryFields, request_headers: &HeaderMap) -> Option<Bytes> {
    let VaryFields::Fields(names) = vary else {
        return None;
    };
    let mut out = BytesMut::new();
    for name in names {
        put_field(&mut out, name, request_headers);
    }
    Some(out.freeze())
}

/// Writes one field of a [`secondary_key`]: `name`, then `:` and the normalized value or
/// `\x01` when absent, then `\n`.
pub(crate) fn put_field(out: &mut BytesMut, name: &HeaderName, request_headers: &HeaderMap) {
    out.put_slice(name.as_str().as_bytes());
    match normalized_field_value(request_headers, name) {
        Some(value) => {
            out.put_u8(b':');
            out.put_slice(&value);
        }
        None => out.put_u8(0x01),
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{Pairs, headers};

    fn fields(list: &[&'static str]) -> VaryFields {
        VaryFields::Fields(list.iter().map(|n| HeaderName::from_static(n)).collect())
    }

    #[test]
    fn vary_fields_table() {
        let cases: Vec<(Pairs<'_>, VaryFields)> = vec![
            (vec![], fields(&[])),
            (
                vec![("vary", "Accept-Encoding")],
                fields(&["accept-encoding"]),
            ),
            // Sorted, lowercased, deduplicated, across lines.
            (
                vec![("vary", "X-B, accept"), ("vary", "ACCEPT, x-b")],
                fields(&["accept", "x-b"]),
            ),
            (vec![("vary", " , bad name, x-a")], fields(&["x-a"])),
            // §4.1: "*" anywhere, on any line, always fails to match.
            (vec![("vary", "accept, *")], VaryFields::Star),
            (vec![("vary", "accept"), ("vary", " * ")], VaryFields::Star),
        ];
        for (h, expected) in cases {
            assert_eq!(vary_fields(&headers(&h)), expected, "{h:?}");
        }
    }

    #[test]
    fn secondary_key_matching_table() {
        let ae = fields(&["accept-encoding"]);
        let flavour = fields(&["x-flavour"]);
        let two = fields(&["accept", "accept-language"]);
        #[rustfmt::skip]
        let cases: Vec<(&str, &VaryFields, Pairs<'_>, Pairs<'_>, bool)> = vec![
            ("same value", &ae, vec![("accept-encoding", "gzip")], vec![("accept-encoding", "gzip")], true),
            ("different value", &ae, vec![("accept-encoding", "gzip")], vec![("accept-encoding", "br")], false),
            // Ties keep the client's order: a server may break them by it.
            ("order of members", &ae, vec![("accept-encoding", "gzip, br")], vec![("accept-encoding", "br, gzip")], false),
            // Normalised: q-values and the order they give, coding case, whitespace.
            ("q-values order members", &ae, vec![("accept-encoding", "gzip, br;q=0.5")], vec![("accept-encoding", "BR;q=0.50 ,gzip;q=1")], true),
            ("different q-values", &ae, vec![("accept-encoding", "gzip, br;q=0.5")], vec![("accept-encoding", "gzip, br;q=0.6")], false),
            ("names are case-insensitive", &ae, vec![("Accept-Encoding", "gzip")], vec![("ACCEPT-ENCODING", "gzip")], true),
            ("surrounding whitespace", &ae, vec![("accept-encoding", " gzip\t")], vec![("accept-encoding", "gzip")], true),
            ("codings are case-insensitive", &ae, vec![("accept-encoding", "GZIP")], vec![("accept-encoding", "gzip")], true),
            ("other values are case-sensitive", &flavour, vec![("x-flavour", "A")], vec![("x-flavour", "a")], false),
            ("whitespace in lists", &flavour, vec![("x-flavour", "a ,b")], vec![("x-flavour", "a, b")], true),
            // §4.1: combining multiple field lines is an allowed transformation.
            ("multiple lines", &ae, vec![("accept-encoding", "gzip"), ("accept-encoding", "br")], vec![("accept-encoding", "gzip, br")], true),
            ("missing on both sides", &ae, vec![], vec![], true),
            ("missing on one side", &ae, vec![], vec![("accept-encoding", "gzip")], false),
            ("empty vs missing", &ae, vec![("accept-encoding", "")], vec![], false),
            ("unvaried fields ignored", &ae, vec![("cookie", "a")], vec![("cookie", "b")], true),
            ("all fields must match", &two, vec![("accept", "a"), ("accept-language", "en")], vec![("accept", "a"), ("accept-language", "fr")], false),
            ("star never matches", &VaryFields::Star, vec![], vec![], false),
        ];
        for (name, vary, stored, new, expected) in cases {
            let (stored, new) = (headers(&stored), headers(&new));
            assert_eq!(
                secondary_key_matches(&stored, vary, &new),
                expected,
                "case {name}"
            );
            // The canonical key agrees with the matcher.
            let keys_equal = secondary_key(vary, &stored).is_some()
                && secondary_key(vary, &stored) == secondary_key(vary, &new);
            assert_eq!(keys_equal, expected, "key for case {name}");
        }
    }

    #[test]
    fn secondary_key_is_unambiguous() {
        let two = fields(&["x-a", "x-b"]);
        let cases: Vec<(Pairs<'_>, &[u8])> = vec![
            (vec![("x-a", "1"), ("x-b", "2")], b"x-a:1\nx-b:2\n"),
            (vec![("x-a", "1 x-b:2")], b"x-a:1 x-b:2\nx-b\x01\n"),
            (vec![("x-a", "")], b"x-a:\nx-b\x01\n"),
            (vec![], b"x-a\x01\nx-b\x01\n"),
        ];
        let keys: Vec<Bytes> = cases
            .iter()
            .map(|(h, expected)| {
                let key = secondary_key(&two, &headers(h)).unwrap();
                assert_eq!(&key[..], *expected, "{h:?}");
                key
            })
            .collect();
        // All distinct.
        for (i, a) in keys.iter().enumerate() {
            assert!(keys[i + 1..].iter().all(|b| a != b));
        }
        // Newlines, the separator, cannot appear in a header value.
        assert!(http::HeaderValue::from_bytes(b"1\nx-b:2").is_err());
        // Non-UTF-8 values stay distinct (no lossy conversion).
        let mut c = HeaderMap::new();
        c.insert("x-a", http::HeaderValue::from_bytes(&[0xff]).unwrap());
        let mut d = HeaderMap::new();
        d.insert("x-a", http::HeaderValue::from_bytes(&[0xfe]).unwrap());
        assert!(!secondary_key_matches(&c, &two, &d));
        assert_ne!(secondary_key(&two, &c), secondary_key(&two, &d));
    }

    #[test]
    fn normalized_values() {
        let h = headers(&[("x", " a "), ("x", "b,c")]);
        let name = HeaderName::from_static("x");
        assert_eq!(
            normalized_field_value(&h, &name).as_deref(),
            Some(&b"a, b, c"[..])
        );
        assert_eq!(normalized_field_value(&h, &header::ACCEPT), None);
    }
}
