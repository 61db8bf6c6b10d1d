//! Span names and the `http.route` value, made once per route instead of once per request.
//!
//! A route is a pattern the application declared (`/leads/{id}`, from axum's `MatchedPath`), so
//! there are as many as the router has, whatever the clients send. Each one is interned for the
//! life of the process with its ten span names (`GET /leads/{id}`, …, `HTTP /leads/{id}` for
//! other methods): a request then costs no `format!` and no copy of the route, and the span name
//! and attribute are `&'static str`, which OpenTelemetry stores without allocating.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use http::Method;

/// How many [`KnownMethod`]s there are.
pub(crate) const METHODS: usize = 10;

/// The methods the semantic conventions name, then `_OTHER` (whose span name is `HTTP`).
const METHOD_NAMES: [&str; METHODS] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];
const OTHER: usize = 9;

/// A request method as the semantic conventions know it: an index into [`METHODS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownMethod(usize);

impl KnownMethod {
    pub(crate) fn of(method: &Method) -> Self {
        Self(match *method {
            Method::GET => 0,
            Method::POST => 1,
            Method::PUT => 2,
            Method::DELETE => 3,
            Method::PATCH => 4,
            Method::HEAD => 5,
            Method::OPTIONS => 6,
            Method::CONNECT => 7,
            Method::TRACE => 8,
            _ => OTHER,
        })
    }

    /// A dense index, `0..METHODS`.
    pub(crate) fn index(self) -> usize {
        self.0
    }

    /// `http.request.method`: the method, or `_OTHER`.
    pub(crate) fn name(self) -> &'static str {
        METHOD_NAMES[self.0]
    }

    /// The span name of a request no route matched: the method, or `HTTP`.
    pub(crate) fn span_name(self) -> &'static str {
        if self.0 == OTHER {
            "HTTP"
        } else {
            METHOD_NAMES[self.0]
        }
    }
}

/// One interned route: the pattern and its span name for each method.
#[derive(Debug)]
pub(crate) struct Route {
    path: &'static str,
    names: [&'static str; METHODS],
}

impl Route {
    fn new(path: &str) -> Self {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let path = leak(path.to_owned());
        let names = std::array::from_fn(|i| {
            let method = if i == OTHER { "HTTP" } else { METHOD_NAMES[i] };
            leak(format!("{method} {path}"))
        });
        Self { path, names }
    }

    /// The pattern, for `http.route`.
    pub(crate) fn path(&self) -> &'static str {
        self.path
    }

    /// `{METHOD} {route}` (`HTTP {route}` for methods the conventions do not name).
    pub(crate) fn span_name(&self, method: KnownMethod) -> &'static str {
        self.names[method.0]
    }
}

/// The route a service instance saw last, in front of the process-wide table.
///
/// `Router::layer` gives every route its own service, so for a layer added that way this one
/// comparison always finds the route and the table's lock is never taken after the first request.
#[derive(Debug, Default)]
pub(crate) struct RouteCache(OnceLock<&'static Route>);

impl RouteCache {
    pub(crate) fn get(&self, path: &str) -> &'static Route {
        if let Some(route) = self.0.get()
            && route.path == path
        {
            return route;
        }
        let route = intern(path);
        let _ = self.0.set(route);
        route
    }
}

fn intern(path: &str) -> &'static Route {
    static ROUTES: OnceLock<Mutex<HashMap<&'static str, &'static Route>>> = OnceLock::new();
    let mut routes = ROUTES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(route) = routes.get(path) {
        return route;
    }
    let route: &'static Route = Box::leak(Box::new(Route::new(path)));
    routes.insert(route.path, route);
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_methods_and_routes() {
        assert_eq!(KnownMethod::of(&Method::GET).name(), "GET");
        let purge = KnownMethod::of(&Method::from_bytes(b"PURGE").unwrap());
        assert_eq!(purge.name(), "_OTHER");
        assert_eq!(purge.span_name(), "HTTP");
        let route = intern("/leads/{id}");
        assert_eq!(route.path(), "/leads/{id}");
        assert_eq!(
            route.span_name(KnownMethod::of(&Method::DELETE)),
            "DELETE /leads/{id}"
        );
        assert_eq!(route.span_name(purge), "HTTP /leads/{id}");
    }

    #[test]
    fn a_route_is_interned_once_and_the_cache_follows_a_new_one() {
        assert!(std::ptr::eq(intern("/a/{x}"), intern("/a/{x}")));
        let cache = RouteCache::default();
        assert_eq!(cache.get("/a/{x}").path(), "/a/{x}");
        assert_eq!(
            cache.get("/b").path(),
            "/b",
            "another route is not the cached one"
        );
        assert_eq!(cache.get("/a/{x}").path(), "/a/{x}");
    }
}
