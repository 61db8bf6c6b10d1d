//! [`Policy`]: a rate as the layer applies it to a request (its arithmetic, the share of a
//! request a cache hit gives back) and as the IETF `RateLimit-Policy` / `RateLimit` fields
//! describe it.
//!
//! The fields follow draft-ietf-httpapi-ratelimit-headers (structured-field lists of items
//! with parameters): `RateLimit-Policy: "free";q=40;w=2` (quota units and the window in which
//! they are restored) and `RateLimit: "free";r=12;t=1` (units remaining, seconds until the
//! whole quota is back). For a GCRA limit the quota is the burst and the window the time a
//! full burst takes to refill (`burst / rate`, rounded up to a second).

use http::HeaderValue;

use crate::gcra::{Gcra, ceil_seconds};
use crate::rate::Rate;

/// A limit ready for requests: built once, shared by every request it applies to.
#[derive(Debug)]
pub(crate) struct Policy {
    gcra: Gcra,
    /// Microseconds a cache hit gives back of the whole request it was charged.
    hit_refund: u64,
    /// The quoted policy name (`"free"`), the start of every `RateLimit` value.
    quoted: Box<str>,
    /// The `RateLimit-Policy` value.
    policy_field: HeaderValue,
    /// The `RateLimit` values of a refusal (`r=0`), for `t` from `refused_from` on: a refused
    /// tenant uses between `τ − T` and `τ` of its tolerance, so a few values cover them all.
    refused_fields: Box<[HeaderValue]>,
    refused_from: u64,
}

/// At most this many pre-rendered `RateLimit` values of a refusal per policy, those of the most
/// used tolerance (a limit whose interval is longer than a minute renders the rest per refusal).
const REFUSED_FIELDS: u64 = 64;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

impl Policy {
    /// `name` must be a valid structured-field string (checked by the builder: letters,
    /// digits, `-`, `_`, `.`); `hit_cost` is in `[0, 1]`.
    pub(crate) fn new(name: &str, rate: &Rate, hit_cost: f64) -> Self {
        let gcra = rate.gcra();
        let quoted: Box<str> = format!("\"{name}\"").into();
        let window = ceil_seconds(gcra.tolerance()).max(1);
        let field = format!("{quoted};q={};w={window}", rate.burst_size());
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let hit_refund = ((gcra.interval() as f64) * (1.0 - hit_cost)).round() as u64;
        let mut policy = Self {
            gcra,
            hit_refund: hit_refund.min(gcra.interval()),
            quoted,
            policy_field: HeaderValue::from_str(&field)
                .unwrap_or_else(|_| HeaderValue::from_static("\"quota\"")),
            refused_fields: Box::default(),
            refused_from: 0,
        };
        // The values nearest a full tolerance first: a flood is refused right after the refusal
        // that began it.
        let to = ceil_seconds(gcra.tolerance());
        let from = ceil_seconds(gcra.tolerance() - gcra.interval())
            .max(to.saturating_sub(REFUSED_FIELDS - 1));
        policy.refused_fields = (from..=to).map(|t| policy.ratelimit_value(0, t)).collect();
        policy.refused_from = from;
        policy
    }

    pub(crate) fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    pub(crate) fn hit_refund(&self) -> u64 {
        self.hit_refund
    }

    pub(crate) fn policy_field(&self) -> HeaderValue {
        self.policy_field.clone()
    }

    /// The `RateLimit` value when `used` microseconds of the tolerance are in use.
    pub(crate) fn ratelimit_field(&self, used: u64) -> HeaderValue {
        let remaining = self.gcra.remaining(used);
        let t = ceil_seconds(used);
        if remaining == 0 {
            let index = t
                .checked_sub(self.refused_from)
                .and_then(|i| usize::try_from(i).ok());
            if let Some(value) = index.and_then(|i| self.refused_fields.get(i)) {
                return value.clone();
            }
        }
        self.ratelimit_value(remaining, t)
    }

    /// `"<name>";r=<remaining>;t=<t>`.
    fn ratelimit_value(&self, remaining: u64, t: u64) -> HeaderValue {
        let mut numbers = itoa::Buffer::new();
        let mut value = String::with_capacity(self.quoted.len() + 24);
        value.push_str(&self.quoted);
        value.push_str(";r=");
        value.push_str(numbers.format(remaining));
        value.push_str(";t=");
        value.push_str(numbers.format(t));
        HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
            .unwrap_or_else(|_| HeaderValue::from_static("\"quota\";r=0;t=1"))
    }
}

/// Whether `name` may be a policy name: what a plan is called in `RateLimit-Policy`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_draft() {
        let policy = Policy::new("free", &Rate::per_second(20).burst(40), 0.1);
        assert_eq!(policy.policy_field(), "\"free\";q=40;w=2");
        assert_eq!(policy.ratelimit_field(0), "\"free\";r=40;t=0");
        assert_eq!(
            policy.ratelimit_field(policy.gcra().interval() * 3 + 1),
            "\"free\";r=36;t=1"
        );
        assert_eq!(
            policy.ratelimit_field(policy.gcra().tolerance()),
            "\"free\";r=0;t=2"
        );
        // A refusal's values are pre-rendered, and the same as rendered.
        for used in [
            policy.gcra().tolerance() - policy.gcra().interval() + 1,
            policy.gcra().tolerance() - 1,
            policy.gcra().tolerance(),
        ] {
            assert_eq!(
                policy.ratelimit_field(used),
                policy.ratelimit_value(0, ceil_seconds(used))
            );
        }
        assert_eq!(
            policy.refused_fields.len(),
            1,
            "only t=2: a refused tenant uses 1.95 s to 2 s"
        );
        let hourly = Policy::new(
            "h",
            &Rate::new(1, std::time::Duration::from_secs(3600)),
            1.0,
        );
        assert_eq!(hourly.refused_fields.len(), 64);
        assert_eq!(hourly.ratelimit_field(3_600_000_000), "\"h\";r=0;t=3600");
        assert_eq!(hourly.ratelimit_field(1), "\"h\";r=0;t=1");
        assert_eq!(hourly.refused_from, 3600 - 63);
        // 100 per minute, burst 10: 10 units come back in 6 seconds.
        let slow = Policy::new("slow", &Rate::per_minute(100).burst(10), 1.0);
        assert_eq!(slow.policy_field(), "\"slow\";q=10;w=6");
        assert_eq!(slow.hit_refund(), 0);
    }

    #[test]
    fn a_hit_gives_back_the_rest_of_a_request() {
        let policy = Policy::new("pro", &Rate::per_second(200), 0.25);
        assert_eq!(policy.gcra().interval(), 5_000);
        assert_eq!(policy.hit_refund(), 3_750);
        let free = Policy::new("pro", &Rate::per_second(200), 0.0);
        assert_eq!(free.hit_refund(), 5_000);
    }

    #[test]
    fn names() {
        assert!(valid_name("free"));
        assert!(valid_name("pro-2024.v1_x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a\"b"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("é"));
    }
}
