//! [`Isolation`]: how a checked-out connection is confined to its tenant.

use parapet_tenant::TenantId;

/// How a connection checked out for a tenant is confined to that tenant's data.
///
/// Whatever the mode, nothing set for one checkout outlives it: when a [`Db`](crate::Db) is
/// dropped its connection runs `ROLLBACK; RESET ALL` before it goes back to the pool (and is
/// closed instead if that fails), and every checkout sets its own tenant before the handler sees
/// the connection.
///
/// | mode | set per checkout | schema / setup |
/// |---|---|---|
/// | [`RowLevelSecurity`](Self::RowLevelSecurity) | `set_config('app.tenant_id', <id>, false)` | `migrations/0003_row_level_security.sql`: `FORCE ROW LEVEL SECURITY` and a policy on the tenant column of every CRM table. Connect as a role that is **not** a superuser and has no `BYPASSRLS` (those bypass every policy). |
/// | [`SchemaPerTenant`](Self::SchemaPerTenant) | `set_config('search_path', '"<prefix><id>"', false)` | one schema per tenant, named `<prefix><id>` (default prefix `tenant_`), holding the tenant's tables; nothing falls back to `public`. |
/// | [`DatabasePerTenant`](Self::DatabasePerTenant) | nothing | every tenant has its own `database_url` in the `tenants` table; a tenant without one is refused (500) rather than served from the shared database. |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// Shared schema, rows filtered by PostgreSQL row-level security on a setting.
    RowLevelSecurity {
        /// The custom setting the policies read (default `app.tenant_id`).
        setting: String,
    },
    /// One schema per tenant, selected with `search_path`.
    SchemaPerTenant {
        /// Prepended to the tenant id to name its schema (default `tenant_`).
        prefix: String,
    },
    /// One database per tenant, selected by connection string.
    DatabasePerTenant,
}

impl Default for Isolation {
    fn default() -> Self {
        Self::row_level_security()
    }
}

impl Isolation {
    /// Row-level security on `app.tenant_id`.
    pub fn row_level_security() -> Self {
        Self::RowLevelSecurity {
            setting: "app.tenant_id".to_owned(),
        }
    }

    /// A schema per tenant, named `tenant_<id>`.
    pub fn schema_per_tenant() -> Self {
        Self::SchemaPerTenant {
            prefix: "tenant_".to_owned(),
        }
    }

    /// Checks the configuration: a setting must be a custom, dotted, lower-case name; a schema
    /// prefix must keep names within PostgreSQL's 63-byte identifiers.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            Self::RowLevelSecurity { setting } => {
                let ok = setting.contains('.')
                    && !setting.starts_with('.')
                    && !setting.ends_with('.')
                    && setting.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
                    });
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "invalid setting name {setting:?}: use a dotted custom name such as app.tenant_id"
                    ))
                }
            }
            Self::SchemaPerTenant { prefix } => {
                if prefix.is_empty() || prefix.len() > 20 {
                    return Err("the schema prefix must be 1 to 20 bytes".to_owned());
                }
                if prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    Ok(())
                } else {
                    Err(format!("invalid schema prefix {prefix:?}: use [a-z0-9_]"))
                }
            }
            Self::DatabasePerTenant => Ok(()),
        }
    }

    /// The `(setting, value)` to set at checkout, if any.
    pub(crate) fn setting_for(&self, tenant: &TenantId) -> Option<(String, String)> {
        match self {
            Self::RowLevelSecurity { setting } => Some((setting.clone(), tenant.to_string())),
            Self::SchemaPerTenant { prefix } => Some((
                "search_path".to_owned(),
                quote_ident(&format!("{prefix}{tenant}")),
            )),
            Self::DatabasePerTenant => None,
        }
    }
}

/// Quotes an identifier for SQL (`"` doubled). Tenant ids are already restricted to
/// `[a-z0-9_-]`; quoting keeps a `-` (or a custom rule's characters) from ever being syntax.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_per_mode() {
        let id = TenantId::parse("acme-eu").unwrap();
        assert_eq!(
            Isolation::row_level_security().setting_for(&id),
            Some(("app.tenant_id".into(), "acme-eu".into()))
        );
        assert_eq!(
            Isolation::schema_per_tenant().setting_for(&id),
            Some(("search_path".into(), "\"tenant_acme-eu\"".into()))
        );
        assert_eq!(Isolation::DatabasePerTenant.setting_for(&id), None);
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn validation() {
        assert!(Isolation::row_level_security().validate().is_ok());
        for bad in [
            "tenant",
            "app.Tenant",
            ".x",
            "x.",
            "app.tenant;drop",
            "search_path",
        ] {
            let iso = Isolation::RowLevelSecurity {
                setting: bad.into(),
            };
            assert!(iso.validate().is_err(), "{bad}");
        }
        for bad in ["", "T_", "a-", "x".repeat(21).as_str()] {
            let iso = Isolation::SchemaPerTenant { prefix: bad.into() };
            assert!(iso.validate().is_err(), "{bad}");
        }
    }
}
