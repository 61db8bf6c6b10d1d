//! Steady load on the demo for the chaos tests: per tenant, one writer creating leads and
//! readers of the lists a write changes, every response checked as it arrives.
//!
//! What a response must be:
//! - a write: `201`; a read: `200` whose items all belong to the tenant that asked (every lead's
//!   email is `…@<tenant>.example`, as seeded and as the writer creates them);
//! - never older than a write: a read sent after a write of its tenant was answered shows that
//!   write or a later one first (leads and activity are newest first, and the write's activity
//!   entry shares its transaction's `created_at`).
//!
//! A chaos test may accept other answers for a while (a `503` problem while PostgreSQL is
//! down): it passes an [`Accept`] rule, and whatever the rule refuses is a failure.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Router, body::Body};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A response with its body read.
#[derive(Debug)]
pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Res {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_problem(&self) -> bool {
        self.headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/problem+json")
            && self
                .json()
                .is_some_and(|b| b["status"] == self.status.as_u16())
    }

    pub fn is_hit(&self) -> bool {
        self.headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').any(|m| m.trim() == "hit"))
    }
}

/// Sends `request` through `router`, with the body read.
pub async fn send(router: &Router, request: Request<Body>) -> Res {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_else(|e| format!("<body failed: {e}>").into_bytes());
    Res {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn get(tenant: &str, uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .expect("a request")
}

pub fn post_lead(tenant: &str, name: &str, email: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/leads")
        .header("x-tenant-id", tenant)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "name": name, "email": email }).to_string(),
        ))
        .expect("a request")
}

/// The lists the writer's leads appear in (first item newest).
pub const LISTS: [&str; 3] = [
    "/api/leads?limit=5",
    "/api/leads?limit=10",
    "/api/activity?limit=5",
];

/// A write the client saw answered: `(created_at, id)` of the lead.
type Mark = (String, i64);

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent, from the load's start.
    pub sent: Duration,
    /// How long its answer took.
    pub took: Duration,
    pub status: u16,
    pub write: bool,
}

/// How a test judges an answer that is not the normal one (`201` for a write, `200` for a
/// read): `true` accepts it.
pub type Accept = Arc<dyn Fn(&Res) -> bool + Send + Sync>;

/// Refuses every answer but the normal one.
pub fn strict() -> Accept {
    Arc::new(|_| false)
}

/// Load running on the demo until [`stop`](Self::stop).
pub struct Load {
    stop: Arc<AtomicBool>,
    state: Arc<State>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    started: Option<Instant>,
    marks: Mutex<HashMap<String, Mark>>,
    failures: Mutex<Vec<String>>,
    stale: Mutex<Vec<String>>,
    samples: Mutex<Vec<Sample>>,
    writes: AtomicU64,
    reads: AtomicU64,
}

/// What the load saw.
#[derive(Debug)]
pub struct Report {
    /// Answers that were neither normal nor accepted (the first 20, with the count).
    pub failures: Vec<String>,
    pub failure_count: usize,
    /// Reads older than a write answered before they were sent, or with a foreign item.
    pub stale: Vec<String>,
    pub stale_count: usize,
    pub writes: u64,
    pub reads: u64,
    pub samples: Vec<Sample>,
    /// Each tenant's last answered write, once the load stopped.
    pub marks: Vec<(String, Option<(String, i64)>)>,
}

