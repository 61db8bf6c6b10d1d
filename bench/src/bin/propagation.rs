//! `propagation`: how long a write through one demo instance takes to reach the caches of the
//! others, for `bench/scenarios/propagation.sh` (which starts the Redis Cluster and the three
//! demo instances on 127.0.0.1).
//!
//! ```text
//! propagation --writer 127.0.0.1:A --readers 127.0.0.1:B,127.0.0.1:C [--writes 1000]
//!     [--tenant acme] [--poll-ms 1] [--deadline-ms 2000]
//! ```
//!
//! Each round: every instance serves `GET /api/leads?limit=5` from its cache (read until
//! `Cache-Status` says hit); one `POST /api/leads` through the writer; then each reader is read
//! every `--poll-ms` until its newest lead is the one just written, or the deadline passes. The
//! time from the POST's response to that read's response is the propagation time. Prints the
//! markdown table on stdout; fails when an instance answers anything but 200 / 201.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use parapet_bench::{Latencies, ms, table};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Http = Client<HttpConnector, Full<Bytes>>;

const LIST: &str = "/api/leads?limit=5";
const USAGE: &str = "usage: propagation --writer HOST:PORT --readers HOST:PORT,HOST:PORT \
    [--writes N] [--tenant T] [--poll-ms N] [--deadline-ms N]";

#[derive(Debug)]
struct Opts {
    writer: String,
    readers: Vec<String>,
    writes: usize,
    tenant: String,
    poll: Duration,
    deadline: Duration,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self, BoxError> {
        let mut opts = Self {
            writer: String::new(),
            readers: Vec::new(),
            writes: 1000,
            tenant: "acme".to_owned(),
            poll: Duration::from_millis(1),
            deadline: Duration::from_secs(2),
        };
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let value = rest
                .next()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?
                .clone();
            match flag.as_str() {
                "--writer" => opts.writer = value,
                "--readers" => opts.readers = value.split(',').map(str::to_owned).collect(),
                "--writes" => opts.writes = value.parse()?,
                "--tenant" => opts.tenant = value,
                "--poll-ms" => opts.poll = Duration::from_millis(value.parse()?),
                "--deadline-ms" => opts.deadline = Duration::from_millis(value.parse()?),
                _ => return Err(format!("unknown flag {flag}; {USAGE}").into()),
            }
        }
        if opts.writer.is_empty() || opts.readers.is_empty() {
            return Err(USAGE.into());
        }
        Ok(opts)
    }
}

/// A response: status, whether `Cache-Status` says hit, the JSON body.
struct Res {
    status: StatusCode,
    hit: bool,
    body: Value,
}

impl Res {
    fn newest(&self) -> &str {
        self.body["items"][0]["name"].as_str().unwrap_or_default()
    }
}

