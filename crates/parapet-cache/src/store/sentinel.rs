//! The primary of a Sentinel-managed Redis: found through the sentinels, connected to, and
//! looked up again after a command fails (a failover).
//!
//! redis-rs's `SentinelClient` resolves the primary and hands out a client, but its
//! connections do not follow a failover by themselves (there is no Sentinel
//! `ConnectionManager`). So this module keeps one multiplexed connection to the current
//! primary; the first failed or timed-out command drops it, and the next command starts a
//! lookup in the background (one at a time), which asks the sentinels for the primary and
//! checks its `ROLE`. Commands issued meanwhile wait within their own time budget and are a
//! miss past it, so a lookup slower than the budget still completes for the next ones.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisResult,
    TlsCertificates, TlsMode,
};
use tokio::sync::{Mutex, watch};

use super::redis_config::{PrimaryAuth, is_tls};

/// A connection to the primary, numbered so that a failure drops only the connection that
/// failed, not one made since.
#[derive(Clone)]
pub(crate) struct Primary {
    pub(crate) id: u64,
    pub(crate) address: String,
    pub(crate) connection: MultiplexedConnection,
}

/// The primary of one Sentinel service, shared by the data path and the invalidation
/// subscriber.
pub(crate) struct SentinelPrimary {
    service: String,
    client: Mutex<SentinelClient>,
    current: watch::Sender<Option<Primary>>,
    looking_up: AtomicBool,
    next_id: AtomicU64,
    connection_config: AsyncConnectionConfig,
    lookup_budget: Duration,
}

impl fmt::Debug for SentinelPrimary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelPrimary")
            .field("service", &self.service)
            .field(
                "primary",
                &self.current.borrow().as_ref().map(|p| p.address.clone()),
            )
            .finish_non_exhaustive()
    }
}

impl SentinelPrimary {
    /// Sentinels at `sentinels` (URLs; the first one's credentials are used for all),
    /// naming the primary `service`, logged into with `auth`; TLS (with `certs`) when the
    /// sentinel URLs are `rediss://`. `budget` is the time budget of one command.
    pub(crate) fn new(
        service: &str,
        sentinels: &[String],
        auth: &PrimaryAuth,
        certs: Option<TlsCertificates>,
        budget: Duration,
    ) -> RedisResult<Self> {
        let tls = sentinels.iter().any(|url| is_tls(url));
        let infos = sentinels
            .iter()
            .map(|url| url.as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        let addrs = infos.iter().map(|info| info.addr().clone());
        let mut builder = SentinelClientBuilder::new(addrs, service, SentinelServerType::Master)?;
        if let Some(first) = infos.first() {
            let settings = first.redis_settings();
            if let Some(username) = settings.username() {
                builder = builder.set_client_to_sentinel_username(username);
            }
            if let Some(password) = settings.password() {
                builder = builder.set_client_to_sentinel_password(password);
            }
        }
        if let Some(username) = &auth.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &auth.password {
            builder = builder.set_client_to_redis_password(password);
        }
        builder = builder.set_client_to_redis_db(auth.db);
        if tls {
            builder = builder
                .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                .set_client_to_redis_tls_mode(TlsMode::Secure);
            if let Some(certs) = certs {
                builder = builder
                    .set_client_to_sentinel_certificates(certs.clone())
                    .set_client_to_redis_certificates(certs);
            }
        }
        Ok(Self {
            service: service.to_owned(),
            client: Mutex::new(builder.build()?),
            current: watch::channel(None).0,
            looking_up: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            connection_config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(budget))
                .set_response_timeout(Some(budget)),
            // Asking a sentinel, checking the primary's role and connecting: a few round trips.
            lookup_budget: (budget * 20).max(Duration::from_secs(2)),
        })
    }

    /// The connection to the current primary; when there is none, starts a lookup and waits
    /// for it (the caller bounds the wait).
    pub(crate) async fn connection(self: &Arc<Self>) -> RedisResult<Primary> {
        if let Some(primary) = self.current.borrow().clone() {
            return Ok(primary);
        }
        let mut changes = self.current.subscribe();
        self.look_up();
        let primary = changes
            .wait_for(Option::is_some)
            .await
            .map_err(|_| closed())?;
        primary.clone().ok_or_else(closed)
    }

    /// Drops the connection `id` after a failure, so the next command looks the primary up.
    pub(crate) fn failed(&self, id: u64) {
        self.current.send_if_modified(|current| {
            if current.as_ref().is_some_and(|primary| primary.id == id) {
                *current = None;
                true
            } else {
                false
            }
        });
    }

