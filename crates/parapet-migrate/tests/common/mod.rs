//! Test helpers: a fresh PostgreSQL database per test, dropped at the end,
//! and a temporary migration directory.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a part of this.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Advisory locks held in the current database (pg_locks is cluster-wide).
pub const ADVISORY_LOCKS_HERE: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The admin connection string: `DATABASE_URL`, or the local default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

fn admin_config() -> Config {
    let url = admin_url();
    let mut config: Config = url
        .parse()
        .unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a valid connection string: {e}"));
    config.connect_timeout(Duration::from_secs(10));
    config
}

fn unreachable_message(config: &Config, error: &tokio_postgres::Error) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let source = if std::env::var_os("DATABASE_URL").is_some() {
        "from DATABASE_URL"
    } else {
        "the default; set DATABASE_URL to use another server"
    };
    let mut cause = error.to_string();
    let mut next = std::error::Error::source(error);
    while let Some(e) = next {
        cause.push_str(&format!(": {e}"));
        next = e.source();
    }
    format!(
        "PostgreSQL is not reachable at {} ({source}): {cause}; start it with: \
         pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        hosts.join(",")
    )
}

async fn connect(config: &Config) -> Client {
    match config.connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
        Err(e) => panic!("{}", unreachable_message(config, &e)),
    }
}

/// Fails the test with a clear message when PostgreSQL is not reachable.
pub async fn require_postgres() {
    let client = connect(&admin_config()).await;
    client
        .simple_query("SELECT 1")
        .await
        .expect("PostgreSQL answers SELECT 1");
}

/// A freshly created database, dropped (with its connections) on drop.
pub struct TestDb {
    pub name: String,
    config: Config,
}

impl TestDb {
    pub async fn create() -> Self {
        let admin = admin_config();
        let client = connect(&admin).await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "parapet_migrate_test_{}_{}_{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
        let mut config = admin;
        config.dbname(&name);
        Self { name, config }
    }

    /// A new connection to this database.
    pub async fn connect(&self) -> Client {
        connect(&self.config).await
    }

    /// A key=value connection string for this database (for the CLI).
    pub fn conn_string(&self) -> String {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut parts = Vec::new();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        if !hosts.is_empty() {
            parts.push(format!("host={}", quote(&hosts.join(","))));
        }
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            parts.push(format!("port={}", ports.join(",")));
        }
        if let Some(user) = self.config.get_user() {
            parts.push(format!("user={}", quote(user)));
        }
        if let Some(password) = self.config.get_password() {
            parts.push(format!(
                "password={}",
                quote(&String::from_utf8_lossy(password))
            ));
        }
        parts.push(format!("dbname={}", quote(&self.name)));
        parts.join(" ")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let config = admin_config();
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) =
                    config.connect(NoTls).await.map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| format!("{e:?}"))
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "parapet_migrate_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }

    pub fn write(&self, file: &str, contents: &str) {
        std::fs::write(self.path.join(file), contents).expect("write migration file");
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `pg_index.indisvalid` of an index, or `None` if it does not exist.
pub async fn index_valid(client: &Client, index: &str) -> Option<bool> {
    client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1",
            &[&index],
        )
        .await
        .expect("query pg_index")
        .map(|row| row.get(0))
}

/// The versions recorded in the history table, in order.
pub async fn history_versions(client: &Client) -> Vec<i64> {
    client
        .query(
            "SELECT version FROM parapet_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read history")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Whether a table exists in the public schema.
pub async fn table_exists(client: &Client, table: &str) -> bool {
    client
        .query_one(
            "SELECT to_regclass('public.' || quote_ident($1)) IS NOT NULL",
            &[&table],
        )
        .await
        .expect("to_regclass")
        .get(0)
}
