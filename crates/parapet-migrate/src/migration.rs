//! One migration file: its version, name, SQL and checksum.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::MigrateError;

/// The first line that marks a migration to be run outside a transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- no-transaction";

/// One migration: a SQL file named `NNNN_description.sql`.
#[derive(Clone, PartialEq, Eq)]
pub struct Migration {
    version: i64,
    name: String,
    sql: String,
    checksum: String,
    no_transaction: bool,
}

impl Migration {
    /// Builds a migration from a file name of the form `NNNN_description.sql`
    /// and the file's contents.
    ///
    /// The version is the number before the first `_`, the name the rest
    /// before `.sql`. The checksum is the SHA-256 of `sql`'s bytes, and the
    /// migration runs outside a transaction when its first line is
    /// `-- no-transaction`.
    ///
    /// ```
    /// use parapet_migrate::Migration;
    ///
    /// let m = Migration::parse(
    ///     "0002_add_index.sql",
    ///     "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON t (a);\n",
    /// )?;
    /// assert_eq!(m.version(), 2);
    /// assert_eq!(m.name(), "add_index");
    /// assert!(m.no_transaction());
    /// assert_eq!(m.checksum().len(), 64);
    ///
    /// assert!(Migration::parse("add_index.sql", "").is_err());
    /// # Ok::<(), parapet_migrate::MigrateError>(())
    /// ```
    pub fn parse(file_name: &str, sql: impl Into<String>) -> Result<Self, MigrateError> {
        let (version, name) = parse_file_name(file_name)?;
        Ok(Self::new(version, name, sql))
    }

    /// Builds a migration from its parts (no file name to parse).
    pub fn new(version: i64, name: impl Into<String>, sql: impl Into<String>) -> Self {
        let sql = sql.into();
        let checksum = sha256_hex(sql.as_bytes());
        let no_transaction = sql.lines().next().is_some_and(|line| {
            line.trim_start_matches('\u{feff}').trim_end() == NO_TRANSACTION_MARKER
        });
        Self {
            version,
            name: name.into(),
            sql,
            checksum,
            no_transaction,
        }
    }

    /// The version, from the file name's numeric prefix.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The name (the file name's description part).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The lower-case hex SHA-256 of the file's bytes.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// Whether the file starts with `-- no-transaction`: it is then run
    /// statement by statement, outside any transaction.
    pub fn no_transaction(&self) -> bool {
        self.no_transaction
    }
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("name", &self.name)
            .field("checksum", &self.checksum)
            .field("no_transaction", &self.no_transaction)
            .field("sql_len", &self.sql.len())
            .finish()
    }
}

impl fmt::Display for Migration {
    /// `0002_performance_indexes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}_{}", self.version, self.name)
    }
}

/// Splits `NNNN_description.sql` into its version and description.
fn parse_file_name(file: &str) -> Result<(i64, String), MigrateError> {
    let invalid = |reason| MigrateError::InvalidFileName {
        file: file.to_owned(),
        reason,
    };
    let stem = file
        .strip_suffix(".sql")
        .ok_or_else(|| invalid("it does not end in .sql"))?;
    let (digits, name) = stem
        .split_once('_')
        .ok_or_else(|| invalid("no `_` after the version number"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("it does not start with a version number"));
    }
    let version = digits
        .parse::<i64>()
        .map_err(|_| invalid("the version number is too large"))?;
    if name.is_empty() {
        return Err(invalid("the description is empty"));
    }
    Ok((version, name.to_owned()))
}

/// Lower-case hex SHA-256.
fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_names() {
        let m = Migration::parse("0001_crm_schema.sql", "CREATE TABLE t ();").unwrap();
        assert_eq!((m.version(), m.name()), (1, "crm_schema"));
        assert!(!m.no_transaction());
        assert_eq!(m.to_string(), "0001_crm_schema");
        let m = Migration::parse("20240101120000_a_b.sql", "").unwrap();
        assert_eq!((m.version(), m.name()), (20_240_101_120_000, "a_b"));
    }

    #[test]
    fn rejects_bad_file_names() {
        for bad in [
            "0001_x.txt",
            "0001.sql",
            "x_0001.sql",
            "_x.sql",
            "0001_.sql",
            "-1_x.sql",
            "+1_x.sql",
            "99999999999999999999_x.sql",
        ] {
            let err = Migration::parse(bad, "").unwrap_err();
            assert!(
                matches!(err, MigrateError::InvalidFileName { ref file, .. } if file == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn checksum_is_sha256_of_the_bytes() {
        let m = Migration::new(1, "x", "abc");
        assert_eq!(
            m.checksum(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(m.checksum(), Migration::new(1, "x", "abc ").checksum());
    }

    #[test]
    fn no_transaction_only_on_the_first_line() {
        assert!(Migration::new(1, "x", "-- no-transaction\nSELECT 1").no_transaction());
        assert!(Migration::new(1, "x", "-- no-transaction  \r\nSELECT 1").no_transaction());
        assert!(Migration::new(1, "x", "-- no-transaction").no_transaction());
        assert!(!Migration::new(1, "x", "\n-- no-transaction\nSELECT 1").no_transaction());
        assert!(!Migration::new(1, "x", "-- no-transactions\nSELECT 1").no_transaction());
        assert!(!Migration::new(1, "x", "SELECT 1 -- no-transaction").no_transaction());
    }
}
