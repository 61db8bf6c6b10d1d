//! Small helpers to read header fields the same way everywhere in the policy.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName};

/// The largest delta-seconds value the policy keeps (2^31, RFC 9111 §1.2.2).
pub(crate) const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// All lines of `name` joined with `,`, decoded lossily as UTF-8; `None` when the field is absent.
///
/// Only for fields parsed as token lists (Cache-Control, Pragma, Vary): never compare the result
/// byte for byte, the lossy decoding can make two different values equal.
pub(crate) fn combined_lossy(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let mut out = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for value in values {
        out.push(',');
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    Some(out)
}

/// The first line of `name` parsed as an HTTP-date; `None` when absent or invalid.
pub(crate) fn http_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok()
}

/// Parses delta-seconds (`1*DIGIT`, RFC 9111 §1.2.2), saturating at [`DELTA_SECONDS_MAX`].
pub(crate) fn parse_delta_seconds(input: &str) -> Option<u64> {
    let digits = input.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u64 = 0;
    for b in digits.bytes() {
        value = value
            .saturating_mul(10)
            .saturating_add(u64::from(b - b'0'))
            .min(DELTA_SECONDS_MAX);
    }
    Some(value)
}

/// Sorts field names by their (lowercase) text and removes duplicates.
pub(crate) fn sort_dedup(names: &mut Vec<HeaderName>) {
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
}

/// Parses a comma-separated list of field names; invalid members are skipped.
pub(crate) fn field_names(list: &str) -> Vec<HeaderName> {
    list.split(',')
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_seconds_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("30", Some(30)),
            (" 30 ", Some(30)),
            ("007", Some(7)),
            ("-1", None),
            ("1.5", None),
            ("", None),
            ("abc", None),
            // RFC 9111 §1.2.2: overflow saturates at 2^31.
            ("2147483649", Some(DELTA_SECONDS_MAX)),
            ("99999999999999999999999999", Some(DELTA_SECONDS_MAX)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_delta_seconds(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn combined_joins_lines() {
        let mut headers = HeaderMap::new();
        headers.append("x", "a".parse().unwrap());
        headers.append("x", "b".parse().unwrap());
        let name = HeaderName::from_static("x");
        assert_eq!(combined_lossy(&headers, &name).as_deref(), Some("a,b"));
        assert_eq!(combined_lossy(&HeaderMap::new(), &name), None);
    }
}
