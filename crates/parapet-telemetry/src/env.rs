//! Reading the `OTEL_*` variables (from an injectable map, so tests never touch the process env).

use std::{collections::HashMap, fmt, time::Duration};

use opentelemetry::KeyValue;
use opentelemetry_otlp::Compression;
use opentelemetry_sdk::trace::Sampler;

use crate::error::TelemetryError;

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

/// The OTLP transport named by `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    HttpProtobuf,
    Grpc,
}

/// A signal exported over OTLP, with the names of its variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Metrics,
}

/// The variables of one setting: the signal's own first, then the general one.
struct Vars {
    signal: &'static str,
    general: &'static str,
}

impl Signal {
    /// The path under a base endpoint (OTLP/HTTP).
    fn path(self) -> &'static str {
        match self {
            Self::Traces => "v1/traces",
            Self::Metrics => "v1/metrics",
        }
    }

    fn endpoint(self) -> Vars {
        match self {
            Self::Traces => Vars {
                signal: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                general: "OTEL_EXPORTER_OTLP_ENDPOINT",
            },
            Self::Metrics => Vars {
                signal: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                general: "OTEL_EXPORTER_OTLP_ENDPOINT",
            },
        }
    }

    fn protocol(self) -> Vars {
        match self {
            Self::Traces => Vars {
                signal: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                general: "OTEL_EXPORTER_OTLP_PROTOCOL",
            },
            Self::Metrics => Vars {
                signal: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                general: "OTEL_EXPORTER_OTLP_PROTOCOL",
            },
        }
    }

    fn headers(self) -> Vars {
        match self {
            Self::Traces => Vars {
                signal: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                general: "OTEL_EXPORTER_OTLP_HEADERS",
            },
            Self::Metrics => Vars {
                signal: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                general: "OTEL_EXPORTER_OTLP_HEADERS",
            },
        }
    }

    fn timeout(self) -> Vars {
        match self {
            Self::Traces => Vars {
                signal: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                general: "OTEL_EXPORTER_OTLP_TIMEOUT",
            },
            Self::Metrics => Vars {
                signal: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                general: "OTEL_EXPORTER_OTLP_TIMEOUT",
            },
        }
    }

    fn compression(self) -> Vars {
        match self {
            Self::Traces => Vars {
                signal: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                general: "OTEL_EXPORTER_OTLP_COMPRESSION",
            },
            Self::Metrics => Vars {
                signal: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
                general: "OTEL_EXPORTER_OTLP_COMPRESSION",
            },
        }
    }
}

impl Env {
    /// The signal's own variable when set, else the general one, with the name that was read.
    fn either(&self, vars: &Vars) -> Option<(&'static str, &str)> {
        self.get(vars.signal)
            .map(|v| (vars.signal, v))
            .or_else(|| self.get(vars.general).map(|v| (vars.general, v)))
    }
}

/// How one signal is exported, resolved from the variables.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignalExport {
    /// The URL used as is: for OTLP/HTTP the full URL of the signal, for gRPC the server's.
    pub(crate) endpoint: String,
    pub(crate) transport: Transport,
    pub(crate) headers: Vec<(String, String)>,
    /// `None`: the exporter's default (10 s).
    pub(crate) timeout: Option<Duration>,
    pub(crate) compression: Option<Compression>,
}

/// How `signal` is exported, or `None` when neither its own endpoint nor the general one is set.
///
/// Per the OTLP exporter specification, `OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT` is used as is,
/// while `OTEL_EXPORTER_OTLP_ENDPOINT` is a base to which OTLP/HTTP appends `v1/{signal}`. A
/// protocol other than `http/protobuf` or `grpc` is an error; a malformed timeout, compression
/// or header entry is ignored with a warning (the specification asks not to fail the start).
pub(crate) fn signal_export(
    env: &Env,
    signal: Signal,
    warnings: &mut Vec<String>,
) -> Result<Option<SignalExport>, TelemetryError> {
    let endpoints = signal.endpoint();
    let Some((endpoint_var, endpoint)) = env.either(&endpoints) else {
        return Ok(None);
    };
    let transport = match env.either(&signal.protocol()) {
        None | Some((_, "http/protobuf")) => Transport::HttpProtobuf,
        Some((_, "grpc")) => Transport::Grpc,
        Some((name, other)) => {
            return Err(TelemetryError::InvalidEnv {
                name,
                reason: format!("`{other}` is not supported (use `http/protobuf` or `grpc`)"),
            });
        }
    };
    let endpoint = if endpoint_var == endpoints.general && transport == Transport::HttpProtobuf {
        signal_url(endpoint, signal.path())
    } else {
        endpoint.to_owned()
    };
    let headers = match env.either(&signal.headers()) {
        None => Vec::new(),
        Some((name, raw)) => {
            let (headers, bad) = parse_headers(raw);
            if bad > 0 {
                warnings.push(format!("{name}: {bad} malformed entries ignored"));
            }
            headers
        }
    };
    let timeout = env
        .either(&signal.timeout())
        .and_then(|(name, ms)| match ms.parse::<u64>() {
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => {
                warnings.push(format!(
                    "{name} `{ms}` is not a number of milliseconds; using the default (10 s)"
                ));
                None
            }
        });
    let compression = env.either(&signal.compression()).and_then(|(name, value)| {
        match value.to_ascii_lowercase().as_str() {
            "gzip" => Some(Compression::Gzip),
            "none" => None,
            _ => {
                warnings.push(format!(
                    "{name} `{value}` is not supported (use `gzip` or `none`); not compressing"
                ));
                None
            }
        }
    });
    Ok(Some(SignalExport {
        endpoint,
        transport,
        headers,
        timeout,
        compression,
    }))
}

