//! The invalidation subscriber's connection: `SUBSCRIBE` on a single server or on the primary
//! that Sentinel names (moving when it changes), `SSUBSCRIBE` on the node of a cluster that
//! owns the channel's slot (moving when the slot does).
//!
//! Each connection is a *session*: it ends when the connection is lost, the server drops
//! the subscription (a slot migrated away) or the primary changed. The loop then subscribes
//! again, and the handler hears of the gap, since invalidations may have been missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ErrorKind, ProtocolVersion, PushInfo, PushKind,
    RedisResult, Value,
};
use tokio::sync::{mpsc, watch};

use super::sentinel::{Primary, SentinelPrimary, address_of};

/// Where the subscriber listens.
#[derive(Clone)]
pub(crate) enum Subscription {
    /// `SUBSCRIBE` on this server.
    Plain(Box<redis::Client>),
    /// `SSUBSCRIBE` on the cluster node owning the channel's slot, found from these seeds.
    Sharded(Vec<redis::Client>),
    /// `SUBSCRIBE` on the primary the sentinels name.
    Sentinel(Arc<SentinelPrimary>),
}

/// What the subscriber does with what it hears.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Subscribed again after a gap: invalidations may have been missed.
    fn gap(&self);
    /// One message's payload.
    fn message<'a>(&'a self, payload: &'a [u8]) -> BoxFuture<'a, ()>;
}

/// How often a sharded subscription checks that its node still answers (a node that hangs
/// without closing the connection would otherwise keep the subscriber deaf).
const PING_EVERY: Duration = Duration::from_secs(1);
/// Pause between subscription attempts.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// `MOVED` redirections followed in one attempt.
const MAX_REDIRECTS: usize = 3;

/// Listens on `channel` until `alive` ends (the store was dropped), subscribing again after
/// every lost session.
pub(crate) async fn listen(
    subscription: Subscription,
    channel: String,
    mut alive: watch::Receiver<()>,
    handler: impl Handler,
) {
    let mut first = true;
    // The seed to start from (cluster), moved on after a failure.
    let mut seed = 0usize;
    // The node that owned the slot last time (cluster).
    let mut owner: Option<redis::Client> = None;
    loop {
        let connect = connect(&subscription, &channel, seed, &mut owner);
        let session = tokio::select! {
            session = connect => session,
            _ = alive.changed() => return,
        };
        match session {
            Ok(mut session) => {
                if !first {
                    handler.gap();
                }
                first = false;
                loop {
                    let payload = tokio::select! {
                        payload = session.next() => payload,
                        _ = alive.changed() => return,
                    };
                    let Some(payload) = payload else { break };
                    handler.message(&payload).await;
                }
                tracing::debug!("cache invalidation subscription lost; re-subscribing");
            }
            Err(error) => {
                tracing::debug!(%error, "cache invalidation subscription failed");
                owner = None;
                seed = seed.wrapping_add(1);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_AFTER) => {}
            _ = alive.changed() => return,
        }
    }
}

/// One subscribed connection.
enum Session {
    Plain {
        messages: PubSubStream,
        /// With Sentinel: the primary's changes, and the address subscribed to.
        primary: Option<(watch::Receiver<Option<Primary>>, String)>,
    },
    Sharded {
        connection: MultiplexedConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        ping: tokio::time::Interval,
    },
}

