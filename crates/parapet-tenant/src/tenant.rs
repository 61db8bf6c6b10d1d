//! [`Tenant`]: the resolved tenant a request belongs to, and the directory record it comes from.

use std::{collections::BTreeSet, fmt, sync::Arc};

use crate::id::TenantId;

/// Whether a tenant may use the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TenantStatus {
    /// The tenant is served.
    Active,
    /// Requests for the tenant are refused with 403.
    Suspended,
}

impl TenantStatus {
    /// Parses the `tenants.status` column (`active` / `suspended`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }

    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// Where a tenant's data lives.
///
/// Pools are keyed by this target, not by tenant: tenants that share a database share a pool.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DatabaseTarget {
    /// The application's shared database.
    #[default]
    Shared,
    /// The tenant's own database, as a connection string. Its `Debug` output hides it, since it
    /// may carry a password.
    Dedicated(String),
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared => f.write_str("Shared"),
            Self::Dedicated(_) => f.write_str("Dedicated(<redacted>)"),
        }
    }
}

/// A tenant as the directory knows it.
///
/// ```
/// use parapet_tenant::{TenantId, TenantRecord, TenantStatus};
///
/// let record = TenantRecord::new(TenantId::parse("acme").unwrap())
///     .name("Acme Corp")
///     .plan("pro");
/// assert_eq!(record.status, TenantStatus::Active);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[must_use]
pub struct TenantRecord {
    /// The tenant's id.
    pub id: TenantId,
    /// The display name.
    pub name: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// The plan name (`free`, `pro`, ...).
    pub plan: String,
    /// Where the tenant's data lives.
    pub database: DatabaseTarget,
    /// Free-form settings (the `settings` JSONB column).
    pub settings: serde_json::Value,
}

impl TenantRecord {
    /// An active tenant on the `free` plan in the shared database; its name is its id.
    pub fn new(id: TenantId) -> Self {
        Self {
            name: id.to_string(),
            id,
            status: TenantStatus::Active,
            plan: "free".to_owned(),
            database: DatabaseTarget::Shared,
            settings: serde_json::Value::Object(Default::default()),
        }
    }

    /// Sets the display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the status.
    pub fn status(mut self, status: TenantStatus) -> Self {
        self.status = status;
        self
    }

    /// Sets the plan.
    pub fn plan(mut self, plan: impl Into<String>) -> Self {
        self.plan = plan.into();
        self
    }

    /// Sets the database target.
    pub fn database(mut self, database: DatabaseTarget) -> Self {
        self.database = database;
        self
    }

    /// Sets the settings.
    pub fn settings(mut self, settings: serde_json::Value) -> Self {
        self.settings = settings;
        self
    }
}

/// The features a tenant's active subscriptions grant.
pub type Features = BTreeSet<String>;

/// The tenant a request belongs to: its directory record and its features.
///
/// `TenantLayer` puts one into the request extensions; handlers take it with the `Tenant`
/// extractor (or `Option<Tenant>`). Cloning is cheap.
#[derive(Clone, PartialEq)]
pub struct Tenant {
    record: Arc<TenantRecord>,
    features: Arc<Features>,
}

impl Tenant {
    /// A tenant from its record and features.
    pub fn new(record: Arc<TenantRecord>, features: Arc<Features>) -> Self {
        Self { record, features }
    }

    /// The tenant's id.
    pub fn id(&self) -> &TenantId {
        &self.record.id
    }

    /// The whole directory record.
    pub fn record(&self) -> &TenantRecord {
        &self.record
    }

    /// The plan name.
    pub fn plan(&self) -> &str {
        &self.record.plan
    }

    /// Where the tenant's data lives.
    pub fn database(&self) -> &DatabaseTarget {
        &self.record.database
    }

    /// Whether the tenant's active subscriptions include `feature` (a feature or a plan name).
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }

    /// All features of the tenant's active subscriptions.
    pub fn features(&self) -> &Features {
        &self.features
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.record.id)
            .field("status", &self.record.status)
            .field("plan", &self.record.plan)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}
