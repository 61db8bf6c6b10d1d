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
//!
//! # A credential is the authority
//!
//! A resolver that verifies a credential ([`JwtResolver`], or any resolver added with
//! [`ResolverChain::authority`]) is the chain's *authority*: once a chain has one, the credential
//! decides the tenant and the identifying sources may only narrow it.
//!
//! | request | answer |
//! |---|---|
//! | a valid credential, no other source | its tenant |
//! | a valid credential, a header / host / path naming the same tenant | that tenant |
//! | a valid credential, another source naming another tenant | 403 [`NotGranted`](crate::TenantRejection::NotGranted) |
//! | no credential, another source naming a tenant | 401 [`Unauthenticated`](crate::TenantRejection::Unauthenticated) |
//! | no credential, nothing else | 401 [`Missing`](crate::TenantRejection::Missing) (bearer challenge) |
//! | an invalid credential | 401 [`InvalidToken`](crate::TenantRejection::InvalidToken) |
//!
//! Without an authority the chain only identifies: whichever source names the tenant is
//! believed, which is why a bare header must never face the open internet on its own.
//!
//! ```
//! use parapet_tenant::{HeaderResolver, JwtResolver, RequestHead, ResolverChain, TenantRejection};
//!
//! let chain = ResolverChain::new()
//!     .push(HeaderResolver::new())
//!     .push(JwtResolver::hs256(b"a secret of at least 32 bytes....").unwrap());
//! // The header alone no longer names a tenant: a token is required.
//! let req = http::Request::get("/").header("x-tenant-id", "globex").body(()).unwrap();
//! assert_eq!(
//!     chain.resolve(&RequestHead::new(&req)),
//!     Err(TenantRejection::Unauthenticated)
//! );
//! ```

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

    /// Whether this resolver authenticates the caller (verifies a credential) rather than only
    /// identifying the tenant. [`ResolverChain::push`] makes such a resolver the chain's
    /// authority (see the [module docs](self)); false by default.
    fn authenticates(&self) -> bool {
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

/// Resolvers tried in order; they must agree, and when one of them is the authority (a
/// verified credential), the others may only narrow what it says.
///
/// Every resolver runs on every request; the first error wins. Two identifying answers that
/// differ are [`Ambiguous`](TenantRejection::Ambiguous). With an authority (see the
/// [module docs](self)), a request it finds no tenant in is refused with 401 even when another
/// source names one, and a source naming another tenant than the credential is
/// [`NotGranted`](TenantRejection::NotGranted) (403).
#[derive(Clone, Default)]
#[must_use]
pub struct ResolverChain {
    resolvers: Vec<Entry>,
    has_authority: bool,
}

#[derive(Clone)]
struct Entry {
    resolver: Arc<dyn ResolveTenant>,
    authority: bool,
}

impl ResolverChain {
    /// An empty chain (which finds no tenant in any request).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a resolver. One that [`authenticates`](ResolveTenant::authenticates) (a
    /// [`JwtResolver`]) becomes an authority, as with [`authority`](Self::authority).
    pub fn push(self, resolver: impl ResolveTenant) -> Self {
        let authority = resolver.authenticates();
        self.add(Arc::new(resolver), authority)
    }

    /// Appends a resolver as an authority: a request it names no tenant in is refused (401),
    /// and the other resolvers may only agree with it. For a resolver of your own that verifies
    /// a credential (a session cookie, a client certificate): a closure cannot say so itself.
    pub fn authority(self, resolver: impl ResolveTenant) -> Self {
        self.add(Arc::new(resolver), true)
    }

    fn add(mut self, resolver: Arc<dyn ResolveTenant>, authority: bool) -> Self {
        self.has_authority |= authority;
        self.resolvers.push(Entry {
            resolver,
            authority,
        });
        self
    }

    /// Whether the chain has no resolver.
    pub fn is_empty(&self) -> bool {
        self.resolvers.is_empty()
    }

    /// Whether a resolver of the chain is an authority, so that every request needs a valid
    /// credential.
    pub fn has_authority(&self) -> bool {
        self.has_authority
    }

    /// Runs every resolver: the first error is returned; different answers are
    /// [`Ambiguous`](TenantRejection::Ambiguous), or [`NotGranted`](TenantRejection::NotGranted)
    /// when one of them is the authority's; no answer is [`Missing`](TenantRejection::Missing),
    /// and no answer from the authority when another resolver found one is
    /// [`Unauthenticated`](TenantRejection::Unauthenticated).
    pub fn resolve(&self, req: &RequestHead<'_>) -> Result<TenantId, TenantRejection> {
        self.resolve_borrowed(req).map(ResolvedId::into_owned)
    }

    /// [`resolve`](Self::resolve), borrowing the id from the request when a resolver can.
    pub fn resolve_borrowed<'r>(
        &self,
        req: &RequestHead<'r>,
    ) -> Result<ResolvedId<'r>, TenantRejection> {
        // What the identifying resolvers named, and what the authorities did.
        let mut named: Option<ResolvedId<'r>> = None;
        let mut granted: Option<ResolvedId<'r>> = None;
        for entry in &self.resolvers {
            if let Some(id) = entry.resolver.resolve_borrowed(req)? {
                let slot = if entry.authority {
                    &mut granted
                } else {
                    &mut named
                };
                match slot {
                    Some(prev) if prev.as_str() != id.as_str() => {
                        return Err(TenantRejection::Ambiguous);
                    }
                    Some(_) => {}
                    None => *slot = Some(id),
                }
            }
        }
        if !self.has_authority {
            return named.ok_or_else(|| self.missing());
        }
        match (granted, named) {
            (Some(granted), Some(named)) if granted.as_str() != named.as_str() => {
                Err(TenantRejection::NotGranted)
            }
            // Equal by value: lend the identifying answer when it is borrowed.
            (Some(granted), named) => Ok(named.unwrap_or(granted)),
            (None, Some(_)) => Err(TenantRejection::Unauthenticated),
            (None, None) => Err(self.missing()),
        }
    }

    fn missing(&self) -> TenantRejection {
        TenantRejection::Missing {
            bearer: self.resolvers.iter().any(|e| e.resolver.wants_bearer()),
        }
    }
}

