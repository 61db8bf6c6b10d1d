//! Targeted cache-control fields (RFC 9213), such as `CDN-Cache-Control`.
//!
//! A targeted field is a Structured Field Dictionary (RFC 8941 §3.2). A cache keeps a list of
//! the targeted fields it obeys, in precedence order; the first one present in a response whose
//! value parses and is not empty replaces `Cache-Control` *and* `Expires` for this cache's
//! decisions (RFC 9213 §2.2). A field that is empty or does not parse is ignored, as if absent
//! (§2.1), and the next one (then `Cache-Control`) is used.
//!
//! Members map to the directives of [`ResponseDirectives`] with the types §2.1 infers:
//! integers for `max-age`, `s-maxage`, `stale-while-revalidate` and `stale-if-error` (saturating
//! at 2^31 seconds; a `max-age` or `s-maxage` of another type reads as 0, stale, as an invalid
//! one does in `Cache-Control`; a stale window of another type is ignored), Boolean true for
//! the others, and a String of field names for qualified `no-cache` and `private`. A
//! restrictive directive (`no-store`, `no-cache`, `private`, `must-revalidate`,
//! `proxy-revalidate`) of an unexpected type still applies (unqualified); a permissive one
//! (`public`, `must-understand`, `immutable`) applies only as Boolean true. Parameters are
//! ignored.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::{HeaderMap, HeaderName};

use super::cache_control::{NoCache, Private, ResponseDirectives};
use super::fields::{DELTA_SECONDS_MAX, field_names, sort_dedup};

/// The targeted fields obeyed unless configured otherwise: `CDN-Cache-Control`.
pub(crate) static DEFAULT_TARGETED: LazyLock<Arc<[HeaderName]>> =
    LazyLock::new(|| Arc::from([HeaderName::from_static("cdn-cache-control")]));

/// The directives of the first usable targeted field of `headers` in `targeted` order, with its
/// index in `targeted`; `None` when none is present, valid and non-empty. The returned
/// `skipped_present` is true when a field before the chosen one (or any, when none is chosen)
/// was present but ignored.
pub(crate) fn select(headers: &HeaderMap, targeted: &[HeaderName]) -> Selection {
    let mut skipped_present = false;
    for (index, name) in targeted.iter().enumerate() {
        if !headers.contains_key(name) {
            continue;
        }
        match parse_field(headers, name) {
            Some(directives) => {
                return Selection {
                    chosen: Some((index, directives)),
                    skipped_present,
                };
            }
            None => skipped_present = true,
        }
    }
    Selection {
        chosen: None,
        skipped_present,
    }
}

/// What [`select`] found.
pub(crate) struct Selection {
    /// The index of the field used and its directives.
    pub(crate) chosen: Option<(usize, ResponseDirectives)>,
    /// Whether a field ranked before the chosen one was present but ignored.
    pub(crate) skipped_present: bool,
}

/// The directives of one targeted field (all its lines combined), `None` when it is empty or
/// is not a valid Dictionary.
fn parse_field(headers: &HeaderMap, name: &HeaderName) -> Option<ResponseDirectives> {
    let mut combined = Vec::new();
    for (i, value) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            combined.push(b',');
        }
        combined.extend_from_slice(value.as_bytes());
    }
    let members = parse_dictionary(&combined)?;
    if members.is_empty() {
        return None;
    }
    let mut out = ResponseDirectives {
        targeted: Some(name.clone()),
        ..ResponseDirectives::default()
    };
    for (key, value) in members {
        apply(&mut out, &key, &value);
    }
    Some(out)
}

fn apply(out: &mut ResponseDirectives, key: &str, value: &Member) {
    let bare = match value {
        Member::Item(bare) => Some(bare),
        Member::InnerList => None,
    };
    let truth = matches!(bare, Some(Bare::Bool(true)));
    let off = matches!(bare, Some(Bare::Bool(false)));
    let seconds = match bare {
        Some(Bare::Integer(n)) if *n >= 0 => {
            Some(Duration::from_secs(n.unsigned_abs().min(DELTA_SECONDS_MAX)))
        }
        _ => None,
    };
    match key {
        "max-age" => out.max_age = Some(seconds.unwrap_or(Duration::ZERO)),
        "s-maxage" => out.s_maxage = Some(seconds.unwrap_or(Duration::ZERO)),
        "stale-while-revalidate" => out.stale_while_revalidate = seconds,
        "stale-if-error" => out.stale_if_error = seconds,
        "no-store" => out.no_store = !off,
        "must-revalidate" => out.must_revalidate = !off,
        "proxy-revalidate" => out.proxy_revalidate = !off,
        "public" => out.public = truth,
        "must-understand" => out.must_understand = truth,
        "immutable" => out.immutable = truth,
        "no-cache" => {
            out.no_cache = match qualified(bare) {
                Qualified::Off => NoCache::No,
                Qualified::All => NoCache::All,
                Qualified::Fields(fields) => NoCache::Fields(fields),
            }
        }
        "private" => {
            out.private = match qualified(bare) {
                Qualified::Off => Private::No,
                Qualified::All => Private::All,
                Qualified::Fields(fields) => Private::Fields(fields),
            }
        }
        _ => {}
    }
}

