//! `parapet-migrate`: apply parapet's PostgreSQL migrations (`up`) or show
//! where a database stands (`status`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use parapet_migrate::{MigrateError, Migrator};
use tokio_postgres::{Client, NoTls};
use tracing_subscriber::EnvFilter;

/// Apply parapet's PostgreSQL migrations, including `-- no-transaction`
/// files that build indexes CONCURRENTLY.
#[derive(Debug, Parser)]
#[command(name = "parapet-migrate", version, about)]
struct Cli {
    /// PostgreSQL connection string, URL or key=value form (required).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,

    /// Directory of `NNNN_description.sql` files [default: the project's
    /// migrations compiled into this binary].
    #[arg(long, global = true)]
    dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations and rebuild INVALID indexes.
    Up,
    /// Show applied, pending and changed migrations, and INVALID indexes.
    Status,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("parapet-migrate: error: {}", one_line(&message));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<String, String> {
    let Some(url) = cli.database_url else {
        return Err("no database given: pass --database-url or set DATABASE_URL".to_owned());
    };
    let migrator = match &cli.dir {
        Some(dir) => Migrator::from_dir(dir).map_err(|e| e.to_string())?,
        None => parapet_migrate::embedded(),
    };
    let client = connect(&url).await?;
    let result = match cli.command {
        Command::Up => migrator.run(&client).await.map(|report| report.to_string()),
        Command::Status => migrator
            .status(&client)
            .await
            .map(|status| status.to_string()),
    };
    result.map_err(|e: MigrateError| e.to_string())
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to the database: {}", describe(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!("database connection failed: {}", describe(&e));
        }
    });
    Ok(client)
}

/// The error and its causes on one line (a `tokio_postgres::Error` alone
/// says only "error connecting to server").
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
