//! [`StaticDirectory`]: tenants fixed at start-up.

use std::{collections::HashMap, sync::Arc};

use super::{BoxFuture, DirectoryError, TenantDirectory};
use crate::{Features, TenantId, TenantRecord};

/// A directory of tenants given at start-up, for tests, examples and single-region deployments
/// whose tenant list ships with the configuration.
///
/// ```
/// use parapet_tenant::{StaticDirectory, TenantId, TenantRecord};
///
/// let acme = TenantId::parse("acme").unwrap();
/// let directory = StaticDirectory::new()
///     .tenant(TenantRecord::new(acme.clone()).plan("pro"))
///     .features(&acme, ["sso", "exports"]);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct StaticDirectory {
    tenants: HashMap<TenantId, (Arc<TenantRecord>, Features)>,
}

impl StaticDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a tenant, with no features.
    pub fn tenant(mut self, record: TenantRecord) -> Self {
        self.tenants
            .insert(record.id.clone(), (Arc::new(record), Features::new()));
        self
    }

    /// Grants features to a tenant already added; ignored for an unknown id.
    pub fn features<I, S>(mut self, id: &TenantId, features: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if let Some((_, f)) = self.tenants.get_mut(id) {
            f.extend(features.into_iter().map(Into::into));
        }
        self
    }
}

impl TenantDirectory for StaticDirectory {
    fn lookup<'a>(
        &'a self,
        id: &'a TenantId,
    ) -> BoxFuture<'a, Result<Option<TenantRecord>, DirectoryError>> {
        let found = self.tenants.get(id).map(|(r, _)| TenantRecord::clone(r));
        Box::pin(async move { Ok(found) })
    }

    fn features<'a>(&'a self, id: &'a TenantId) -> BoxFuture<'a, Result<Features, DirectoryError>> {
        let found = self
            .tenants
            .get(id)
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}
