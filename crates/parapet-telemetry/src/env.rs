//! The variables the builder reads, from an injectable map (so tests never touch the process
//! environment), and the SDK-level ones: the sampler, the resource attributes, the propagators.
//!
//! opentelemetry_sdk reads `OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` by itself, but only from the process environment, and reads no
//! `OTEL_PROPAGATORS` at all; so these are read here from the map. The OTLP exporter variables
//! are in `otlp.rs`, for the same reason.

use std::{collections::HashMap, fmt};

use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Sampler;

/// The variables the builder reads (`OTEL_*` and `RUST_LOG`, nothing else of the environment);
/// empty values count as unset (as the specification says).
#[derive(Clone, Default)]
pub(crate) struct Env(HashMap<String, String>);

/// Prints the variables, but never the value of a `*_HEADERS` one (it usually holds a token).
impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut vars: Vec<_> = self.0.iter().collect();
        vars.sort();
        f.debug_map()
            .entries(vars.into_iter().map(|(k, v)| {
                let v = if k.ends_with("_HEADERS") {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k, v)
            }))
            .finish()
    }
}

impl Env {
    pub(crate) fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            vars.into_iter()
                .filter(|(k, _)| k.starts_with("OTEL_") || k == "RUST_LOG")
                .collect(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// `key1=value1,key2=value2` with percent-encoded values (W3C Baggage octets); malformed entries
/// are skipped.
pub(crate) fn resource_attributes(raw: &str) -> Vec<KeyValue> {
    raw.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| KeyValue::new(key.to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) if hex(hi).is_some() && hex(lo).is_some() => {
                let byte = hex(hi).unwrap_or(0) * 16 + hex(lo).unwrap_or(0);
                out.push(u8::try_from(byte).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The sampler of `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`. Like the specification asks,
/// an unknown sampler or a bad ratio falls back to the default (`parentbased_always_on`, ratio 1)
/// with a warning, instead of failing the start.
pub(crate) fn sampler(env: &Env, warnings: &mut Vec<String>) -> Sampler {
    let ratio = |warnings: &mut Vec<String>| match env.get("OTEL_TRACES_SAMPLER_ARG") {
        None => 1.0,
        Some(arg) => match arg.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                warnings.push(format!(
                    "OTEL_TRACES_SAMPLER_ARG `{arg}` is not a ratio in [0, 1]; using 1.0"
                ));
                1.0
            }
        },
    };
    match env.get("OTEL_TRACES_SAMPLER") {
        None | Some("parentbased_always_on") => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("parentbased_always_off") => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio(warnings)),
        Some("parentbased_traceidratio") => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio(warnings))))
        }
        Some(other) => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER `{other}` is not supported; using parentbased_always_on"
            ));
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
        }
    }
}

/// A propagator `OTEL_PROPAGATORS` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagator {
    /// W3C Trace Context (`traceparent`, `tracestate`).
    TraceContext,
    /// W3C Baggage (`baggage`).
    Baggage,
}

/// The specification's default: `tracecontext,baggage`.
const DEFAULT_PROPAGATORS: [Propagator; 2] = [Propagator::TraceContext, Propagator::Baggage];

