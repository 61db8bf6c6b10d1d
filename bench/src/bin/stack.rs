//! Stack cost: one variant of the benchmark per process, listening on a free port of
//! 127.0.0.1, for `bench/scenarios/stack.sh` to drive with wrk (and `free-port` for the
//! scenarios that start servers of their own).
//!
//! ```text
//! stack serve <variant> [--database URL] [--redis URL] [--prefix P] [--value-size N]
//! stack free-port
//! ```
//!
//! Every variant answers `GET /api/item` with the same small JSON body. Variants:
//!
//! - `bare`: the handler alone (`Cache-Control: public, max-age=60`, as the origin of the
//!   nginx and Varnish variants too);
//! - `miss`: telemetry → tenant → cache (local tier) → pool → the handler answering
//!   `Cache-Control: no-store`, so every request takes the cache's miss path;
//! - `hit`: the same stack, the response cacheable, served from the local tier;
//! - `redis-hit`: the same stack with a Redis-only cache (keys under `--prefix`);
//! - `redis-get`: the bare handler doing one Redis `GET` of a `--value-size` byte value
//!   through a `ConnectionManager` first;
//! - `thc-hit`: the handler behind tower-http-cache's in-memory `CacheLayer` (no other layer);
//! - `quota-429`: the `hit` stack with a quota layer between the tenant and the cache (as in
//!   the demo) whose tenant may make one request an hour: every request after the first is
//!   refused with 429 by the local limiter;
//! - `redis-429`: the same with the limit shared through Redis (keys under `--prefix`): Redis
//!   refuses the second request until an hour later, and this instance remembers it.
//!
//! The server prints `listening <addr>` once it accepts connections, and on SIGTERM or Ctrl-C
//! its cache counters and the number of spans it exported, then exits.

use std::{
    error::Error,
    io::Write as _,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get},
    serve::ListenerExt as _,
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    metrics::{Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
    trace::{BatchSpanProcessor, SpanData, SpanExporter},
};
use parapet_cache::{CacheLayer, RedisConfig};
use parapet_pool::{PoolLayer, TenantPools};
use parapet_quota::{QuotaLayer, Rate};
use parapet_telemetry::{TelemetryBuilder, TelemetryGuard, TelemetryLayer};
use parapet_tenant::{HeaderResolver, StaticDirectory, TenantId, TenantLayer, TenantRecord};
use redis::aio::ConnectionManager;
use tokio::signal::unix::{SignalKind, signal};

type BoxError = Box<dyn Error + Send + Sync>;

/// The body every variant answers with.
const BODY: &str =
    r#"{"id":42,"name":"Acme Corporation","plan":"pro","active":true,"leads":1234,"deals":56}"#;
/// The route every variant serves.
const ROUTE: &str = "/api/item";
/// The tenant of the stack variants (sent as `X-Tenant-Id`).
const TENANT: &str = "acme";

const USAGE: &str = "usage: stack serve <bare|miss|hit|redis-hit|redis-get|thc-hit|quota-429|redis-429> \
    [--database URL] [--redis URL] [--prefix P] [--value-size N] | stack free-port";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    Miss,
    Hit,
    RedisHit,
    RedisGet,
    ThcHit,
    Quota429,
    Redis429,
}

