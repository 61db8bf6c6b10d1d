//! The properties parapet's fuzz targets check, one function per target.
//!
//! Each function takes the fuzzer's bytes, feeds them to a parser as a request or a Redis value
//! would, and asserts what must hold for every input (not only that nothing panics): an accepted
//! tenant id is canonical, parse → render → parse is stable, a decoded value re-encodes to
//! itself. The binaries in `fuzz_targets/` call these functions, and the workspace test
//! `tests/tests/fuzz_corpus.rs` replays every file of `corpus/` through the same functions, so CI
//! checks the corpora without cargo-fuzz.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use parapet_cache::fuzzing::{decode_stored_value, encode_stored_value};
use parapet_cache::policy::{
    FreshnessSource, MaxStale, NoCache, PolicyConfig, Private, RequestDirectives,
    ResponseDirectives, StoredTimes, VaryFields, freshness_lifetime, secondary_key,
    secondary_key_matches, vary_fields,
};
use parapet_tenant::{
    HeaderResolver, HostResolver, JwtResolver, PathResolver, RequestHead, ResolveTenant, TenantId,
    TenantIdRule, TenantRejection, TokenError,
};
use serde_json::{Value, json};

/// The check of one input.
pub type Check = fn(&[u8]);

/// Every target: its name (the binary in `fuzz_targets/` and the folder in `corpus/`) and the
/// function that checks one input.
pub const TARGETS: &[(&str, Check)] = &[
    ("tenant_id", tenant_id),
    ("resolve_host", resolve_host),
    ("resolve_path", resolve_path),
    ("resolve_jwt", resolve_jwt),
    ("cache_control", cache_control),
    ("vary", vary),
    ("http_date", http_date),
    ("decode_entry", decode_entry),
];

/// `TenantId` parsing with the default rule and with a rule built from the input.
///
/// Input: the candidate id; for the custom rule, `max_len` byte, allowed extras, `\0`, id.
pub fn tenant_id(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let s: &str = &s;
    let canonical = !s.is_empty()
        && s.len() <= 63
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'_' || b == b'-'))
        });
    match TenantId::parse(s) {
        Ok(id) => {
            assert!(canonical, "accepted a non-canonical id {s:?}");
            assert_eq!(id.as_str(), s);
            assert_eq!(id.to_string(), s);
            assert_eq!(id.to_string().parse::<TenantId>().as_ref(), Ok(&id));
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
            let req = Request::get("/").header("x-tenant-id", s).body(()).unwrap();
            assert_eq!(
                HeaderResolver::new().resolve(&RequestHead::new(&req)),
                Ok(Some(id)),
                "the header resolver reads the id as is"
            );
        }
        Err(e) => {
            assert!(!canonical, "refused the canonical id {s:?}: {e}");
            let json = serde_json::to_string(s).unwrap();
            assert!(serde_json::from_str::<TenantId>(&json).is_err());
        }
    }

    // A custom rule: whatever it is told to allow, separators, non-ASCII, controls and upper case
    // never get in, and the first character is always a letter or a digit.
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let (extra, candidate) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let extra = String::from_utf8_lossy(extra);
    let candidate = String::from_utf8_lossy(candidate);
    let max = usize::from(max);
    let rule = TenantIdRule::new().max_len(max).allow_chars(&extra);
    if let Ok(id) = rule.parse(&candidate) {
        assert_eq!(id.as_str(), candidate);
        assert!(
            candidate.len() <= max.max(1),
            "{candidate:?} longer than {max}"
        );
        let first = candidate.as_bytes()[0];
        assert!(first.is_ascii_lowercase() || first.is_ascii_digit());
        for b in candidate.bytes() {
            let allowed = b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'_'
                || b == b'-'
                || (b.is_ascii_punctuation()
                    && !b"/\\%:".contains(&b)
                    && extra.as_bytes().contains(&b));
            assert!(allowed, "{candidate:?} accepted with byte {b:#04x}");
        }
    }
}

