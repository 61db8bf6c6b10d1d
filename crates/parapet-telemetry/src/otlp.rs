//! The OTLP exporter of each signal, from the `OTEL_EXPORTER_OTLP_*` variables of the [`Env`] map.
//!
//! opentelemetry-otlp resolves these variables itself, but only from the process environment
//! (`std::env::var`), while the builder reads an injectable map so that tests and embedders
//! never touch the process environment. So the map's values are resolved here and passed to the
//! exporter builders in code, which the exporters then use instead of their own lookups. What
//! is ours and not the exporter's, on purpose:
//! - a signal without an endpoint is not exported (the exporter would send to `localhost`);
//! - the transport is chosen per signal before a builder exists (`with_http` or `with_tonic`);
//! - an unsupported protocol is an error, and malformed headers, timeouts and compressions are
//!   [warnings](crate::TelemetryGuard::warnings) (the exporter ignores them silently or only
//!   logs through its internal logger);
//! - a signal's own malformed timeout falls back to the default, not to the general variable.
//!
//! The variable names, the protocol values and the compression names are opentelemetry-otlp's.
//! Left to the exporter (read from the process environment): `OTEL_EXPORTER_OTLP_INSECURE` and
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`. Because a compression of `none` cannot be
//! said in code, and OTLP/HTTP adds the process's `*_HEADERS` to those given in code, a map that
//! leaves these unset while the process sets them gets the process's values.

use std::time::Duration;

use opentelemetry_otlp::{
    Compression, ExporterBuildError, MetricExporter, OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROTOCOL_GRPC, OTEL_EXPORTER_OTLP_PROTOCOL_HTTP_PROTOBUF,
    OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, Protocol, SpanExporter, WithExportConfig, WithHttpConfig,
    WithTonicConfig, tonic_types::metadata::MetadataMap,
};

use crate::{
    env::{Env, percent_decode},
    error::TelemetryError,
};

/// The OTLP transport named by `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    HttpProtobuf,
    Grpc,
}

/// A signal exported over OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Metrics,
}

/// A setting's variables: the signal's own, then the general one it falls back to.
type Pair = [&'static str; 2];

/// The variables of one signal.
struct Vars {
    endpoint: Pair,
    protocol: Pair,
    headers: Pair,
    timeout: Pair,
    compression: Pair,
    /// The path under a base endpoint (OTLP/HTTP).
    path: &'static str,
}

const TRACES: Vars = Vars {
    endpoint: [
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        OTEL_EXPORTER_OTLP_ENDPOINT,
    ],
    protocol: [
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_EXPORTER_OTLP_PROTOCOL,
    ],
    headers: [
        OTEL_EXPORTER_OTLP_TRACES_HEADERS,
        OTEL_EXPORTER_OTLP_HEADERS,
    ],
    timeout: [
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        OTEL_EXPORTER_OTLP_TIMEOUT,
    ],
    compression: [
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION,
    ],
    path: "v1/traces",
};

const METRICS: Vars = Vars {
    endpoint: [
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
        OTEL_EXPORTER_OTLP_ENDPOINT,
    ],
    protocol: [
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
        OTEL_EXPORTER_OTLP_PROTOCOL,
    ],
    headers: [
        OTEL_EXPORTER_OTLP_METRICS_HEADERS,
        OTEL_EXPORTER_OTLP_HEADERS,
    ],
    timeout: [
        OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
        OTEL_EXPORTER_OTLP_TIMEOUT,
    ],
    compression: [
        OTEL_EXPORTER_OTLP_METRICS_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION,
    ],
    path: "v1/metrics",
};

impl Signal {
    fn vars(self) -> &'static Vars {
        match self {
            Self::Traces => &TRACES,
            Self::Metrics => &METRICS,
        }
    }
}

