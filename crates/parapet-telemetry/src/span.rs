//! The request span: its name and its HTTP semantic-convention attributes.

use axum::extract::{ConnectInfo, MatchedPath};
use http::{Method, Request, Version};
use tracing::{Span, field::Empty};

/// The `tracing` target of the request span and of the slow-request warning.
pub(crate) const TARGET: &str = "parapet_telemetry";

pub(crate) fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Splits a `Host` header (or URI authority) into address and port; `[::1]:80` keeps its brackets
/// off.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some((addr, tail)) = host.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((addr, port)) if !addr.contains(':') => (addr, port.parse().ok()),
        _ => (host, None),
    }
}

pub(crate) fn request_span<B>(
    req: &Request<B>,
    method: &'static str,
    scheme: &'static str,
    route: Option<&MatchedPath>,
) -> Span {
    let name = match (method, route) {
        ("_OTHER", Some(route)) => format!("HTTP {}", route.as_str()),
        ("_OTHER", None) => "HTTP".to_owned(),
        (method, Some(route)) => format!("{method} {}", route.as_str()),
        (method, None) => method.to_owned(),
    };
    // Every value is known now: passed at creation, they reach the subscriber in one visit
    // instead of one `record` (and one dispatch through every layer) each.
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let (address, port) = host.map_or((None, None), |host| {
        let (address, port) = split_host(host);
        (Some(address), port.map(i64::from))
    });
    let agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok());
    let client = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| tracing::field::display(addr.ip()));
    tracing::info_span!(
        target: TARGET,
        "HTTP request",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        http.request.method = method,
        url.path = req.uri().path(),
        url.scheme = scheme,
        url.query = req.uri().query(),
        http.route = route.map(MatchedPath::as_str),
        http.response.status_code = Empty,
        server.address = address,
        server.port = port,
        network.protocol.version = protocol_version(req.version()),
        user_agent.original = agent,
        client.address = client,
        error.type = Empty,
        tenant.id = Empty,
        cache.status = Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hosts() {
        assert_eq!(split_host("example.com:8080"), ("example.com", Some(8080)));
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(split_host("[::1]:3000"), ("::1", Some(3000)));
        assert_eq!(split_host("::1"), ("::1", None));
    }

    #[test]
    fn normalises_methods() {
        assert_eq!(method_name(&Method::GET), "GET");
        assert_eq!(
            method_name(&Method::from_bytes(b"PURGE").unwrap()),
            "_OTHER"
        );
        assert_eq!(protocol_version(Version::HTTP_11), "1.1");
        assert_eq!(protocol_version(Version::HTTP_2), "2");
    }
}
