//! The smallest parapet app: `TenantLayer` on the PostgreSQL tenant directory.
//!
//! ```sh
//! cargo run -p example-tenant-hello
//! curl -H 'x-tenant-id: acme' http://127.0.0.1:3000/whoami
//! curl http://acme.localhost:3000/whoami
//! ```
//!
//! On start it creates the database when missing (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/parapet_demo`), applies `migrations/`, and seeds three
//! tenants: `acme` (pro, with the `exports` feature), `globex` (free) and `initech` (suspended).
//! It listens on `PARAPET_LISTEN` (default `127.0.0.1:3000`).
#![allow(clippy::expect_used)]

use std::time::Duration;

use axum::{Json, Router, routing::get};
use parapet_postgres::{PgConfig, describe};
use parapet_tenant::{
    CachedDirectory, HeaderResolver, HostResolver, PgDirectory, RequireFeatureLayer, Tenant,
    TenantLayer,
};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/parapet_demo";

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn run() -> Result<(), Error> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let listen = std::env::var("PARAPET_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let config = PgConfig::parse(&url).map_err(|e| format!("DATABASE_URL: {e}"))?;

    if parapet_migrate::create_database_if_missing(&config)
        .await
        .map_err(|e| {
            format!(
                "cannot create the database ({}); is PostgreSQL running?",
                describe(&e)
            )
        })?
    {
        tracing::info!(
            database = config.get_dbname().unwrap_or("?"),
            "created database"
        );
    }
    let (client, connection) = config.connect().await.map_err(|e| {
        format!(
            "cannot connect to PostgreSQL ({}); is it running?",
            describe(&e)
        )
    })?;
    tokio::spawn(connection);
    let report = parapet_migrate::Migrator::crm().run(&client).await?;
    tracing::info!(%report, "migrations");
    seed(&client).await?;

    let manager = deadpool_postgres::Manager::new(config.pg().clone(), config.tls());
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(8)
        .timeouts(deadpool_postgres::Timeouts {
            wait: Some(Duration::from_secs(2)),
            create: Some(Duration::from_secs(2)),
            recycle: Some(Duration::from_secs(2)),
        })
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?;
    let directory = CachedDirectory::new(PgDirectory::new(pool));

    let tenant_layer = TenantLayer::builder(directory)
        .resolver(HeaderResolver::new())
        .resolver(HostResolver::new("localhost").apex_hosts(["127.0.0.1", "[::1]"]))
        .build();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .merge(
            Router::new()
                .route("/exports", get(|| async { "id,name\n1,Ada\n" }))
                .layer(RequireFeatureLayer::new("exports")),
        )
        .layer(tenant_layer)
        .route("/healthz", get(|| async { "ok" }));

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    println!("parapet tenant-hello listening on http://{addr}");
    println!("  curl -H 'x-tenant-id: acme' http://{addr}/whoami");
    println!("  curl http://acme.localhost:{}/whoami", addr.port());
    println!("  curl -H 'x-tenant-id: globex' http://{addr}/exports   # 403: no exports feature");
    println!("  curl -H 'x-tenant-id: initech' http://{addr}/whoami   # 403: suspended");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn whoami(tenant: Tenant) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "id": tenant.id(),
        "name": tenant.record().name,
        "plan": tenant.plan(),
        "features": tenant.features(),
    }))
}

async fn seed(client: &tokio_postgres::Client) -> Result<(), Error> {
    client
        .batch_execute(
            "INSERT INTO tenants (id, name, plan, status) VALUES
               ('acme', 'Acme Corp', 'pro', 'active'),
               ('globex', 'Globex', 'free', 'active'),
               ('initech', 'Initech', 'free', 'suspended')
             ON CONFLICT (id) DO NOTHING;
             INSERT INTO tenant_subscriptions (tenant_id, feature, status)
             SELECT 'acme', f, 'active' FROM unnest(ARRAY['pro', 'exports']) AS f
             WHERE NOT EXISTS (SELECT 1 FROM tenant_subscriptions WHERE tenant_id = 'acme');",
        )
        .await?;
    Ok(())
}
