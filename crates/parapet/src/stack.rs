//! The optional-layer plumbing behind [`Parapet`](crate::Parapet): a layer that is configured
//! wraps the service, one that is not passes the request straight through, and both answer with
//! the same response type so the stack has one concrete type whatever is configured.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service that is either wrapped by a configured layer (`On`) or the inner service itself
/// (`Off`). Responses of both are `Response<axum::body::Body>`.
#[derive(Debug, Clone)]
pub enum Maybe<A, B> {
    /// The layer is configured and wraps the inner service.
    On(A),
    /// The layer is not configured: requests go straight to the inner service.
    Off(B),
}

impl<A, B, ReqBody, BodyA, BodyB, E> Service<Request<ReqBody>> for Maybe<A, B>
where
    A: Service<Request<ReqBody>, Response = Response<BodyA>, Error = E>,
    B: Service<Request<ReqBody>, Response = Response<BodyB>, Error = E>,
    BodyA: http_body::Body<Data = Bytes> + Send + 'static,
    BodyA::Error: Into<BoxError>,
    BodyB: http_body::Body<Data = Bytes> + Send + 'static,
    BodyB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = E;
    type Future = MaybeFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        match self {
            Self::On(a) => a.poll_ready(cx),
            Self::Off(b) => b.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self {
            Self::On(a) => MaybeFuture {
                inner: Inner::On { fut: a.call(req) },
            },
            Self::Off(b) => MaybeFuture {
                inner: Inner::Off { fut: b.call(req) },
            },
        }
    }
}

pin_project! {
    /// The response future of [`Maybe`].
    #[derive(Debug)]
    pub struct MaybeFuture<FA, FB> {
        #[pin]
        inner: Inner<FA, FB>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<FA, FB> {
        On { #[pin] fut: FA },
        Off { #[pin] fut: FB },
    }
}

impl<FA, FB, BodyA, BodyB, E> Future for MaybeFuture<FA, FB>
where
    FA: Future<Output = Result<Response<BodyA>, E>>,
    FB: Future<Output = Result<Response<BodyB>, E>>,
    BodyA: http_body::Body<Data = Bytes> + Send + 'static,
    BodyA::Error: Into<BoxError>,
    BodyB: http_body::Body<Data = Bytes> + Send + 'static,
    BodyB::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Body::new` does not box a body that already is an axum `Body`.
        Poll::Ready(match self.project().inner.project() {
            InnerProj::On { fut } => ready!(fut.poll(cx)).map(|r| r.map(Body::new)),
            InnerProj::Off { fut } => ready!(fut.poll(cx)).map(|r| r.map(Body::new)),
        })
    }
}
