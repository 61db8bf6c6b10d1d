use super::*;
use crate::policy::test_support::{Pairs, headers};

#[test]
fn methods_and_statuses() {
    let uri: Uri = "/items/1".parse().unwrap();
    let none = HeaderMap::new();
    let custom = Method::from_bytes(b"PURGE-ISH").unwrap();
    #[rustfmt::skip]
    let cases: Vec<(Method, u16, bool)> = vec![
        // RFC 9111 §4.4: unsafe (or unknown) method + non-error status.
        (Method::POST, 201, true),
        (Method::PUT, 200, true),
        (Method::PATCH, 204, true),
        (Method::DELETE, 204, true),
        (custom, 200, true),
        (Method::POST, 303, true),
        (Method::POST, 400, false),
        (Method::POST, 500, false),
        (Method::GET, 200, false),
        (Method::HEAD, 200, false),
        (Method::OPTIONS, 200, false),
        (Method::TRACE, 200, false),
    ];
    for (method, status, invalidates) in cases {
        let status = StatusCode::from_u16(status).unwrap();
        let got = invalidation_targets(&method, status, &uri, &none, &none);
        let expected: Vec<String> = if invalidates {
            vec!["/items/1".to_owned()]
        } else {
            vec![]
        };
        assert_eq!(got, expected, "{method} {status}");
    }
}

#[test]
fn location_targets() {
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Pairs<'_>, Vec<&str>)> = vec![
        // (request URI, Host, response headers, expected targets)
        ("/items", "api.example.com", vec![("location", "/items/7")], vec!["/items", "/items/7"]),
        ("/items", "api.example.com", vec![("content-location", "/items/7?v=2#frag")], vec!["/items", "/items/7?v=2"]),
        ("/items/", "api.example.com", vec![("location", "7")], vec!["/items/", "/items/7"]),
        ("/a/b/c", "api.example.com", vec![("location", "../d")], vec!["/a/b/c", "/a/d"]),
        ("/a/b?x=1", "api.example.com", vec![("location", "?y=2")], vec!["/a/b?x=1", "/a/b?y=2"]),
        ("/a/./b/../c", "h", vec![], vec!["/a/c"]),
        // Same origin by Host, case-insensitive, default ports.
        ("/items", "api.example.com", vec![("location", "https://API.example.com/items/7")], vec!["/items", "/items/7"]),
        ("/items", "api.example.com", vec![("location", "https://api.example.com:443/items/7")], vec!["/items", "/items/7"]),
        ("/items", "api.example.com", vec![("location", "//api.example.com/x")], vec!["/items", "/x"]),
        ("/items", "api.example.com", vec![("location", "https://api.example.com")], vec!["/items", "/"]),
        // Foreign origins are never invalidated (§4.4).
        ("/items", "api.example.com", vec![("location", "https://evil.example/items/7")], vec!["/items"]),
        ("/items", "api.example.com", vec![("location", "//evil.example/items/7")], vec!["/items"]),
        ("/items", "api.example.com", vec![("location", "https://api.example.com:8443/items/7")], vec!["/items"]),
        ("/items", "api.example.com:8080", vec![("location", "http://api.example.com/x")], vec!["/items"]),
        // Without any authority we cannot tell: absolute references are skipped.
        ("/items", "", vec![("location", "https://api.example.com/x")], vec!["/items"]),
        // Both headers, deduplicated.
        ("/items", "h", vec![("location", "/items/7"), ("content-location", "/items/7")], vec!["/items", "/items/7"]),
        ("/items", "h", vec![("location", "/items")], vec!["/items"]),
        ("/items", "h", vec![("location", "mailto:someone@example.com")], vec!["/items"]),
    ];
    for (uri, host, response, expected) in cases {
        let request = if host.is_empty() {
            HeaderMap::new()
        } else {
            headers(&[("host", host)])
        };
        let got = invalidation_targets(
            &Method::POST,
            StatusCode::CREATED,
            &uri.parse().unwrap(),
            &request,
            &headers(&response),
        );
        assert_eq!(got, expected, "{uri} {response:?}");
    }
}

#[test]
fn absolute_request_uri_sets_the_origin() {
    let uri: Uri = "https://api.example.com/items".parse().unwrap();
    let none = HeaderMap::new();
    #[rustfmt::skip]
    let cases = [
        ("https://api.example.com/items/1", true),
        ("http://api.example.com/items/1", false), // scheme differs
        ("https://api.example.com:443/items/1", true),
        ("https://other.example.com/items/1", false),
    ];
    for (location, same) in cases {
        let response = headers(&[("location", location)]);
        let got = invalidation_targets(&Method::DELETE, StatusCode::OK, &uri, &none, &response);
        assert_eq!(got.len() == 2, same, "{location}");
        assert_eq!(got[0], "/items");
    }
}

#[test]
fn dot_segments() {
    let cases = [
        ("/", "/"),
        ("", ""),
        ("/a/b/../c", "/a/c"),
        ("/a/./b", "/a/b"),
        ("/a/..", "/"),
        ("/..", "/"),
        ("/../../x", "/x"),
        ("/a/b/.", "/a/b/"),
    ];
    for (input, expected) in cases {
        assert_eq!(remove_dot_segments(input), expected, "input {input:?}");
    }
}
