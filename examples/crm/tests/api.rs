//! The demo CRM API end to end: the whole parapet stack on a real PostgreSQL (and Redis), driven
//! through the router with `tower::ServiceExt::oneshot`.
//!
//! Every test has a database of its own ([`TestDb`]) and a Redis key prefix of its own, so the
//! tests run in parallel and twice in a row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::{Router, body::Body};
use example_crm::{app, setup};
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use parapet_tests::TestDb;
use serde_json::{Value, json};
use tower::ServiceExt;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const ADMIN_TOKEN: &str = "crm-test-admin-token";
const PROBLEM_JSON: &str = "application/problem+json";

/// How to build the app under test.
struct Options {
    redis_url: String,
    telemetry: bool,
    leads: u32,
    /// More variables, set after the test's own.
    vars: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redis_url: REDIS_URL.to_owned(),
            telemetry: false,
            leads: 200,
            vars: Vec::new(),
        }
    }
}

/// The app on a database of its own. The database is dropped after the router (field order).
struct TestApp {
    router: Router,
    db: TestDb,
}

/// A Redis key prefix no other test (or earlier run) uses.
fn unique_prefix(label: &str) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "parapet:crmtest:{label}:{}:{nanos}:{}:",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds the app as `main.rs` does ([`app::build`]: prepare, then the stack from variables,
/// then the router), on the test's database with its own cache prefix.
async fn start(label: &str, options: Options) -> TestApp {
    let db = TestDb::create(label).await;
    let prefix = unique_prefix(label);
    // The demo's quotas are on: their buckets in Redis are the test's own too.
    let quota_prefix = format!("{prefix}quota:");
    let vars = [
        ("DATABASE_URL", db.url()),
        (
            "PARAPET_TELEMETRY",
            if options.telemetry { "on" } else { "off" },
        ),
        ("REDIS_URL", options.redis_url.as_str()),
        ("PARAPET_CACHE_PREFIX", prefix.as_str()),
        ("PARAPET_QUOTA_PREFIX", quota_prefix.as_str()),
        ("PARAPET_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let vars = vars
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into_iter()
        .chain(options.vars.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let demo = app::build(vars, options.leads)
        .await
        .unwrap_or_else(|e| panic!("the demo did not start: {e}"));
    assert!(
        demo.database_url.contains(setup::APP_ROLE),
        "the API connects as {} ({})",
        setup::APP_ROLE,
        demo.database_url
    );
    TestApp {
        router: demo.router,
        db,
    }
}

/// A response with its body read.
#[derive(Debug)]
struct Res {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn cache_status(&self) -> String {
        self.headers
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    fn is_hit(&self) -> bool {
        self.cache_status()
            .split(';')
            .any(|member| member.trim() == "hit")
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }

    /// Asserts an RFC 9457 problem with `status`.
    #[track_caller]
    fn assert_problem(&self, status: StatusCode, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.text());
        assert_eq!(self.content_type(), PROBLEM_JSON, "{what}: {}", self.text());
        let body = self.json();
        assert_eq!(body["status"], status.as_u16(), "{what}: {body}");
        assert!(body["type"].is_string(), "{what}: {body}");
        assert!(body["title"].is_string(), "{what}: {body}");
    }

    #[track_caller]
    fn assert_ok(&self, what: &str) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{what}: {}", self.text());
        self.json()
    }
}

impl TestApp {
    async fn send(&self, req: Request<Body>) -> Res {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        Res {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET uri` for the tenant named by `X-Tenant-Id`.
    async fn get(&self, tenant: &str, uri: &str) -> Res {
        self.send(
            Request::get(uri)
                .header("x-tenant-id", tenant)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `method uri` with a JSON body for the tenant named by `X-Tenant-Id`.
    async fn send_json(&self, method: Method, tenant: &str, uri: &str, body: &Value) -> Res {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header("x-tenant-id", tenant)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Every lead of the tenant, walking `next_cursor` with `limit=50`; asserts the order.
    async fn all_leads(&self, request: impl Fn(&str) -> Request<Body>) -> Vec<Value> {
        let mut items: Vec<Value> = Vec::new();
        let mut uri = "/api/leads?limit=50".to_owned();
        for _ in 0..100 {
            let page = self.send(request(&uri)).await.assert_ok(&uri);
            let batch = page["items"].as_array().unwrap();
            assert!(batch.len() <= 50, "{uri}: {} items", batch.len());
            items.extend(batch.iter().cloned());
            match &page["next_cursor"] {
                Value::Null => return items,
                Value::String(cursor) => {
                    assert_eq!(batch.len(), 50, "a page with a next cursor is full");
                    uri = format!("/api/leads?limit=50&cursor={cursor}");
                }
                other => panic!("next_cursor is {other}"),
            }
        }
        panic!("the cursor never ran out")
    }
}

fn created_at(item: &Value) -> &str {
    item["created_at"].as_str().unwrap()
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

/// Asserts newest first (timestamps are fixed-width UTC, so they compare as strings).
#[track_caller]
fn assert_newest_first(items: &[Value]) {
    for pair in items.windows(2) {
        assert!(
            created_at(&pair[0]) >= created_at(&pair[1]),
            "not newest first: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

fn by_header(tenant: &'static str) -> impl Fn(&str) -> Request<Body> {
    move |uri| {
        Request::get(uri)
            .header("x-tenant-id", tenant)
            .body(Body::empty())
            .unwrap()
    }
}

fn by_host(host: &'static str) -> impl Fn(&str) -> Request<Body> {
    move |uri| {
        Request::get(uri)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_are_paged_newest_first_and_every_lead_comes_once() {
    let app = start("crm_leads", Options::default()).await;

    // The first page is the newest leads.
    let first = app.get("acme", "/api/leads").await.assert_ok("first page");
    let first_items = first["items"].as_array().unwrap();
    assert_eq!(first_items.len(), 20, "the default limit is 20");
    assert_newest_first(first_items);
    assert!(first["next_cursor"].is_string());

    for (tenant, request) in [
        (
            "acme",
            Box::new(by_header("acme")) as Box<dyn Fn(&str) -> _>,
        ),
        ("globex", Box::new(by_host("globex.localhost"))),
    ] {
        let items = app.all_leads(request).await;
        assert_eq!(items.len(), 200, "{tenant}: every seeded lead");
        let unique: HashSet<i64> = ids(&items).into_iter().collect();
        assert_eq!(unique.len(), 200, "{tenant}: no lead twice");
        assert_newest_first(&items);
        let domain = format!("@{tenant}.example");
        for item in &items {
            let email = item["email"].as_str().unwrap();
            assert!(email.ends_with(&domain), "{tenant} sees {email}");
        }
        // Exactly the tenant's leads, as the superuser sees them.
        let client = app.db.client().await;
        let expected: HashSet<i64> = client
            .query("SELECT id FROM leads WHERE org_id = $1", &[&tenant])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(unique, expected, "{tenant}");
        if tenant == "acme" {
            assert_eq!(
                ids(&items[..20]),
                ids(first_items),
                "the walk starts at page 1"
            );
        }
    }

    // The host with a port names the tenant too; the apex host names none.
    let res = app
        .send(by_host("globex.localhost:3000")("/api/leads?limit=1"))
        .await;
    let body = res.assert_ok("host with port");
    assert!(
        body["items"][0]["email"]
            .as_str()
            .unwrap()
            .ends_with("@globex.example")
    );
    app.send(by_host("localhost")("/api/leads?limit=1"))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "apex host, no header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_records() {
    let app = start(
        "crm_isolation",
        Options {
            telemetry: true,
            ..Options::default()
        },
    )
    .await;

    let lead = json!({
        "name": "Ada Isolation",
        "email": "ada.isolation@acme-private.example",
        "company": "Analytical Engines",
    });
    let res = app
        .send_json(Method::POST, "acme", "/api/leads", &lead)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let created = res.json();
    let lead_id = created["id"].as_i64().unwrap();
    let location = res.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/leads/{lead_id}"));
    assert_eq!(created["name"], "Ada Isolation");
    assert_eq!(created["status"], "new");

    let mine = app
        .get("acme", &location)
        .await
        .assert_ok("acme's own lead");
    assert_eq!(mine["id"], lead_id);
    assert_eq!(mine["email"], "ada.isolation@acme-private.example");
    app.get("globex", &location)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "acme's lead for globex");
    // By host too.
    app.send(by_host("globex.localhost")(&location))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "acme's lead for globex by host");

    // globex's lists never carry acme's lead, nor any acme data.
    let globex_leads = app.all_leads(by_header("globex")).await;
    assert_eq!(globex_leads.len(), 200);
    for item in &globex_leads {
        assert_ne!(item["id"], lead_id);
        assert_ne!(item["name"], "Ada Isolation");
        let email = item["email"].as_str().unwrap();
        assert!(!email.contains("acme"), "globex sees {email}");
    }
    let activity = app
        .get("globex", "/api/activity?limit=100")
        .await
        .assert_ok("globex activity");
    for item in activity["items"].as_array().unwrap() {
        assert!(
            !(item["subject_type"] == "lead" && item["subject_id"] == lead_id),
            "globex sees acme's activity: {item}"
        );
    }
    let acme_activity = app
        .get("acme", "/api/activity?limit=5")
        .await
        .assert_ok("acme activity");
    assert_eq!(acme_activity["items"][0]["subject_id"], lead_id);
    assert_eq!(acme_activity["items"][0]["action"], "created");

    // Billing events: acme's subscription ids never show up for globex.
    let subs = app
        .get("acme", "/api/subscription")
        .await
        .assert_ok("acme subscription");
    assert_eq!(subs["tenant"], "acme");
    let acme_subs: HashSet<i64> = subs["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    let globex_billing = app
        .get("globex", "/api/billing/events?limit=100")
        .await
        .assert_ok("globex billing");
    let globex_billing = globex_billing["items"].as_array().unwrap();
    assert_eq!(globex_billing.len(), 20, "globex's own events");
    for event in globex_billing {
        let sub = event["subscription_id"].as_i64().unwrap();
        assert!(
            !acme_subs.contains(&sub),
            "globex sees acme's event {event}"
        );
    }

    // A deal of globex cannot point at acme's lead.
    let res = app
        .send_json(
            Method::POST,
            "globex",
            "/api/deals",
            &json!({ "title": "Stolen lead", "amount": 100, "lead_id": lead_id }),
        )
        .await;
    res.assert_problem(StatusCode::BAD_REQUEST, "globex deal on acme's lead");
    let stolen = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM deals WHERE title = 'Stolen lead'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(stolen, 0, "nothing was inserted");

    // acme's deal on its own lead; globex can neither read nor change it.
    let res = app
        .send_json(
            Method::POST,
            "acme",
            "/api/deals",
            &json!({ "title": "Engine order", "amount": 125_000, "lead_id": lead_id, "stage": "proposal" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let deal = res.json();
    let deal_id = deal["id"].as_i64().unwrap();
    assert_eq!(deal["lead_id"], lead_id);
    let deal_uri = res.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(deal_uri, format!("/api/deals/{deal_id}"));

    app.get("globex", &deal_uri)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "acme's deal for globex");
    app.send_json(
        Method::PATCH,
        "globex",
        &deal_uri,
        &json!({ "stage": "lost", "amount": 1, "title": "Hijacked" }),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "globex PATCH of acme's deal");
    let after = app.get("acme", &deal_uri).await.assert_ok("acme's deal");
    assert_eq!(after, deal, "the deal is unchanged");
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT title, stage, amount, org_id FROM deals WHERE id = $1",
            &[&deal_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Engine order");
    assert_eq!(row.get::<_, String>(1), "proposal");
    assert_eq!(row.get::<_, i64>(2), 125_000);
    assert_eq!(row.get::<_, String>(3), "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_serves_repeats_and_writes_purge_their_lists() {
    let app = start("crm_cache", Options::default()).await;

    let first = app.get("acme", "/api/leads?limit=5").await;
    first.assert_ok("first");
    assert!(!first.is_hit(), "{}", first.cache_status());
    let second = app.get("acme", "/api/leads?limit=5").await;
    assert!(second.is_hit(), "{}", second.cache_status());
    assert_eq!(first.json(), second.json());
    // Another query variant of the same list, cached too.
    app.get("acme", "/api/leads?limit=7")
        .await
        .assert_ok("limit=7");
    assert!(app.get("acme", "/api/leads?limit=7").await.is_hit());
    // globex's copy of the same URI is its own.
    let globex = app.get("globex", "/api/leads?limit=5").await;
    assert!(!globex.is_hit(), "{}", globex.cache_status());
    assert_ne!(globex.json(), first.json());
    assert!(app.get("globex", "/api/leads?limit=5").await.is_hit());

    let res = app
        .send_json(
            Method::POST,
            "acme",
            "/api/leads",
            &json!({ "name": "Grace Cached", "email": "grace@acme.example" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let new_id = res.json()["id"].as_i64().unwrap();

    for uri in ["/api/leads?limit=5", "/api/leads?limit=7"] {
        let after = app.get("acme", uri).await;
        let body = after.assert_ok(uri);
        assert!(
            !after.is_hit(),
            "{uri} after a write: {}",
            after.cache_status()
        );
        assert_eq!(body["items"][0]["id"], new_id, "{uri}: {body}");
        assert_eq!(body["items"][0]["name"], "Grace Cached");
    }
    // The write purged acme's entries only.
    assert!(app.get("globex", "/api/leads?limit=5").await.is_hit());

    // Deals: a deal moved into `won` shows up in the cached `won` list.
    let won_uri = "/api/deals?stage=won&limit=100";
    let won = app.get("acme", won_uri).await.assert_ok("won deals");
    assert!(app.get("acme", won_uri).await.is_hit());
    let won_ids: HashSet<i64> = ids(won["items"].as_array().unwrap()).into_iter().collect();
    assert!(!won_ids.is_empty());
    for item in won["items"].as_array().unwrap() {
        assert_eq!(item["stage"], "won");
    }
    let lost = app
        .get("acme", "/api/deals?stage=lost&limit=1")
        .await
        .assert_ok("lost deals");
    let deal = &lost["items"][0];
    let deal_id = deal["id"].as_i64().unwrap();
    assert!(!won_ids.contains(&deal_id));
    let patched = app
        .send_json(
            Method::PATCH,
            "acme",
            &format!("/api/deals/{deal_id}"),
            &json!({ "stage": "won" }),
        )
        .await
        .assert_ok("PATCH into won");
    assert_eq!(patched["stage"], "won");
    assert_eq!(patched["amount"], deal["amount"]);
    assert_eq!(patched["title"], deal["title"]);

    let after = app.get("acme", won_uri).await;
    let body = after.assert_ok("won after PATCH");
    assert!(!after.is_hit(), "{}", after.cache_status());
    let after_ids: HashSet<i64> = ids(body["items"].as_array().unwrap()).into_iter().collect();
    assert!(after_ids.contains(&deal_id), "{body}");
    assert_eq!(after_ids.len(), won_ids.len() + 1);
    // And the `lost` list no longer has it.
    let lost_after = app
        .get("acme", "/api/deals?stage=lost&limit=100")
        .await
        .assert_ok("lost after");
    assert!(!ids(lost_after["items"].as_array().unwrap()).contains(&deal_id));
    // The single deal reflects it too.
    let one = app
        .get("acme", &format!("/api/deals/{deal_id}"))
        .await
        .assert_ok("the deal");
    assert_eq!(one["stage"], "won");
}

fn raw(method: Method, uri: &str, tenant: Option<&[u8]>) -> http::request::Builder {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(tenant) = tenant {
        builder = builder.header("x-tenant-id", HeaderValue::from_bytes(tenant).unwrap());
    }
    builder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_problem_never_a_server_error() {
    let app = start("crm_bad", Options::default()).await;
    let acme: Option<&[u8]> = Some(b"acme");
    let mut seen = 0;

    // Query strings.
    for (uri, status) in [
        ("/api/leads?cursor=garbage", StatusCode::BAD_REQUEST),
        ("/api/leads?cursor=1.x", StatusCode::BAD_REQUEST),
        ("/api/leads?cursor=", StatusCode::BAD_REQUEST),
        ("/api/deals?cursor=abc.def", StatusCode::BAD_REQUEST),
        ("/api/activity?cursor=..", StatusCode::BAD_REQUEST),
        ("/api/leads?limit=0", StatusCode::BAD_REQUEST),
        ("/api/leads?limit=1000", StatusCode::BAD_REQUEST),
        ("/api/leads?limit=-1", StatusCode::BAD_REQUEST),
        ("/api/leads?limit=abc", StatusCode::BAD_REQUEST),
        (
            "/api/leads?limit=99999999999999999999",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/deals?limit=101", StatusCode::BAD_REQUEST),
        ("/api/leads?foo=1", StatusCode::BAD_REQUEST),
        ("/api/leads?limit=5&limit=6", StatusCode::BAD_REQUEST),
        ("/api/deals?stage=bogus", StatusCode::BAD_REQUEST),
        ("/api/deals?stage=", StatusCode::BAD_REQUEST),
        ("/api/billing/events?type=%01", StatusCode::BAD_REQUEST),
        (
            "/api/billing/events?subscription_id=x",
            StatusCode::BAD_REQUEST,
        ),
        // A malformed id is the client's error; a well-formed one the tenant lacks is a 404.
        ("/api/leads/abc", StatusCode::BAD_REQUEST),
        ("/api/leads/0", StatusCode::BAD_REQUEST),
        ("/api/leads/-5", StatusCode::BAD_REQUEST),
        ("/api/leads/99999999999999999999", StatusCode::BAD_REQUEST),
        ("/api/leads/987654321", StatusCode::NOT_FOUND),
        ("/api/deals/1e3", StatusCode::BAD_REQUEST),
        ("/api/nope", StatusCode::NOT_FOUND),
        ("/nope", StatusCode::NOT_FOUND),
    ] {
        let res = app
            .send(raw(Method::GET, uri, acme).body(Body::empty()).unwrap())
            .await;
        res.assert_problem(status, uri);
        assert!(!res.is_hit(), "{uri}: an error is not served from cache");
        seen += 1;
    }
    // Twice: an error response was not cached into a success or vice versa.
    app.get("acme", "/api/leads?limit=0")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "limit=0 again");

    // Bodies.
    let huge_name = "x".repeat(70 * 1024);
    let too_large = json!({ "name": huge_name }).to_string();
    let bodies: Vec<(&str, &str, Option<&str>, String, StatusCode)> = vec![
        (
            "invalid JSON",
            "/api/leads",
            Some("application/json"),
            "{\"name\": ".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "not an object",
            "/api/leads",
            Some("application/json"),
            "[1,2]".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            "/api/leads",
            Some("application/json"),
            json!({ "name": "A", "admin": true }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing name",
            "/api/leads",
            Some("application/json"),
            json!({ "email": "a@b.example" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong content type",
            "/api/leads",
            Some("text/plain"),
            json!({ "name": "A" }).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no content type",
            "/api/leads",
            None,
            json!({ "name": "A" }).to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "body over 64 KiB",
            "/api/leads",
            Some("application/json"),
            too_large,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "empty name",
            "/api/leads",
            Some("application/json"),
            json!({ "name": "" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "blank name",
            "/api/leads",
            Some("application/json"),
            json!({ "name": "   " }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "control characters",
            "/api/leads",
            Some("application/json"),
            json!({ "name": "Ada\u{0}Lovelace" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "newline in name",
            "/api/leads",
            Some("application/json"),
            json!({ "name": "Ada\nLovelace" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "name too long",
            "/api/leads",
            Some("application/json"),
            json!({ "name": "n".repeat(201) }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad email",
            "/api/leads",
            Some("application/json"),
            json!({ "name": "A", "email": "nope" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad status",
            "/api/leads",
            Some("application/json"),
            json!({ "name": "A", "status": "hot" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "negative amount",
            "/api/deals",
            Some("application/json"),
            json!({ "title": "T", "amount": -1 }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "amount too large",
            "/api/deals",
            Some("application/json"),
            json!({ "title": "T", "amount": i64::MAX }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "amount not an integer",
            "/api/deals",
            Some("application/json"),
            json!({ "title": "T", "amount": 1.5 }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "amount overflows",
            "/api/deals",
            Some("application/json"),
            "{\"title\":\"T\",\"amount\":99999999999999999999}".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad stage",
            "/api/deals",
            Some("application/json"),
            json!({ "title": "T", "amount": 1, "stage": "bogus" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad currency",
            "/api/deals",
            Some("application/json"),
            json!({ "title": "T", "amount": 1, "currency": "usd" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown lead",
            "/api/deals",
            Some("application/json"),
            json!({ "title": "T", "amount": 1, "lead_id": 987_654_321 }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, uri, content_type, body, status) in bodies {
        let mut builder = raw(Method::POST, uri, acme);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let res = app.send(builder.body(Body::from(body)).unwrap()).await;
        res.assert_problem(status, what);
        seen += 1;
    }
    // PATCH bodies.
    let deal = app
        .get("acme", "/api/deals?limit=1")
        .await
        .assert_ok("a deal");
    let deal_uri = format!("/api/deals/{}", deal["items"][0]["id"]);
    for (what, body, status) in [
        ("empty change", json!({}), StatusCode::BAD_REQUEST),
        (
            "negative amount",
            json!({ "amount": -5 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad stage",
            json!({ "stage": "bogus" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty title",
            json!({ "title": "" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            json!({ "org_id": "globex" }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        app.send_json(Method::PATCH, "acme", &deal_uri, &body)
            .await
            .assert_problem(status, what);
        seen += 1;
    }
    app.send_json(
        Method::PATCH,
        "acme",
        "/api/deals/abc",
        &json!({ "stage": "won" }),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "PATCH of a non-numeric id");
    // Nothing of the above was written.
    let client = app.db.client().await;
    let leads: i64 = client
        .query_one("SELECT count(*) FROM leads", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leads, 400, "no bad lead was stored");
    let deals: i64 = client
        .query_one("SELECT count(*) FROM deals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(deals, 100, "no bad deal was stored");

    // Tenants: missing, unknown, hostile.
    let res = app
        .send(
            raw(Method::GET, "/api/leads", None)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    res.assert_problem(StatusCode::BAD_REQUEST, "no tenant");
    assert_eq!(res.json()["type"], "urn:parapet:problem:tenant-missing");
    let res = app.get("nosuch", "/api/leads").await;
    res.assert_problem(StatusCode::NOT_FOUND, "unknown tenant");
    assert!(
        !res.text().contains("nosuch"),
        "the detail never echoes the client's value: {}",
        res.text()
    );
    let long = "a".repeat(10_000);
    let hostile: [&[u8]; 12] = [
        b"../etc",
        b"acme/../globex",
        long.as_bytes(),
        b"acme\xff",
        b"\xc3\xa4cme",
        b"acme\t",
        b"ac me",
        b"'; DROP TABLE leads; --",
        b"%00",
        b"ACME",
        b"-acme",
        b"acme.globex",
    ];
    for value in hostile {
        let what = format!("tenant {:?}", String::from_utf8_lossy(value));
        let res = app
            .send(
                raw(Method::GET, "/api/leads", Some(value))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(
            res.status.is_client_error(),
            "{what}: {} {}",
            res.status,
            res.text()
        );
        assert_eq!(res.content_type(), PROBLEM_JSON, "{what}");
        seen += 1;
    }
    // A NUL byte cannot even be put into a header value.
    assert!(HeaderValue::from_bytes(b"acme\0").is_err());
    // Two copies of the header, or a header and a host that disagree: ambiguous.
    let res = app
        .send(
            Request::get("/api/leads")
                .header("x-tenant-id", "acme")
                .header("x-tenant-id", "globex")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    res.assert_problem(StatusCode::BAD_REQUEST, "two tenant headers");
    let res = app
        .send(
            Request::get("/api/leads")
                .header("x-tenant-id", "acme")
                .header(header::HOST, "globex.localhost")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    res.assert_problem(StatusCode::BAD_REQUEST, "header and host disagree");
    for host in [
        "evil.example",
        "a.b.localhost",
        "acme@globex.localhost",
        "nosuch.localhost",
        "..localhost",
    ] {
        let res = app.send(by_host(host)("/api/leads")).await;
        assert!(
            res.status.is_client_error(),
            "host {host}: {} {}",
            res.status,
            res.text()
        );
        assert_eq!(res.content_type(), PROBLEM_JSON, "host {host}");
        seen += 1;
    }

    // The server still answers normally afterwards.
    let ok = app.get("acme", "/api/leads?limit=1").await;
    ok.assert_ok("after the abuse");
    assert!(seen > 60, "{seen} bad requests were sent");
}

/// `GET /api/leads?limit=5` for `tenant` with `no-cache`: each one reaches the handler, so each
/// costs a whole request of the tenant's quota.
fn uncached(tenant: &str) -> Request<Body> {
    Request::get("/api/leads?limit=5")
        .header("x-tenant-id", tenant)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::empty())
        .unwrap()
}

/// The demo runs with the quota layer on and the default per-plan limits: globex (`free`,
/// 20/s with a burst of 40) is refused once its burst is spent, acme (`pro`, 200/s:400) is not,
/// and globex's refusals take nothing from acme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_limits_each_tenant_by_its_plan() {
    let app = start("crm_quota", Options::default()).await;
    // A fresh bucket allows the whole burst at once.
    for n in 1..=40 {
        let res = app.send(uncached("globex")).await;
        res.assert_ok(&format!("globex, request {n} of its burst"));
        assert_eq!(res.headers["ratelimit-policy"], "\"free\";q=40;w=2");
    }
    // Then one request per 50 ms: 300 more requests taking under 13 s cannot all pass.
    let mut refused = None;
    for _ in 0..300 {
        let res = app.send(uncached("globex")).await;
        if res.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(res);
            break;
        }
        res.assert_ok("globex beyond its burst");
    }
    let refused = refused.expect("globex (free plan) was never refused beyond its burst");
    assert_eq!(refused.headers[header::CONTENT_TYPE], PROBLEM_JSON);
    assert_eq!(
        refused.json()["type"],
        "urn:parapet:problem:quota-exceeded",
        "{}",
        refused.text()
    );
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(refused.headers["ratelimit-policy"], "\"free\";q=40;w=2");
    assert!(
        !refused.text().contains("acme"),
        "a refusal names no other tenant: {}",
        refused.text()
    );
    // acme's plan is its own: 100 uncached requests right after are all answered.
    for n in 1..=100 {
        let res = app.send(uncached("acme")).await;
        res.assert_ok(&format!("acme, request {n}, while globex is refused"));
        assert_eq!(res.headers["ratelimit-policy"], "\"pro\";q=400;w=2");
    }
}

/// `PARAPET_QUOTA_REFUSAL_DELAY_MS` reaches the demo's quota layer: a refusal is answered that
/// late, and another tenant's requests are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_paces_refusals_when_asked() {
    let delay = std::time::Duration::from_millis(400);
    let options = Options {
        vars: vec![
            ("PARAPET_QUOTA_TENANTS", "globex=1/h".to_owned()),
            (
                "PARAPET_QUOTA_REFUSAL_DELAY_MS",
                delay.as_millis().to_string(),
            ),
        ],
        ..Options::default()
    };
    let app = start("crm_quota_pacing", options).await;
    app.send(uncached("globex"))
        .await
        .assert_ok("globex's one request");
    let start = std::time::Instant::now();
    let refused = app.send(uncached("globex")).await;
    let elapsed = start.elapsed();
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text()
    );
    assert_eq!(refused.headers[header::CONTENT_TYPE], PROBLEM_JSON);
    // The first refusal held is held the whole delay (later ones half of it to all of it).
    assert!(
        elapsed >= delay,
        "the refusal was answered after {elapsed:?}"
    );
    assert_eq!(refused.headers["ratelimit-policy"], "\"tenant\";q=1;w=3600");
    // acme is not refused, so not held.
    app.send(uncached("acme"))
        .await
        .assert_ok("acme while globex is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_report_postgres_and_redis() {
    let app = start(
        "crm_probes",
        Options {
            telemetry: true,
            ..Options::default()
        },
    )
    .await;
    let res = app
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(res.assert_ok("healthz"), json!({ "status": "ok" }));
    let res = app
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    let body = res.assert_ok("readyz");
    assert_eq!(body["postgres"], "up", "{body}");
    assert_eq!(body["redis"], "up", "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_api_is_degraded_not_down() {
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let app = start(
        "crm_noredis",
        Options {
            redis_url: format!("redis://127.0.0.1:{port}"),
            ..Options::default()
        },
    )
    .await;
    let res = app
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    let body = res.assert_ok("readyz without redis");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["postgres"], "up", "{body}");
    assert_eq!(body["redis"], "down", "{body}");

    // Reads and writes still work; the cache fails open.
    for _ in 0..3 {
        let page = app
            .get("acme", "/api/leads?limit=5")
            .await
            .assert_ok("a read without redis");
        assert_eq!(page["items"].as_array().unwrap().len(), 5);
    }
    let res = app
        .send_json(
            Method::POST,
            "acme",
            "/api/leads",
            &json!({ "name": "Offline Olga" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let page = app
        .get("acme", "/api/leads?limit=5")
        .await
        .assert_ok("read after write");
    assert_eq!(page["items"][0]["name"], "Offline Olga", "{page}");
    app.send(by_host("globex.localhost")("/api/deals?stage=won"))
        .await
        .assert_ok("globex without redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_purge_needs_the_token_and_purges_the_tenant() {
    let app = start("crm_admin", Options::default()).await;
    let purge = |token: Option<&str>| {
        let mut builder = Request::post("/admin/cache/tenant/acme");
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(Body::empty()).unwrap()
    };

    app.send(purge(None))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "no token");
    app.send(purge(Some("wrong-token")))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "wrong token");
    let res = app
        .send(
            Request::post("/admin/cache/tenant/acme")
                .header(header::AUTHORIZATION, ADMIN_TOKEN)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    res.assert_problem(StatusCode::UNAUTHORIZED, "token without Bearer");

    for uri in ["/api/leads?limit=3", "/api/subscription"] {
        app.get("acme", uri).await.assert_ok(uri);
        assert!(app.get("acme", uri).await.is_hit(), "{uri} is cached");
    }
    app.get("globex", "/api/leads?limit=3")
        .await
        .assert_ok("globex");
    assert!(app.get("globex", "/api/leads?limit=3").await.is_hit());

    let res = app.send(purge(Some(ADMIN_TOKEN))).await;
    let body = res.assert_ok("purge");
    assert_eq!(body, json!({ "purged": 1 }));

    for uri in ["/api/leads?limit=3", "/api/subscription"] {
        let res = app.get("acme", uri).await;
        res.assert_ok(uri);
        assert!(!res.is_hit(), "{uri} after purge: {}", res.cache_status());
        assert!(app.get("acme", uri).await.is_hit(), "{uri} is stored again");
    }
    let res = app.get("globex", "/api/leads?limit=3").await;
    assert!(
        res.is_hit(),
        "another tenant keeps its entries: {}",
        res.cache_status()
    );

    // The admin routes answer problems for what they do not know.
    let res = app
        .send(
            Request::post("/admin/cache/tenant/..%2Fetc")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(res.status.is_client_error(), "{}", res.status);
    assert_eq!(res.content_type(), PROBLEM_JSON);
}

const JWT_SECRET: &str = "crm-test-jwt-secret-of-32-bytes-at-least";

/// `Bearer <token>` for `tenant`, signed with [`JWT_SECRET`] for audience `crm`.
fn bearer(tenant: &str) -> String {
    let claims = json!({
        "tenant_id": tenant,
        "aud": "crm",
        "iss": "https://auth.crm.test",
        "exp": jsonwebtoken::get_current_timestamp() + 600,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    format!("Bearer {token}")
}

/// With `PARAPET_TENANT_JWT_SECRET` the token names the tenant: a header or a subdomain alone
/// is 401, and one naming another tenant than the token is refused. (That the header is off by
/// default beside a JWT is `parapet::EnvConfig`'s test; here it is turned on explicitly.)
#[tokio::test]
async fn with_a_jwt_secret_a_request_needs_a_token_for_its_tenant() {
    let app = start(
        "crm_jwt",
        Options {
            leads: 20,
            vars: vec![
                ("PARAPET_TENANT_JWT_SECRET", JWT_SECRET.to_owned()),
                ("PARAPET_TENANT_JWT_AUDIENCE", "crm".to_owned()),
                (
                    "PARAPET_TENANT_JWT_ISSUER",
                    "https://auth.crm.test".to_owned(),
                ),
                ("PARAPET_TENANT_HEADER", "x-tenant-id".to_owned()),
            ],
            ..Options::default()
        },
    )
    .await;
    let request = |headers: &[(&str, &str)], uri: &str| {
        let mut builder = Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    };
    let (acme, globex) = (bearer("acme"), bearer("globex"));

    for (what, headers) in [
        (
            "X-Tenant-Id without a token",
            &[("x-tenant-id", "globex")][..],
        ),
        (
            "a subdomain without a token",
            &[("host", "globex.localhost")][..],
        ),
        ("nothing", &[][..]),
        (
            "a forged token",
            &[("authorization", "Bearer e30.e30.e30")][..],
        ),
    ] {
        let res = app.send(request(headers, "/api/leads?limit=3")).await;
        res.assert_problem(StatusCode::UNAUTHORIZED, what);
        assert_eq!(res.headers[header::WWW_AUTHENTICATE], "Bearer", "{what}");
    }
    for (what, headers) in [
        (
            "a token for acme with X-Tenant-Id: globex",
            &[("authorization", acme.as_str()), ("x-tenant-id", "globex")][..],
        ),
        (
            "a token for acme on globex's subdomain",
            &[
                ("authorization", acme.as_str()),
                ("host", "globex.localhost"),
            ][..],
        ),
    ] {
        app.send(request(headers, "/api/leads?limit=3"))
            .await
            .assert_problem(StatusCode::FORBIDDEN, what);
    }
    let page = app
        .send(request(
            &[("authorization", &acme), ("host", "acme.localhost")],
            "/api/leads?limit=3",
        ))
        .await
        .assert_ok("a token for acme on acme's subdomain");
    assert_eq!(page["items"].as_array().unwrap().len(), 3);

    // A lead written with acme's token is acme's: globex's token cannot read it, cached or not.
    let res = app
        .send(
            Request::post("/api/leads")
                .header(header::AUTHORIZATION, &acme)
                .header("x-tenant-id", "acme")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({ "name": "Jwt Lead", "email": "jwt@acme.example" }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let location = res.headers[header::LOCATION].to_str().unwrap().to_owned();
    for _ in 0..2 {
        let lead = app
            .send(request(&[("authorization", &acme)], &location))
            .await
            .assert_ok("acme's lead with acme's token");
        assert_eq!(lead["email"], "jwt@acme.example");
    }
    app.send(request(&[("authorization", &globex)], &location))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "acme's lead with globex's token");
    app.send(request(
        &[("authorization", &globex), ("x-tenant-id", "acme")],
        &location,
    ))
    .await
    .assert_problem(StatusCode::FORBIDDEN, "globex's token naming acme");
}

async fn counts(db: &TestDb) -> HashMap<(&'static str, &'static str), i64> {
    let client = db.client().await;
    let mut out = HashMap::new();
    for (tenant, _, _, _) in setup::TENANTS {
        for (table, sql) in [
            ("leads", "SELECT count(*) FROM leads WHERE org_id = $1"),
            ("deals", "SELECT count(*) FROM deals WHERE org_id = $1"),
            (
                "collab_activity",
                "SELECT count(*) FROM collab_activity WHERE tenant_id = $1",
            ),
            (
                "billing_events",
                "SELECT count(*) FROM billing_events b JOIN tenant_subscriptions s \
                 ON s.id = b.subscription_id WHERE s.tenant_id = $1",
            ),
            (
                "tenant_subscriptions",
                "SELECT count(*) FROM tenant_subscriptions WHERE tenant_id = $1",
            ),
            ("tenants", "SELECT count(*) FROM tenants WHERE id = $1"),
        ] {
            let n: i64 = client.query_one(sql, &[&tenant]).await.unwrap().get(0);
            out.insert((tenant, table), n);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_is_idempotent_and_tops_up() {
    let db = TestDb::create("crm_seed").await;
    let first_url = setup::prepare(db.url(), None, 200).await.unwrap();
    let first = counts(&db).await;
    for tenant in ["acme", "globex"] {
        assert_eq!(first[&(tenant, "leads")], 200, "{tenant}");
        assert_eq!(first[&(tenant, "deals")], 50, "{tenant}");
        assert_eq!(first[&(tenant, "collab_activity")], 100, "{tenant}");
        assert_eq!(first[&(tenant, "billing_events")], 20, "{tenant}");
        assert_eq!(first[&(tenant, "tenants")], 1, "{tenant}");
    }
    assert_eq!(first[&("acme", "tenant_subscriptions")], 3);
    assert_eq!(first[&("globex", "tenant_subscriptions")], 1);

    let second_url = setup::prepare(db.url(), None, 200).await.unwrap();
    assert_eq!(first_url, second_url);
    assert_eq!(counts(&db).await, first, "a second run adds nothing");
    // A smaller target removes nothing.
    setup::prepare(db.url(), None, 100).await.unwrap();
    assert_eq!(counts(&db).await, first, "a smaller run removes nothing");

    setup::prepare(db.url(), None, 300).await.unwrap();
    let topped = counts(&db).await;
    for tenant in ["acme", "globex"] {
        assert_eq!(topped[&(tenant, "leads")], 300, "{tenant}");
        assert_eq!(topped[&(tenant, "deals")], 75, "{tenant}");
        assert_eq!(topped[&(tenant, "collab_activity")], 150, "{tenant}");
        assert_eq!(topped[&(tenant, "billing_events")], 30, "{tenant}");
        assert_eq!(
            topped[&(tenant, "tenant_subscriptions")],
            first[&(tenant, "tenant_subscriptions")]
        );
    }
    // The top-up numbered on: no seeded name twice.
    let client = db.client().await;
    let dupes: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT org_id, name FROM leads GROUP BY 1, 2 \
             HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dupes, 0);
    setup::prepare(db.url(), None, 300).await.unwrap();
    assert_eq!(counts(&db).await, topped);

    // The app role sees only a tenant's rows once the tenant is set, and none without.
    let app = setup::connect(&first_url.parse::<parapet_postgres::PgConfig>().unwrap())
        .await
        .unwrap();
    let none: i64 = app
        .query_one("SELECT count(*) FROM leads", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, 0, "row-level security fails closed for the app role");
    app.batch_execute("SET app.tenant_id = 'globex'")
        .await
        .unwrap();
    let globex: i64 = app
        .query_one("SELECT count(*) FROM leads", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(globex, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_and_seeding_use_the_direct_url_when_given() {
    let db = TestDb::create("crm_direct").await;
    // The pooled URL names a port nothing listens on: only the direct URL may be used to
    // prepare, and the API's URL is still derived from the pooled one.
    let pooled = format!(
        "postgres://postgres@127.0.0.1:1/{}?connect_timeout=2",
        db.name()
    );
    assert!(
        setup::prepare(&pooled, None, 10).await.is_err(),
        "without a direct URL the pooled one is used"
    );
    let app_url = setup::prepare(&pooled, Some(db.url()), 10).await.unwrap();
    assert_eq!(
        app_url,
        format!(
            "postgres://{}@127.0.0.1:1/{}?connect_timeout=2",
            setup::APP_ROLE,
            db.name()
        )
    );
    let leads: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM leads WHERE org_id = 'acme'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leads, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_stops_the_start_with_host_and_reason() {
    use parapet_tests::{certs::TestCa, cluster::TempCluster};
    let ca = TestCa::new("crm");
    let (crt, key) = ca.issue_server("server", &["DNS:localhost"]);
    let cluster = TempCluster::start_tls(&crt, &key);
    let url = |host: &str| {
        format!(
            "postgres://postgres@{host}:{}/crm?hostaddr=127.0.0.1&connect_timeout=5\
             &sslmode=verify-full&sslrootcert={}",
            cluster.port(),
            ca.cert().display()
        )
    };
    let started = std::time::Instant::now();
    let err = setup::prepare(&url("127.0.0.1"), None, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS with 127.0.0.1 failed") && err.contains("not valid for this host name"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "no hang"
    );
    // The same server, named as its certificate says, over verify-full.
    let app_url = setup::prepare(&url("localhost"), None, 10).await.unwrap();
    assert!(app_url.contains("sslmode=verify-full"), "{app_url}");
}