impl Session {
    /// The next message's payload; `None` when the session is over.
    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Self::Plain { messages, primary } => {
                let moved = async {
                    match primary {
                        Some((changes, address)) => loop {
                            if changes.changed().await.is_err() {
                                return std::future::pending().await;
                            }
                            let now = changes
                                .borrow_and_update()
                                .as_ref()
                                .map(|p| p.address.clone());
                            if now.is_some_and(|now| now != *address) {
                                return;
                            }
                        },
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    message = messages.next() => message.map(|m| m.get_payload_bytes().to_vec()),
                    () = moved => {
                        tracing::info!("redis primary changed: moving the invalidation subscription");
                        None
                    }
                }
            }
            Self::Sharded {
                connection,
                pushes,
                ping,
            } => loop {
                tokio::select! {
                    push = pushes.recv() => match push {
                        Some(PushInfo { kind: PushKind::SMessage, data }) => {
                            // [channel, payload]
                            if let Some(Value::BulkString(payload)) = data.into_iter().nth(1) {
                                return Some(payload);
                            }
                        }
                        Some(PushInfo { kind: PushKind::SUnsubscribe, .. }) => {
                            tracing::info!("cache invalidation channel's slot moved: re-subscribing");
                            return None;
                        }
                        Some(PushInfo { kind: PushKind::Disconnection, .. }) | None => return None,
                        Some(_) => {}
                    },
                    _ = ping.tick() => {
                        let pong: RedisResult<Value> = redis::cmd("PING").query_async(connection).await;
                        if pong.is_err() {
                            return None;
                        }
                    }
                }
            },
        }
    }
}

/// Subscribes once.
async fn connect(
    subscription: &Subscription,
    channel: &str,
    seed: usize,
    owner: &mut Option<redis::Client>,
) -> RedisResult<Session> {
    match subscription {
        Subscription::Plain(client) => {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok(Session::Plain {
                messages: pubsub.into_on_message(),
                primary: None,
            })
        }
        Subscription::Sentinel(sentinel) => {
            let changes = sentinel.watch();
            let client = sentinel.primary_client().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok(Session::Plain {
                messages: pubsub.into_on_message(),
                primary: Some((changes, address_of(&client))),
            })
        }
        Subscription::Sharded(seeds) => {
            let start = match owner.take() {
                Some(client) => client,
                None => seeds
                    .get(seed % seeds.len().max(1))
                    .cloned()
                    .ok_or_else(|| redis::RedisError::from((ErrorKind::Client, "no seed node")))?,
            };
            let (session, node) = ssubscribe(start, channel).await?;
            *owner = Some(node);
            Ok(session)
        }
    }
}

/// `SSUBSCRIBE channel` on `node`, following `MOVED` to the node that owns the slot; returns
/// the session and that node.
async fn ssubscribe(
    mut node: redis::Client,
    channel: &str,
) -> RedisResult<(Session, redis::Client)> {
    for _ in 0..=MAX_REDIRECTS {
        let (sender, pushes) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_push_sender(sender);
        let resp3 = resp3(&node)?;
        let mut connection = resp3
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let subscribed: RedisResult<Value> = redis::cmd("SSUBSCRIBE")
            .arg(channel)
            .query_async(&mut connection)
            .await;
        match subscribed {
            Ok(_) => {
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ping.reset();
                tracing::debug!(node = %address_of(&node), "cache invalidations: SSUBSCRIBE");
                return Ok((
                    Session::Sharded {
                        connection,
                        pushes,
                        ping,
                    },
                    node,
                ));
            }
            Err(error) => match error.redirect_node() {
                Some((address, _slot)) => node = redirect(&node, address)?,
                None => return Err(error),
            },
        }
    }
    Err(redis::RedisError::from((
        ErrorKind::Client,
        "too many MOVED redirections for the invalidation channel",
    )))
}

/// A client for `address` (`host:port`) with `node`'s login and TLS settings.
fn redirect(node: &redis::Client, address: &str) -> RedisResult<redis::Client> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            redis::RedisError::from((ErrorKind::Client, "a MOVED address without a port"))
        })?;
    let info = node.get_connection_info().clone();
    let addr = match info.addr().clone() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            tls_params,
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    redis::Client::open(info.set_addr(addr))
}

/// `node` speaking RESP3 (sharded messages arrive as pushes).
fn resp3(node: &redis::Client) -> RedisResult<redis::Client> {
    let info = node.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings))
}