#[derive(Debug)]
struct Opts {
    variant: Variant,
    database: String,
    redis: String,
    prefix: String,
    value_size: usize,
    workers: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self, BoxError> {
        let variant = match args.first().map(String::as_str) {
            Some("bare") => Variant::Bare,
            Some("miss") => Variant::Miss,
            Some("hit") => Variant::Hit,
            Some("redis-hit") => Variant::RedisHit,
            Some("redis-get") => Variant::RedisGet,
            Some("thc-hit") => Variant::ThcHit,
            Some("quota-429") => Variant::Quota429,
            Some("redis-429") => Variant::Redis429,
            _ => return Err(USAGE.into()),
        };
        let mut opts = Self {
            variant,
            database: "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
            redis: "redis://127.0.0.1:6379".to_owned(),
            prefix: format!("parapet:bench:stack:{}:", std::process::id()),
            value_size: 256,
            workers: 2,
        };
        let mut rest = args[1..].iter();
        while let Some(flag) = rest.next() {
            let value = rest
                .next()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?
                .clone();
            match flag.as_str() {
                "--database" => opts.database = value,
                "--redis" => opts.redis = value,
                "--prefix" => opts.prefix = value,
                "--value-size" => opts.value_size = value.parse()?,
                "--workers" => opts.workers = value.parse()?,
                _ => return Err(format!("unknown flag {flag}; {USAGE}").into()),
            }
        }
        Ok(opts)
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("free-port") => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
            Ok(())
        }
        Some("serve") => {
            let opts = Opts::parse(&args[1..])?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(opts.workers)
                .enable_all()
                .build()?
                .block_on(serve(opts))
        }
        _ => Err(USAGE.into()),
    }
}

/// The origin's answer: cacheable for a minute by any cache.
async fn cacheable() -> Response {
    json(HeaderValue::from_static("public, max-age=60"))
}

/// The same answer, never to be stored.
async fn no_store() -> Response {
    json(HeaderValue::from_static("no-store"))
}

fn json(cache_control: HeaderValue) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, cache_control),
        ],
        BODY,
    )
        .into_response()
}

/// The bare Redis handler's state: the connection and the key it reads.
#[derive(Clone)]
struct RedisGet {
    connection: ConnectionManager,
    key: String,
    size: usize,
}

