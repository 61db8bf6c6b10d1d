//! [`PgConfig`]: a libpq-style connection string, split into what tokio-postgres understands and
//! the TLS parameters it does not (`sslmode=verify-*`, `sslrootcert`, `sslcert`, `sslkey`).

use std::{fmt, ops::Deref, ops::DerefMut, path::PathBuf, str::FromStr};

use tokio_postgres::{Client, Config, Socket, config::SslMode as PgSslMode};

use crate::{
    ConfigError, MakeRustlsConnect, RustlsStream,
    tls::{RootCerts, TlsOptions},
};

/// libpq's `sslmode`: whether the connection is encrypted and what is checked.
///
/// | mode | encrypted | server certificate checked | host name checked |
/// |---|---|---|---|
/// | `disable` | no | | |
/// | `prefer` (the default) | when the server offers TLS | no | no |
/// | `require` | yes | only when `sslrootcert` is given (then as `verify-ca`, like libpq) | no |
/// | `verify-ca` | yes | against `sslrootcert`, else the system's roots | no |
/// | `verify-full` | yes | against `sslrootcert`, else the system's roots | yes |
///
/// libpq's `allow` (plain text first, TLS if the server insists) is read as `prefer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it, without checking the certificate (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked only when `sslrootcert` is given.
    Require,
    /// TLS, with the server's certificate chain checked against the trusted roots.
    VerifyCa,
    /// TLS, with the chain and the host name checked: what a managed database should use.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // libpq accepts `allow` (plain text first); encrypting when offered is stricter.
            "allow" => Self::Prefer,
            other => {
                return Err(ConfigError::InvalidParameter {
                    parameter: "sslmode",
                    reason: format!(
                        "{other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ),
                });
            }
        })
    }

    /// The name libpq uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn driver_mode(self) -> PgSslMode {
        match self {
            Self::Disable => PgSslMode::Disable,
            Self::Prefer => PgSslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => PgSslMode::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PostgreSQL connection string parsed with its TLS settings: a `tokio_postgres::Config`
/// (reachable through `Deref`) and the rustls connector its `sslmode` asks for.
///
/// Both libpq forms are accepted: a URL (`postgres://user:pw@host:5432/db?sslmode=verify-full`)
/// and `key=value` pairs (`host=db.example.com sslmode=verify-full`). The TLS parameters are
/// taken out; every other parameter goes to tokio-postgres as written (which refuses the ones it
/// does not know).
///
/// | parameter | meaning |
/// |---|---|
/// | `sslmode` | see [`SslMode`]; default `prefer`, like libpq |
/// | `sslrootcert` | PEM file of the CA certificates to trust, or `system` for the system's roots (the default for `verify-ca` / `verify-full`) |
/// | `sslcert`, `sslkey` | PEM files of a client certificate (chain) and its private key, for servers that ask for one |
///
/// ```
/// use parapet_postgres::{PgConfig, SslMode};
///
/// let config: PgConfig =
///     "postgres://app:secret@db.example.com/crm?sslmode=verify-full&application_name=api"
///         .parse()?;
/// assert_eq!(config.ssl_mode(), SslMode::VerifyFull);
/// assert_eq!(config.get_application_name(), Some("api"));
/// # Ok::<(), parapet_postgres::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct PgConfig {
    pg: Config,
    ssl_mode: SslMode,
    tls: MakeRustlsConnect,
}

