//! An OTLP/HTTP receiver on 127.0.0.1 for the telemetry tests: it keeps the protobuf bodies of
//! `/v1/traces` and `/v1/metrics` (and of any other path) in arrival order.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Bytes, extract::State, http::Uri, routing::post};
use opentelemetry_proto::tonic::{
    collector::{metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{KeyValue, any_value::Value},
    metrics::v1::{Metric, NumberDataPoint, metric::Data, number_data_point},
    trace::v1::Span,
};
use prost::Message;

/// The bodies received, by request path.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<(String, Bytes)>>>);

impl Received {
    /// The bodies posted to `path`, in arrival order.
    pub fn bodies(&self, path: &str) -> Vec<Bytes> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Every span of every `ExportTraceServiceRequest` posted to `path`.
    pub fn spans(&self, path: &str) -> Vec<Span> {
        self.bodies(path)
            .iter()
            .map(|b| ExportTraceServiceRequest::decode(b.as_ref()).unwrap())
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }

    /// The metric exports posted to `path`, decoded, in arrival order.
    pub fn metric_exports(&self, path: &str) -> Vec<Vec<Metric>> {
        self.bodies(path)
            .iter()
            .map(|b| {
                ExportMetricsServiceRequest::decode(b.as_ref())
                    .unwrap()
                    .resource_metrics
                    .into_iter()
                    .flat_map(|r| r.scope_metrics)
                    .flat_map(|s| s.metrics)
                    .collect()
            })
            .collect()
    }
}

/// Starts a receiver on a runtime of its own (so a test's runtime may block in a flush).
pub fn receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/{*path}",
            post(
                |State(r): State<Received>, uri: Uri, body: Bytes| async move {
                    r.0.lock().unwrap().push((uri.path().to_owned(), body));
                    ([("content-type", "application/x-protobuf")], Bytes::new())
                },
            ),
        )
        .with_state(received.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await
        })
    });
    (addr, received)
}

/// A string or integer attribute as text.
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// The data points of a sum or gauge metric as `{attributes} -> integer value`.
pub fn int_points(metric: &Metric) -> BTreeMap<BTreeMap<String, String>, i64> {
    let points: &[NumberDataPoint] = match &metric.data {
        Some(Data::Sum(sum)) => &sum.data_points,
        Some(Data::Gauge(gauge)) => &gauge.data_points,
        other => panic!("{} is not a sum or a gauge: {other:?}", metric.name),
    };
    points
        .iter()
        .map(|p| {
            let attributes = p
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), attr(&p.attributes, &kv.key).unwrap()))
                .collect();
            let value = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i,
                other => panic!("{} has a non-integer point: {other:?}", metric.name),
            };
            (attributes, value)
        })
        .collect()
}

/// The metric named `name` in one export.
pub fn find<'a>(export: &'a [Metric], name: &str) -> Option<&'a Metric> {
    export.iter().find(|m| m.name == name)
}

/// Attributes from `(key, value)` pairs, for looking points up.
pub fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Lowercase hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
