//! [`RedisConfig`]: where the Redis tier is (one server, a Cluster, or a primary found through
//! Sentinel), how it is reached (TLS, a private CA, a client certificate) and its budgets.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::{ErrorKind, RedisError, RedisResult, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::encoding::DEFAULT_COMPRESS_THRESHOLD;

/// Settings of the Redis tier.
///
/// The URL schemes are those of redis-rs: `redis://[[user]:password@]host[:port][/db]`, and
/// `rediss://` for TLS, checked against the public web PKI roots (bundled, so a slim container
/// needs no CA package) unless a CA is given with [`ca_cert_pem`](Self::ca_cert_pem) or
/// [`ca_cert_file`](Self::ca_cert_file). A primary found through Sentinel is
/// `redis+sentinel://` (or `rediss+sentinel://`), see [`sentinel`](Self::sentinel).
///
/// `Debug` never prints a password, a certificate or a key.
///
/// ```
/// use parapet_cache::{CacheLayer, RedisConfig};
///
/// // A managed Redis: the provider's `rediss://` URL as it is.
/// let cache = CacheLayer::builder()
///     .local(64 * 1024 * 1024)
///     .redis(RedisConfig::new("rediss://default:s3cret@cache.example.com:6380"))
///     .build()?; // no connection is made before the first request
/// assert!(!format!("{cache:?}").contains("s3cret"));
/// # Ok::<(), parapet_cache::BuildError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisConfig {
    pub(crate) topology: Topology,
    pub(crate) tls: TlsFiles,
    pub(crate) timeout: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cool_down: Duration,
    pub(crate) compress_threshold: usize,
    pub(crate) generation_ttl: Duration,
}

/// Where the Redis tier is.
#[derive(Clone)]
pub(crate) enum Topology {
    /// One server, or (with a `redis+sentinel://` scheme) a Sentinel URL, parsed by the store.
    Url(String),
    /// The seed nodes of a cluster.
    Cluster(Vec<String>),
    /// A primary named `service`, found through these sentinels.
    Sentinel {
        service: String,
        sentinels: Vec<String>,
        primary: PrimaryAuth,
    },
}

/// How the primary found through Sentinel is logged into.
#[derive(Clone, Default)]
pub(crate) struct PrimaryAuth {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
}

/// The TLS material given to the builder, read and checked when the store is made.
#[derive(Clone, Default)]
pub(crate) struct TlsFiles {
    ca: Option<Pem>,
    client: Option<(Pem, Pem)>,
}

/// PEM text, or a file holding it.
#[derive(Clone)]
enum Pem {
    Bytes(Arc<[u8]>),
    File(PathBuf),
}

impl Pem {
    fn read(&self, what: &str) -> Result<Arc<[u8]>, String> {
        match self {
            Self::Bytes(bytes) => Ok(Arc::clone(bytes)),
            Self::File(path) => std::fs::read(path)
                .map(Arc::from)
                .map_err(|error| format!("{what} {}: {error}", path.display())),
        }
    }

    fn describe(&self, what: &str) -> String {
        match self {
            Self::Bytes(_) => format!("{what} (PEM)"),
            Self::File(path) => format!("{what} {}", path.display()),
        }
    }
}

