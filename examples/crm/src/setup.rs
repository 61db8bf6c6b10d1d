//! Start-up: create the database when missing, migrate, give the API a role that row-level
//! security applies to, and seed the demo tenants.

use parapet_postgres::{PgConfig, describe, is_tls_failure};
use tokio_postgres::Client;

use crate::Error;

/// The tenants the demo seeds: id, name, plan, features.
pub const TENANTS: [(&str, &str, &str, &[&str]); 2] = [
    ("acme", "Acme Corp", "pro", &["pro", "exports", "billing"]),
    ("globex", "Globex", "free", &["free"]),
];

/// The role the API connects as. It is not a superuser and has no `BYPASSRLS`, so PostgreSQL's
/// row-level security confines every query to the request's tenant.
pub const APP_ROLE: &str = "parapet_app";

/// Connects to `config`, with a message that names the server and says what to do: start
/// PostgreSQL when it is not running, fix the TLS settings when the handshake failed.
pub async fn connect(config: &PgConfig) -> Result<Client, Error> {
    let (client, connection) = config.connect().await.map_err(|e| {
        let server = format!(
            "{}:{}",
            config
                .get_hosts()
                .first()
                .map_or_else(|| "?".to_owned(), |h| format!("{h:?}")),
            config.get_ports().first().copied().unwrap_or(5432),
        );
        if is_tls_failure(&e) {
            format!(
                "cannot connect to PostgreSQL at {server} ({}); check sslmode and sslrootcert \
                 in DATABASE_URL / DATABASE_DIRECT_URL",
                describe(&e)
            )
        } else {
            format!(
                "cannot connect to PostgreSQL at {server} ({}); start it (for example \
                 `pg_ctlcluster 15 main start`) or set DATABASE_URL",
                describe(&e)
            )
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "setup connection closed");
        }
    });
    Ok(client)
}

/// Creates the database when it does not exist, applies the migrations, seeds
/// `leads_per_tenant` leads (and proportionate deals, activity and billing events) for each
/// demo tenant, and returns the URL the API should use: the same database as [`APP_ROLE`]
/// when `database_url` connects as a role that bypasses row-level security, else
/// `database_url` itself. A role `database_url` names that does not exist is created (login,
/// subject to row-level security); a role other than the one setup runs as is granted the
/// tables.
///
/// All of this runs on `direct_url` when it is given (`DATABASE_DIRECT_URL`: migrations take a
/// session advisory lock and build indexes concurrently, which a transaction-mode pooler in
/// `database_url` would break), else on `database_url`.
pub async fn prepare(
    database_url: &str,
    direct_url: Option<&str>,
    leads_per_tenant: u32,
) -> Result<String, Error> {
    let (variable, url) = match direct_url {
        Some(url) => ("DATABASE_DIRECT_URL", url),
        None => ("DATABASE_URL", database_url),
    };
    let config = PgConfig::parse(url).map_err(|e| format!("{variable} does not parse: {e}"))?;
    // The user the API would connect as (the pooled URL's), to decide on APP_ROLE below.
    let api_user = PgConfig::parse(database_url)
        .map_err(|e| format!("DATABASE_URL does not parse: {e}"))?
        .get_user()
        .map(str::to_owned);
    if parapet_migrate::create_database_if_missing(&config)
        .await
        .map_err(|e| {
            if is_tls_failure(&e) {
                format!("cannot create the database: {}", describe(&e))
            } else {
                format!(
                    "cannot create the database: {}; is PostgreSQL running?",
                    describe(&e)
                )
            }
        })?
    {
        tracing::info!(
            database = config.get_dbname().unwrap_or("?"),
            "created database"
        );
    }
    let client = connect(&config).await?;
    let report = parapet_migrate::Migrator::crm().run(&client).await?;
    tracing::info!(%report, "migrations");
    seed(&client, leads_per_tenant).await?;
    app_url(&client, database_url, api_user.as_deref()).await
}

