//! The rustls client configuration an `sslmode` asks for, and the verifier that implements
//! libpq's checks (`verify-ca`: the chain; `verify-full`: the chain and the host name).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::{verify_server_cert_signed_by_trust_anchor, verify_server_name},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::ParsedCertificate,
};

use crate::{ConfigError, SslMode};

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// A PEM file (`sslrootcert=<file>`).
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`, or no `sslrootcert` with `verify-*`).
    System,
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing: encryption only (libpq's `prefer` and `require` without a root certificate).
    Nothing,
    /// The chain up to a trusted root (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// The TLS half of a connection string.
#[derive(Debug, Clone)]
pub(crate) struct TlsOptions {
    check: Check,
    roots: Option<RootCerts>,
    client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    pub(crate) fn new(
        mode: SslMode,
        root: Option<RootCerts>,
        client_cert: Option<(PathBuf, PathBuf)>,
    ) -> Self {
        let (check, roots) = match mode {
            SslMode::Disable | SslMode::Prefer => (Check::Nothing, None),
            // libpq: with a root certificate given, `require` behaves as `verify-ca`.
            SslMode::Require => match root {
                Some(root) => (Check::Chain, Some(root)),
                None => (Check::Nothing, None),
            },
            SslMode::VerifyCa => (Check::Chain, Some(root.unwrap_or(RootCerts::System))),
            SslMode::VerifyFull => (Check::ChainAndName, Some(root.unwrap_or(RootCerts::System))),
        };
        Self {
            check,
            roots,
            client_cert,
        }
    }

    /// The rustls configuration, with the root and client certificates read from their files.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &self.roots {
            None => None,
            Some(RootCerts::File(path)) => Some(Arc::new(read_roots(path)?)),
            Some(RootCerts::System) => Some(system_roots()?),
        };
        let verifier = Arc::new(PgVerifier {
            check: self.check,
            roots,
            algorithms: provider.signature_verification_algorithms,
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs("sslcert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ConfigError::File {
                    parameter: "sslkey",
                    path: key.to_owned(),
                    reason: e.to_string(),
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ConfigError::Tls(format!("sslcert/sslkey: {e}")))?
            }
        };
        Ok(Arc::new(config))
    }
}

fn read_certs(
    parameter: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        parameter,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("sslrootcert", path)? {
        roots.add(cert).map_err(|e| ConfigError::File {
            parameter: "sslrootcert",
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The system's roots, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, ConfigError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "no system root certificates found{}; give sslrootcert=<file>",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(ConfigError::Tls)
}

/// The server certificate check of one `sslmode`. The handshake signatures are always verified
/// (they prove the server holds the certificate's key); the certificate itself as [`Check`] says.
#[derive(Debug)]
struct PgVerifier {
    check: Check,
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let roots = match (self.check, &self.roots) {
            (Check::Nothing, _) => return Ok(ServerCertVerified::assertion()),
            (_, Some(roots)) => roots,
            // `TlsOptions::new` always gives a checking mode its roots; should that ever break,
            // refuse rather than accept an unchecked certificate.
            (_, None) => {
                return Err(rustls::Error::General(
                    "no trusted root certificates to check the server's against".to_owned(),
                ));
            }
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.check == Check::ChainAndName {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_mode_checks() {
        let file = || Some(RootCerts::File(PathBuf::from("/ca.pem")));
        let cases = [
            (SslMode::Disable, None, Check::Nothing, None),
            (SslMode::Prefer, file(), Check::Nothing, None),
            (SslMode::Require, None, Check::Nothing, None),
            (SslMode::Require, file(), Check::Chain, file()),
            (
                SslMode::VerifyCa,
                None,
                Check::Chain,
                Some(RootCerts::System),
            ),
            (SslMode::VerifyCa, file(), Check::Chain, file()),
            (
                SslMode::VerifyFull,
                None,
                Check::ChainAndName,
                Some(RootCerts::System),
            ),
            (SslMode::VerifyFull, file(), Check::ChainAndName, file()),
        ];
        for (mode, root, check, roots) in cases {
            let options = TlsOptions::new(mode, root, None);
            assert_eq!(options.check, check, "{mode}");
            assert_eq!(options.roots, roots, "{mode}");
        }
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path =
            std::env::temp_dir().join(format!("parapet-pg-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = read_roots(&path).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(err.contains("no PEM certificate"), "{err}");
        assert!(err.contains("sslrootcert"), "{err}");
    }
}