/// `{endpoint}/v1/traces`: the OTLP/HTTP URL of a signal under the base endpoint. (The exporter
/// uses an endpoint given in code verbatim, so the path is ours to add.)
pub(crate) fn signal_url(endpoint: &str, path: &str) -> String {
    format!("{}/{path}", endpoint.trim_end_matches('/'))
}

/// `key1=value1,key2=value2` (W3C Baggage octets, values percent-encoded) as header pairs, and
/// how many entries were malformed.
fn parse_headers(raw: &str) -> (Vec<(String, String)>, usize) {
    let mut bad = 0;
    let headers = raw
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .filter_map(|entry| {
            let parsed = entry.split_once('=').and_then(|(key, value)| {
                let key = key.trim();
                let value = percent_decode(value.trim());
                let valid = http::HeaderName::from_bytes(key.as_bytes()).is_ok()
                    && http::HeaderValue::from_str(&value).is_ok();
                valid.then(|| (key.to_ascii_lowercase(), value))
            });
            if parsed.is_none() {
                bad += 1;
            }
            parsed
        })
        .collect();
    (headers, bad)
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

    fn export(pairs: &[(&str, &str)], signal: Signal) -> (Option<SignalExport>, Vec<String>) {
        let mut warnings = Vec::new();
        let export = signal_export(&env(pairs), signal, &mut warnings).unwrap();
        (export, warnings)
    }

    #[test]
    fn reads_the_transport_and_builds_signal_urls() {
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318/")];
        let (traces, _) = export(&base, Signal::Traces);
        let traces = traces.unwrap();
        assert_eq!(traces.transport, Transport::HttpProtobuf);
        assert_eq!(traces.endpoint, "http://localhost:4318/v1/traces");
        let (metrics, _) = export(&base, Signal::Metrics);
        assert_eq!(
            metrics.unwrap().endpoint,
            "http://localhost:4318/v1/metrics"
        );
        let grpc = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        let (traces, _) = export(&grpc, Signal::Traces);
        let traces = traces.unwrap();
        assert_eq!(traces.transport, Transport::Grpc);
        assert_eq!(
            traces.endpoint, "http://localhost:4317",
            "gRPC takes no path"
        );
        let json = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ];
        let err = signal_export(&env(&json), Signal::Traces, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
        assert_eq!(
            export(&[], Signal::Traces).0,
            None,
            "no endpoint: no export"
        );
    }

    #[test]
    fn per_signal_endpoints_are_used_as_is_and_win() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example.com/custom/path",
            ),
        ];
        let traces = export(&vars, Signal::Traces).0.unwrap();
        assert_eq!(traces.endpoint, "https://traces.example.com/custom/path");
        let metrics = export(&vars, Signal::Metrics).0.unwrap();
        assert_eq!(metrics.endpoint, "http://collector:4318/v1/metrics");
        // A signal may be exported alone.
        let only = [(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "http://m:4318/v1/metrics",
        )];
        assert_eq!(export(&only, Signal::Traces).0, None);
        assert_eq!(
            export(&only, Signal::Metrics).0.unwrap().endpoint,
            "http://m:4318/v1/metrics"
        );
    }

    #[test]
    fn per_signal_protocols_override_the_general_one() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", ""),
        ];
        let traces = export(&vars, Signal::Traces).0.unwrap();
        assert_eq!(traces.transport, Transport::Grpc, "empty counts as unset");
        let metrics = export(&vars, Signal::Metrics).0.unwrap();
        assert_eq!(metrics.transport, Transport::HttpProtobuf);
        assert_eq!(metrics.endpoint, "http://collector:4317/v1/metrics");
        let bad = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
        ];
        let err = signal_export(&env(&bad), Signal::Traces, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            "{err}"
        );
    }

    #[test]
    fn reads_headers_timeout_and_compression() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20s3cret, x-team = crm ,broken,bad key=v",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-only=metrics"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
        ];
        let (traces, warnings) = export(&vars, Signal::Traces);
        let traces = traces.unwrap();
        assert_eq!(
            traces.headers,
            vec![
                ("authorization".to_owned(), "Bearer s3cret".to_owned()),
                ("x-team".to_owned(), "crm".to_owned()),
            ]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("2 malformed"), "{warnings:?}");
        assert_eq!(traces.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(traces.compression, Some(Compression::Gzip));
        let (metrics, warnings) = export(&vars, Signal::Metrics);
        let metrics = metrics.unwrap();
        assert_eq!(
            metrics.headers,
            vec![("x-only".to_owned(), "metrics".to_owned())],
            "the signal's own headers replace the general ones"
        );
        assert_eq!(
            metrics.timeout, None,
            "a bad timeout falls back to the default"
        );
        assert!(
            warnings[0].contains("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"),
            "{warnings:?}"
        );
        assert_eq!(metrics.compression, None);
        let zstd = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ];
        let (traces, warnings) = export(&zstd, Signal::Traces);
        assert_eq!(traces.unwrap().compression, None);
        assert_eq!(warnings.len(), 1);
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
}
