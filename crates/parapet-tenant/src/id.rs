//! [`TenantId`]: the validated name of a tenant, and the rule that validates it.

use std::{borrow::Borrow, fmt, str::FromStr, sync::Arc};

/// The validated identifier of a tenant.
///
/// A `TenantId` can only be built through a [`TenantIdRule`], so every value in the program has
/// passed validation: by default 1 to 63 characters of `[a-z0-9_-]`, starting with a letter or a
/// digit (a DNS label, so the same id works as a subdomain, a schema-name suffix and a Redis key
/// part). Parsing never panics, whatever the input.
///
/// Cloning is cheap (a reference-counted string).
///
/// ```
/// use parapet_tenant::TenantId;
///
/// let id: TenantId = "acme".parse().unwrap();
/// assert_eq!(id.as_str(), "acme");
/// assert!("ACME".parse::<TenantId>().is_err());
/// assert!("../etc".parse::<TenantId>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Parses `s` with the default [`TenantIdRule`].
    pub fn parse(s: &str) -> Result<Self, TenantIdError> {
        TenantIdRule::default().parse(s)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id from a string a [`TenantIdRule`] already accepted.
    pub(crate) fn validated(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TenantId").field(&&*self.0).finish()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = TenantIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The id's shared string, without copying it (for a span attribute, say).
impl From<TenantId> for Arc<str> {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a valid [`TenantId`].
///
/// The messages never echo the input back: it may be hostile (control characters, megabytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TenantIdError {
    /// The input is empty.
    #[error("tenant id is empty")]
    Empty,
    /// The input is longer than the rule allows.
    #[error("tenant id is longer than {max} bytes")]
    TooLong {
        /// The maximum length in bytes.
        max: usize,
    },
    /// The input contains a character the rule does not allow.
    #[error("tenant id contains a character that is not allowed")]
    InvalidCharacter,
    /// The first character is not a lower-case letter or a digit.
    #[error("tenant id must start with a letter or a digit")]
    InvalidStart,
}

/// The rule a string must follow to be a [`TenantId`].
///
/// The default accepts 1 to 63 characters of `[a-z0-9_-]` starting with `[a-z0-9]`. Only ASCII is
/// ever accepted, so Unicode look-alikes (`аcme` with a Cyrillic `а`) are rejected, and so are
/// `/`, `.`, `%`, NUL, CR and LF, which keeps ids safe in paths, headers, keys and SQL identifiers.
///
/// ```
/// use parapet_tenant::TenantIdRule;
///
/// // Allow dots and longer ids, e.g. for ids that are domain names.
/// let rule = TenantIdRule::default().max_len(253).allow_chars(".");
/// assert!(rule.parse("acme.example").is_ok());
/// assert!(rule.parse(".acme").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct TenantIdRule {
    max_len: usize,
    extra: Vec<u8>,
}

impl Default for TenantIdRule {
    fn default() -> Self {
        Self {
            max_len: 63,
            extra: b"_-".to_vec(),
        }
    }
}

impl TenantIdRule {
    /// The default rule: 1 to 63 characters of `[a-z0-9_-]` starting with `[a-z0-9]`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the maximum length in bytes (at least 1).
    pub fn max_len(mut self, max: usize) -> Self {
        self.max_len = max.max(1);
        self
    }

    /// Allows these ASCII punctuation characters after the first character, in addition to
    /// `_` and `-`. Characters that are not ASCII punctuation are ignored, as are `/`, `\`, `%`
    /// and `:` (they would make ids unsafe in paths and keys).
    pub fn allow_chars(mut self, chars: &str) -> Self {
        for b in chars.bytes() {
            if b.is_ascii_punctuation() && !b"/\\%:".contains(&b) && !self.extra.contains(&b) {
                self.extra.push(b);
            }
        }
        self
    }

    /// Validates `s` and builds a [`TenantId`]. Never panics.
    pub fn parse(&self, s: &str) -> Result<TenantId, TenantIdError> {
        self.check(s)?;
        Ok(TenantId(Arc::from(s)))
    }

    /// Validates `s` without building an id.
    pub fn check(&self, s: &str) -> Result<(), TenantIdError> {
        let bytes = s.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(TenantIdError::Empty);
        };
        if bytes.len() > self.max_len {
            return Err(TenantIdError::TooLong { max: self.max_len });
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(if self.allowed(first) {
                TenantIdError::InvalidStart
            } else {
                TenantIdError::InvalidCharacter
            });
        }
        if bytes.iter().all(|&b| self.allowed(b)) {
            Ok(())
        } else {
            Err(TenantIdError::InvalidCharacter)
        }
    }

    fn allowed(&self, b: u8) -> bool {
        b.is_ascii_lowercase() || b.is_ascii_digit() || self.extra.contains(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_rule_table() {
        let long = "a".repeat(64);
        let max = "a".repeat(63);
        let cases: &[(&str, Result<(), TenantIdError>)] = &[
            ("acme", Ok(())),
            ("0day", Ok(())),
            ("a_b-c", Ok(())),
            (&max, Ok(())),
            ("", Err(TenantIdError::Empty)),
            (&long, Err(TenantIdError::TooLong { max: 63 })),
            ("Acme", Err(TenantIdError::InvalidCharacter)),
            ("acMe", Err(TenantIdError::InvalidCharacter)),
            ("-acme", Err(TenantIdError::InvalidStart)),
            ("_acme", Err(TenantIdError::InvalidStart)),
            ("\u{0430}cme", Err(TenantIdError::InvalidCharacter)), // Cyrillic a
            ("acme\u{200b}", Err(TenantIdError::InvalidCharacter)), // zero-width space
            ("../etc", Err(TenantIdError::InvalidCharacter)),
            ("%2e%2e", Err(TenantIdError::InvalidCharacter)),
            ("ac\0me", Err(TenantIdError::InvalidCharacter)),
            ("acme\r\nx", Err(TenantIdError::InvalidCharacter)),
            (
                "a'; drop table tenants;--",
                Err(TenantIdError::InvalidCharacter),
            ),
            ("a b", Err(TenantIdError::InvalidCharacter)),
            ("a:b", Err(TenantIdError::InvalidCharacter)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                TenantIdRule::default().check(input),
                *expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn custom_rule_cannot_allow_separators() {
        let rule = TenantIdRule::new().allow_chars("./:%\\é");
        assert!(rule.parse("a.b").is_ok());
        for bad in ["a/b", "a:b", "a%b", "a\\b", "aéb"] {
            assert!(rule.parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            TenantIdRule::new().max_len(0).check("ab"),
            Err(TenantIdError::TooLong { max: 1 })
        );
    }

    #[test]
    fn serde_validates() {
        let id: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(id.as_str(), "acme");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<TenantId>("\"ACME\"").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Any string at all: parsing returns, never panics, and accepts only valid ids.
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            if let Ok(id) = TenantId::parse(&s) {
                prop_assert_eq!(id.as_str(), s.as_str());
                prop_assert!(s.len() <= 63 && s.is_ascii());
            }
        }

        /// Any valid id round-trips through Display, FromStr and serde unchanged.
        #[test]
        fn valid_ids_round_trip(s in "[a-z0-9][a-z0-9_-]{0,62}") {
            let id = TenantId::parse(&s).unwrap();
            prop_assert_eq!(id.to_string(), s.clone());
            let again: TenantId = id.to_string().parse().unwrap();
            prop_assert_eq!(&again, &id);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
        }

        /// Bytes that are not in the alphabet are always rejected, wherever they stand.
        #[test]
        fn foreign_bytes_rejected(prefix in "[a-z0-9]{1,10}", c in any::<char>(), suffix in "[a-z0-9]{0,10}") {
            prop_assume!(!(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'));
            let s = format!("{prefix}{c}{suffix}");
            prop_assert!(TenantId::parse(&s).is_err());
        }
    }
}