impl PgConfig {
    /// Parses a libpq-style connection string (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a parameter that does not parse, or a certificate or key file that
    /// cannot be read. The message never contains the connection string (nor its password).
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let (rest, params) = split_tls_params(url)?;
        let mut pg: Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| ConfigError::Invalid(crate::describe(&e)))?;
        let ssl_mode = match params.ssl_mode.as_deref() {
            None => SslMode::Prefer,
            Some(mode) => SslMode::parse(mode)?,
        };
        pg.ssl_mode(ssl_mode.driver_mode());
        let root = params.root_cert.map(|value| match value.as_str() {
            "system" => RootCerts::System,
            _ => RootCerts::File(PathBuf::from(value)),
        });
        let client_cert = match (params.cert, params.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::InvalidParameter {
                    parameter: "sslcert",
                    reason: "sslcert and sslkey go together".to_owned(),
                });
            }
        };
        let options = TlsOptions::new(ssl_mode, root, client_cert);
        let tls = MakeRustlsConnect::new(options.client_config()?);
        Ok(Self { pg, ssl_mode, tls })
    }

    /// The `sslmode`.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The tokio-postgres configuration (also reachable through `Deref`).
    pub fn pg(&self) -> &Config {
        &self.pg
    }

    /// The TLS connector to hand to tokio-postgres or deadpool-postgres with [`pg`](Self::pg).
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// Opens a connection; drive the returned `Connection` on a task of its own.
    ///
    /// # Errors
    ///
    /// The driver's error; a TLS failure is recognised by [`tls_error`](crate::tls_error), and
    /// [`describe`](crate::describe) puts its host and reason on one line.
    pub async fn connect(&self) -> Result<(Client, PgConnection), tokio_postgres::Error> {
        self.pg.connect(self.tls.clone()).await
    }

    /// Opens a connection and drives it on a Tokio task until the client is dropped.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn client(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %crate::describe(&e), "PostgreSQL connection ended with an error");
            }
        });
        Ok(client)
    }
}

/// A connection opened by [`PgConfig::connect`].
pub type PgConnection = tokio_postgres::Connection<Socket, RustlsStream<Socket>>;

impl FromStr for PgConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Deref for PgConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.pg
    }
}

impl DerefMut for PgConfig {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.pg
    }
}

