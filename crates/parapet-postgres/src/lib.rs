//! Connect to PostgreSQL from a libpq-style connection string, TLS included.
//!
//! tokio-postgres parses `sslmode=disable|prefer|require` only, refuses `verify-ca`,
//! `verify-full` and `sslrootcert`, and leaves TLS to a connector of the caller's choice. This
//! crate is parapet's one place for that: [`PgConfig`] takes the parameters libpq users already
//! write, and [`MakeRustlsConnect`] encrypts with rustls on the `ring` provider (no OpenSSL, no
//! cmake). The tenant directory, the pools, the migration runner and the demo all connect
//! through it.
//!
//! | `sslmode` | what is checked |
//! |---|---|
//! | `disable` | plain text |
//! | `prefer` (default, as in libpq) | TLS when the server offers it, certificate not checked |
//! | `require` | TLS; the certificate checked against `sslrootcert` only when it is given (libpq) |
//! | `verify-ca` | the certificate chains to `sslrootcert` (or the system's roots) |
//! | `verify-full` | that, and the certificate names the host connected to |
//!
//! `sslrootcert=<file>` is a PEM file of CA certificates (`system`: the operating system's
//! store, which is also what `verify-*` use when `sslrootcert` is absent, where libpq would
//! look for `~/.postgresql/root.crt`). `sslcert` and `sslkey` give a client certificate.
//!
//! A failed handshake is a [`TlsError`] naming the host and the reason ([`TlsErrorKind`]);
//! [`tls_error`] finds it in a tokio-postgres error and [`describe`] prints the whole chain.
//!
//! ```no_run
//! use parapet_postgres::PgConfig;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PgConfig::parse(
//!     "postgres://app@db.example.com/crm?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
//! )?;
//! let client = config.client().await.map_err(|e| parapet_postgres::describe(&e))?;
//! client.query_one("SELECT 1", &[]).await?;
//! # Ok(()) }
//! ```

mod connect;
mod error;
mod redact;
mod tls;
mod url;

pub use connect::{
    MakeRustlsConnect, RustlsConnect, RustlsStream, TlsError, TlsErrorKind, describe,
    is_tls_failure, tls_error,
};
pub use error::ConfigError;
pub use redact::redact;
pub use url::{PgConfig, PgConnection, SslMode};