async fn app_url(
    client: &Client,
    database_url: &str,
    api_user: Option<&str>,
) -> Result<String, Error> {
    let row = client
        .query_one(
            "SELECT current_database(), current_user, \
             (SELECT rolsuper OR rolbypassrls FROM pg_roles \
              WHERE rolname = coalesce($1, current_user))",
            &[&api_user],
        )
        .await?;
    let database: String = row.get(0);
    let setup_user: String = row.get(1);
    let api_user = api_user.unwrap_or(&setup_user);
    match row.get::<_, Option<bool>>(2) {
        // A superuser would skip row-level security: serve as APP_ROLE instead.
        Some(true) => {
            create_role(client, APP_ROLE).await?;
            grant(client, &database, APP_ROLE).await?;
            Ok(with_user(database_url, APP_ROLE))
        }
        // The role DATABASE_URL names exists; give it the tables when setup runs as another
        // role (DATABASE_DIRECT_URL as an administrator).
        Some(false) => {
            if api_user != setup_user
                && let Err(e) = grant(client, &database, api_user).await
            {
                tracing::warn!(
                    role = api_user,
                    error = %e,
                    "cannot grant the API's role access to the tables"
                );
            }
            Ok(database_url.to_owned())
        }
        // DATABASE_URL names a role that does not exist yet (an administrator in
        // DATABASE_DIRECT_URL prepares for it): create it, subject to row-level security.
        None => {
            create_role(client, api_user).await?;
            grant(client, &database, api_user).await?;
            tracing::info!(role = api_user, "created the API's role");
            Ok(database_url.to_owned())
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Creates `role` (login, no superuser, no `BYPASSRLS`, no password: the demo's server trusts
/// local connections) unless it exists.
async fn create_role(client: &Client, role: &str) -> Result<(), Error> {
    // The role may exist already (another database of the same server, an earlier run, a
    // concurrent start).
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal}) THEN
                 CREATE ROLE {ident} LOGIN NOSUPERUSER NOBYPASSRLS;
               END IF;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$;",
            literal = quote_literal(role),
            ident = quote_ident(role),
        ))
        .await?;
    Ok(())
}

/// Gives `role` what the API needs on `database`: connect, and read and write the tables.
async fn grant(client: &Client, database: &str, role: &str) -> Result<(), Error> {
    let (database, role) = (quote_ident(database), quote_ident(role));
    client
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {database} TO {role};
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
        ))
        .await?;
    Ok(())
}

/// `url` connecting as `user` (with no password: the demo's server trusts local connections).
fn with_user(url: &str, user: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let host_part = match rest.rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{}{user}@{host_part}", &url[..scheme_end])
}

/// Seeds the demo tenants up to `leads` leads each; a second run adds nothing.
pub async fn seed(client: &Client, leads: u32) -> Result<(), Error> {
    let leads = i64::from(leads);
    for (id, name, plan, features) in TENANTS {
        client
            .execute(
                "INSERT INTO tenants (id, name, plan) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &name, &plan],
            )
            .await?;
        for feature in features {
            client
                .execute(
                    "INSERT INTO tenant_subscriptions (tenant_id, feature, status) \
                     SELECT $1, $2::text, 'active' WHERE NOT EXISTS \
                       (SELECT 1 FROM tenant_subscriptions WHERE tenant_id = $1 AND feature = $2)",
                    &[&id, feature],
                )
                .await?;
        }
        // Each table is topped up to its target, so a re-run (or a larger --seed) is cheap.
        for (count_sql, insert_sql, target) in top_ups(leads) {
            let have: i64 = client.query_one(count_sql, &[&id]).await?.get(0);
            if have < target {
                tracing::info!(tenant = id, rows = target - have, "seeding");
                client.execute(insert_sql, &[&id, &have, &target]).await?;
            }
        }
    }
    client.batch_execute("ANALYZE").await?;
    Ok(())
}

