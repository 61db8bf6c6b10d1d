//! [`Rate`]: a limit of requests per period with a burst, and its text form (`20/s:40`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::gcra::Gcra;

/// A rate limit: `count` requests per `period`, with up to `burst` at once.
///
/// The text form is `COUNT/PERIOD[:BURST]`: `20/s`, `200/s:400`, `1000/min`, `5000/h:100`.
/// Periods are `s`, `min` (or `m`) and `h`, optionally with a number (`10s`). The burst
/// defaults to `count` (a whole period's worth at once).
///
/// ```
/// use std::time::Duration;
/// use parapet_quota::Rate;
///
/// let rate: Rate = "20/s:40".parse()?;
/// assert_eq!(rate, Rate::per_second(20).burst(40));
/// assert_eq!("100/min".parse::<Rate>()?, Rate::new(100, Duration::from_secs(60)));
/// assert!("20/s:0".parse::<Rate>().is_err());
/// # Ok::<(), parapet_quota::RateError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct Rate {
    count: u32,
    period: Duration,
    burst: u32,
}

impl Rate {
    /// `count` requests per `period`, a burst of `count`. A zero count or period is an error
    /// when the layer is built.
    pub fn new(count: u32, period: Duration) -> Self {
        Self {
            count,
            period,
            burst: count,
        }
    }

    /// `count` requests per second.
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// Up to `burst` requests at once (at least 1 when the layer is built).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Requests per period.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    #[must_use]
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Requests allowed at once.
    #[must_use]
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The problem with this rate, if any.
    pub(crate) fn check(&self) -> Result<(), RateError> {
        if self.count == 0 {
            return Err(RateError::new(Part::Count, "must be at least 1"));
        }
        if self.period.as_micros() < u128::from(self.count) {
            return Err(RateError::new(
                Part::Period,
                "must be at least one microsecond per request",
            ));
        }
        if self.burst == 0 {
            return Err(RateError::new(Part::Burst, "must be at least 1"));
        }
        Ok(())
    }

    /// Its arithmetic, in microseconds.
    pub(crate) fn gcra(&self) -> Gcra {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        Gcra::new(period / u64::from(self.count.max(1)), self.burst)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        match secs {
            1 => write!(f, "{}/s", self.count)?,
            60 => write!(f, "{}/min", self.count)?,
            3600 => write!(f, "{}/h", self.count)?,
            _ => write!(f, "{}/{}ms", self.count, self.period.as_millis())?,
        }
        if self.burst != self.count {
            write!(f, ":{}", self.burst)?;
        }
        Ok(())
    }
}

/// A rule of a plan or a tenant: a [`Rate`], or `unlimited`.
///
/// ```
/// use parapet_quota::{Rate, Rule};
///
/// assert_eq!("unlimited".parse::<Rule>()?, Rule::Unlimited);
/// assert_eq!("20/s".parse::<Rule>()?, Rule::Limited(Rate::per_second(20)));
/// # Ok::<(), parapet_quota::RateError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Requests are limited to this rate.
    Limited(Rate),
    /// Requests are not limited.
    Unlimited,
}

impl From<Rate> for Rule {
    fn from(rate: Rate) -> Self {
        Self::Limited(rate)
    }
}

impl FromStr for Rule {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, RateError> {
        match s.trim() {
            "unlimited" | "off" => Ok(Self::Unlimited),
            s => s.parse().map(Self::Limited),
        }
    }
}

/// The part of a rate that is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The whole text (no `/`).
    Syntax,
    /// The count before `/`.
    Count,
    /// The period after `/`.
    Period,
    /// The burst after `:`.
    Burst,
}

impl Part {
    /// The field's name in messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::Count => "count",
            Self::Period => "period",
            Self::Burst => "burst",
        }
    }
}

/// Why a rate does not parse or cannot be used; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", part.as_str())]
pub struct RateError {
    /// The field that is wrong.
    pub part: Part,
    /// What is wrong with it.
    pub reason: String,
}

