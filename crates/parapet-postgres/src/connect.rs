//! [`MakeRustlsConnect`]: tokio-postgres's TLS hook on tokio-rustls, with errors that name the
//! host and the reason.

use std::{
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use rustls::{CertificateError, ClientConfig, pki_types::ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;

/// Makes the TLS connection of every PostgreSQL connection of one [`PgConfig`](crate::PgConfig)
/// (pass it where tokio-postgres or deadpool-postgres take `NoTls`). Cloning is cheap.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl MakeRustlsConnect {
    pub(crate) fn new(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }
}

impl fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustlsConnect").finish_non_exhaustive()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = TlsError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, TlsError> {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| TlsError {
            host: host.to_owned(),
            kind: TlsErrorKind::InvalidHostName,
            detail: e.to_string(),
        })?;
        Ok(RustlsConnect {
            connector: TlsConnector::from(self.config.clone()),
            name,
            host: host.to_owned(),
        })
    }
}

/// The TLS handshake of one connection (made by [`MakeRustlsConnect`]).
pub struct RustlsConnect {
    connector: TlsConnector,
    name: ServerName<'static>,
    host: String,
}

impl fmt::Debug for RustlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsConnect")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

type HandshakeFuture<S> = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, TlsError>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = TlsError;
    type Future = HandshakeFuture<S>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.connector
                .connect(self.name, stream)
                .await
                .map(|inner| RustlsStream { inner })
                .map_err(|e| TlsError::from_handshake(self.host, &e))
        })
    }
}

/// An encrypted connection to PostgreSQL.
pub struct RustlsStream<S> {
    inner: tokio_rustls::client::TlsStream<S>,
}

impl<S> fmt::Debug for RustlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsStream").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// No channel binding: SCRAM authenticates without `-PLUS` (tokio-postgres's default
    /// `channel_binding=prefer` accepts that; `channel_binding=require` does not).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// A TLS connection to the database failed: which host, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS with {host} failed: {kind}: {detail}")]
pub struct TlsError {
    host: String,
    kind: TlsErrorKind,
    detail: String,
}

impl TlsError {
    /// The host name the connection was for (the URL's host, as written).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What went wrong.
    pub fn kind(&self) -> TlsErrorKind {
        self.kind
    }

    fn from_handshake(host: String, e: &io::Error) -> Self {
        let rustls_error = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
        let kind = match rustls_error {
            Some(rustls::Error::InvalidCertificate(cert)) => match cert {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsErrorKind::UntrustedCertificate
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsErrorKind::HostNameMismatch,
                _ => TlsErrorKind::InvalidCertificate,
            },
            _ => TlsErrorKind::Handshake,
        };
        let detail = match rustls_error {
            Some(e) => e.to_string(),
            None => e.to_string(),
        };
        Self { host, kind, detail }
    }
}

/// Why a TLS connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The server's certificate does not chain to a trusted root (a wrong `sslrootcert`, or a
    /// self-signed server certificate checked against the system's roots).
    UntrustedCertificate,
    /// The certificate is trusted but not issued for the host connected to (`verify-full`).
    HostNameMismatch,
    /// The certificate is unusable (expired, not yet valid, wrong purpose, ...).
    InvalidCertificate,
    /// The host is not a valid TLS server name.
    InvalidHostName,
    /// The handshake failed otherwise (no common protocol version, the server refused our
    /// client certificate, the connection was cut, ...).
    Handshake,
}

impl fmt::Display for TlsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UntrustedCertificate => {
                "the server certificate is not signed by a trusted CA (check sslrootcert)"
            }
            Self::HostNameMismatch => {
                "the server certificate is not valid for this host name (sslmode=verify-full)"
            }
            Self::InvalidCertificate => "the server certificate is invalid",
            Self::InvalidHostName => "the host is not a valid TLS server name",
            Self::Handshake => "the TLS handshake failed",
        })
    }
}

/// The [`TlsError`] behind a tokio-postgres error, if a TLS handshake made by
/// [`MakeRustlsConnect`] is what failed.
pub fn tls_error(error: &tokio_postgres::Error) -> Option<&TlsError> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<TlsError>() {
            return Some(tls);
        }
        source = cause.source();
    }
    None
}

/// Whether connecting failed at the TLS stage: a failed handshake ([`tls_error`]), or a server
/// that does not offer TLS when `sslmode` requires it. Such a failure is a configuration
/// problem, not an outage: retrying does not help.
pub fn is_tls_failure(error: &tokio_postgres::Error) -> bool {
    // tokio-postgres's `Display` of its TLS error kind is this text alone; the reason is the
    // source ("server does not support TLS", or our `TlsError`).
    tls_error(error).is_some() || error.to_string() == "error performing TLS handshake"
}

/// A tokio-postgres error on one line, with its causes (its `Display` alone says only "db error"
/// or "error performing TLS handshake"): the server's message and SQLSTATE for a database error.
pub fn describe(error: &tokio_postgres::Error) -> String {
    use std::fmt::Write as _;
    if let Some(db) = error.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        )
        .replace('\n', " ");
    }
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out.replace('\n', " ")
}
