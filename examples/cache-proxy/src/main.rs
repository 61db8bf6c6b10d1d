//! A caching reverse proxy for any HTTP upstream.
//!
//! ```sh
//! cargo run --release -p example-cache-proxy -- --listen 127.0.0.1:8002 \
//!     --upstream http://127.0.0.1:8000 [--redis redis://127.0.0.1:6379]
//! ```

use clap::Parser;

/// A caching reverse proxy built from parapet's CacheLayer.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8002")]
    listen: String,
    /// The upstream, as http://host:port.
    #[arg(long)]
    upstream: http::Uri,
    /// Redis for the shared tier (optional; without it the local tier serves alone).
    #[arg(long)]
    redis: Option<String>,
    /// Bytes of the local tier.
    #[arg(long, default_value_t = 256 << 20)]
    local_bytes: u64,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.upstream.scheme_str() != Some("http") || args.upstream.authority().is_none() {
        eprintln!("error: --upstream must be http://host:port");
        std::process::exit(2);
    }
    let app = match example_cache_proxy::app(args.upstream.clone(), args.redis, args.local_bytes) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!("caching {} on http://{}", args.upstream, args.listen);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
