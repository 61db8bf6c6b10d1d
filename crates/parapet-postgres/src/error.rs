//! [`ConfigError`]: a connection string that cannot be used.

use std::path::PathBuf;

/// Why a connection string cannot be used. The message never contains the connection string
/// (nor its password): wrap it with the name of the variable it came from.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// tokio-postgres refused the connection string (its reason: an unknown option, a port that
    /// is not a number, ...).
    #[error("{0}")]
    Invalid(String),
    /// A TLS parameter has a value that does not parse.
    #[error("{parameter}: {reason}")]
    InvalidParameter {
        /// The parameter (`sslmode`, `sslcert`, ...).
        parameter: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate or key file could not be read or holds nothing usable.
    #[error("{parameter}={}: {reason}", .path.display())]
    File {
        /// The parameter that names the file (`sslrootcert`, `sslcert`, `sslkey`).
        parameter: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The TLS configuration could not be built (no system root certificates, a key that does
    /// not match its certificate, ...).
    #[error("TLS: {0}")]
    Tls(String),
}