impl RedisConfig {
    /// Settings for the Redis at `url` (`redis://host:port/db`, `rediss://` for TLS, or a
    /// `redis+sentinel://` URL, see [`sentinel`](Self::sentinel)), with a 50 ms budget per
    /// operation, a breaker that opens after 5 consecutive failures for 5 s, and lz4 for bodies
    /// of 1 KiB or more.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            topology: Topology::Url(url.into()),
            tls: TlsFiles::default(),
            timeout: Duration::from_millis(50),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(5),
            compress_threshold: DEFAULT_COMPRESS_THRESHOLD,
            generation_ttl: Duration::from_secs(1),
        }
    }

    /// Settings for a Redis Cluster reached through `nodes` (seed URLs such as
    /// `redis://127.0.0.1:7000`, or `rediss://` ones for TLS; the rest of the cluster is
    /// discovered from them), with the same defaults as [`new`](Self::new).
    ///
    /// Every command the cache sends names a single key, so none fails with `CROSSSLOT`.
    /// Invalidations go over sharded pub/sub (`SPUBLISH`, Redis 7): each instance subscribes
    /// (`SSUBSCRIBE`) on the node that owns the channel's slot, and follows the slot when it
    /// moves or its node fails over.
    ///
    /// ```
    /// use parapet_cache::{CacheLayer, RedisConfig};
    ///
    /// let cache = CacheLayer::builder()
    ///     .local(64 * 1024 * 1024)
    ///     .redis(RedisConfig::cluster([
    ///         "redis://10.0.0.1:6379",
    ///         "redis://10.0.0.2:6379",
    ///         "redis://10.0.0.3:6379",
    ///     ]))
    ///     .build()?; // no connection is made before the first request
    /// # Ok::<(), parapet_cache::BuildError>(())
    /// ```
    pub fn cluster<I>(nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut config = Self::new(String::new());
        config.topology = Topology::Cluster(nodes.into_iter().map(Into::into).collect());
        config
    }

    /// Settings for the primary that `sentinels` (URLs such as `redis://10.0.0.1:26379`,
    /// with the sentinels' own credentials if they have any) name for `service`, with the same
    /// defaults as [`new`](Self::new). The primary is reached with TLS when the sentinels are
    /// `rediss://` URLs, and with [`primary_auth`](Self::primary_auth).
    ///
    /// After a failover the store asks the sentinels again (on the first failed command), and
    /// the invalidation subscriber moves to the new primary. The same settings as one URL:
    /// `redis+sentinel://[[user]:password@]host:26379[,host:26379…]/service[/db]` (the
    /// credentials are the primary's; `rediss+sentinel://` for TLS to both).
    ///
    /// ```
    /// use parapet_cache::{CacheLayer, RedisConfig};
    ///
    /// let from_url = RedisConfig::new("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/cache");
    /// let built = RedisConfig::sentinel("cache", ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"])
    ///     .primary_auth(None, "pw");
    /// let cache = CacheLayer::builder().redis(built).build()?;
    /// # let _ = (from_url, cache);
    /// # Ok::<(), parapet_cache::BuildError>(())
    /// ```
    pub fn sentinel<I>(service: impl Into<String>, sentinels: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut config = Self::new(String::new());
        config.topology = Topology::Sentinel {
            service: service.into(),
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            primary: PrimaryAuth::default(),
        };
        config
    }

    /// The username (ACL) and password of the primary found through
    /// [`sentinel`](Self::sentinel); ignored otherwise (the URL carries them).
    pub fn primary_auth(mut self, username: Option<&str>, password: &str) -> Self {
        if let Topology::Sentinel { primary, .. } = &mut self.topology {
            primary.username = username.map(str::to_owned);
            primary.password = Some(password.to_owned());
        }
        self
    }

    /// Trusts only this CA (PEM, one or more certificates) for `rediss://`, instead of the
    /// public roots. The PEM is checked when the store is made.
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.ca = Some(Pem::Bytes(pem.into().into()));
        self
    }

    /// [`ca_cert_pem`](Self::ca_cert_pem) read from a file when the store is made (an
    /// unreadable file or one without a certificate is an error then).
    pub fn ca_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca = Some(Pem::File(path.into()));
        self
    }

    /// Presents this client certificate (PEM chain) and private key (PEM) to a server that
    /// asks for one (mutual TLS).
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.tls.client = Some((
            Pem::Bytes(cert.into().into()),
            Pem::Bytes(key.into().into()),
        ));
        self
    }

    /// [`client_cert_pem`](Self::client_cert_pem) read from files when the store is made.
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.client = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// The time budget of each Redis operation (connecting included); past it, the operation
    /// counts as failed and the request goes on as a miss.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Consecutive failures that open the breaker, and how long it stays open before a probe.
    pub fn breaker(mut self, threshold: u32, cool_down: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cool_down = cool_down;
        self
    }

    /// Bodies at least this long are stored lz4-compressed.
    pub fn compress_threshold(mut self, bytes: usize) -> Self {
        self.compress_threshold = bytes;
        self
    }

    /// How long an instance reuses a tenant's generation read from Redis (default 1 s).
    ///
    /// With a local tier in front, a tenant purge on another instance is also announced over
    /// pub/sub and takes effect at once; this bounds how long a purge can go unseen by an
    /// instance without a local tier, or one that missed the announcement.
    pub fn generation_ttl(mut self, ttl: Duration) -> Self {
        self.generation_ttl = ttl;
        self
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RedisConfig");
        match &self.topology {
            Topology::Url(url) => out.field("url", &redact_url(url)),
            Topology::Cluster(urls) => out.field(
                "cluster",
                &urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>(),
            ),
            Topology::Sentinel {
                service, sentinels, ..
            } => out.field("sentinel", service).field(
                "sentinels",
                &sentinels
                    .iter()
                    .map(|url| redact_url(url))
                    .collect::<Vec<_>>(),
            ),
        };
        out.field("ca_cert", &self.tls.ca.as_ref().map(|ca| ca.describe("CA")))
            .field("client_cert", &self.tls.client.is_some())
            .field("timeout", &self.timeout)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cool_down", &self.breaker_cool_down)
            .field("compress_threshold", &self.compress_threshold)
            .field("generation_ttl", &self.generation_ttl)
            .finish()
    }
}

