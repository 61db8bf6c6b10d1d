//! Resolvers: where in a request the tenant is named.
//!
//! | resolver | reads | safe to trust on the open internet? |
//! |---|---|---|
//! | [`JwtResolver`] | a claim of a verified `Authorization: Bearer` JWT | **yes**: the claim is signed by your identity provider |
//! | [`HostResolver`] | the subdomain of `Host` (or the HTTP/2 authority) | it *identifies* the tenant, it does not *authenticate* the caller: pair it with authentication |
//! | [`PathResolver`] | a path prefix, `/t/{tenant}/…` | same as the host: identification only |
//! | [`HeaderResolver`] | a header, `x-tenant-id` by default | **no**, unless a proxy you control sets it and strips any copy the client sent |
//!
//! Identification says which tenant a request is *for*; only a signed credential says the caller
//! *may act* for it. A bare header or a subdomain lets any client pick any tenant, so without a JWT
//! resolver (or your own authentication that checks membership) the tenant is a routing hint.
//!
//! Several resolvers form a [`ResolverChain`]: each runs in order, the first error wins, and when
//! two of them name different tenants the request is rejected as
//! [`Ambiguous`](crate::TenantRejection::Ambiguous) rather than silently picking one.

mod header;
mod host;
#[cfg(feature = "jwt")]
mod jwt;
mod path;

use std::{fmt, sync::Arc};

use http::{Extensions, HeaderMap, Method, Request, Uri};

pub use header::HeaderResolver;
pub use host::HostResolver;
#[cfg(feature = "jwt")]
pub use jwt::{JwtConfigError, JwtResolver};
pub use path::PathResolver;

use crate::{TenantId, TenantIdError, TenantIdRule, TenantRejection};

/// The parts of a request a resolver may read.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI (with the authority for HTTP/2 and absolute-form requests).
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions.
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// Borrows the head of `req`.
    pub fn new<B>(req: &'a Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

/// Finds the tenant a request names, without looking it up.
///
/// Return `Ok(None)` when the request does not carry what this resolver reads, and an error when
/// it carries something invalid (never panic on input).
pub trait ResolveTenant: Send + Sync + 'static {
    /// The tenant id this request names, if any.
    fn resolve(&self, req: &RequestHead<'_>) -> Result<Option<TenantId>, TenantRejection>;

    /// The same answer as [`resolve`](Self::resolve), borrowed from the request when the id
    /// appears in it as is: `TenantLayer` calls this one, so that a cached tenant costs no
    /// allocation. The default calls `resolve`.
    fn resolve_borrowed<'r>(
        &self,
        req: &RequestHead<'r>,
    ) -> Result<Option<ResolvedId<'r>>, TenantRejection> {
        Ok(self.resolve(req)?.map(ResolvedId::from))
    }

    /// Whether a request without a tenant should be answered 401 with a bearer challenge
    /// (true for resolvers that read credentials).
    fn wants_bearer(&self) -> bool {
        false
    }
}

impl<F> ResolveTenant for F
where
    F: Fn(&RequestHead<'_>) -> Result<Option<TenantId>, TenantRejection> + Send + Sync + 'static,
{
    fn resolve(&self, req: &RequestHead<'_>) -> Result<Option<TenantId>, TenantRejection> {
        self(req)
    }
}

/// A tenant id a resolver found: borrowed from the request, or owned. Either way it passed a
/// [`TenantIdRule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedId<'r>(Resolved<'r>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved<'r> {
    Borrowed(&'r str),
    Owned(TenantId),
}

impl<'r> ResolvedId<'r> {
    /// Validates `s` with `rule` and borrows it.
    pub fn borrowed(s: &'r str, rule: &TenantIdRule) -> Result<Self, TenantIdError> {
        rule.check(s)?;
        Ok(Self(Resolved::Borrowed(s)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Resolved::Borrowed(s) => s,
            Resolved::Owned(id) => id.as_str(),
        }
    }

    /// The id as a [`TenantId`] (allocated when it was borrowed).
    pub fn into_owned(self) -> TenantId {
        match self.0 {
            Resolved::Borrowed(s) => TenantId::validated(s),
            Resolved::Owned(id) => id,
        }
    }
}

impl From<TenantId> for ResolvedId<'_> {
    fn from(id: TenantId) -> Self {
        Self(Resolved::Owned(id))
    }
}

/// Resolvers tried in order; they must agree.
#[derive(Clone, Default)]
#[must_use]
pub struct ResolverChain {
    resolvers: Vec<Arc<dyn ResolveTenant>>,
}

impl ResolverChain {
    /// An empty chain (which finds no tenant in any request).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a resolver.
    pub fn push(mut self, resolver: impl ResolveTenant) -> Self {
        self.resolvers.push(Arc::new(resolver));
        self
    }

    /// Whether the chain has no resolver.
    pub fn is_empty(&self) -> bool {
        self.resolvers.is_empty()
    }

    /// Runs every resolver: the first error is returned; different answers are
    /// [`Ambiguous`](TenantRejection::Ambiguous); no answer is
    /// [`Missing`](TenantRejection::Missing).
    pub fn resolve(&self, req: &RequestHead<'_>) -> Result<TenantId, TenantRejection> {
        self.resolve_borrowed(req).map(ResolvedId::into_owned)
    }

    /// [`resolve`](Self::resolve), borrowing the id from the request when a resolver can.
    pub fn resolve_borrowed<'r>(
        &self,
        req: &RequestHead<'r>,
    ) -> Result<ResolvedId<'r>, TenantRejection> {
        let mut found: Option<ResolvedId<'r>> = None;
        for resolver in &self.resolvers {
            if let Some(id) = resolver.resolve_borrowed(req)? {
                match &found {
                    Some(prev) if prev.as_str() != id.as_str() => {
                        return Err(TenantRejection::Ambiguous);
                    }
                    Some(_) => {}
                    None => found = Some(id),
                }
            }
        }
        found.ok_or_else(|| TenantRejection::Missing {
            bearer: self.resolvers.iter().any(|r| r.wants_bearer()),
        })
    }
}

