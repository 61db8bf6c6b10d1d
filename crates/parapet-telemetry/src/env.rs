//! Reading the `OTEL_*` variables (from an injectable map, so tests never touch the process env).

use std::collections::HashMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Sampler;

use crate::TelemetryError;

/// The variables the builder reads; empty values count as unset (as the specification says).
#[derive(Debug, Clone, Default)]
pub(crate) struct Env(HashMap<String, String>);

impl Env {
    pub(crate) fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(vars.into_iter().collect())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// The OTLP transport named by `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    HttpProtobuf,
    Grpc,
}

pub(crate) fn transport(env: &Env) -> Result<Transport, TelemetryError> {
    match env.get("OTEL_EXPORTER_OTLP_PROTOCOL") {
        None | Some("http/protobuf") => Ok(Transport::HttpProtobuf),
        Some("grpc") => Ok(Transport::Grpc),
        Some(other) => Err(TelemetryError::InvalidEnv {
            name: "OTEL_EXPORTER_OTLP_PROTOCOL",
            reason: format!("`{other}` is not supported (use `http/protobuf` or `grpc`)"),
        }),
    }
}

/// `{endpoint}/v1/traces`: the OTLP/HTTP URL of a signal under the base endpoint. (The exporter
/// uses an endpoint given in code verbatim, so the path is ours to add.)
pub(crate) fn signal_url(endpoint: &str, path: &str) -> String {
    format!("{}/{path}", endpoint.trim_end_matches('/'))
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

fn percent_decode(value: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
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
    fn reads_the_transport_and_builds_signal_urls() {
        assert_eq!(transport(&env(&[])).unwrap(), Transport::HttpProtobuf);
        let grpc = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(transport(&grpc).unwrap(), Transport::Grpc);
        let json = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert!(transport(&json).is_err());
        assert_eq!(
            signal_url("http://localhost:4318/", "v1/traces"),
            "http://localhost:4318/v1/traces"
        );
    }
}
