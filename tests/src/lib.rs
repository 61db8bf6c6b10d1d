//! Test harness shared by parapet's workspace-level integration tests.
//!
//! Every test gets its own PostgreSQL database (created fresh, dropped when the guard drops), so
//! tests run in parallel and twice in a row. When a service is missing the harness panics with a
//! message that names the service and how to start it: a test never passes without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::{Client, NoTls};

/// The PostgreSQL server the tests use, as an admin URL (database `postgres`).
pub fn admin_url() -> String {
    std::env::var("PARAPET_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

const START_PG: &str =
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

/// Connects to `url`, or panics naming the service and how to start it.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url} ({e}); {START_PG}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database of its own for one test, dropped (with its connections) when this guard drops.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    roles: std::sync::Mutex<Vec<String>>,
}

impl TestDb {
    /// Creates an empty database named after `label`, the process id and a counter.
    pub async fn create(label: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "parapet_t_{label}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&admin_url()).await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&sql).await.unwrap_or_else(|e| {
                panic!("cannot create test database {name}: {}", db_message(&e))
            });
        }
        let url = with_database(&admin_url(), &name);
        Self {
            name,
            url,
            roles: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Creates a database and applies the project's migrations (`migrations/`).
    pub async fn migrated(label: &str) -> Self {
        let db = Self::create(label).await;
        let client = db.client().await;
        parapet_migrate::Migrator::crm()
            .run(&client)
            .await
            .unwrap_or_else(|e| panic!("migrations failed on {}: {e}", db.name));
        db
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection to this database.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Creates an ordinary login role (not a superuser, no `BYPASSRLS`, so row-level security
    /// applies to it) with rights on this database's tables, and returns a URL that connects as
    /// it. The role is dropped with the database.
    pub async fn app_role_url(&self) -> String {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let role = format!(
            "parapet_r_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot create role {role}: {}", db_message(&e)));
        self.roles.lock().unwrap().push(role.clone());
        self.client()
            .await
            .batch_execute(&format!(
                "GRANT USAGE ON SCHEMA public TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
                 GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot grant to {role}: {}", db_message(&e)));
        with_user(&self.url, &role)
    }

    /// A deadpool pool on this database, with bounded waits.
    pub fn pool(&self, max_size: usize) -> deadpool_postgres::Pool {
        pool_for(&self.url, max_size)
    }
}

/// A deadpool pool on `url` whose every wait is bounded (2 s).
pub fn pool_for(url: &str, max_size: usize) -> deadpool_postgres::Pool {
    let pg: tokio_postgres::Config = url.parse().expect("valid PostgreSQL URL");
    let timeouts = deadpool_postgres::Timeouts {
        wait: Some(std::time::Duration::from_secs(2)),
        create: Some(std::time::Duration::from_secs(2)),
        recycle: Some(std::time::Duration::from_secs(2)),
    };
    let manager = deadpool_postgres::Manager::new(pg, NoTls);
    deadpool_postgres::Pool::builder(manager)
        .max_size(max_size)
        .timeouts(timeouts)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .expect("pool config is valid")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let roles = std::mem::take(&mut *self.roles.lock().unwrap_or_else(|p| p.into_inner()));
        // Drop from a thread of its own: this may run inside (or outside) a Tokio runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    for role in roles {
                        let _ = client
                            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

/// The server's message of a PostgreSQL error (tokio-postgres's `Display` says only "db error").
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// `url` connecting as `user` (without a password: the test server trusts local connections).
pub fn with_user(url: &str, user: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let host_start = rest.find('@').map_or(0, |i| i + 1);
    format!("{}{user}@{}", &url[..scheme_end], &rest[host_start..])
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub mod certs;
pub mod cluster;

/// The README's Rust examples, run as doc-tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