fn host_answer(
    resolver: &HostResolver,
    host: &[u8],
) -> Option<Result<Option<TenantId>, TenantRejection>> {
    let value = HeaderValue::from_bytes(host).ok()?;
    let req = Request::get("/")
        .header(header::HOST, value)
        .body(())
        .unwrap();
    Some(resolver.resolve(&RequestHead::new(&req)))
}

/// `HostResolver`: the subdomain of `Host`, or of the URI's authority.
///
/// Input: `base\nhost`, or just the host under `example.com`.
pub fn resolve_host(data: &[u8]) {
    let (base, host) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => ("example.com".to_owned(), data),
    };
    let resolver = HostResolver::new(&base).apex_hosts(["127.0.0.1", "[::1]"]);
    let Some(answer) = host_answer(&resolver, host) else {
        return;
    };
    // DNS names are case-insensitive: the answer does not depend on the letter case.
    assert_eq!(
        host_answer(&resolver, &host.to_ascii_uppercase()),
        Some(answer.clone())
    );
    assert_eq!(
        host_answer(&resolver, &host.to_ascii_lowercase()),
        Some(answer.clone())
    );

    if let Ok(Some(id)) = &answer {
        assert!(
            TenantId::parse(id.as_str()).is_ok(),
            "{id} is not canonical"
        );
        let lower = String::from_utf8_lossy(host).to_ascii_lowercase();
        assert!(
            lower.trim_start().starts_with(&format!("{id}.")),
            "{id} is not the first label of {lower:?}"
        );
        // A port does not change the tenant (after the host, not after the spaces around it).
        if !host.contains(&b':') {
            let with_port = [host.trim_ascii(), b":8443"].concat();
            assert_eq!(host_answer(&resolver, &with_port), Some(answer.clone()));
        }
    }

    // The authority of an absolute-form (or HTTP/2) request is read as the `Host` header is,
    // and wins over a `Host` header that says something else.
    if let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(host)
        .path_and_query("/")
        .build()
    {
        let req = Request::get(uri)
            .header(header::HOST, "other.invalid")
            .body(())
            .unwrap();
        assert_eq!(resolver.resolve(&RequestHead::new(&req)), answer);
    }
}

/// `PathResolver`: the segment after a prefix.
///
/// Input: `prefix\nuri`, or just the URI under `/t`.
pub fn resolve_path(data: &[u8]) {
    let (prefix, uri) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => ("/t".to_owned(), data),
    };
    let Ok(uri) = Uri::try_from(uri) else {
        return;
    };
    let resolver = PathResolver::new(&prefix);
    let mut expected_prefix = prefix.trim_end_matches('/').to_owned();
    if !expected_prefix.starts_with('/') {
        expected_prefix.insert(0, '/');
    }
    expected_prefix.push('/');

    let req = Request::get(uri.clone()).body(()).unwrap();
    let path = uri.path();
    match resolver.resolve(&RequestHead::new(&req)) {
        Ok(Some(id)) => {
            assert!(
                TenantId::parse(id.as_str()).is_ok(),
                "{id} is not canonical"
            );
            let rest = path
                .strip_prefix(expected_prefix.as_str())
                .expect("only a path under the prefix names a tenant");
            assert!(
                rest == id.as_str() || rest.starts_with(&format!("{id}/")),
                "{id} is not the segment after the prefix in {path:?}"
            );
        }
        Ok(None) => assert!(!path.starts_with(expected_prefix.as_str()), "{path:?}"),
        Err(e) => {
            assert!(path.starts_with(expected_prefix.as_str()), "{path:?}: {e}");
            assert!(matches!(e, TenantRejection::Malformed { .. }), "{e:?}");
        }
    }
}

