//! The receivers' servers: axum on 127.0.0.1, each on a thread and a runtime of its own.

use std::net::SocketAddr;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::Request,
};
use http_body_util::{BodyExt as _, Full};

use super::{Export, Received};

/// An OTLP/HTTP receiver: every `POST` (any path) is kept and answered with an empty protobuf
/// body.
pub fn http_receiver() -> (SocketAddr, Received) {
    serve(false, || {
        http::Response::builder()
            .header("content-type", "application/x-protobuf")
            .body(Body::empty())
            .unwrap()
    })
}

/// An OTLP/gRPC receiver (HTTP/2 with gRPC framing): every unary call (any path, see
/// [`GRPC_TRACES`](super::GRPC_TRACES) and [`GRPC_METRICS`](super::GRPC_METRICS)) is kept and
/// answered with an empty message and `grpc-status: 0`.
pub fn grpc_receiver() -> (SocketAddr, Received) {
    serve(true, || {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
            .with_trailers(async move { Some(Ok(trailers)) });
        http::Response::builder()
            .header("content-type", "application/grpc")
            .body(Body::new(body))
            .unwrap()
    })
}

fn serve(grpc: bool, answer: fn() -> http::Response<Body>) -> (SocketAddr, Received) {
    let received = Received::default();
    let app = Router::new()
        .fallback(
            move |State(r): State<Received>, req: Request<Body>| async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 26)
                    .await
                    .unwrap_or_default();
                r.push(Export {
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body,
                    grpc,
                });
                answer()
            },
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