enum Qualified {
    Off,
    All,
    Fields(Vec<HeaderName>),
}

/// `no-cache` / `private`: `?0` is off, a String names fields, anything else is unqualified.
fn qualified(bare: Option<&Bare>) -> Qualified {
    match bare {
        Some(Bare::Bool(false)) => Qualified::Off,
        Some(Bare::String(list)) => {
            let mut fields = field_names(list);
            if fields.is_empty() {
                return Qualified::All;
            }
            sort_dedup(&mut fields);
            Qualified::Fields(fields)
        }
        _ => Qualified::All,
    }
}

/// A Dictionary member's value (inner lists are kept only as a kind: no directive takes one).
#[derive(Debug, Clone, PartialEq)]
enum Member {
    Item(Bare),
    InnerList,
}

/// A bare item (RFC 8941 §3.3); decimals, tokens and byte sequences only as kinds.
#[derive(Debug, Clone, PartialEq)]
enum Bare {
    Integer(i64),
    Decimal,
    String(String),
    Token,
    Bytes,
    Bool(bool),
}

/// Parses a Dictionary (RFC 8941 §4.2.2), members in order with later duplicates replacing
/// earlier ones; `None` on any parse error.
fn parse_dictionary(input: &[u8]) -> Option<Vec<(String, Member)>> {
    let mut p = Parser { input, at: 0 };
    p.skip_sp();
    let mut members: Vec<(String, Member)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let value = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            p.parameters()?;
            Member::Item(Bare::Bool(true))
        };
        members.retain(|(k, _)| *k != key);
        members.push((key, value));
        p.skip_ows();
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip_ows();
        if p.done() {
            // A trailing comma.
            return None;
        }
    }
    Some(members)
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn key(&mut self) -> Option<String> {
        let first = self.peek()?;
        if !(first.is_ascii_lowercase() || first == b'*') {
            return None;
        }
        let start = self.at;
        while let Some(b) = self.peek() {
            if b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'-' | b'.' | b'*')
            {
                self.at += 1;
            } else {
                break;
            }
        }
        Some(String::from_utf8_lossy(&self.input[start..self.at]).into_owned())
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare()?;
            }
        }
        Some(())
    }

    fn item_or_inner_list(&mut self) -> Option<Member> {
        if self.eat(b'(') {
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    break;
                }
                self.bare()?;
                self.parameters()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
            self.parameters()?;
            return Some(Member::InnerList);
        }
        let bare = self.bare()?;
        self.parameters()?;
        Some(Member::Item(bare))
    }

    fn bare(&mut self) -> Option<Bare> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.bytes(),
            b'?' => {
                self.at += 1;
                let value = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.at += 1;
                Some(Bare::Bool(value))
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.at += 1;
                while let Some(b) = self.peek() {
                    if is_tchar(b) || b == b':' || b == b'/' {
                        self.at += 1;
                    } else {
                        break;
                    }
                }
                Some(Bare::Token)
            }
            _ => None,
        }
    }

    /// RFC 8941 §4.2.4: at most 15 integer digits, or 12 and up to 3 decimals.
    fn number(&mut self) -> Option<Bare> {
        let negative = self.eat(b'-');
        let start = self.at;
        let mut dot = None;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' => self.at += 1,
                b'.' if dot.is_none() => {
                    dot = Some(self.at);
                    self.at += 1;
                }
                _ => break,
            }
        }
        let digits = &self.input[start..self.at];
        match dot {
            None => {
                if digits.is_empty() || digits.len() > 15 {
                    return None;
                }
                let mut value: i64 = 0;
                for d in digits {
                    value = value * 10 + i64::from(d - b'0');
                }
                Some(Bare::Integer(if negative { -value } else { value }))
            }
            Some(dot) => {
                let whole = dot - start;
                let fraction = self.at - dot - 1;
                if whole == 0 || whole > 12 || fraction == 0 || fraction > 3 {
                    return None;
                }
                Some(Bare::Decimal)
            }
        }
    }

    fn string(&mut self) -> Option<Bare> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'\\' => {
                    let escaped = self.peek()?;
                    if escaped != b'"' && escaped != b'\\' {
                        return None;
                    }
                    self.at += 1;
                    out.push(char::from(escaped));
                }
                b'"' => return Some(Bare::String(out)),
                0x20..=0x7e => out.push(char::from(b)),
                _ => return None,
            }
        }
    }

    fn bytes(&mut self) -> Option<Bare> {
        self.at += 1;
        loop {
            match self.peek()? {
                b':' => {
                    self.at += 1;
                    return Some(Bare::Bytes);
                }
                b if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') => self.at += 1,
                _ => return None,
            }
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
#[path = "targeted_tests.rs"]
mod tests;