/// Per table: how many rows a tenant has, how to add rows `$2 + 1 ..= $3` for tenant `$1`, and
/// the target for `leads` leads.
///
/// Each insert reserves its block of ids with `reserve_tenant_ids` (one counter update per
/// table, `migrations/0004_tenant_scoped_ids.sql`) and numbers the rows itself: numbering them
/// one by one through the trigger would update the counter row once per row in one transaction.
fn top_ups(leads: i64) -> [(&'static str, &'static str, i64); 4] {
    [
        (
            "SELECT count(*) FROM leads WHERE org_id = $1",
            "INSERT INTO leads (id, org_id, name, email, company, status, source, created_at)
             SELECT r.first + (i - $2::bigint - 1), $1, 'Lead ' || i,
                    'lead' || i || '@' || $1 || '.example',
                    'Company ' || (i % 997),
                    (ARRAY['new','contacted','qualified','lost','converted'])[1 + i % 5],
                    (ARRAY['web','referral','event','ads'])[1 + i % 4],
                    now() - make_interval(secs => i * 37)
             FROM reserve_tenant_ids($1, 'leads', $3::bigint - $2::bigint) AS r (first),
                  generate_series($2::bigint + 1, $3::bigint) AS i",
            leads,
        ),
        (
            "SELECT count(*) FROM deals WHERE org_id = $1",
            "INSERT INTO deals (id, org_id, title, stage, amount, created_at)
             SELECT r.first + (i - $2::bigint - 1), $1, 'Deal ' || i,
                    (ARRAY['prospecting','qualification','proposal','negotiation','won','lost'])[1 + i % 6],
                    (i * 7919) % 5000000, now() - make_interval(secs => i * 53)
             FROM reserve_tenant_ids($1, 'deals', $3::bigint - $2::bigint) AS r (first),
                  generate_series($2::bigint + 1, $3::bigint) AS i",
            leads / 4,
        ),
        (
            "SELECT count(*) FROM collab_activity WHERE tenant_id = $1",
            "INSERT INTO collab_activity (id, tenant_id, actor, action, subject_type, subject_id, created_at)
             SELECT r.first + (i - $2::bigint - 1), $1, 'user' || (i % 25) || '@' || $1 || '.example',
                    (ARRAY['created','updated','commented','assigned'])[1 + i % 4],
                    (ARRAY['lead','deal'])[1 + i % 2], i, now() - make_interval(secs => i * 29)
             FROM reserve_tenant_ids($1, 'collab_activity', $3::bigint - $2::bigint) AS r (first),
                  generate_series($2::bigint + 1, $3::bigint) AS i",
            leads / 2,
        ),
        (
            "SELECT count(*) FROM billing_events b JOIN tenant_subscriptions s \
             ON s.id = b.subscription_id WHERE s.tenant_id = $1",
            "INSERT INTO billing_events (id, subscription_id, event_type, amount, payload, processed_at, created_at)
             SELECT r.first + (i - $2::bigint - 1),
                    (SELECT min(id) FROM tenant_subscriptions WHERE tenant_id = $1),
                    (ARRAY['invoice.created','payment.succeeded','payment.failed','refund.created'])[1 + i % 4],
                    (i * 131) % 100000, jsonb_build_object('n', i),
                    CASE WHEN i % 3 = 0 THEN NULL ELSE now() - make_interval(secs => i * 61) END,
                    now() - make_interval(secs => i * 61)
             FROM reserve_tenant_ids($1, 'billing_events', $3::bigint - $2::bigint) AS r (first),
                  generate_series($2::bigint + 1, $3::bigint) AS i",
            leads / 10,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::with_user;

    #[test]
    fn with_user_replaces_the_user_and_drops_the_password() {
        assert_eq!(
            with_user(
                "postgres://postgres@127.0.0.1:5432/parapet_demo",
                "parapet_app"
            ),
            "postgres://parapet_app@127.0.0.1:5432/parapet_demo"
        );
        assert_eq!(
            with_user("postgres://u:p@h/db?sslmode=disable", "a"),
            "postgres://a@h/db?sslmode=disable"
        );
        assert_eq!(with_user("postgres://h/db", "a"), "postgres://a@h/db");
    }
}
