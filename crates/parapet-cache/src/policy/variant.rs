//! Normalising the request fields a response varies on, so spellings that ask for the same
//! thing select one stored variant.
//!
//! What is normalised, and nothing else:
//!
//! - **Every field**: its lines are combined with `,`; optional whitespace around each member
//!   of the comma-separated list (outside quoted strings) is removed and members are joined
//!   with `", "`. Letter case and member order are kept: in general they may mean something.
//! - **`Accept-Language` and `Accept-Encoding`**, when every member is `token` or
//!   `token;q=qvalue` (any other parameter, a bad q-value, a repeated token or a character
//!   outside the grammar leaves the field to the rule above): tokens are lowercased (language
//!   tags and content-codings are case-insensitive), q-values are read as thousandths
//!   (`q=1`, `q=1.0`, `q=1.000` and no q at all are the same; `q=0.90` is `q=0.9`), empty
//!   members are dropped, and members are ordered by q-value, highest first; members with
//!   the same q-value keep the client's order (a server may break ties by it), and members
//!   with `q=0` (refused) come last, sorted. So `en-US;q=1.0, fr;q=0.9` and `FR;q=0.90,
//!   en-us` are one variant; `en-US, fr` and `fr, en-US` are not.
//!
//! And one rule that looks at the response: a client's **preferred** language (coding) is the
//! first member of its normalised list when its q-value is above 0 and it is not `*`. A stored
//! response whose single `Content-Language` (`Content-Encoding`) equals the preferred member
//! of the request that got it is the answer for every request with the same preferred member,
//! whatever the rest of their lists say: the origin had that language and the client wanted it
//! most. Such a response is stored under a *preferred* secondary key (the preferred member in
//! place of the whole list) that requests try first. Responses without that field, with a list
//! in it, or with another value than the preferred member keep the whole-list key.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, header};

use super::vary::VaryFields;

/// The request fields normalised as weighted lists, and the response field naming which
/// member of them the response is.
const WEIGHTED: [(HeaderName, HeaderName); 2] = [
    (header::ACCEPT_ENCODING, header::CONTENT_ENCODING),
    (header::ACCEPT_LANGUAGE, header::CONTENT_LANGUAGE),
];

/// The content field that says which member of a weighted request field a response is.
fn content_field(name: &HeaderName) -> Option<&'static HeaderName> {
    WEIGHTED
        .iter()
        .find(|(request, _)| request == name)
        .map(|(_, content)| content)
}

/// The normalised value of `name` in `headers` (see the module docs); `None` when absent.
pub(crate) fn normalize(headers: &HeaderMap, name: &HeaderName) -> Option<Bytes> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut raw = Vec::new();
    for (i, line) in lines.enumerate() {
        if i > 0 {
            raw.push(b',');
        }
        raw.extend_from_slice(line.as_bytes());
    }
    if content_field(name).is_some()
        && let Some(list) = weighted_list(&raw)
    {
        return Some(render(&list));
    }
    Some(list_members(&raw))
}

/// The members of a comma-separated list with optional whitespace around them removed,
/// joined with `", "` (commas inside quoted strings are not separators).
fn list_members(raw: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(raw.len());
    let mut member_start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut first = true;
    let mut push = |member: &[u8], out: &mut BytesMut| {
        if !first {
            out.put_slice(b", ");
        }
        first = false;
        out.put_slice(trim_ows(member));
    };
    for (i, &b) in raw.iter().enumerate() {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => quoted = !quoted,
            (false, _, b',') => {
                push(&raw[member_start..i], &mut out);
                member_start = i + 1;
            }
            _ => {}
        }
    }
    push(&raw[member_start..], &mut out);
    out.freeze()
}

/// One member of a weighted list: the lowercased token and its q-value in thousandths.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Weighted {
    token: String,
    q: u16,
}