impl Env {
    /// The signal's own variable when set, else the general one, with the name that was read.
    fn either(&self, [signal, general]: Pair) -> Option<(&'static str, &str)> {
        self.get(signal)
            .map(|v| (signal, v))
            .or_else(|| self.get(general).map(|v| (general, v)))
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
    let vars = signal.vars();
    let Some((endpoint_var, endpoint)) = env.either(vars.endpoint) else {
        return Ok(None);
    };
    // The exporter would fall back to its default protocol with a log line; a collector that
    // speaks only JSON would then get protobuf, so this is refused at start instead.
    let transport = match env.either(vars.protocol) {
        None => Transport::HttpProtobuf,
        Some((name, value)) => match value.to_ascii_lowercase().as_str() {
            OTEL_EXPORTER_OTLP_PROTOCOL_HTTP_PROTOBUF => Transport::HttpProtobuf,
            OTEL_EXPORTER_OTLP_PROTOCOL_GRPC => Transport::Grpc,
            _ => {
                return Err(TelemetryError::InvalidEnv {
                    name,
                    reason: format!("`{value}` is not supported (use `http/protobuf` or `grpc`)"),
                });
            }
        },
    };
    let endpoint =
        if endpoint_var == OTEL_EXPORTER_OTLP_ENDPOINT && transport == Transport::HttpProtobuf {
            signal_url(endpoint, vars.path)
        } else {
            endpoint.to_owned()
        };
    let headers = match env.either(vars.headers) {
        None => Vec::new(),
        Some((name, raw)) => {
            let (headers, bad) = parse_headers(raw);
            if bad > 0 {
                warnings.push(format!("{name}: {bad} malformed entries ignored"));
            }
            headers
        }
    };
    // The exporter would try the general variable after a malformed signal one; a value the
    // operator set for this signal is not silently replaced by another one.
    let timeout = env
        .either(vars.timeout)
        .and_then(|(name, ms)| match ms.parse::<u64>() {
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => {
                warnings.push(format!(
                    "{name} `{ms}` is not a number of milliseconds; using the default (10 s)"
                ));
                None
            }
        });
    let compression = env.either(vars.compression).and_then(|(name, value)| {
        let value = value.to_ascii_lowercase();
        match value.parse::<Compression>() {
            Ok(Compression::Gzip) => Some(Compression::Gzip),
            _ if value == "none" => None,
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

/// The OTLP span exporter `config` describes.
pub(crate) fn span_exporter(config: &SignalExport) -> Result<SpanExporter, ExporterBuildError> {
    match config.transport {
        Transport::HttpProtobuf => http(SpanExporter::builder().with_http(), config).build(),
        Transport::Grpc => grpc(SpanExporter::builder().with_tonic(), config).build(),
    }
}

/// The OTLP metric exporter `config` describes.
pub(crate) fn metric_exporter(config: &SignalExport) -> Result<MetricExporter, ExporterBuildError> {
    match config.transport {
        Transport::HttpProtobuf => http(MetricExporter::builder().with_http(), config).build(),
        Transport::Grpc => grpc(MetricExporter::builder().with_tonic(), config).build(),
    }
}

/// The settings every transport takes. The timeout is always given, so the exporter does not
/// read one of its own from the process environment.
fn common<B: WithExportConfig>(builder: B, config: &SignalExport) -> B {
    builder
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout.unwrap_or(OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT))
}

fn http<B: WithExportConfig + WithHttpConfig>(builder: B, config: &SignalExport) -> B {
    let builder = common(builder, config)
        .with_protocol(Protocol::HttpBinary)
        .with_headers(config.headers.iter().cloned().collect());
    match config.compression {
        Some(compression) => builder.with_compression(compression),
        None => builder,
    }
}

fn grpc<B: WithExportConfig + WithTonicConfig>(builder: B, config: &SignalExport) -> B {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &config.headers {
        // `parse_headers` only keeps valid names and values.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let builder = common(builder, config).with_metadata(MetadataMap::from_headers(headers));
    match config.compression {
        Some(compression) => builder.with_compression(compression),
        None => builder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::env;

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
}