/// The propagators of `OTEL_PROPAGATORS` (comma-separated, duplicates ignored), in order;
/// `none` means none. A value other than `tracecontext`, `baggage` and `none` is ignored with a
/// warning, and when nothing is left the default (`tracecontext,baggage`) is used.
pub(crate) fn propagators(env: &Env, warnings: &mut Vec<String>) -> Vec<Propagator> {
    let Some(raw) = env.get("OTEL_PROPAGATORS") else {
        return DEFAULT_PROPAGATORS.to_vec();
    };
    let names: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.contains(&"none") {
        if names.len() > 1 {
            warnings.push(format!(
                "OTEL_PROPAGATORS `{raw}` names `none` with others; no propagator is installed"
            ));
        }
        return Vec::new();
    }
    let mut found = Vec::new();
    for name in names {
        let propagator = match name {
            "tracecontext" => Propagator::TraceContext,
            "baggage" => Propagator::Baggage,
            other => {
                warnings.push(format!(
                    "OTEL_PROPAGATORS `{other}` is not supported (use `tracecontext`, `baggage` or `none`); ignored"
                ));
                continue;
            }
        };
        if !found.contains(&propagator) {
            found.push(propagator);
        }
    }
    if found.is_empty() {
        warnings.push(
            "OTEL_PROPAGATORS names no supported propagator; using tracecontext,baggage".to_owned(),
        );
        return DEFAULT_PROPAGATORS.to_vec();
    }
    found
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Env {
        Env::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn parses_resource_attributes_with_percent_encoding() {
        let attrs = resource_attributes("deployment.environment=prod, team=crm%20core,bad,=x");
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].key.as_str(), "deployment.environment");
        assert_eq!(attrs[0].value.as_str(), "prod");
        assert_eq!(attrs[1].value.as_str(), "crm core");
    }

    #[test]
    fn reads_samplers() {
        let mut warnings = Vec::new();
        let s = sampler(
            &env(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]),
            &mut warnings,
        );
        assert_eq!(format!("{s:?}"), "ParentBased(TraceIdRatioBased(0.25))");
        assert!(warnings.is_empty());
        let s = sampler(
            &env(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            &mut warnings,
        );
        assert_eq!(format!("{s:?}"), "AlwaysOff");
        let s = sampler(&env(&[]), &mut warnings);
        assert_eq!(format!("{s:?}"), "ParentBased(AlwaysOn)");
        assert!(warnings.is_empty());
    }

    #[test]
    fn bad_sampler_settings_fall_back_with_a_warning() {
        let mut warnings = Vec::new();
        let s = sampler(
            &env(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ]),
            &mut warnings,
        );
        assert_eq!(format!("{s:?}"), "TraceIdRatioBased(1.0)");
        let s = sampler(&env(&[("OTEL_TRACES_SAMPLER", "xray")]), &mut warnings);
        assert_eq!(format!("{s:?}"), "ParentBased(AlwaysOn)");
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn keeps_only_otel_variables_and_never_prints_headers() {
        let env = Env::new(
            [
                ("DATABASE_URL", "postgres://app:pw@db/crm"),
                ("OTEL_SERVICE_NAME", "crm-api"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20s3cret",
                ),
                ("RUST_LOG", "warn"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        assert_eq!(env.get("DATABASE_URL"), None);
        let printed = format!("{env:?}");
        assert!(
            printed.contains("crm-api") && printed.contains("warn"),
            "{printed}"
        );
        assert!(
            !printed.contains("s3cret") && !printed.contains("pw@"),
            "{printed}"
        );
    }

    #[test]
    fn reads_propagators() {
        use Propagator::{Baggage, TraceContext};
        let read = |value: &str| {
            let mut warnings = Vec::new();
            let found = propagators(&env(&[("OTEL_PROPAGATORS", value)]), &mut warnings);
            (found, warnings.len())
        };
        let mut warnings = Vec::new();
        assert_eq!(
            propagators(&env(&[]), &mut warnings),
            [TraceContext, Baggage],
            "the specification's default"
        );
        assert!(warnings.is_empty());
        assert_eq!(read("baggage"), (vec![Baggage], 0));
        assert_eq!(
            read(" baggage , tracecontext,baggage"),
            (vec![Baggage, TraceContext], 0)
        );
        assert_eq!(read("none"), (vec![], 0));
        assert_eq!(
            read("none,tracecontext"),
            (vec![], 1),
            "none wins, with a warning"
        );
        assert_eq!(read("b3,tracecontext"), (vec![TraceContext], 1));
        assert_eq!(
            read("xray"),
            (vec![TraceContext, Baggage], 2),
            "nothing left: the default"
        );
        assert_eq!(read(""), (vec![TraceContext, Baggage], 0), "empty is unset");
    }
}
