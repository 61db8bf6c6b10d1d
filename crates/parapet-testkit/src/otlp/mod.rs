//! Fake OTLP receivers: an OTLP/HTTP one ([`http_receiver`]) and an OTLP/gRPC one
//! ([`grpc_receiver`]), each on 127.0.0.1 and on a runtime of its own (so a test's runtime may
//! block in a flush or a shutdown), keeping every export they are sent, in arrival order.
//!
//! ```no_run
//! let (addr, received) = parapet_testkit::otlp::http_receiver();
//! // OTEL_EXPORTER_OTLP_ENDPOINT=http://{addr}, then run a request and shut telemetry down.
//! let spans = received.spans("/v1/traces");
//! let exports = received.metric_exports("/v1/metrics");
//! # let _ = (addr, spans, exports);
//! ```

mod attributes;
mod server;

use std::{
    io::Read as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::body::Bytes;
use opentelemetry_proto::tonic::{
    collector::{metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest},
    metrics::v1::Metric,
    trace::v1::Span,
};
use prost::Message as _;

pub use attributes::{attr, attrs, find, hex, int_points};
pub use server::{grpc_receiver, http_receiver};

/// The path of the gRPC trace export call.
pub const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The path of the gRPC metrics export call.
pub const GRPC_METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// One request a receiver got, as it came.
#[derive(Debug, Clone)]
pub struct Export {
    /// The request path.
    pub path: String,
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The body as sent: gzipped when `content-encoding: gzip`, framed on gRPC.
    pub body: Bytes,
    grpc: bool,
}

impl Export {
    /// The protobuf message: the body gunzipped (OTLP/HTTP with `content-encoding: gzip`) or
    /// taken out of its gRPC frame (which must be uncompressed).
    pub fn message(&self) -> Vec<u8> {
        if self.grpc {
            let body = &self.body;
            assert_eq!(body[0], 0, "uncompressed");
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            return body[5..5 + len].to_vec();
        }
        let gzip = self
            .headers
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        if !gzip {
            return self.body.to_vec();
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(self.body.as_ref())
            .read_to_end(&mut out)
            .expect("a gzip body");
        out
    }
}

/// What a receiver was sent; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    exports: Arc<Mutex<Vec<Export>>>,
}

impl Received {
    fn push(&self, export: Export) {
        self.exports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(export);
    }

    /// Every request, in arrival order.
    pub fn exports(&self) -> Vec<Export> {
        self.exports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The protobuf messages posted to `path`, in arrival order.
    pub fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        self.exports()
            .iter()
            .filter(|e| e.path == path)
            .map(Export::message)
            .collect()
    }

    /// The `ExportTraceServiceRequest`s posted to `path`, decoded.
    pub fn trace_requests(&self, path: &str) -> Vec<ExportTraceServiceRequest> {
        self.bodies(path)
            .iter()
            .map(|b| ExportTraceServiceRequest::decode(b.as_slice()).unwrap())
            .collect()
    }

    /// Every span of every `ExportTraceServiceRequest` posted to `path`.
    pub fn spans(&self, path: &str) -> Vec<Span> {
        self.trace_requests(path)
            .into_iter()
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
                ExportMetricsServiceRequest::decode(b.as_slice())
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

/// A hung collector: a listener on 127.0.0.1 that accepts connections and holds them open
/// without reading or answering, so an exporter waits for its own timeout. Returns its address
/// and the number of connections it accepted so far.
pub fn black_hole() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("the listener's address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            count.fetch_add(1, Ordering::Relaxed);
            held.push(stream);
        }
    });
    (addr, accepted)
}
