//! What a run did ([`Report`]) and where a database stands ([`Status`]).

use std::fmt;
use std::time::{Duration, SystemTime};

/// What [`Migrator::run`](crate::Migrator::run) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The migrations applied by this run, in order.
    pub applied: Vec<AppliedMigration>,
    /// The INVALID indexes this run dropped and built again.
    pub repaired: Vec<RepairedIndex>,
    /// How many migrations were already applied before this run.
    pub already_applied: usize,
}

impl Report {
    /// Whether the run had nothing to do: no migration applied, no index
    /// rebuilt.
    pub fn is_noop(&self) -> bool {
        self.applied.is_empty() && self.repaired.is_empty()
    }

    /// The versions applied by this run, in order.
    pub fn applied_versions(&self) -> Vec<i64> {
        self.applied.iter().map(|m| m.version).collect()
    }
}

impl fmt::Display for Report {
    /// One line per applied migration and rebuilt index, then a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for index in &self.repaired {
            writeln!(
                f,
                "rebuilt invalid index {} (from migration {:04}_{})",
                index.index, index.version, index.migration
            )?;
        }
        for m in &self.applied {
            writeln!(
                f,
                "applied {:04}_{}{} in {} ms",
                m.version,
                m.name,
                if m.no_transaction {
                    " (no transaction)"
                } else {
                    ""
                },
                m.duration.as_millis()
            )?;
        }
        if self.is_noop() {
            write!(
                f,
                "nothing to do: all {} migrations already applied",
                self.already_applied
            )
        } else {
            write!(
                f,
                "done: {} migrations applied, {} invalid indexes rebuilt",
                self.applied.len(),
                self.repaired.len()
            )
        }
    }
}

/// One migration applied by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedMigration {
    /// Its version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// Whether it ran outside a transaction.
    pub no_transaction: bool,
    /// How long it took.
    pub duration: Duration,
}

/// An index that was INVALID (left by a failed `CREATE INDEX CONCURRENTLY`)
/// and was dropped and built again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairedIndex {
    /// The version of the migration that creates the index.
    pub version: i64,
    /// The name of the migration that creates the index.
    pub migration: String,
    /// The index, quoted and schema-qualified (`public.leads_org_idx`).
    pub index: String,
}

/// Where a database stands, from [`Migrator::status`](crate::Migrator::status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Every known migration, in version order.
    pub migrations: Vec<MigrationStatus>,
    /// Migrations the database records as applied that no file has.
    pub unknown_applied: Vec<UnknownApplied>,
    /// INVALID indexes that the migrations create (`run` rebuilds them).
    pub invalid_indexes: Vec<InvalidIndex>,
}

impl Status {
    /// Whether every migration is applied unchanged, the database knows no
    /// other, and no index is INVALID.
    pub fn is_up_to_date(&self) -> bool {
        self.unknown_applied.is_empty()
            && self.invalid_indexes.is_empty()
            && self
                .migrations
                .iter()
                .all(|m| matches!(m.state, MigrationState::Applied { .. }))
    }

    /// The versions not applied yet.
    pub fn pending_versions(&self) -> Vec<i64> {
        self.migrations
            .iter()
            .filter(|m| m.state == MigrationState::Pending)
            .map(|m| m.version)
            .collect()
    }
}

impl fmt::Display for Status {
    /// One line per migration, unknown applied version and invalid index.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        for m in &self.migrations {
            let state = match &m.state {
                MigrationState::Pending => "pending".to_owned(),
                MigrationState::Applied { applied_at } => {
                    format!("applied at {}", format_utc(*applied_at))
                }
                MigrationState::ChecksumMismatch { applied_at, .. } => format!(
                    "CHANGED since it was applied at {}",
                    format_utc(*applied_at)
                ),
            };
            lines.push(format!("{:04}_{}: {state}", m.version, m.name));
        }
        for u in &self.unknown_applied {
            lines.push(format!(
                "{:04}_{}: applied at {} but NO FILE has this version",
                u.version,
                u.name,
                format_utc(u.applied_at)
            ));
        }
        for i in &self.invalid_indexes {
            lines.push(format!(
                "INVALID index {} (from migration {:04}_{}); `up` rebuilds it",
                i.index, i.version, i.migration
            ));
        }
        if lines.is_empty() {
            lines.push("no migrations".to_owned());
        }
        f.write_str(&lines.join("\n"))
    }
}

/// The state of one migration in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// Its version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// Whether it runs outside a transaction.
    pub no_transaction: bool,
    /// Applied, pending or changed.
    pub state: MigrationState,
}

/// Whether a migration has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationState {
    /// Not applied yet.
    Pending,
    /// Applied, and the file still matches.
    Applied {
        /// When it was applied.
        applied_at: SystemTime,
    },
    /// Applied, but the file was changed since: `run` refuses to go on.
    ChecksumMismatch {
        /// When it was applied.
        applied_at: SystemTime,
        /// The checksum recorded when it was applied.
        applied_checksum: String,
    },
}

/// A migration the database records as applied that no file has.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownApplied {
    /// The recorded version.
    pub version: i64,
    /// The recorded name.
    pub name: String,
    /// When it was applied.
    pub applied_at: SystemTime,
}

/// An INVALID index that a migration creates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidIndex {
    /// The version of the migration that creates the index.
    pub version: i64,
    /// The name of the migration that creates the index.
    pub migration: String,
    /// The index, quoted and schema-qualified.
    pub index: String,
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_utc(time: SystemTime) -> String {
    let secs = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(format_utc(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(at(1_764_100_000)), "2025-11-25T19:46:40Z");
        assert_eq!(
            format_utc(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn empty_report_says_nothing_to_do() {
        let report = Report {
            already_applied: 2,
            ..Report::default()
        };
        assert!(report.is_noop());
        assert_eq!(
            report.to_string(),
            "nothing to do: all 2 migrations already applied"
        );
    }
}
