//! [`PathResolver`]: the tenant named by a path prefix, `/t/{tenant}/…`.

use super::{RequestHead, ResolveTenant};
use crate::{TenantId, TenantIdRule, TenantRejection};

/// Reads the tenant from the path segment after a prefix: `/t/{tenant}` or `/t/{tenant}/…`.
///
/// **The prefix is not stripped.** Declare routes with it (`/t/{tenant}/leads`), so that routing,
/// `MatchedPath` and the span name stay what the client sent; a `Path` extractor can ignore the
/// `tenant` parameter. The segment is read as sent, without percent-decoding, so `%2e%2e` or an
/// encoded slash can never become part of an id. Paths outside the prefix name no tenant.
///
/// ```
/// use parapet_tenant::PathResolver;
///
/// let resolver = PathResolver::new("/orgs");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PathResolver {
    prefix: String,
    rule: TenantIdRule,
}

impl Default for PathResolver {
    fn default() -> Self {
        Self::new("/t")
    }
}

impl PathResolver {
    /// Reads the segment after `prefix` (`/t` by default; a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Self {
        let mut prefix = prefix.trim_end_matches('/').to_owned();
        if !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        prefix.push('/');
        Self {
            prefix,
            rule: TenantIdRule::default(),
        }
    }

    /// Validates ids with this rule.
    pub fn rule(mut self, rule: TenantIdRule) -> Self {
        self.rule = rule;
        self
    }
}

impl ResolveTenant for PathResolver {
    fn resolve(&self, req: &RequestHead<'_>) -> Result<Option<TenantId>, TenantRejection> {
        let Some(rest) = req.uri.path().strip_prefix(self.prefix.as_str()) else {
            return Ok(None);
        };
        let segment = rest.split('/').next().unwrap_or_default();
        self.rule
            .parse(segment)
            .map(Some)
            .map_err(|e| TenantRejection::Malformed {
                origin: "path",
                reason: e.into(),
            })
    }
}