/// One Redis `GET` of a value the size of a stored cache entry, then the origin's answer.
async fn redis_get(State(state): State<RedisGet>) -> Response {
    let mut connection = state.connection;
    match redis::Cmd::get(&state.key)
        .query_async::<Option<Vec<u8>>>(&mut connection)
        .await
    {
        Ok(Some(value)) if value.len() == state.size => {
            json(HeaderValue::from_static("public, max-age=60"))
        }
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn serve(opts: Opts) -> Result<(), BoxError> {
    let mut guard = None;
    let mut cache = None;
    let mut quota = None;
    let app = match opts.variant {
        Variant::Bare => Router::new().route(ROUTE, get(cacheable)),
        Variant::Miss
        | Variant::Hit
        | Variant::RedisHit
        | Variant::Quota429
        | Variant::Redis429 => {
            guard = Some(telemetry()?);
            let layer = match opts.variant {
                Variant::RedisHit => CacheLayer::builder()
                    .redis(RedisConfig::new(opts.redis.clone()))
                    .prefix(opts.prefix.clone())
                    .build()?,
                _ => CacheLayer::builder()
                    .local(64 * 1024 * 1024)
                    .prefix(opts.prefix.clone())
                    .build()?,
            };
            cache = Some(layer.clone());
            let handler = if opts.variant == Variant::Miss {
                get(no_store)
            } else {
                get(cacheable)
            };
            let limit = match opts.variant {
                Variant::Quota429 => Some(QuotaLayer::builder()),
                // A budget valgrind's slowness cannot exhaust (no local fallback), and a key of
                // this process's own (each run starts with the tenant's burst).
                Variant::Redis429 => Some(
                    QuotaLayer::builder()
                        .redis(
                            RedisConfig::new(opts.redis.clone()).timeout(Duration::from_secs(10)),
                        )
                        .prefix(format!("{}quota:{}:", opts.prefix, std::process::id())),
                ),
                _ => None,
            };
            if let Some(builder) = limit {
                // One request an hour, a burst of one: every request after the first is refused.
                let layer = builder
                    .plan("pro", Rate::new(1, Duration::from_secs(3600)).burst(1))
                    .build()?;
                quota = Some(layer);
            }
            full_stack(handler, layer, quota.clone(), &opts).await?
        }
        Variant::RedisGet => {
            let client = redis::Client::open(opts.redis.as_str())?;
            let mut connection = ConnectionManager::new(client).await?;
            let key = format!("{}bare-get", opts.prefix);
            let value = vec![b'x'; opts.value_size];
            redis::Cmd::set_ex(&key, value, 600)
                .query_async::<()>(&mut connection)
                .await?;
            Router::new()
                .route(ROUTE, get(redis_get))
                .with_state(RedisGet {
                    connection,
                    key,
                    size: opts.value_size,
                })
        }
        Variant::ThcHit => thc::app(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // nginx and Varnish set TCP_NODELAY on their client connections; so do we.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("listening {addr}");
    std::io::stdout().flush()?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        served = axum::serve(listener, app) => served?,
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    if let Some(cache) = cache {
        println!("cache-stats {:?}", cache.stats());
    }
    if let Some(quota) = quota {
        println!("quota-stats {:?}", quota.stats());
    }
    if opts.variant == Variant::ThcHit {
        println!("origin-calls {}", thc::ORIGIN_CALLS.load(Ordering::Relaxed));
    }
    if let Some(guard) = guard {
        guard.shutdown()?;
        println!("spans-exported {}", EXPORTED.load(Ordering::Relaxed));
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// The handler behind the four layers, outermost first: telemetry → tenant → cache → pool, and
/// the quota layer between the tenant and the cache when one is given.
async fn full_stack(
    handler: MethodRouter,
    cache: CacheLayer,
    quota: Option<QuotaLayer>,
    opts: &Opts,
) -> Result<Router, BoxError> {
    let directory =
        StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse(TENANT)?).plan("pro"));
    let tenant = TenantLayer::builder(directory)
        .resolver(HeaderResolver::new())
        .build();
    // No handler checks a connection out, so PostgreSQL is not on the measured path; the pools
    // still connect (warm-up, budget read from the server) as they would in an application.
    let pools = TenantPools::builder(opts.database.clone())
        .application_name("parapet_bench_stack")
        .build()
        .await?;
    // `Router::layer`: the last added is the outermost.
    let router = Router::new()
        .route(ROUTE, handler)
        .layer(PoolLayer::new(pools))
        .layer(cache);
    let router = match quota {
        Some(quota) => router.layer(quota),
        None => router,
    };
    Ok(router.layer(tenant).layer(TelemetryLayer::new()))
}

/// Spans exported (and discarded) so far.
static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// A span exporter that counts and drops: the SDK does all its work (sampling, recording,
/// batching on its own thread), only the network is left out.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        EXPORTED.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A metric exporter that drops what it is given (the aggregation still runs per request).
#[derive(Debug)]
struct DiscardMetrics;

impl PushMetricExporter for DiscardMetrics {
    async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// The global tracing subscriber and providers as `parapet_telemetry::init()` sets them up,
/// with exporters that discard instead of sending OTLP; logs off (`RUST_LOG=warn`, no output).
fn telemetry() -> Result<TelemetryGuard, BoxError> {
    Ok(TelemetryBuilder::from_env_map([
        ("RUST_LOG", "warn"),
        ("OTEL_SERVICE_NAME", "parapet-bench-stack"),
    ])
    .log_output(false)
    .with_span_processor(BatchSpanProcessor::builder(Discard).build())
    .with_metric_exporter(DiscardMetrics)
    .init()?)
}

mod thc {
    //! tower-http-cache 0.6.1 around the same handler ([`parapet_bench::tower_http_cache_app`]).

    use std::sync::{Arc, LazyLock, atomic::AtomicU64};

    use axum::Router;

    /// Calls that reached the handler.
    pub(super) static ORIGIN_CALLS: LazyLock<Arc<AtomicU64>> = LazyLock::new(Arc::default);

    pub(super) fn app() -> Router {
        parapet_bench::tower_http_cache_app(super::ROUTE, super::BODY, ORIGIN_CALLS.clone())
    }
}