/// Parses `token [;q=qvalue]` members; `None` when anything else is there.
fn weighted_list(raw: &[u8]) -> Option<Vec<Weighted>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut out: Vec<Weighted> = Vec::new();
    for member in text.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let mut parts = member.split(';');
        let token = parts.next()?.trim_matches([' ', '\t']);
        if token.is_empty() || !token.bytes().all(is_tchar) {
            return None;
        }
        let mut q = None;
        for param in parts {
            let (key, value) = param.split_once('=')?;
            if !key.trim_matches([' ', '\t']).eq_ignore_ascii_case("q") || q.is_some() {
                return None;
            }
            q = Some(qvalue(value.trim_matches([' ', '\t']))?);
        }
        let token = token.to_ascii_lowercase();
        if out.iter().any(|w| w.token == token) {
            return None;
        }
        out.push(Weighted {
            token,
            q: q.unwrap_or(1000),
        });
    }
    // Highest q first, ties in the client's order; refused members last, sorted.
    out.sort_by_key(|w| std::cmp::Reverse(w.q));
    let refused = out.iter().position(|w| w.q == 0).unwrap_or(out.len());
    out[refused..].sort_by(|a, b| a.token.cmp(&b.token));
    Some(out)
}

/// RFC 9110 §12.4.2 `qvalue` in thousandths.
fn qvalue(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][i];
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn render(list: &[Weighted]) -> Bytes {
    let mut out = BytesMut::new();
    for (i, member) in list.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(member.token.as_bytes());
        if member.q < 1000 {
            out.put_slice(b";q=0");
            if member.q > 0 {
                let digits = format!("{:03}", member.q);
                out.put_u8(b'.');
                out.put_slice(digits.trim_end_matches('0').as_bytes());
            }
        }
    }
    out.freeze()
}

/// The request's preferred member of a weighted field (see the module docs).
fn preferred(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut raw = Vec::new();
    for (i, line) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            raw.push(b',');
        }
        raw.extend_from_slice(line.as_bytes());
    }
    let first = weighted_list(&raw)?.into_iter().next()?;
    (first.q > 0 && first.token != "*").then_some(first.token)
}

/// The single member of a response's content field, lowercased.
fn content_value(response: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut lines = response.get_all(name).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return None;
    };
    let value = line.to_str().ok()?.trim_matches([' ', '\t']);
    if value.is_empty() || !value.bytes().all(is_tchar) {
        return None;
    }
    Some(value.to_ascii_lowercase())
}

/// The preferred secondary key of a request: the preferred member in place of each weighted
/// field's list; `None` when the response does not vary on a weighted field or the request
/// has no preferred member for one of them.
#[must_use]
pub fn preferred_secondary_key(vary: &VaryFields, request: &HeaderMap) -> Option<Bytes> {
    let VaryFields::Fields(names) = vary else {
        return None;
    };
    if !names.iter().any(|name| content_field(name).is_some()) {
        return None;
    }
    let mut out = BytesMut::new();
    for name in names {
        if content_field(name).is_some() {
            out.put_slice(name.as_str().as_bytes());
            // 0x02 cannot appear in a field value: this never equals a whole-list key.
            out.put_u8(0x02);
            out.put_slice(preferred(request, name)?.as_bytes());
            out.put_u8(b'\n');
        } else {
            // As in the whole-request key.
            super::vary::put_field(&mut out, name, request);
        }
    }
    Some(out.freeze())
}

/// Whether `response`, the answer to `request`, is the answer for every request with the same
/// preferred members: for each weighted field it varies on, its content field is the
/// request's preferred member.
#[must_use]
pub fn answers_preferred(vary: &VaryFields, request: &HeaderMap, response: &HeaderMap) -> bool {
    let VaryFields::Fields(names) = vary else {
        return false;
    };
    let mut weighted = names
        .iter()
        .filter_map(|name| content_field(name).map(|content| (name, content)))
        .peekable();
    weighted.peek().is_some()
        && weighted.all(|(name, content)| {
            let wanted = preferred(request, name);
            wanted.is_some() && wanted == content_value(response, content)
        })
}

/// Whether a stored variant (the request fields that selected it and its response headers)
/// answers a new request: each varied field normalises to the same value, or is a weighted
/// field whose preferred member in both requests is the response's content field.
#[must_use]
pub fn variant_matches(
    stored_request: &HeaderMap,
    vary: &VaryFields,
    stored_response: &HeaderMap,
    new_request: &HeaderMap,
) -> bool {
    let VaryFields::Fields(names) = vary else {
        return false;
    };
    names.iter().all(|name| {
        if normalize(stored_request, name) == normalize(new_request, name) {
            return true;
        }
        let Some(content) = content_field(name) else {
            return false;
        };
        let wanted = preferred(new_request, name);
        wanted.is_some()
            && wanted == preferred(stored_request, name)
            && wanted == content_value(stored_response, content)
    })
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
#[path = "variant_tests.rs"]
mod tests;