const SECRET: &[u8] = b"the fuzzing secret, 32 bytes or more";
const OTHER_SECRET: &[u8] = b"another secret of 32 bytes or more!!";

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn bearer(
    resolver: &JwtResolver,
    value: &[u8],
) -> Option<Result<Option<TenantId>, TenantRejection>> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let req = Request::get("/")
        .header(header::AUTHORIZATION, value)
        .body(())
        .unwrap();
    Some(resolver.resolve(&RequestHead::new(&req)))
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// `JwtResolver` (HS256): arbitrary `Authorization` values, and tokens we sign ourselves with
/// an arbitrary tenant claim or arbitrary claims.
///
/// Input: a mode byte, then the header value (mode 0), the claim (mode 1) or JSON claims (2).
pub fn resolve_jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let resolver = JwtResolver::hs256(SECRET).unwrap();
    match mode % 3 {
        0 => {
            // Without our signature no header names a tenant.
            if let Some(answer) = bearer(&resolver, rest) {
                assert!(!matches!(answer, Ok(Some(_))), "{answer:?} for {rest:?}");
            }
        }
        1 => {
            let claim = String::from_utf8_lossy(rest);
            let claims = json!({ "tenant_id": claim, "exp": now() + 600 });
            let token = sign(&claims, SECRET);
            let answer = bearer(&resolver, format!("Bearer {token}").as_bytes()).unwrap();
            match TenantId::parse(&claim) {
                Ok(id) => assert_eq!(answer, Ok(Some(id))),
                Err(_) => assert!(
                    matches!(answer, Err(TenantRejection::Malformed { .. })),
                    "{answer:?} for the claim {claim:?}"
                ),
            }
            // The scheme is case-insensitive and spaces around the token do not matter.
            let spaced = format!("bEaReR   {token}  ");
            assert_eq!(bearer(&resolver, spaced.as_bytes()).unwrap(), answer);
            // The same claims signed with another key are refused.
            let forged = sign(&claims, OTHER_SECRET);
            assert_eq!(
                bearer(&resolver, format!("Bearer {forged}").as_bytes()).unwrap(),
                Err(TenantRejection::InvalidToken(TokenError::Signature))
            );
        }
        _ => {
            let Ok(claims) = serde_json::from_slice::<Value>(rest) else {
                return;
            };
            let token = sign(&claims, SECRET);
            let answer = bearer(&resolver, format!("Bearer {token}").as_bytes()).unwrap();
            if let Ok(Some(id)) = &answer {
                assert_eq!(
                    claims.get("tenant_id").and_then(Value::as_str),
                    Some(id.as_str()),
                    "the tenant is the claim"
                );
                let exp = claims.get("exp").and_then(Value::as_f64);
                assert!(
                    exp.is_some_and(|exp| exp + 60.0 >= now() as f64),
                    "a token without a future exp was accepted: {claims}"
                );
            } else {
                assert!(answer.is_err(), "{answer:?} for {claims}");
            }
        }
    }
}

fn map_of(name: HeaderName, values: &[&[u8]]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for value in values {
        map.append(name.clone(), HeaderValue::from_bytes(value).unwrap());
    }
    map
}

