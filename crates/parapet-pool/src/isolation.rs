//! [`Isolation`]: how a checked-out connection is confined to its tenant.

use parapet_tenant::TenantId;

/// How a connection checked out for a tenant is confined to that tenant's data.
///
/// Whatever the mode, nothing set for one checkout outlives it: every checkout's statements run
/// with its own tenant's setting, and in [`IsolationScope::Session`] the connection is reset
/// before it goes back to the pool (and closed instead if that fails). The settings below are
/// made per checkout in session scope and per transaction (`set_config(.., true)`) in
/// [`IsolationScope::Transaction`].
///
/// | mode | setting | schema / setup |
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

/// Where the tenant's setting lives: in the connection's session, or in each transaction.
///
/// A pooler in **transaction** mode (PgBouncer, pgcat, Supavisor) hands each transaction, and
/// each statement outside one, to whichever server connection is free: two consecutive
/// statements of one checkout can run on two server connections, so a setting made for the
/// session may be missing, or another tenant's, when the next statement runs. Transaction scope
/// makes every statement carry its tenant.
///
/// | behind | use |
/// |---|---|
/// | PostgreSQL directly, or a pooler in **session** mode (PgBouncer `pool_mode = session`) | either; [`Session`](Self::Session) costs fewer round trips |
/// | PgBouncer, pgcat or Supavisor in **transaction** mode | [`Transaction`](Self::Transaction) |
/// | PgDog (it replays `SET` on the server connection it picks) | either |
///
/// **Session scope** (the default): the setting is made once per checkout
/// (`set_config(<setting>, <id>, false)`), statements are prepared once per connection and
/// cached, and the connection is reset when the checkout ends (see [`Db`](crate::Db)). Behind a
/// transaction-mode pooler this leaks: a statement can run with another tenant's setting. The
/// first symptoms are usually driver errors such as `prepared statement "s12" does not exist`;
/// a [`DbError`](crate::DbError) whose code points that way says to use transaction scope.
///
/// **Transaction scope**: nothing depends on session state. Each [`Db`](crate::Db) method runs
/// in a transaction of its own that starts with `set_config(<setting>, <id>, true)` (for schema
/// per tenant, `set_config('search_path', .., true)`) and commits before the method returns, so
/// its effects are those of session scope's autocommit; [`Db::transaction`](crate::Db::transaction)
/// opens one transaction whose first statement sets the tenant. Statements are prepared inside
/// that transaction to learn their parameter types, closed at once, and run as unnamed
/// statements; no named prepared statement outlives the transaction (PgBouncer before 1.21
/// supports none). The cost: about two round trips per statement (`BEGIN`, the setting and the
/// prepare are pipelined in one, the statement, the close and `COMMIT` in the other) and no
/// statement cache, against one with session scope's cache; checkout and return cost nothing.
///
/// Limits of transaction scope: statements sent through [`Db::client`](crate::Db::client) run
/// outside any transaction, without the tenant's setting (under row-level security they see no
/// rows); session-level `SET`, `LISTEN`, advisory locks and temporary tables outlive the
/// statement on a pooler's server connection and must not be used (their transaction-level
/// forms, `SET LOCAL` and `pg_advisory_xact_lock`, are fine inside
/// [`Db::transaction`](crate::Db::transaction)). User-defined types (enums, composites, domains)
/// in parameters or results make tokio-postgres look their definition up with prepared
/// statements it keeps per client (rust-postgres/rust-postgres#636), which a pooler cannot keep:
/// cast them to `text` in the SQL. A connection whose statement names went astray
/// (`26000`, `42P05`) is closed when the checkout ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IsolationScope {
    /// The setting is made for the connection's session with the checkout's first statement
    /// (in its round trip) and reset at return.
    #[default]
    Session,
    /// The setting is made inside every transaction, which every statement runs in.
    Transaction,
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
