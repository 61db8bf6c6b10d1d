//! The real Redis the tests use, and key prefixes no other test shares.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const START_REDIS: &str = "Start one with: redis-server --daemonize yes --bind 127.0.0.1 -::1 \
     --port 6379 --save \"\" --appendonly no";

/// `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Fails the test (never skips it) when Redis at [`redis_url`] does not answer a `PING` within
/// 3 s, naming the address and how to start it.
pub async fn require_redis() {
    let url = redis_url();
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let ping = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut buf = [0_u8; 7];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(Duration::from_secs(3), ping).await {
        Ok(Ok(reply)) if &reply == b"+PONG\r\n" => {}
        Ok(Ok(reply)) => panic!(
            "this test needs Redis at {url} (REDIS_URL) but PING answered {:?}. {START_REDIS}",
            String::from_utf8_lossy(&reply)
        ),
        Ok(Err(e)) => {
            panic!("this test needs Redis at {url} (REDIS_URL) but it failed: {e}. {START_REDIS}")
        }
        Err(_) => panic!(
            "this test needs Redis at {url} (REDIS_URL) but it did not answer within 3 s. \
             {START_REDIS}"
        ),
    }
}

/// A key prefix unique to this test in this run (process id, clock and a counter), so parallel
/// and repeated runs never collide.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("parapet-test:{test}:{}:{nanos}:{n}:", std::process::id())
}