impl fmt::Debug for ResolverChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverChain")
            .field("len", &self.resolvers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(req: &Request<()>) -> RequestHead<'_> {
        RequestHead::new(req)
    }

    #[test]
    fn chain_agrees_disagrees_and_misses() {
        let chain = ResolverChain::new()
            .push(HeaderResolver::new())
            .push(HostResolver::new("example.com"));
        let req = Request::builder()
            .header("host", "acme.example.com")
            .header("x-tenant-id", "acme")
            .body(())
            .unwrap();
        assert_eq!(chain.resolve(&head_of(&req)).unwrap().as_str(), "acme");

        let req = Request::builder()
            .header("host", "globex.example.com")
            .header("x-tenant-id", "acme")
            .body(())
            .unwrap();
        assert_eq!(
            chain.resolve(&head_of(&req)),
            Err(TenantRejection::Ambiguous)
        );

        let req = Request::builder()
            .header("host", "example.com")
            .body(())
            .unwrap();
        assert_eq!(
            chain.resolve(&head_of(&req)),
            Err(TenantRejection::Missing { bearer: false })
        );
        assert_eq!(
            ResolverChain::new().resolve(&head_of(&req)),
            Err(TenantRejection::Missing { bearer: false })
        );
    }

    #[test]
    fn borrowed_and_owned_answers_agree_by_value() {
        let owned = |name: &'static str| {
            move |_: &RequestHead<'_>| Ok(Some(TenantId::parse(name).unwrap()))
        };
        let req = Request::builder()
            .header("x-tenant-id", "acme")
            .body(())
            .unwrap();
        let chain = ResolverChain::new()
            .push(HeaderResolver::new())
            .push(owned("acme"));
        assert_eq!(
            chain.resolve_borrowed(&head_of(&req)).unwrap().as_str(),
            "acme"
        );
        assert_eq!(chain.resolve(&head_of(&req)).unwrap().as_str(), "acme");
        let chain = ResolverChain::new()
            .push(HeaderResolver::new())
            .push(owned("globex"));
        assert_eq!(
            chain.resolve_borrowed(&head_of(&req)),
            Err(TenantRejection::Ambiguous)
        );
        let rule = TenantIdRule::default();
        assert_eq!(
            ResolvedId::borrowed("ACME", &rule),
            Err(TenantIdError::InvalidCharacter)
        );
        assert_eq!(
            ResolvedId::borrowed("acme", &rule).unwrap().into_owned(),
            TenantId::parse("acme").unwrap()
        );
    }

    #[test]
    fn closures_are_resolvers() {
        let chain = ResolverChain::new().push(|req: &RequestHead<'_>| {
            Ok(req
                .uri
                .query()
                .and_then(|q| q.strip_prefix("tenant="))
                .and_then(|t| TenantId::parse(t).ok()))
        });
        let req = Request::builder().uri("/?tenant=acme").body(()).unwrap();
        assert_eq!(chain.resolve(&head_of(&req)).unwrap().as_str(), "acme");
    }
}
