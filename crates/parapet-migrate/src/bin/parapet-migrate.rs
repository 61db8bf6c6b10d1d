//! `parapet-migrate`: apply parapet's PostgreSQL migrations (`up`) or show
//! where a database stands (`status`).
//!
//! The database is `--database-url` when given on the command line, else
//! `DATABASE_DIRECT_URL`, else `DATABASE_URL`: behind a transaction-mode
//! pooler the application's `DATABASE_URL` cannot hold the advisory lock or
//! build indexes concurrently, so a direct URL wins when there is one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};
use parapet_migrate::{MigrateError, Migrator};
use parapet_postgres::PgConfig;
use tokio_postgres::Client;
use tracing_subscriber::EnvFilter;

/// Apply parapet's PostgreSQL migrations, including `-- no-transaction`
/// files that build indexes CONCURRENTLY.
#[derive(Debug, Parser)]
#[command(name = "parapet-migrate", version, about)]
struct Cli {
    /// PostgreSQL connection string, URL or key=value form, with libpq's
    /// sslmode / sslrootcert / sslcert / sslkey (required: this,
    /// DATABASE_DIRECT_URL or DATABASE_URL).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,

    /// A direct connection to the server (not through a transaction-mode
    /// pooler); used instead of DATABASE_URL when set.
    #[arg(
        long,
        env = "DATABASE_DIRECT_URL",
        hide_env_values = true,
        global = true
    )]
    direct_url: Option<String>,

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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // `--database-url` on the command line wins; from the environment, the direct URL does.
    let url = match matches.value_source("database_url") {
        Some(ValueSource::CommandLine) => cli.database_url.clone(),
        _ => cli.direct_url.clone().or_else(|| cli.database_url.clone()),
    };
    match run(cli, url).await {
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

async fn run(cli: Cli, url: Option<String>) -> Result<String, String> {
    let Some(url) = url else {
        return Err(
            "no database given: pass --database-url or set DATABASE_DIRECT_URL or DATABASE_URL"
                .to_owned(),
        );
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
    let config = PgConfig::parse(url)
        .map_err(|e| format!("cannot connect to the database: invalid URL: {e}"))?;
    let (client, connection) = config.connect().await.map_err(|e| {
        format!(
            "cannot connect to the database: {}",
            parapet_postgres::describe(&e)
        )
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(
                "database connection failed: {}",
                parapet_postgres::describe(&e)
            );
        }
    });
    Ok(client)
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