impl fmt::Debug for PgConfig {
    /// tokio-postgres's `Debug` of the configuration redacts the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("pg", &self.pg)
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

/// The TLS parameters, taken out of a connection string.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    ssl_mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl TlsParams {
    /// Takes `key`'s value if it is one of ours.
    fn take(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.ssl_mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// Splits the TLS parameters off `url`; returns the rest in its own form.
fn split_tls_params(url: &str) -> Result<(String, TlsParams), ConfigError> {
    let mut params = TlsParams::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            if !params.take(&key, percent_decode(value)?) {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((rest, params))
    } else {
        let mut kept = Vec::new();
        for (key, value) in key_values(url)? {
            if !params.take(&key, value.clone()) {
                kept.push(format!(
                    "{key}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                ));
            }
        }
        Ok((kept.join(" "), params))
    }
}

fn percent_decode(s: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConfigError::Invalid("invalid percent-encoding".to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConfigError::Invalid("percent-encoding is not UTF-8".to_owned()))
}

/// libpq's `key = value` form: values may be single-quoted; `\` escapes the next character.
fn key_values(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid(reason.to_owned());
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(invalid("expected key=value pairs"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(invalid("unterminated quoted value")),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or_else(|| invalid("dangling \\"))?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or_else(|| invalid("dangling \\"))?);
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, TlsParams) {
        split_tls_params(url).unwrap()
    }

    #[test]
    fn every_sslmode_parses_and_maps_to_the_driver() {
        for (value, mode, driver) in [
            ("disable", SslMode::Disable, PgSslMode::Disable),
            ("allow", SslMode::Prefer, PgSslMode::Prefer),
            ("prefer", SslMode::Prefer, PgSslMode::Prefer),
            ("require", SslMode::Require, PgSslMode::Require),
            ("verify-ca", SslMode::VerifyCa, PgSslMode::Require),
            ("verify-full", SslMode::VerifyFull, PgSslMode::Require),
        ] {
            let config = PgConfig::parse(&format!("postgres://u@h/db?sslmode={value}")).unwrap();
            assert_eq!(config.ssl_mode(), mode, "{value}");
            assert_eq!(config.get_ssl_mode(), driver, "{value}");
            let kv = PgConfig::parse(&format!("host=h user=u sslmode={value}")).unwrap();
            assert_eq!(kv.ssl_mode(), mode, "{value}");
            assert_eq!(kv.get_ssl_mode(), driver, "{value}");
        }
    }

    #[test]
    fn the_default_is_prefer() {
        let config = PgConfig::parse("postgres://u@h/db").unwrap();
        assert_eq!(config.ssl_mode(), SslMode::Prefer);
        assert_eq!(config.get_ssl_mode(), PgSslMode::Prefer);
    }

    #[test]
    fn tls_parameters_are_taken_out_and_the_others_passed_through() {
        let (rest, params) = split(
            "postgres://u:p@h:5433/db?application_name=api&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fssl%2Fca%20bundle.pem&sslcert=/c.pem&sslkey=/k.pem&connect_timeout=3",
        );
        assert_eq!(
            rest,
            "postgres://u:p@h:5433/db?application_name=api&connect_timeout=3"
        );
        assert_eq!(
            params,
            TlsParams {
                ssl_mode: Some("verify-full".to_owned()),
                root_cert: Some("/etc/ssl/ca bundle.pem".to_owned()),
                cert: Some("/c.pem".to_owned()),
                key: Some("/k.pem".to_owned()),
            }
        );
        let (rest, params) = split("postgres://u@h/db?sslmode=require");
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(params.ssl_mode.as_deref(), Some("require"));
        let (rest, _) = split("postgresql://u@h/db");
        assert_eq!(rest, "postgresql://u@h/db");
    }

    #[test]
    fn key_value_form_keeps_quoting() {
        let (rest, params) = split(
            "host=h port = 5433 password=x sslrootcert='/my certs/ca.pem' \
             application_name=a\\ b sslmode=verify-ca",
        );
        assert_eq!(params.root_cert.as_deref(), Some("/my certs/ca.pem"));
        assert_eq!(params.ssl_mode.as_deref(), Some("verify-ca"));
        assert!(rest.contains("application_name='a b'"), "{rest}");
        let (rest, _) = split("host=h password='it\\'s'");
        let pg: Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&b"it's"[..]));
        assert_eq!(pg.get_hosts().len(), 1);
        let config = PgConfig::parse("host=h port=5433 application_name='a b'").unwrap();
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(config.get_application_name(), Some("a b"));
    }

    #[test]
    fn unknown_parameters_reach_the_driver() {
        let config =
            PgConfig::parse("postgres://u@h/db?application_name=x&sslmode=disable").unwrap();
        assert_eq!(config.get_application_name(), Some("x"));
        // tokio-postgres refuses what it does not know, and says which.
        let err = PgConfig::parse("postgres://u@h/db?sslcrl=/crl.pem").unwrap_err();
        assert!(err.to_string().contains("sslcrl"), "{err}");
    }

    #[test]
    fn bad_values_are_clear_and_never_show_the_password() {
        let cases = [
            (
                "postgres://app:hunter2@h/db?sslmode=verify-everything",
                "sslmode",
            ),
            ("postgres://app:hunter2@h:notaport/db", "port"),
            (
                "postgres://app:hunter2@h/db?sslrootcert=/no/such/ca.pem&sslmode=verify-full",
                "/no/such/ca.pem",
            ),
            ("postgres://app:hunter2@h/db?sslcert=/c.pem", "sslkey"),
            ("postgres://app:hunter2@h/db?sslmode=%zz", "percent"),
            ("host=h password=hunter2 sslmode='verify", "quoted"),
            ("host=h password=hunter2 sslmode=bogus", "bogus"),
        ];
        for (url, expected) in cases {
            let err = PgConfig::parse(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let config = PgConfig::parse("postgres://app:hunter2@h/db").unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn deref_gives_the_driver_config() {
        let mut config = PgConfig::parse("postgres://app@h/db?sslmode=verify-full").unwrap();
        config.dbname("other");
        assert_eq!(config.get_dbname(), Some("other"));
        assert_eq!(config.pg().get_user(), Some("app"));
    }
}
