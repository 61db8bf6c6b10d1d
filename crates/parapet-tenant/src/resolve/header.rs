//! [`HeaderResolver`]: the tenant named by a request header.

use http::HeaderName;

use super::{RequestHead, ResolveTenant, ResolvedId};
use crate::{MalformedReason, TenantId, TenantIdRule, TenantRejection};

/// Reads the tenant from a header, `x-tenant-id` by default.
///
/// Not safe to trust on the open internet unless a proxy you control sets the header and drops
/// any copy the client sent (see the [module docs](crate::resolve)). More than one copy of the
/// header is rejected as ambiguous; a value that is not a valid id is malformed (400).
///
/// ```
/// use parapet_tenant::HeaderResolver;
///
/// use http::HeaderName;
///
/// let resolver = HeaderResolver::new().header(HeaderName::from_static("x-org"));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HeaderResolver {
    name: HeaderName,
    origin: &'static str,
    rule: TenantIdRule,
}

impl Default for HeaderResolver {
    fn default() -> Self {
        Self {
            name: HeaderName::from_static("x-tenant-id"),
            origin: "x-tenant-id header",
            rule: TenantIdRule::default(),
        }
    }
}

impl HeaderResolver {
    /// Reads `x-tenant-id`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads this header instead.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.name = name;
        self.origin = "tenant header";
        self
    }

    /// Validates ids with this rule.
    pub fn rule(mut self, rule: TenantIdRule) -> Self {
        self.rule = rule;
        self
    }
}

impl ResolveTenant for HeaderResolver {
    fn resolve(&self, req: &RequestHead<'_>) -> Result<Option<TenantId>, TenantRejection> {
        Ok(self.resolve_borrowed(req)?.map(ResolvedId::into_owned))
    }

    fn resolve_borrowed<'r>(
        &self,
        req: &RequestHead<'r>,
    ) -> Result<Option<ResolvedId<'r>>, TenantRejection> {
        let mut values = req.headers.get_all(&self.name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(TenantRejection::Ambiguous);
        }
        let malformed = |reason| TenantRejection::Malformed {
            origin: self.origin,
            reason,
        };
        let value = value
            .to_str()
            .map_err(|_| malformed(MalformedReason::NotAscii))?;
        ResolvedId::borrowed(value, &self.rule)
            .map(Some)
            .map_err(|e| malformed(e.into()))
    }
}