async fn call(
    http: &Http,
    method: Method,
    addr: &str,
    tenant: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Res, BoxError> {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(format!("http://{addr}{path}"))
        .header("x-tenant-id", tenant);
    let body = match body {
        Some(json) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(json.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let response = http.request(request.body(body)?).await?;
    let status = response.status();
    let hit = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').any(|member| member.trim() == "hit"));
    let bytes = response.into_body().collect().await?.to_bytes();
    let expected = if method == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if status != expected {
        return Err(format!(
            "{method} http://{addr}{path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )
        .into());
    }
    Ok(Res {
        status,
        hit,
        body: serde_json::from_slice(&bytes)?,
    })
}

/// Reads the list on `addr` until it is a cache hit (at most 2 s).
async fn cached(http: &Http, addr: &str, tenant: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if call(http, Method::GET, addr, tenant, LIST, None).await?.hit {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{addr}: the list is never a cache hit").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What one reader saw after one write.
struct Seen {
    /// From the POST's response to the first read showing the write (`None`: not by the deadline).
    after: Option<Duration>,
    /// Reads that still served the list from before the write.
    stale_reads: usize,
}

async fn watch(
    http: &Http,
    opts: &Opts,
    addr: &str,
    name: &str,
    written: Instant,
) -> Result<Seen, BoxError> {
    let mut stale_reads = 0;
    loop {
        let res = call(http, Method::GET, addr, &opts.tenant, LIST, None).await?;
        debug_assert_eq!(res.status, StatusCode::OK);
        if res.newest() == name {
            return Ok(Seen {
                after: Some(written.elapsed()),
                stale_reads,
            });
        }
        stale_reads += 1;
        if written.elapsed() > opts.deadline {
            return Ok(Seen {
                after: None,
                stale_reads,
            });
        }
        tokio::time::sleep(opts.poll).await;
    }
}

async fn run(opts: Opts) -> Result<(), BoxError> {
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let mut per_reader: Vec<Latencies> = vec![Latencies::default(); opts.readers.len()];
    let mut writes = Latencies::default();
    let (mut missed, mut stale_reads, mut rounds_with_stale) = (0_usize, 0_usize, 0_usize);
    let run_id = std::process::id();
    let started = Instant::now();
    for round in 0..opts.writes {
        for addr in std::iter::once(&opts.writer).chain(&opts.readers) {
            cached(&http, addr, &opts.tenant).await?;
        }
        let name = format!("Propagation lead {run_id}-{round}");
        let body = json!({ "name": name, "email": format!("p{round}@propagation.example") });
        let sent = Instant::now();
        call(
            &http,
            Method::POST,
            &opts.writer,
            &opts.tenant,
            "/api/leads",
            Some(body),
        )
        .await?;
        let written = Instant::now();
        writes.0.push(written - sent);
        let seen = futures_util::future::try_join_all(
            opts.readers
                .iter()
                .map(|addr| watch(&http, &opts, addr, &name, written)),
        )
        .await?;
        let mut stale_this_round = false;
        for (i, seen) in seen.into_iter().enumerate() {
            stale_reads += seen.stale_reads;
            stale_this_round |= seen.stale_reads > 0;
            match seen.after {
                Some(after) => per_reader[i].0.push(after),
                None => {
                    missed += 1;
                    per_reader[i].0.push(opts.deadline);
                }
            }
        }
        rounds_with_stale += usize::from(stale_this_round);
        if (round + 1) % 100 == 0 {
            eprintln!("propagation: {} writes", round + 1);
        }
    }
    let elapsed = started.elapsed();
    let all = Latencies(per_reader.iter().flat_map(|l| l.0.clone()).collect());
    let row = |what: String, l: &Latencies| {
        vec![
            what,
            l.0.len().to_string(),
            ms(l.quantile(0.5)),
            ms(l.quantile(0.99)),
            ms(l.quantile(1.0)),
        ]
    };
    let mut rows = vec![row("both readers".to_owned(), &all)];
    for (i, l) in per_reader.iter().enumerate() {
        rows.push(row(format!("reader {} alone", i + 1), l));
    }
    rows.push(row(
        "(the write itself: POST through the writer)".to_owned(),
        &writes,
    ));
    println!(
        "{}",
        table(
            &[
                "propagation after the write",
                "samples",
                "p50",
                "p99",
                "max"
            ],
            &rows
        )
    );
    let p99 = all.quantile(0.99);
    println!(
        "- {} writes in {:.1} s; target p99 ≤ 100 ms: **{}** (p99 {}); reads that did not show the write within {} ms: {missed}",
        opts.writes,
        elapsed.as_secs_f64(),
        if p99 <= Duration::from_millis(100) && missed == 0 {
            "met"
        } else {
            "not met"
        },
        ms(p99),
        opts.deadline.as_millis(),
    );
    println!(
        "- Polls that still served the list from before the write: {stale_reads} in all, in {rounds_with_stale} of the {} rounds (a round where none did saw the invalidation land before the first poll)",
        opts.writes
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts::parse(&args)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run(opts))
}