impl Load {
    /// Per tenant: one writer and `readers` readers (each walking [`LISTS`]), `pause` between
    /// two requests of a worker.
    pub fn start(
        router: &Router,
        tenants: &[&str],
        readers: usize,
        pause: Duration,
        accept: Accept,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            started: Some(Instant::now()),
            ..State::default()
        });
        let mut tasks = Vec::new();
        for tenant in tenants {
            let tenant = (*tenant).to_owned();
            tasks.push(tokio::spawn(writer(
                router.clone(),
                tenant.clone(),
                stop.clone(),
                state.clone(),
                pause,
                accept.clone(),
            )));
            for r in 0..readers {
                tasks.push(tokio::spawn(reader(
                    router.clone(),
                    tenant.clone(),
                    r,
                    stop.clone(),
                    state.clone(),
                    pause,
                    accept.clone(),
                )));
            }
        }
        Self { stop, state, tasks }
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.state.started.map(|s| s.elapsed()).unwrap_or_default()
    }

    /// Writes and reads answered so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.state.writes.load(Ordering::Relaxed),
            self.state.reads.load(Ordering::Relaxed),
        )
    }

    /// The last answered write of `tenant`.
    pub fn mark(&self, tenant: &str) -> Option<(String, i64)> {
        lock(&self.state.marks).get(tenant).cloned()
    }

    /// Stops the workers (each finishes its request in flight, within `limit`).
    pub async fn stop(self, limit: Duration) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            tokio::time::timeout(limit, task)
                .await
                .expect("a worker did not finish its last request in time")
                .expect("a worker panicked");
        }
        let failures = lock(&self.state.failures).clone();
        let stale = lock(&self.state.stale).clone();
        Report {
            failure_count: failures.len(),
            failures: failures.into_iter().take(20).collect(),
            stale_count: stale.len(),
            stale: stale.into_iter().take(20).collect(),
            writes: self.state.writes.load(Ordering::Relaxed),
            reads: self.state.reads.load(Ordering::Relaxed),
            samples: lock(&self.state.samples).clone(),
            marks: lock(&self.state.marks)
                .iter()
                .map(|(t, m)| (t.clone(), Some(m.clone())))
                .collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    fn record(&self, sent: Instant, took: Duration, status: StatusCode, write: bool) {
        let start = self.started.unwrap_or(sent);
        lock(&self.samples).push(Sample {
            sent: sent.saturating_duration_since(start),
            took,
            status: status.as_u16(),
            write,
        });
    }

    fn fail(&self, what: String) {
        lock(&self.failures).push(what);
    }
}

async fn writer(
    router: Router,
    tenant: String,
    stop: Arc<AtomicBool>,
    state: Arc<State>,
    pause: Duration,
    accept: Accept,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let name = format!("chaos {tenant} {n}");
        let email = format!("chaos{n}@{tenant}.example");
        let sent = Instant::now();
        let res = send(&router, post_lead(&tenant, &name, &email)).await;
        state.record(sent, sent.elapsed(), res.status, true);
        if res.status == StatusCode::CREATED {
            let body = res.json().unwrap_or_default();
            match (body["created_at"].as_str(), body["id"].as_i64()) {
                (Some(at), Some(id)) if body["email"] == email.as_str() => {
                    lock(&state.marks).insert(tenant.clone(), (at.to_owned(), id));
                    state.writes.fetch_add(1, Ordering::Relaxed);
                }
                _ => state.fail(format!("{tenant} POST: 201 with {body}")),
            }
        } else if !accept(&res) {
            state.fail(format!("{tenant} POST: {} {}", res.status, res.text()));
        }
        tokio::time::sleep(pause).await;
    }
}

async fn reader(
    router: Router,
    tenant: String,
    offset: usize,
    stop: Arc<AtomicBool>,
    state: Arc<State>,
    pause: Duration,
    accept: Accept,
) {
    let domain = format!("@{tenant}.example");
    let mut i = offset;
    while !stop.load(Ordering::Relaxed) {
        let uri = LISTS[i % LISTS.len()];
        i += 1;
        // The write the client knows of before it sends the read.
        let known = lock(&state.marks).get(&tenant).cloned();
        let sent = Instant::now();
        let res = send(&router, get(&tenant, uri)).await;
        state.record(sent, sent.elapsed(), res.status, false);
        if res.status != StatusCode::OK {
            if !accept(&res) {
                state.fail(format!("{tenant} GET {uri}: {} {}", res.status, res.text()));
            }
        } else if let Some(problem) = check_read(&res, uri, &domain, known.as_ref()) {
            let at = sent.saturating_duration_since(state.started.unwrap_or(sent));
            lock(&state.stale).push(format!(
                "{tenant} GET {uri} at {at:?} ({}): {problem}",
                res.headers
                    .get("cache-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
            ));
        } else {
            state.reads.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Why a `200` list is wrong, if it is: a foreign lead, or older than the known write.
fn check_read(res: &Res, uri: &str, domain: &str, known: Option<&Mark>) -> Option<String> {
    let Some(body) = res.json() else {
        return Some(format!("not JSON: {}", res.text()));
    };
    let Some(items) = body["items"].as_array() else {
        return Some(format!("no items: {body}"));
    };
    if uri.starts_with("/api/leads") {
        for item in items {
            let email = item["email"].as_str().unwrap_or_default();
            if !email.ends_with(domain) {
                return Some(format!("a foreign lead: {item}"));
            }
        }
    }
    let (at, id) = known?;
    let first = items.first()?;
    let first_at = first["created_at"].as_str().unwrap_or_default();
    let newer = if uri.starts_with("/api/leads") {
        (first_at, first["id"].as_i64().unwrap_or(0)) >= (at.as_str(), *id)
    } else {
        first_at >= at.as_str()
    };
    (!newer).then(|| format!("newest is {first_at} ({first}), the write before was {at} #{id}"))
}
