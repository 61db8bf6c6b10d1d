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
///
/// As RFC 9110 §5.6.7 asks of recipients: the IMF-fixdate, and the obsolete RFC 850 and asctime
/// formats; day and month names and `GMT` in any letter case.
pub(crate) fn http_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    parse_http_date(headers.get(name)?.to_str().ok()?)
}

fn parse_http_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(at) = httpdate::parse_http_date(value) {
        return Some(at);
    }
    // Names in the case the grammar spells them: `Sun`, `Nov`, `GMT`.
    let mut canonical = String::with_capacity(value.len());
    let mut word_start = true;
    for c in value.chars() {
        if c.is_ascii_alphabetic() {
            canonical.push(if word_start {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            });
            word_start = false;
        } else {
            canonical.push(c);
            word_start = true;
        }
    }
    let canonical = canonical.replace("Gmt", "GMT");
    httpdate::parse_http_date(&canonical).ok()
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
    /// RFC 9110 §5.6.7's three formats of one instant, and letter case a sender got wrong.
    #[test]
    fn http_dates_in_every_format_and_case() {
        let at = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for value in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "SUNDAY, 06-NOV-94 08:49:37 GMT",
            "sun nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse_http_date(value), Some(at), "{value}");
        }
        for invalid in [
            "0",
            "-1",
            "",
            "Sun, 06 Nov 1994",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(invalid), None, "{invalid}");
        }
    }

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
