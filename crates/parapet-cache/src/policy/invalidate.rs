//! Invalidation after unsafe requests (RFC 9111 §4.4).

use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, StatusCode, Uri, header};

/// The path-and-query strings whose stored responses an unsafe request invalidates.
///
/// For a method not known to be safe (anything but `GET`, `HEAD`, `OPTIONS` and `TRACE`) that
/// got a 2xx or 3xx response, the targets are the effective request URI and, when they are
/// same-origin, the URIs in `Location` and `Content-Location` (§4.4). A reference is
/// same-origin when it is relative, or absolute with the request's authority: the request's
/// own, or its `Host` header for the origin-form URIs a server sees. When the request's scheme
/// is unknown (origin-form, TLS terminated in front), only the authority is compared, with
/// default ports taken from the reference's scheme.
///
/// Results are normalized: fragment removed, dot segments resolved, empty path as `/`,
/// duplicates removed, request URI first. The layer scopes them (tenant, host) itself.
#[must_use]
pub fn invalidation_targets(
    method: &Method,
    status: StatusCode,
    request_uri: &Uri,
    request_headers: &HeaderMap,
    response_headers: &HeaderMap,
) -> Vec<String> {
    let safe = [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE];
    if safe.contains(method) || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let base_path = remove_dot_segments(request_uri.path());
    let base_query = request_uri.query();
    let mut targets = vec![join(&base_path, base_query)];
    let authority = request_uri.authority().cloned().or_else(|| {
        request_headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
    });
    let origin = Origin {
        scheme: request_uri.scheme(),
        authority: authority.as_ref(),
    };
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(value) = response_headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if let Some(target) = resolve(value.trim(), &base_path, base_query, &origin)
            && !targets.contains(&target)
        {
            targets.push(target);
        }
    }
    targets
}

/// The request's origin as far as it is known.
struct Origin<'a> {
    scheme: Option<&'a Scheme>,
    authority: Option<&'a Authority>,
}

impl Origin<'_> {
    /// Whether an absolute reference with this scheme and authority is same-origin.
    fn admits(&self, scheme: Option<&str>, authority: &Authority) -> bool {
        let Some(ours) = self.authority else {
            return false;
        };
        let scheme = scheme.map(str::to_ascii_lowercase);
        if let (Some(a), Some(b)) = (self.scheme, scheme.as_deref())
            && !a.as_str().eq_ignore_ascii_case(b)
        {
            return false;
        }
        let scheme = scheme.as_deref().or(self.scheme.map(Scheme::as_str));
        let default_port = match scheme {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => None,
        };
        ours.host().eq_ignore_ascii_case(authority.host())
            && ours.port_u16().or(default_port) == authority.port_u16().or(default_port)
    }
}

/// Resolves a URI reference (RFC 3986 §5.2) against the request; `None` if it is cross-origin
/// or unreadable.
fn resolve(
    reference: &str,
    base_path: &str,
    base_query: Option<&str>,
    origin: &Origin<'_>,
) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or_default();
    let (scheme, rest) = match split_scheme(reference) {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, reference),
    };
    if scheme.is_some() || rest.starts_with("//") {
        // Absolute URI or network-path reference: compare origins.
        let after_slashes = rest.strip_prefix("//")?;
        let end = after_slashes
            .find(['/', '?'])
            .unwrap_or(after_slashes.len());
        let authority: Authority = after_slashes[..end].parse().ok()?;
        if !origin.admits(scheme, &authority) {
            return None;
        }
        let (path, query) = split_query(&after_slashes[end..]);
        return Some(join(&remove_dot_segments(path), query));
    }
    let (path, query) = split_query(rest);
    let path = if path.is_empty() {
        // "?q" or "": the request path, with the reference's query if it has one.
        return Some(join(base_path, query.or(base_query)));
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
        format!("{dir}{path}")
    };
    Some(join(&remove_dot_segments(&path), query))
}

/// Splits `scheme:rest` when the reference starts with a valid scheme (RFC 3986 §3.1).
fn split_scheme(reference: &str) -> Option<(&str, &str)> {
    let colon = reference.find(':')?;
    let scheme = &reference[..colon];
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme, &reference[colon + 1..]))
}

fn split_query(input: &str) -> (&str, Option<&str>) {
    match input.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (input, None),
    }
}

fn join(path: &str, query: Option<&str>) -> String {
    let path = if path.is_empty() { "/" } else { path };
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// RFC 3986 §5.2.4 on a path: resolves `.` and `..` segments.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." && out.len() > 1 {
                    out.pop();
                }
                // A trailing dot segment still denotes a directory.
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if path.starts_with('/') && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
#[path = "invalidate_tests.rs"]
mod tests;
