//! The demo CRM API: `cargo run --release -p example-crm`.
//!
//! It listens on `PARAPET_LISTEN` (default `127.0.0.1:3000`); `DATABASE_URL` defaults to
//! `postgres://postgres@127.0.0.1:5432/parapet_demo` (created when missing, migrated and seeded
//! with two tenants, `acme` and `globex`, over `DATABASE_DIRECT_URL` when that is set: a
//! transaction-mode pooler in `DATABASE_URL` cannot run the migrations); both take libpq's
//! `sslmode` / `sslrootcert` / `sslcert` / `sslkey`; `REDIS_URL` is optional; spans and metrics go to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set. Every `PARAPET_*` variable of
//! `parapet::EnvConfig` applies; the quota layer is on unless `PARAPET_QUOTA=off`, with the
//! per-plan limits of `PARAPET_QUOTA_PLANS` (acme is on `pro`, globex on `free`).

use clap::Parser;
use example_crm::{Error, app};

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
    let app::Demo { router, admin, .. } = app::build(std::env::vars(), args.seed).await?;
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
    if admin {
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
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