impl fmt::Debug for ResolverChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverChain")
            .field("len", &self.resolvers.len())
            .field(
                "authorities",
                &self.resolvers.iter().filter(|e| e.authority).count(),
            )
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

    /// A resolver standing in for a credential check: `authorization: ok <tenant>` names the
    /// tenant, `authorization: bad` is refused, no header names none.
    fn credential(req: &RequestHead<'_>) -> Result<Option<TenantId>, TenantRejection> {
        let Some(value) = req.headers.get("authorization") else {
            return Ok(None);
        };
        match value.to_str().unwrap().strip_prefix("ok ") {
            Some(tenant) => Ok(Some(TenantId::parse(tenant).unwrap())),
            None => Err(TenantRejection::InvalidToken(crate::TokenError::Signature)),
        }
    }

    fn request(headers: &[(&str, &str)], host: Option<&str>, path: &str) -> Request<()> {
        let mut b = Request::builder().uri(path);
        for (name, value) in headers {
            b = b.header(*name, *value);
        }
        if let Some(host) = host {
            b = b.header("host", host);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn an_authority_decides_and_the_other_sources_may_only_narrow_it() {
        let chain = ResolverChain::new()
            .push(HeaderResolver::new())
            .push(HostResolver::new("example.com"))
            .push(PathResolver::new("/t"))
            .authority(credential);
        assert!(chain.has_authority());
        let resolve = |headers: &[(&str, &str)], host: Option<&str>, path: &str| {
            chain
                .resolve(&head_of(&request(headers, host, path)))
                .map(|id| id.to_string())
        };
        let ok = |s: &str| Ok(s.to_owned());
        // The credential alone, or with sources that agree.
        assert_eq!(
            resolve(&[("authorization", "ok acme")], None, "/"),
            ok("acme")
        );
        assert_eq!(
            resolve(
                &[("authorization", "ok acme"), ("x-tenant-id", "acme")],
                Some("acme.example.com"),
                "/t/acme/leads"
            ),
            ok("acme")
        );
        // A source naming another tenant than the credential: 403, whichever source it is.
        for (headers, host, path) in [
            (
                &[("authorization", "ok acme"), ("x-tenant-id", "globex")][..],
                None,
                "/",
            ),
            (
                &[("authorization", "ok acme")][..],
                Some("globex.example.com"),
                "/",
            ),
            (&[("authorization", "ok acme")][..], None, "/t/globex/leads"),
        ] {
            assert_eq!(
                resolve(headers, host, path),
                Err(TenantRejection::NotGranted),
                "{headers:?} {host:?} {path}"
            );
        }
        // Without a credential, a source naming a tenant is not enough: 401.
        for (headers, host, path) in [
            (&[("x-tenant-id", "globex")][..], None, "/"),
            (&[][..], Some("globex.example.com"), "/"),
            (&[][..], None, "/t/globex/leads"),
        ] {
            let err = resolve(headers, host, path).unwrap_err();
            assert_eq!(
                err,
                TenantRejection::Unauthenticated,
                "{headers:?} {host:?} {path}"
            );
            assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        }
        // Nothing at all: missing (no bearer challenge: this authority is not a JWT resolver).
        assert_eq!(
            resolve(&[], Some("example.com"), "/"),
            Err(TenantRejection::Missing { bearer: false })
        );
        // A refused credential stays refused, whatever the other sources say.
        assert_eq!(
            resolve(
                &[("authorization", "bad"), ("x-tenant-id", "acme")],
                None,
                "/"
            ),
            Err(TenantRejection::InvalidToken(crate::TokenError::Signature))
        );
        // Identifying sources that disagree among themselves stay ambiguous.
        assert_eq!(
            resolve(
                &[("authorization", "ok acme"), ("x-tenant-id", "acme")],
                Some("globex.example.com"),
                "/"
            ),
            Err(TenantRejection::Ambiguous)
        );
    }

    #[test]
    fn without_an_authority_the_chain_only_identifies() {
        let chain = ResolverChain::new()
            .push(HeaderResolver::new())
            .push(credential);
        assert!(!chain.has_authority());
        // A closure pushed with `push` cannot say it authenticates: the header alone is believed.
        let req = request(&[("x-tenant-id", "globex")], None, "/");
        assert_eq!(chain.resolve(&head_of(&req)).unwrap().as_str(), "globex");
        let req = request(
            &[("x-tenant-id", "globex"), ("authorization", "ok acme")],
            None,
            "/",
        );
        assert_eq!(
            chain.resolve(&head_of(&req)),
            Err(TenantRejection::Ambiguous)
        );
    }

    #[test]
    fn an_agreeing_header_is_still_lent_beside_an_authority() {
        let chain = ResolverChain::new()
            .authority(credential)
            .push(HeaderResolver::new());
        let req = request(
            &[("authorization", "ok acme"), ("x-tenant-id", "acme")],
            None,
            "/",
        );
        let id = chain.resolve_borrowed(&head_of(&req)).unwrap();
        assert_eq!(id, ResolvedId(Resolved::Borrowed("acme")));
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
