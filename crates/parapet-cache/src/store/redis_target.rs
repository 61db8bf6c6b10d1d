//! Which servers a [`RedisConfig`] names and the clients that reach them: the target of the
//! data path, the subscription of the invalidation listener, and the servers' names for errors
//! and logs. Certificates are read and checked here, when the store is made.

use std::sync::Arc;

use redis::cluster::ClusterClient;
use redis::{ErrorKind, IntoConnectionInfo, RedisError, RedisResult, TlsCertificates};

use super::redis_config::{RedisConfig, Topology, install_crypto_provider, is_tls, redact_url};
use super::sentinel::{self, SentinelPrimary};
use super::subscriber::Subscription;

/// Where commands go.
pub(super) enum Target {
    Single(Box<redis::Client>),
    Cluster(Box<ClusterClient>),
    Sentinel(Arc<SentinelPrimary>),
}

/// The target of commands, the subscription, and the servers' names, from the settings.
pub(super) fn plan(config: &RedisConfig) -> RedisResult<(Target, Subscription, String)> {
    match &config.topology {
        Topology::Url(url) if url.contains("+sentinel://") => {
            let (sentinels, service, auth) = sentinel::parse_url(url).map_err(|reason| {
                invalid(
                    "invalid redis sentinel URL",
                    format!("{}: {reason}", redact_url(url)),
                )
            })?;
            plan_sentinel(config, &service, &sentinels, &auth)
        }
        Topology::Url(url) => {
            let hosts = hosts_of(std::slice::from_ref(url));
            let certs = config.tls.certificates(&hosts)?;
            let client = open(url, certs.as_ref(), &hosts)?;
            Ok((
                Target::Single(Box::new(client.clone())),
                Subscription::Plain(Box::new(client)),
                hosts,
            ))
        }
        Topology::Cluster(urls) => {
            if urls.is_empty() {
                return Err(invalid(
                    "invalid redis configuration",
                    "a cluster without seed nodes".to_owned(),
                ));
            }
            let hosts = hosts_of(urls);
            let certs = config.tls.certificates(&hosts)?;
            let seeds = urls
                .iter()
                .map(|url| open(url, certs.as_ref(), &hosts))
                .collect::<RedisResult<Vec<_>>>()?;
            let mut builder = ClusterClient::builder(urls.iter().map(String::as_str))
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(1);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder.build()?;
            Ok((
                Target::Cluster(Box::new(client)),
                Subscription::Sharded(seeds),
                hosts,
            ))
        }
        Topology::Sentinel {
            service,
            sentinels,
            primary,
        } => plan_sentinel(config, service, sentinels, primary),
    }
}

fn plan_sentinel(
    config: &RedisConfig,
    service: &str,
    sentinels: &[String],
    auth: &super::redis_config::PrimaryAuth,
) -> RedisResult<(Target, Subscription, String)> {
    if sentinels.is_empty() {
        return Err(invalid(
            "invalid redis configuration",
            format!("sentinel service {service}: no sentinel"),
        ));
    }
    let hosts = format!("sentinel {service} via {}", hosts_of(sentinels));
    let certs = config.tls.certificates(&hosts)?;
    let tls = sentinels.iter().any(|url| is_tls(url));
    if tls {
        install_crypto_provider();
    } else if certs.is_some() {
        return Err(not_tls(&hosts));
    }
    let primary =
        SentinelPrimary::new(service, sentinels, auth, certs, config.timeout).map_err(|error| {
            invalid(
                "invalid redis sentinel settings",
                format!("{hosts}: {error}"),
            )
        })?;
    let primary = Arc::new(primary);
    Ok((
        Target::Sentinel(Arc::clone(&primary)),
        Subscription::Sentinel(primary),
        hosts,
    ))
}

/// A client for `url`, with the TLS certificates when given (which needs a `rediss://` URL).
fn open(url: &str, certs: Option<&TlsCertificates>, hosts: &str) -> RedisResult<redis::Client> {
    if is_tls(url) {
        install_crypto_provider();
    }
    let client = match certs {
        Some(_) if !is_tls(url) => return Err(not_tls(hosts)),
        Some(certs) => redis::Client::build_with_tls(url, certs.clone()),
        None => redis::Client::open(url),
    };
    client.map_err(|error| {
        invalid(
            "invalid redis configuration",
            format!("{}: {error}", redact_url(url)),
        )
    })
}

/// `host:port` of each URL (the redacted URL when it does not parse).
fn hosts_of(urls: &[String]) -> String {
    urls.iter()
        .map(|url| match url.as_str().into_connection_info() {
            Ok(info) => info.addr().to_string(),
            Err(_) => redact_url(url),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn not_tls(hosts: &str) -> RedisError {
    invalid(
        "invalid redis TLS settings",
        format!("redis {hosts}: a CA or client certificate is set but the URL is not rediss://"),
    )
}

fn invalid(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what, detail))
}
