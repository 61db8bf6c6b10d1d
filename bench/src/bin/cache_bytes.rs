//! The local tier's byte bound: 1,000,000 distinct small entries through
//! parapet-cache's `MemoryStore` (moka with a weigher counting key, body, headers and a fixed
//! overhead) must keep the weighted size within the configured capacity, and the process's
//! resident memory must grow by at most 1.1x that capacity plus a fixed overhead.
//!
//! RSS is noisy (allocator caching, the runtime, page granularity), so this is a benchmark that
//! reports, not a test that asserts; `cargo test -p parapet-cache` keeps the weighted-size
//! invariant as a normal test. Prints markdown; `bash bench/run.sh cache-bytes` puts it into
//! BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use parapet_bench::{mib, rss_bytes, table};
use parapet_cache::policy::StoredTimes;
use parapet_cache::{Entry, MemoryStore, PrimaryKey, Store, StoredValue};

/// The configured capacities measured (bytes).
const CAPACITIES: [u64; 2] = [64 * 1024 * 1024, 256 * 1024 * 1024];
/// Distinct entries written into each.
const ENTRIES: usize = 1_000_000;
/// Body of each entry: a small JSON document.
const BODY: usize = 100;
/// Where the table samples.
const EVERY: usize = 100_000;
/// Allowed RSS growth over the capacity.
const TARGET_RATIO: f64 = 1.1;

/// A small API response, as the layer would store it: a body of its own and two headers.
fn entry(i: usize) -> StoredValue {
    let now = SystemTime::now();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    let mut body = format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[]");
    body.extend(std::iter::repeat_n(
        ' ',
        BODY.saturating_sub(body.len() + 1),
    ));
    body.push('}');
    let times = StoredTimes::from_response(now, now, &headers);
    let entry = Entry::new(
        StatusCode::OK,
        headers,
        Bytes::from(body),
        times,
        Duration::from_secs(3600),
    );
    StoredValue::Response(Arc::new(entry))
}

struct Run {
    rows: Vec<Vec<String>>,
    max_weighted: u64,
    growth: u64,
    entries_held: u64,
    elapsed: Duration,
}

async fn run(capacity: u64) -> Run {
    let store = MemoryStore::new(capacity);
    // The baseline: the runtime, the empty store, and one round of allocations freed.
    drop((0..1_000).map(entry).collect::<Vec<_>>());
    let base = rss_bytes();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut max_weighted = 0;
    for i in 0..ENTRIES {
        let key = PrimaryKey::new("parapet:cache:", Some("acme"), 0, &format!("/items/{i}"));
        store
            .put(key.as_bytes(), entry(i), Duration::from_secs(3600))
            .await;
        if (i + 1) % EVERY == 0 {
            store.run_pending_tasks().await;
            let weighted = store.weighted_size();
            max_weighted = max_weighted.max(weighted);
            let growth = rss_bytes().saturating_sub(base);
            rows.push(vec![
                format!("{}", i + 1),
                format!("{}", store.entry_count()),
                mib(weighted),
                format!("{:.3}", weighted as f64 / capacity as f64),
                mib(growth),
                format!("{:.3}", growth as f64 / capacity as f64),
            ]);
        }
    }
    let elapsed = started.elapsed();
    store.run_pending_tasks().await;
    Run {
        rows,
        max_weighted,
        growth: rss_bytes().saturating_sub(base),
        entries_held: store.entry_count(),
        elapsed,
    }
}

/// One capacity in this process: prints its table, then a summary row as the last line.
async fn measure(capacity: u64) {
    let result = run(capacity).await;
    println!(
        "### {} capacity, {ENTRIES} distinct entries of a {BODY}-byte body\n",
        mib(capacity)
    );
    println!(
        "{}",
        table(
            &[
                "entries written",
                "entries held",
                "weighted size",
                "weighted / capacity",
                "RSS growth",
                "RSS growth / capacity",
            ],
            &result.rows,
        )
    );
    let ratio = result.growth as f64 / capacity as f64;
    let overhead = result
        .growth
        .saturating_sub((capacity as f64 * TARGET_RATIO) as u64);
    let row = [
        mib(capacity),
        format!("{}", result.entries_held),
        format!(
            "{} ({})",
            mib(result.max_weighted),
            if result.max_weighted <= capacity {
                "within"
            } else {
                "OVER"
            }
        ),
        mib(result.growth),
        format!("{ratio:.3}x"),
        if overhead == 0 {
            "none".to_owned()
        } else {
            mib(overhead)
        },
        format!("{:.1} s", result.elapsed.as_secs_f64()),
    ];
    println!("SUMMARY\t{}", row.join("\t"));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Some(capacity) = std::env::args().nth(1) {
        measure(capacity.parse().expect("a capacity in bytes")).await;
        return;
    }
    // Each capacity in a process of its own, so one run's freed memory cannot hide the next
    // one's growth.
    let mut summary = Vec::new();
    for capacity in CAPACITIES {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .arg(capacity.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8(out.stdout).unwrap();
        for line in out.lines() {
            match line.strip_prefix("SUMMARY\t") {
                Some(row) => summary.push(row.split('\t').map(str::to_owned).collect()),
                None => println!("{line}"),
            }
        }
    }
    println!("### Summary\n");
    println!(
        "{}",
        table(
            &[
                "capacity",
                "entries held at the end",
                "largest weighted size (after maintenance)",
                "RSS growth",
                "RSS growth / capacity",
                "growth beyond 1.1x",
                "time to write 1M",
            ],
            &summary,
        )
    );
    println!(
        "Target: weighted size ≤ capacity at every sample, and RSS growth ≤ {TARGET_RATIO}x the \
         capacity plus a fixed overhead (the runtime and moka's own tables, which do not grow \
         with the capacity). Each capacity runs in a process of its own; RSS is the peak the \
         allocator kept, from a baseline taken after the empty store was built."
    );
}
