//! [`TestDb`]: a PostgreSQL database of its own for one test.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio_postgres::{Client, Config, NoTls, config::Host};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const START_PG: &str =
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

/// The variables that name the test server, first set wins.
const URL_VARS: [&str; 2] = ["PARAPET_TEST_DATABASE_URL", "DATABASE_URL"];

/// The PostgreSQL server the tests use, as an admin URL (a superuser, database `postgres`):
/// `PARAPET_TEST_DATABASE_URL`, else `DATABASE_URL`, else the local default.
pub fn admin_url() -> String {
    URL_VARS
        .iter()
        .find_map(|var| std::env::var(var).ok())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// Where [`admin_url`] came from, for failure messages.
fn url_source() -> String {
    match URL_VARS.iter().find(|var| std::env::var_os(var).is_some()) {
        Some(var) => format!("from {var}"),
        None => "the default; set DATABASE_URL to use another server".to_owned(),
    }
}

fn config(url: &str) -> Config {
    let mut config: Config = url
        .parse()
        .unwrap_or_else(|e| panic!("{url:?} is not a PostgreSQL connection string: {e}"));
    config.connect_timeout(Duration::from_secs(10));
    config
}

/// Connects to `url`, or panics naming the service, its address and how to start it.
pub async fn connect(url: &str) -> Client {
    let config = config(url);
    match config.connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
        Err(e) => panic!("{}", unreachable_message(&config, &e)),
    }
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
    let mut cause = error.to_string();
    let mut next = std::error::Error::source(error);
    while let Some(e) = next {
        cause.push_str(&format!(": {e}"));
        next = e.source();
    }
    format!(
        "PostgreSQL is not reachable at {} ({}): {cause}; {START_PG}",
        hosts.join(","),
        url_source()
    )
}

/// Fails the test with a clear message when PostgreSQL does not answer.
pub async fn require_postgres() {
    connect(&admin_url())
        .await
        .simple_query("SELECT 1")
        .await
        .expect("PostgreSQL answers SELECT 1");
}

/// A database of its own for one test, dropped (with its connections and the roles made by
/// [`app_role_url`](Self::app_role_url)) when this guard drops.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    roles: Mutex<Vec<String>>,
}

impl TestDb {
    /// Creates an empty database named after `label` (lowercase letters, digits and `_`), the
    /// process id and a counter.
    pub async fn create(label: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "test database label {label:?}: use lowercase letters, digits and `_`"
        );
        let name = format!(
            "parapet_t_{label}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&admin_url()).await;
        // A database of the same name can only be a leftover of a crashed run with this pid.
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{name}\""),
        ] {
            admin.batch_execute(&sql).await.unwrap_or_else(|e| {
                panic!("cannot create test database {name}: {}", db_message(&e))
            });
        }
        let url = with_database(&admin_url(), &name);
        Self {
            name,
            url,
            roles: Mutex::new(Vec::new()),
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same connection as a `key=value` string (libpq's other form, as a CLI takes it).
    pub fn conn_string(&self) -> String {
        let config = config(&self.url);
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut parts = Vec::new();
        let hosts: Vec<String> = config
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
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            parts.push(format!("port={}", ports.join(",")));
        }
        if let Some(user) = config.get_user() {
            parts.push(format!("user={}", quote(user)));
        }
        if let Some(password) = config.get_password() {
            parts.push(format!(
                "password={}",
                quote(&String::from_utf8_lossy(password))
            ));
        }
        parts.push(format!("dbname={}", quote(&self.name)));
        parts.join(" ")
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
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let roles = std::mem::take(&mut *self.roles.lock().unwrap_or_else(|p| p.into_inner()));
        // A thread with a runtime of its own: this may run inside a Tokio runtime (which cannot
        // be blocked on) or outside any.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) = config(&admin_url())
                    .connect(NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| db_message(&e))?;
                let mut kept = Vec::new();
                for role in roles {
                    let sql = format!("DROP ROLE IF EXISTS {role}");
                    if let Err(e) = client.batch_execute(&sql).await {
                        kept.push(format!("role {role}: {}", db_message(&e)));
                    }
                }
                if kept.is_empty() {
                    Ok(())
                } else {
                    Err(kept.join("; "))
                }
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

/// The server's message of a PostgreSQL error (tokio-postgres's `Display` says only "db error").
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// The user a `postgres://user[:password]@host/...` URL connects as (the inverse of
/// [`with_user`]).
pub fn user_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let userinfo = rest.split_once('@').map_or("", |(userinfo, _)| userinfo);
    userinfo.split(':').next().unwrap_or_default().to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_urls() {
        let url = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";
        assert_eq!(
            with_database(url, "t1"),
            "postgres://postgres@127.0.0.1:5432/t1?sslmode=disable"
        );
        assert_eq!(
            with_user(&with_database(url, "t1"), "app"),
            "postgres://app@127.0.0.1:5432/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "t2"),
            "postgres://h/t2",
            "no database in the URL"
        );
    }
}