/// A Redis URL fit for a log line or an error message: the user-info password (or a lone
/// user-info part, which some clients take as the password) and a `password` or `pass` query
/// parameter (redis-rs reads `pass` on `redis+unix://`) replaced by `***`.
///
/// The last `@` ends the user info, so a password holding an unencoded `@` or `/` is hidden
/// too (at the price of hiding more than the password when the URL is odd).
///
/// ```
/// use parapet_cache::store::redact_url;
///
/// assert_eq!(redact_url("rediss://default:s3cret@cache:6380/0"), "rediss://default:***@cache:6380/0");
/// assert_eq!(redact_url("redis+unix:///run/redis.sock?pass=s3cret"), "redis+unix:///run/redis.sock?pass=***");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..start]);
    let rest = &url[start..];
    let after = match rest.rfind('@') {
        Some(at) => {
            let kept = rest[..at].split_once(':').map_or("", |(user, _)| user);
            out.push_str(kept);
            out.push_str(":***@");
            &rest[at + 1..]
        }
        None => rest,
    };
    let mut segment_start = 0;
    for (i, c) in after.char_indices().chain([(after.len(), '&')]) {
        if c == '?' || c == '&' {
            let segment = &after[segment_start..i];
            match segment.split_once('=') {
                Some((key, _))
                    if key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("pass") =>
                {
                    out.push_str(key);
                    out.push_str("=***");
                }
                _ => out.push_str(segment),
            }
            if i < after.len() {
                out.push(c);
            }
            segment_start = i + c.len_utf8();
        }
    }
    out
}

impl TlsFiles {
    /// Whether any TLS material was given.
    pub(crate) fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// Reads and checks the TLS material: a CA must hold at least one certificate usable as a
    /// trust anchor, and a client certificate must match its key. `hosts` names the servers
    /// in the error.
    pub(crate) fn certificates(&self, hosts: &str) -> RedisResult<Option<TlsCertificates>> {
        if !self.is_set() {
            return Ok(None);
        }
        let invalid = |reason: String| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "invalid redis TLS settings",
                format!("redis {hosts}: {reason}"),
            ))
        };
        install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        let root_cert = match &self.ca {
            Some(ca) => {
                let pem = ca.read("CA certificate").map_err(invalid)?;
                let what = ca.describe("CA certificate");
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| invalid(format!("{what}: not PEM: {error}")))?;
                if certs.is_empty() {
                    return Err(invalid(format!("{what}: no certificate in it")));
                }
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|error| invalid(format!("{what}: {error}")))?;
                }
                Some(pem.to_vec())
            }
            None => None,
        };
        let client_tls = match &self.client {
            Some((cert, key)) => {
                let cert_pem = cert.read("client certificate").map_err(invalid)?;
                let key_pem = key.read("client key").map_err(invalid)?;
                let what = cert.describe("client certificate");
                let chain = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| invalid(format!("{what}: not PEM: {error}")))?;
                if chain.is_empty() {
                    return Err(invalid(format!("{what}: no certificate in it")));
                }
                let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|error| invalid(format!("{}: {error}", key.describe("client key"))))?;
                // Builds the client side once, which checks that the key fits the certificate.
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|error| invalid(error.to_string()))?
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, private_key)
                .map_err(|error| invalid(format!("{what}: {error}")))?;
                Some(redis::ClientTlsConfig {
                    client_cert: cert_pem.to_vec(),
                    client_key: key_pem.to_vec(),
                })
            }
            None => None,
        };
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

/// Makes ring the process's rustls provider unless one is installed already (redis-rs builds
/// its TLS settings with the process default).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `url` asks for TLS.
pub(crate) fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("rediss+sentinel://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(
            redact_url("rediss://:secret@host:6380"),
            "rediss://:***@host:6380"
        );
        assert_eq!(redact_url("redis://secret@host"), "redis://:***@host");
        assert_eq!(redact_url("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(
            redact_url("redis+sentinel://:pw@a:26379,b:26379/cache"),
            "redis+sentinel://:***@a:26379,b:26379/cache"
        );
        // Unencoded `@`, `/` and `?` in the password, and the query's passwords.
        assert_eq!(
            redact_url("redis://:p@s/s?w@host:6379"),
            "redis://:***@host:6379"
        );
        assert_eq!(
            redact_url("redis+unix:///tmp/r.sock?db=2&pass=pw"),
            "redis+unix:///tmp/r.sock?db=2&pass=***"
        );
        assert_eq!(
            redact_url("redis://host/0?PASSWORD=pw&protocol=resp3"),
            "redis://host/0?PASSWORD=***&protocol=resp3"
        );
        let debug = format!(
            "{:?}",
            RedisConfig::cluster(["redis://:pw1@a:7000", "redis://:pw2@b:7000"])
        );
        assert!(!debug.contains("pw1") && !debug.contains("pw2"), "{debug}");
        let debug = format!(
            "{:?}",
            RedisConfig::sentinel("cache", ["redis://:spw@s:26379"]).primary_auth(None, "ppw")
        );
        assert!(!debug.contains("spw") && !debug.contains("ppw"), "{debug}");
    }

    #[test]
    fn a_ca_without_a_certificate_names_the_host_and_the_reason() {
        let tls = TlsFiles {
            ca: Some(Pem::Bytes(Arc::from(&b"not a certificate"[..]))),
            client: None,
        };
        let error = tls.certificates("cache.example.com:6380").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("cache.example.com:6380"), "{text}");
        assert!(text.contains("no certificate"), "{text}");

        let tls = TlsFiles {
            ca: Some(Pem::File("/nonexistent/ca.pem".into())),
            client: None,
        };
        let text = tls.certificates("h:1").unwrap_err().to_string();
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    }
}