    /// Changes of the primary (the subscriber moves when the address changes).
    pub(crate) fn watch(&self) -> watch::Receiver<Option<Primary>> {
        self.current.subscribe()
    }

    /// A client for the primary the sentinels name now (after checking its role).
    pub(crate) async fn primary_client(&self) -> RedisResult<Client> {
        self.client.lock().await.async_get_client().await
    }

    /// Starts one background lookup unless one is running.
    fn look_up(self: &Arc<Self>) {
        if self.looking_up.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let found = tokio::time::timeout(this.lookup_budget, async {
                let client = this.primary_client().await?;
                let address = address_of(&client);
                let connection = client
                    .get_multiplexed_async_connection_with_config(&this.connection_config)
                    .await?;
                Ok::<_, redis::RedisError>((address, connection))
            })
            .await;
            match found {
                Ok(Ok((address, connection))) => {
                    let id = this.next_id.fetch_add(1, Ordering::Relaxed);
                    let previous = this.current.borrow().as_ref().map(|p| p.address.clone());
                    if previous.as_deref() != Some(address.as_str()) {
                        tracing::info!(service = %this.service, primary = %address, "redis primary found through sentinel");
                    }
                    this.current.send_replace(Some(Primary {
                        id,
                        address,
                        connection,
                    }));
                }
                Ok(Err(error)) => {
                    tracing::debug!(service = %this.service, %error, "redis primary lookup through sentinel failed");
                }
                Err(_) => {
                    tracing::debug!(service = %this.service, "redis primary lookup through sentinel timed out");
                }
            }
            this.looking_up.store(false, Ordering::Release);
        });
    }
}

/// `host:port` of a client.
pub(crate) fn address_of(client: &Client) -> String {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        other => other.to_string(),
    }
}

fn closed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "sentinel primary lookup stopped"))
}

/// Parses `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]`
/// (`rediss+sentinel://` for TLS) into sentinel URLs, the service and the primary's login.
pub(crate) fn parse_url(url: &str) -> Result<(Vec<String>, String, PrimaryAuth), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        ("redis", rest)
    } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
        ("rediss", rest)
    } else {
        return Err("not a redis+sentinel:// URL".to_owned());
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user_info, hosts) = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => (Some(user_info), hosts),
        None => (None, authority),
    };
    let mut auth = PrimaryAuth::default();
    if let Some(user_info) = user_info {
        let (user, password) = user_info.split_once(':').unwrap_or(("", user_info));
        if !user.is_empty() {
            auth.username = Some(percent_decode(user)?);
        }
        auth.password = Some(percent_decode(password)?);
    }
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| {
            if host.contains(':') && !host.ends_with(']') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}:26379")
            }
        })
        .collect();
    if sentinels.is_empty() {
        return Err("no sentinel host".to_owned());
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let service = segments
        .next()
        .ok_or("no service name (redis+sentinel://host:26379/<service>)")?
        .to_owned();
    if let Some(db) = segments.next() {
        auth.db = db
            .parse()
            .map_err(|_| format!("database {db:?} is not a number"))?;
    }
    Ok((sentinels, service, auth))
}

/// Decodes `%XX` escapes (passwords in URLs often carry them).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("a bad %-escape in the user info")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user info is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let (sentinels, service, auth) =
            parse_url("redis+sentinel://app:p%40ss@10.0.0.1,10.0.0.2:26380/cache/2").unwrap();
        assert_eq!(
            sentinels,
            ["redis://10.0.0.1:26379", "redis://10.0.0.2:26380"]
        );
        assert_eq!(service, "cache");
        assert_eq!(auth.username.as_deref(), Some("app"));
        assert_eq!(auth.password.as_deref(), Some("p@ss"));
        assert_eq!(auth.db, 2);

        let (sentinels, service, auth) =
            parse_url("rediss+sentinel://:pw@s1:26379/mymaster").unwrap();
        assert_eq!(sentinels, ["rediss://s1:26379"]);
        assert_eq!(service, "mymaster");
        assert_eq!(
            (auth.username, auth.password.as_deref()),
            (None, Some("pw"))
        );

        assert!(
            parse_url("redis+sentinel://s1:26379").is_err(),
            "no service"
        );
        assert!(parse_url("redis+sentinel:///cache").is_err(), "no host");
        assert!(parse_url("redis+sentinel://s1/cache/x").is_err(), "bad db");
    }
}
