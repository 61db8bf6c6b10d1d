//! The demo CRM API: `cargo run --release -p example-crm`.
//!
//! It listens on `PARAPET_LISTEN` (default `127.0.0.1:3000`); `DATABASE_URL` defaults to
//! `postgres://postgres@127.0.0.1:5432/parapet_demo` (created when missing, migrated and seeded
//! with two tenants, `acme` and `globex`, over `DATABASE_DIRECT_URL` when that is set: a
//! transaction-mode pooler in `DATABASE_URL` cannot run the migrations); both take libpq's
//! `sslmode` / `sslrootcert` / `sslcert` / `sslkey`; `REDIS_URL` (or `REDIS_CLUSTER_URLS` for a
//! Redis Cluster) is optional; spans and metrics go to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set. Every `PARAPET_*` variable of
//! `parapet::EnvConfig` applies.

use std::sync::Arc;

use clap::Parser;
use example_crm::{Error, api, setup};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/parapet_demo";

/// parapet's demo CRM API.
#[derive(Debug, Parser)]
struct Args {
    /// Leads to seed per tenant (with a quarter as many deals, half as many activity entries
    /// and a tenth as many billing events). Seeding tops up and never duplicates.
    #[arg(long, default_value_t = 100_000)]
    seed: u32,
    /// Address to listen on.
    #[arg(long, env = "PARAPET_LISTEN", default_value = "127.0.0.1:3000")]
    listen: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // OTEL_* from the environment; with no endpoint, spans reach the log only.
    let telemetry = match parapet::telemetry::TelemetryBuilder::from_env()
        .service_name("parapet-crm")
        .default_log_filter("info,tokio_postgres=warn")
        .init()
    {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: telemetry: {e}");
            std::process::exit(2);
        }
    };
    let result = run(args).await;
    drop(telemetry); // flushes spans and metrics
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    tracing::info!(leads_per_tenant = args.seed, "preparing the database");
    let direct_url = std::env::var("DATABASE_DIRECT_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    let app_url = setup::prepare(&database_url, direct_url.as_deref(), args.seed).await?;

    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.retain(|(k, _)| k != "DATABASE_URL");
    vars.push(("DATABASE_URL".to_owned(), app_url.clone()));
    for (name, default) in [
        ("PARAPET_TENANT_HOST", "localhost"),
        ("PARAPET_CACHE_DEFAULT_TTL", "/api/=10"),
    ] {
        if std::env::var_os(name).is_none() {
            vars.push((name.to_owned(), default.to_owned()));
        }
    }
    let config = parapet::EnvConfig::from_map(vars)?;
    // One server, or a Cluster's seed nodes (space-separated for `/readyz`).
    let (redis_url, redis_variable) = match (&config.redis_url, &config.redis_cluster_urls[..]) {
        (Some(url), _) => (Some(url.clone()), "REDIS_URL"),
        (None, []) => (None, "REDIS_URL"),
        (None, seeds) => (Some(seeds.join(" ")), "REDIS_CLUSTER_URLS"),
    };
    match &redis_url {
        None => tracing::warn!(
            "neither REDIS_URL nor REDIS_CLUSTER_URLS is set: the local cache tier serves alone"
        ),
        Some(url) => {
            if !api::check_redis(url).await {
                tracing::warn!(
                    "Redis at {redis_variable} is unreachable: the local cache tier serves alone until it is back"
                );
            }
        }
    }
    let stack = config.build().await?;
    let admin_token = std::env::var("PARAPET_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if admin_token.is_none() {
        tracing::info!("PARAPET_ADMIN_TOKEN is not set: /admin/cache is disabled");
    }
    let state = api::AppState {
        cache: stack.cache(),
        database_url: Arc::from(app_url),
        redis_url: redis_url.map(Arc::from),
    };
    let app = api::router(state, stack, admin_token.clone());

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let port = addr.port();
    println!("parapet demo CRM listening on http://{addr}");
    println!();
    println!("  curl -H 'X-Tenant-Id: acme' 'http://{addr}/api/leads?limit=3'");
    println!("  curl 'http://globex.localhost:{port}/api/deals?stage=won&limit=3'");
    println!(
        "  curl -H 'X-Tenant-Id: acme' -H 'Content-Type: application/json' \\\n       -d '{{\"name\":\"Ada Lovelace\",\"email\":\"ada@example.com\"}}' http://{addr}/api/leads"
    );
    println!(
        "  curl -i -H 'X-Tenant-Id: acme' http://{addr}/api/subscription   # see Cache-Status"
    );
    println!("  curl http://{addr}/readyz");
    if admin_token.is_some() {
        println!(
            "  curl -X POST -H \"Authorization: Bearer $PARAPET_ADMIN_TOKEN\" http://{addr}/admin/cache/tenant/acme"
        );
    }
    println!();
    match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) => println!(
            "Traces and metrics go to {endpoint}; with Jaeger, open http://localhost:16686 and pick parapet-crm."
        ),
        Err(_) => println!(
            "Traces: start Jaeger (see the README, \"View traces in Jaeger\") and rerun with \
             OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318"
        ),
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