fn names(fields: &[HeaderName]) -> String {
    fields
        .iter()
        .map(HeaderName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A canonical `Cache-Control` value for response directives.
fn render_response(d: &ResponseDirectives) -> String {
    let mut out = Vec::new();
    let secs = |name: &str, v: Option<Duration>| v.map(|v| format!("{name}={}", v.as_secs()));
    out.extend(secs("max-age", d.max_age));
    out.extend(secs("s-maxage", d.s_maxage));
    match &d.no_cache {
        NoCache::No => {}
        NoCache::All => out.push("no-cache".to_owned()),
        NoCache::Fields(f) => out.push(format!("no-cache=\"{}\"", names(f))),
    }
    match &d.private {
        Private::No => {}
        Private::All => out.push("private".to_owned()),
        Private::Fields(f) => out.push(format!("private=\"{}\"", names(f))),
    }
    for (set, name) in [
        (d.no_store, "no-store"),
        (d.public, "public"),
        (d.must_revalidate, "must-revalidate"),
        (d.proxy_revalidate, "proxy-revalidate"),
        (d.must_understand, "must-understand"),
        (d.immutable, "immutable"),
    ] {
        if set {
            out.push(name.to_owned());
        }
    }
    out.extend(secs("stale-while-revalidate", d.stale_while_revalidate));
    out.extend(secs("stale-if-error", d.stale_if_error));
    out.join(", ")
}

/// A canonical `Cache-Control` value for request directives.
fn render_request(d: &RequestDirectives) -> String {
    let mut out = Vec::new();
    let secs = |name: &str, v: Option<Duration>| v.map(|v| format!("{name}={}", v.as_secs()));
    out.extend(secs("max-age", d.max_age));
    out.extend(secs("min-fresh", d.min_fresh));
    match d.max_stale {
        None => {}
        Some(MaxStale::Any) => out.push("max-stale".to_owned()),
        Some(MaxStale::Seconds(s)) => out.push(format!("max-stale={s}")),
    }
    for (set, name) in [
        (d.no_cache, "no-cache"),
        (d.no_store, "no-store"),
        (d.only_if_cached, "only-if-cached"),
    ] {
        if set {
            out.push(name.to_owned());
        }
    }
    out.extend(secs("stale-if-error", d.stale_if_error));
    out.join(", ")
}

/// `Cache-Control` (RFC 9111 §5.2) of responses and requests, and the request `Pragma`.
///
/// Input: header lines separated by `\n`.
pub fn cache_control(data: &[u8]) {
    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|line| HeaderValue::from_bytes(line).is_ok())
        .collect();
    if lines.is_empty() {
        return;
    }
    let headers = map_of(header::CACHE_CONTROL, &lines);
    let response = ResponseDirectives::from_headers(&headers);
    let request = RequestDirectives::from_headers(&headers);

    // Several lines mean the same as one line joined with commas (RFC 9110 §5.3).
    let joined = lines.join(&b","[..]);
    let one = map_of(header::CACHE_CONTROL, &[&joined]);
    assert_eq!(ResponseDirectives::from_headers(&one), response);
    assert_eq!(RequestDirectives::from_headers(&one), request);

    // parse → render → parse is stable.
    let rendered = render_response(&response);
    let again = map_of(header::CACHE_CONTROL, &[rendered.as_bytes()]);
    assert_eq!(
        ResponseDirectives::from_headers(&again),
        response,
        "{rendered:?}"
    );
    let rendered = render_request(&request);
    let again = map_of(header::CACHE_CONTROL, &[rendered.as_bytes()]);
    assert_eq!(
        RequestDirectives::from_headers(&again),
        request,
        "{rendered:?}"
    );

    // The conflicting-value rule: a response freshness directive given twice differently is 0.
    if let Some(max_age) = response.max_age {
        assert!(max_age.as_secs() <= 2_147_483_648);
    }

    // `Pragma` alone only ever means request `no-cache`.
    let pragma = RequestDirectives::from_headers(&map_of(header::PRAGMA, &lines));
    let expected: &[u8] = if pragma.no_cache { b"no-cache" } else { b"" };
    assert_eq!(
        pragma,
        RequestDirectives::from_headers(&map_of(header::CACHE_CONTROL, &[expected]))
    );
    // ... and is ignored next to `Cache-Control`.
    let mut both = headers.clone();
    both.append(header::PRAGMA, HeaderValue::from_static("no-cache"));
    assert_eq!(RequestDirectives::from_headers(&both), request);
}

/// A request header map from `name:value` lines separated by `\r`; invalid lines are skipped.
fn request_headers(section: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in section.split(|b| *b == b'\r') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// `Vary` (RFC 9111 §4.1) and the secondary key built from it.
///
/// Input: `Vary` lines separated by `\r`, `\n`, request A's `name:value` lines separated by
/// `\r`, `\n`, request B's lines.
pub fn vary(data: &[u8]) {
    let mut sections = data.split(|b| *b == b'\n');
    let vary_lines: Vec<&[u8]> = sections
        .next()
        .unwrap_or_default()
        .split(|b| *b == b'\r')
        .filter(|line| HeaderValue::from_bytes(line).is_ok())
        .collect();
    let a = request_headers(sections.next().unwrap_or_default());
    let b = request_headers(sections.next().unwrap_or_default());
    let fields = vary_fields(&map_of(header::VARY, &vary_lines));
    match &fields {
        VaryFields::Star => {
            assert_eq!(secondary_key(&fields, &a), None);
            assert!(
                !secondary_key_matches(&a, &fields, &a),
                "Vary: * never matches"
            );
            assert_eq!(vary_fields(&map_of(header::VARY, &[b"*"])), fields);
        }
        VaryFields::Fields(list) => {
            assert!(
                list.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
                "fields not sorted and unique: {list:?}"
            );
            let rendered = names(list);
            assert_eq!(
                vary_fields(&map_of(header::VARY, &[rendered.as_bytes()])),
                fields,
                "{rendered:?}"
            );
            // A request matches itself; two requests match exactly when their keys are equal.
            assert!(secondary_key_matches(&a, &fields, &a));
            let key_a = secondary_key(&fields, &a).unwrap();
            let key_b = secondary_key(&fields, &b).unwrap();
            let matches = secondary_key_matches(&a, &fields, &b);
            assert_eq!(matches, secondary_key_matches(&b, &fields, &a));
            assert_eq!(key_a == key_b, matches, "{key_a:?} / {key_b:?}");
            // The stored request needs to keep only the varied fields.
            let mut kept = HeaderMap::new();
            for name in list {
                for value in a.get_all(name) {
                    kept.append(name.clone(), value.clone());
                }
            }
            assert_eq!(secondary_key_matches(&kept, &fields, &b), matches);
            assert_eq!(secondary_key(&fields, &kept), Some(key_a));
        }
    }
}

fn date_of(value: &[u8]) -> Option<SystemTime> {
    let at = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let headers = map_of(header::DATE, &[value]);
    StoredTimes::from_response(at, at, &headers).date
}

/// HTTP-dates (RFC 9110 §5.6.7) as `Date` and `Expires` read them.
///
/// Input: the field value.
pub fn http_date(data: &[u8]) {
    if HeaderValue::from_bytes(data).is_err() {
        return;
    }
    let parsed = date_of(data);
    if let Some(at) = parsed {
        let since = at
            .duration_since(UNIX_EPOCH)
            .expect("HTTP-dates are after 1970");
        assert_eq!(since.subsec_nanos(), 0, "HTTP-dates have whole seconds");
        // parse → render (IMF-fixdate) → parse is stable.
        let rendered = httpdate::fmt_http_date(at);
        assert_eq!(date_of(rendered.as_bytes()), Some(at), "{rendered}");
    }
    // Day and month names and `GMT` in any letter case.
    assert_eq!(date_of(&data.to_ascii_uppercase()), parsed);
    assert_eq!(date_of(&data.to_ascii_lowercase()), parsed);

    // `Expires` is read as `Date` is: the lifetime is `Expires − Date`, 0 when invalid or past.
    let date = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let mut headers = map_of(header::EXPIRES, &[data]);
    headers.insert(
        header::DATE,
        HeaderValue::from_str(&httpdate::fmt_http_date(date)).unwrap(),
    );
    let lifetime =
        freshness_lifetime(StatusCode::OK, &headers, &PolicyConfig::default(), date).unwrap();
    assert_eq!(lifetime.source, FreshnessSource::Expires);
    let expected = parsed
        .and_then(|expires| expires.duration_since(date).ok())
        .unwrap_or_default();
    assert_eq!(lifetime.duration, expected);
}

fn check_decode(input: &[u8]) {
    let Some(value) = decode_stored_value(input) else {
        return;
    };
    let _ = value.weight();
    for threshold in [0, 1024, usize::MAX] {
        let encoded = encode_stored_value(&value, threshold);
        assert_eq!(
            decode_stored_value(&encoded).as_ref(),
            Some(&value),
            "decode → encode → decode changed the value"
        );
    }
}

/// Values read from Redis: decoding never panics, and what decodes re-encodes to itself.
///
/// Input: the value as stored; also tried behind the version and kind bytes of a response and
/// of a `Vary` marker, so the fuzzer reaches the payloads sooner.
pub fn decode_entry(data: &[u8]) {
    check_decode(data);
    check_decode(&[&[1, 0][..], data].concat());
    check_decode(&[&[1, 1][..], data].concat());
}