impl RateError {
    fn new(part: Part, reason: impl Into<String>) -> Self {
        Self {
            part,
            reason: reason.into(),
        }
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, RateError> {
        let s = s.trim();
        let (count, rest) = s.split_once('/').ok_or_else(|| {
            RateError::new(
                Part::Syntax,
                format!("{s:?} is not COUNT/PERIOD[:BURST] (e.g. 20/s:40) or unlimited"),
            )
        })?;
        let (period, burst) = match rest.split_once(':') {
            Some((period, burst)) => (period, Some(burst)),
            None => (rest, None),
        };
        let count: u32 = count.trim().parse().map_err(|_| {
            RateError::new(
                Part::Count,
                format!("{:?} is not a whole number", count.trim()),
            )
        })?;
        let period = parse_period(period.trim())?;
        let mut rate = Self::new(count, period);
        if let Some(burst) = burst {
            rate.burst = burst.trim().parse().map_err(|_| {
                RateError::new(
                    Part::Burst,
                    format!("{:?} is not a whole number", burst.trim()),
                )
            })?;
        }
        rate.check()?;
        Ok(rate)
    }
}

/// `s`, `min`, `m`, `h`, with an optional number in front (`10s`, `5min`).
fn parse_period(s: &str) -> Result<Duration, RateError> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = s.split_at(digits);
    let number: u64 = if number.is_empty() {
        1
    } else {
        number
            .parse()
            .map_err(|_| RateError::new(Part::Period, format!("{s:?} is too large")))?
    };
    let unit = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => {
            return Err(RateError::new(
                Part::Period,
                format!("{s:?} is not s, min or h (optionally with a number: 10s)"),
            ));
        }
    };
    if number == 0 {
        return Err(RateError::new(Part::Period, "must not be zero"));
    }
    Ok(Duration::from_secs(number.saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("20/s".parse::<Rate>().unwrap(), Rate::per_second(20));
        assert_eq!(
            " 200/s:400 ".parse::<Rate>().unwrap(),
            Rate::per_second(200).burst(400)
        );
        assert_eq!("1000/min".parse::<Rate>().unwrap(), Rate::per_minute(1000));
        assert_eq!("1000/m".parse::<Rate>().unwrap(), Rate::per_minute(1000));
        assert_eq!(
            "5000/h:100".parse::<Rate>().unwrap(),
            Rate::new(5000, Duration::from_secs(3600)).burst(100)
        );
        assert_eq!(
            "3/10s".parse::<Rate>().unwrap(),
            Rate::new(3, Duration::from_secs(10))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let part = |s: &str| s.parse::<Rate>().unwrap_err().part;
        assert_eq!(part("20"), Part::Syntax);
        assert_eq!(part("x/s"), Part::Count);
        assert_eq!(part("-1/s"), Part::Count);
        assert_eq!(part("0/s"), Part::Count);
        assert_eq!(part("20/fortnight"), Part::Period);
        assert_eq!(part("20/0s"), Part::Period);
        assert_eq!(part("20/s:"), Part::Burst);
        assert_eq!(part("20/s:0"), Part::Burst);
        assert_eq!(part("20/s:many"), Part::Burst);
        let error = "20/s:many".parse::<Rate>().unwrap_err();
        assert_eq!(error.to_string(), "burst: \"many\" is not a whole number");
    }

    #[test]
    fn displays_what_parses_back() {
        for text in ["20/s", "200/s:400", "1000/min", "5000/h:100"] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.to_string(), text);
            assert_eq!(rate.to_string().parse::<Rate>().unwrap(), rate);
        }
    }

    #[test]
    fn rules() {
        assert_eq!("off".parse::<Rule>().unwrap(), Rule::Unlimited);
        assert!("fast".parse::<Rule>().is_err());
    }
}
