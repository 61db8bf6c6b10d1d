//! The demo's edges: `/readyz` under a flood, numbers in URLs that are out of range or not in
//! their one canonical spelling, and ids that tell a tenant nothing about the others' writes
//! (the per-tenant numbering of `migrations/0004_tenant_scoped_ids.sql`, on a fresh database
//! and over data written under the old global numbering).
//!
//! Every test has a database of its own and a Redis key prefix of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::{Router, body::Body};
use example_crm::app;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use parapet_migrate::Migrator;
use parapet_testkit::unique_prefix;
use parapet_tests::TestDb;
use serde_json::{Value, json};
use tower::ServiceExt;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const PROBLEM_JSON: &str = "application/problem+json";

/// The demo as `main.rs` starts it, on a database of its own seeded with `leads` leads per
/// tenant. The database is dropped after the router (field order).
struct TestApp {
    router: Router,
    db: TestDb,
}

async fn start(label: &str, leads: u32) -> TestApp {
    let db = TestDb::create(label).await;
    let prefix = unique_prefix(label);
    // The demo's quotas are on: their buckets in Redis are the test's own too.
    let quota_prefix = format!("{prefix}quota:");
    let vars = [
        ("DATABASE_URL", db.url()),
        ("PARAPET_TELEMETRY", "off"),
        ("REDIS_URL", REDIS_URL),
        ("PARAPET_CACHE_PREFIX", prefix.as_str()),
        ("PARAPET_QUOTA_PREFIX", quota_prefix.as_str()),
    ];
    let demo = app::build(vars.map(|(k, v)| (k.to_owned(), v.to_owned())), leads)
        .await
        .unwrap_or_else(|e| panic!("the demo did not start: {e}"));
    TestApp {
        router: demo.router,
        db,
    }
}

#[derive(Debug)]
struct Res {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Res {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    fn json(&self, status: StatusCode, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.text());
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", self.text()))
    }

    fn is_hit(&self) -> bool {
        self.headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').any(|member| member.trim() == "hit"))
    }

    #[track_caller]
    fn assert_bad_request(&self, what: &str) {
        let body = self.json(StatusCode::BAD_REQUEST, what);
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(content_type.as_deref(), Some(PROBLEM_JSON), "{what}");
        assert_eq!(body["status"], 400, "{what}: {body}");
        assert_eq!(
            body["type"], "urn:parapet:problem:invalid-request",
            "{what}: {body}"
        );
    }
}

async fn send(router: &Router, req: Request<Body>) -> Res {
    let res = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Res {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

async fn get(router: &Router, tenant: &str, uri: &str) -> Res {
    let req = Request::get(uri)
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap();
    send(router, req).await
}

async fn post(router: &Router, tenant: &str, uri: &str, body: &Value) -> Res {
    let req = Request::post(uri)
        .header("x-tenant-id", tenant)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(router, req).await
}

/// Sessions PostgreSQL has counted for `database` (those that ended are always counted; an
/// open one may be reported up to a few seconds late), and the backends now connected to it
/// that started after `since`.
async fn sessions(client: &tokio_postgres::Client, database: &str, since: &str) -> (i64, i64) {
    let counted: i64 = client
        .query_one(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0);
    let since: String = since.to_owned();
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND backend_start > $2::text::timestamptz",
            &[&database, &since],
        )
        .await
        .unwrap()
        .get(0);
    (counted, live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_readiness_probes_is_answered_without_new_connections() {
    const REQUESTS: usize = 2_000;
    const IN_FLIGHT: usize = 400;
    let app = start("crm_readyz_flood", 10).await;
    let client = app.db.client().await;
    let since: String = client
        .query_one("SELECT now()::text", &[])
        .await
        .unwrap()
        .get(0);
    let (counted_before, _) = sessions(&client, app.db.name(), &since).await;

    let router = Arc::new(app.router.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let flood = async {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..REQUESTS {
            let permit = Arc::clone(&slots).acquire_owned().await.unwrap();
            let router = Arc::clone(&router);
            calls.spawn(async move {
                let res = send(
                    &router,
                    Request::get("/readyz").body(Body::empty()).unwrap(),
                )
                .await;
                drop(permit);
                res
            });
        }
        calls.join_all().await
    };
    let answers = tokio::time::timeout(Duration::from_secs(20), flood)
        .await
        .expect("2,000 probes answered within 20 s");
    assert_eq!(answers.len(), REQUESTS);
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for res in &answers {
        *statuses.entry(res.status.as_u16()).or_default() += 1;
    }
    assert_eq!(
        statuses,
        HashMap::from([(200, REQUESTS)]),
        "every probe of a healthy API says ready; e.g. {}",
        answers
            .iter()
            .find(|r| r.status != StatusCode::OK)
            .map(Res::text)
            .unwrap_or_default()
    );
    for res in answers.iter().take(5) {
        let body = res.json(StatusCode::OK, "readyz");
        assert_eq!(body["status"], "ready", "{body}");
        assert_eq!(body["postgres"], "up", "{body}");
        assert_eq!(body["redis"], "up", "{body}");
    }

    // The probes went through the pool: at most a handful of new connections for 2,000 calls
    // (a connection per call, as before, is 2,000 sessions, or refusals past max_connections).
    let (counted_after, live) = sessions(&client, app.db.name(), &since).await;
    let opened = counted_after - counted_before;
    assert!(
        opened <= 10,
        "{opened} sessions opened for {REQUESTS} probes"
    );
    assert!(
        live <= 10,
        "{live} connections opened for {REQUESTS} probes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_and_non_canonical_numbers_are_400_never_500() {
    let app = start("crm_numbers", 30).await;
    let router = &app.router;
    let lead = get(router, "acme", "/api/leads?limit=1")
        .await
        .json(StatusCode::OK, "a lead")["items"][0]["id"]
        .as_i64()
        .unwrap();
    let deal = get(router, "acme", "/api/deals?limit=1")
        .await
        .json(StatusCode::OK, "a deal")["items"][0]["id"]
        .as_i64()
        .unwrap();

    let bad = [
        // Cursors: out of range (the first was a 500 from PostgreSQL's interval arithmetic).
        "/api/leads?cursor=9223372036854775807.1".to_owned(),
        "/api/activity?cursor=9223372036854775807.1".to_owned(),
        "/api/leads?cursor=253402300800000000.1".to_owned(),
        "/api/deals?cursor=9223372036854775807.1".to_owned(),
        "/api/deals?cursor=1000000000000001.1".to_owned(),
        "/api/leads?cursor=1.9223372036854775808".to_owned(),
        "/api/leads?cursor=99999999999999999999.1".to_owned(),
        // Cursors: negative, signed, zero id, leading zeros, other spellings.
        "/api/leads?cursor=-1.5".to_owned(),
        "/api/activity?cursor=-9223372036854775808.1".to_owned(),
        "/api/deals?cursor=-5.1".to_owned(),
        "/api/leads?cursor=1.-5".to_owned(),
        "/api/leads?cursor=1.0".to_owned(),
        "/api/leads?cursor=%2B1.5".to_owned(),
        "/api/leads?cursor=01.5".to_owned(),
        "/api/deals?cursor=5.05".to_owned(),
        "/api/leads?cursor=1.5.6".to_owned(),
        "/api/leads?cursor=1.5%20".to_owned(),
        "/api/leads?cursor=1e3.5".to_owned(),
        // Path ids.
        format!("/api/leads/0{lead}"),
        format!("/api/leads/00{lead}"),
        format!("/api/leads/%2B{lead}"),
        format!("/api/leads/-{lead}"),
        format!("/api/deals/0{deal}"),
        "/api/leads/9223372036854775808".to_owned(),
        "/api/deals/-9223372036854775808".to_owned(),
        "/api/leads/%20".to_owned(),
        // Other numbers of the query string.
        "/api/leads?limit=05".to_owned(),
        "/api/leads?limit=%2B5".to_owned(),
        "/api/activity?limit=-0".to_owned(),
        "/api/billing/events?subscription_id=01".to_owned(),
        "/api/billing/events?subscription_id=-1".to_owned(),
        "/api/billing/events?subscription_id=9223372036854775808".to_owned(),
    ];
    for uri in &bad {
        let res = get(router, "acme", uri).await;
        res.assert_bad_request(uri);
        assert!(!res.is_hit(), "{uri}: an error is never served from cache");
    }
    // A PATCH of a non-canonical id writes nothing.
    let patch = Request::patch(format!("/api/deals/0{deal}"))
        .header("x-tenant-id", "acme")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "title": "Renamed" }).to_string()))
        .unwrap();
    send(router, patch)
        .await
        .assert_bad_request("PATCH of a non-canonical id");
    let title: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT title FROM deals WHERE org_id = 'acme' AND id = $1",
            &[&deal],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(title, "Renamed");

    // The canonical spellings work, at the edges of their ranges too.
    for uri in [
        format!("/api/leads/{lead}"),
        format!("/api/deals/{deal}"),
        "/api/leads?cursor=253402300799999999.9223372036854775807".to_owned(),
        "/api/activity?cursor=253402300799999999.9223372036854775807".to_owned(),
        "/api/deals?cursor=1000000000000000.9223372036854775807".to_owned(),
        "/api/leads?limit=100".to_owned(),
        "/api/billing/events?subscription_id=9223372036854775807".to_owned(),
    ] {
        get(router, "acme", &uri).await.json(StatusCode::OK, &uri);
    }
    // The first page again from a cursor past every row; nothing before 1970.
    let page = get(
        router,
        "acme",
        "/api/leads?cursor=253402300799999999.1&limit=5",
    )
    .await
    .json(StatusCode::OK, "latest cursor");
    let first = get(router, "acme", "/api/leads?limit=5")
        .await
        .json(StatusCode::OK, "first page");
    assert_eq!(page["items"], first["items"]);
    let none = get(router, "acme", "/api/leads?cursor=0.1")
        .await
        .json(StatusCode::OK, "epoch cursor");
    assert_eq!(none["items"], json!([]), "{none}");
    assert_eq!(none["next_cursor"], Value::Null);

    // One spelling, one cache entry: the repeat is a hit, the other spelling never a response.
    let uri = format!("/api/leads/{lead}");
    assert!(get(router, "acme", &uri).await.is_hit(), "{uri} is cached");
    get(router, "acme", &format!("/api/leads/0{lead}"))
        .await
        .assert_bad_request("leading zero after the canonical one was cached");
}

/// Creates a lead (and with it an activity entry) for `tenant`; returns the lead's id.
async fn create_lead(router: &Router, tenant: &str, name: &str) -> i64 {
    post(
        router,
        tenant,
        "/api/leads",
        &json!({ "name": name, "email": format!("{name}@{tenant}-ids.example") }),
    )
    .await
    .json(StatusCode::CREATED, "create a lead")["id"]
        .as_i64()
        .unwrap()
}

async fn create_deal(router: &Router, tenant: &str, lead: i64) -> i64 {
    post(
        router,
        tenant,
        "/api/deals",
        &json!({ "title": "Deal", "amount": 100, "lead_id": lead }),
    )
    .await
    .json(StatusCode::CREATED, "create a deal")["id"]
        .as_i64()
        .unwrap()
}

#[track_caller]
fn assert_consecutive(ids: &[i64], what: &str) {
    for pair in ids.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{what}: {ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_tell_a_tenant_nothing_about_other_tenants_writes() {
    const SEEDED: u32 = 20;
    let app = start("crm_ids", SEEDED).await;
    let router = &app.router;

    // Interleaved: between two of acme's writes globex writes 0, 1 or 2 records. acme's ids
    // go up by one each time all the same: they count acme's own writes and nothing else.
    let (mut acme_leads, mut acme_deals) = (Vec::new(), Vec::new());
    let mut globex_leads = Vec::new();
    for round in 0..9 {
        let lead = create_lead(router, "acme", &format!("acme{round}")).await;
        acme_leads.push(lead);
        acme_deals.push(create_deal(router, "acme", lead).await);
        for n in 0..round % 3 {
            let theirs = create_lead(router, "globex", &format!("globex{round}x{n}")).await;
            create_deal(router, "globex", theirs).await;
            globex_leads.push(theirs);
        }
    }
    assert_eq!(
        acme_leads[0],
        i64::from(SEEDED) + 1,
        "acme's first lead follows its seeded ones"
    );
    assert_consecutive(&acme_leads, "acme's leads");
    assert_eq!(acme_deals[0], i64::from(SEEDED / 4) + 1, "{acme_deals:?}");
    assert_consecutive(&acme_deals, "acme's deals");
    assert_eq!(globex_leads[0], i64::from(SEEDED) + 1, "{globex_leads:?}");
    assert_consecutive(&globex_leads, "globex's leads");
    // The activity feed: one entry per write, numbered per tenant too.
    let feed = get(router, "acme", "/api/activity?limit=18")
        .await
        .json(StatusCode::OK, "acme's activity");
    let mut activity: Vec<i64> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect();
    activity.reverse();
    assert_eq!(activity.len(), 18);
    assert_consecutive(&activity, "acme's activity");

    // Concurrent: both tenants write at once; each tenant's ids are one unbroken run.
    let mut writers = tokio::task::JoinSet::new();
    for tenant in ["acme", "globex"] {
        for task in 0..3 {
            let router = router.clone();
            writers.spawn(async move {
                let mut ids = Vec::new();
                for n in 0..8 {
                    ids.push(create_lead(&router, tenant, &format!("c{task}x{n}")).await);
                }
                (tenant, ids)
            });
        }
    }
    let mut by_tenant: HashMap<&str, BTreeSet<i64>> = HashMap::new();
    for (tenant, ids) in writers.join_all().await {
        by_tenant.entry(tenant).or_default().extend(ids);
    }
    let acme_next = acme_leads.last().unwrap() + 1;
    let globex_next = globex_leads.last().unwrap() + 1;
    assert_eq!(
        by_tenant["acme"],
        (acme_next..acme_next + 24).collect::<BTreeSet<_>>()
    );
    assert_eq!(
        by_tenant["globex"],
        (globex_next..globex_next + 24).collect::<BTreeSet<_>>()
    );

    // The same number names each tenant's own record, never the other's (nor its cached copy).
    let shared = acme_leads[0];
    assert!(globex_leads.contains(&shared));
    let uri = format!("/api/leads/{shared}");
    for _ in 0..2 {
        let mine = get(router, "acme", &uri).await.json(StatusCode::OK, "acme");
        assert_eq!(mine["name"], "acme0", "{mine}");
        let theirs = get(router, "globex", &uri)
            .await
            .json(StatusCode::OK, "globex");
        assert!(
            theirs["email"]
                .as_str()
                .unwrap()
                .ends_with("@globex-ids.example"),
            "{theirs}"
        );
    }
    // A deal cannot name another tenant's lead even by a number both tenants have: the lead
    // the number names for globex is globex's own.
    let deal = post(
        router,
        "globex",
        "/api/deals",
        &json!({ "title": "Mine", "amount": 1, "lead_id": shared }),
    )
    .await
    .json(StatusCode::CREATED, "globex's deal on its own lead");
    let owner: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT l.org_id FROM deals d JOIN leads l ON l.org_id = d.org_id AND l.id = d.lead_id \
             WHERE d.org_id = 'globex' AND d.id = $1",
            &[&deal["id"].as_i64().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "globex");
}

/// Rows as they were under the old global numbering: the tenants' leads interleaved.
async fn write_old_rows(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "INSERT INTO tenants (id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex');
             INSERT INTO tenant_subscriptions (tenant_id, feature, status)
                 VALUES ('acme', 'pro', 'active'), ('globex', 'free', 'active');
             INSERT INTO leads (org_id, name, created_at)
                 SELECT CASE WHEN g % 3 = 0 THEN 'globex' ELSE 'acme' END, 'lead ' || g,
                        now() - make_interval(secs => g * 37)
                 FROM generate_series(1, 6000) g;
             INSERT INTO deals (org_id, lead_id, title, stage, amount)
                 SELECT org_id, id, 'deal', (ARRAY['won','lost','proposal'])[1 + id % 3], id * 7
                 FROM leads WHERE id % 2 = 0;
             -- A link to another tenant's lead, as a version without the check could leave.
             INSERT INTO deals (org_id, lead_id, title, stage) VALUES ('acme', 3, 'foreign', 'won');
             INSERT INTO collab_activity (tenant_id, actor, action, subject_type, subject_id)
                 SELECT org_id, 'a', 'created', 'lead', id FROM leads;
             INSERT INTO billing_events (subscription_id, event_type)
                 SELECT 1 + g % 2, 'invoice.created' FROM generate_series(1, 50) g;",
        )
        .await
        .unwrap();
}

async fn column(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_id_migration_keeps_rows_links_and_indexes_and_numbers_on_per_tenant() {
    let db = TestDb::create("crm_id_migration").await;
    let client = db.client().await;
    let before_0004 = Migrator::new(Migrator::crm().migrations()[..3].to_vec()).unwrap();
    before_0004.run(&client).await.unwrap();
    write_old_rows(&client).await;
    let rows_sql = "SELECT org_id || ':' || id || ':' || name FROM leads ORDER BY org_id, id";
    let links_sql = "SELECT org_id || ':' || id || ':' || coalesce(lead_id::text, '-') \
                     FROM deals ORDER BY org_id, id";
    let (leads, links) = (
        column(&client, rows_sql).await,
        column(&client, links_sql).await,
    );

    let report = Migrator::crm().run(&client).await.unwrap();
    assert_eq!(report.applied_versions(), [4], "{report}");

    // Every row keeps its id; the one foreign link is cut, the tenant's own links stay.
    assert_eq!(column(&client, rows_sql).await, leads);
    let foreign = "SELECT id FROM deals WHERE title = 'foreign'";
    let foreign_id: i64 = client.query_one(foreign, &[]).await.unwrap().get(0);
    let expected: Vec<String> = links
        .iter()
        .map(|link| {
            if link == &format!("acme:{foreign_id}:3") {
                format!("acme:{foreign_id}:-")
            } else {
                link.clone()
            }
        })
        .collect();
    assert_ne!(expected, links, "the foreign link was in the data");
    assert_eq!(column(&client, links_sql).await, expected);

    // Every index is valid, the six of 0002 among them.
    let invalid: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND NOT (i.indisvalid AND i.indisready)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(invalid, 0);
    let secondary = column(
        &client,
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
         AND indexname NOT LIKE '%_pkey' ORDER BY 1",
    )
    .await;
    assert_eq!(secondary.len(), 6, "{secondary:?}");

    // New rows continue each tenant's own numbering, as the API's role inserts them.
    let max = |table: &str, tenant: &str| {
        format!(
            "SELECT max(id) FROM {table} WHERE {} = '{tenant}'",
            if table == "leads" || table == "deals" {
                "org_id"
            } else {
                "tenant_id"
            }
        )
    };
    let mut last = HashMap::new();
    for tenant in ["acme", "globex"] {
        for table in ["leads", "deals", "collab_activity"] {
            let id: i64 = client
                .query_one(&max(table, tenant), &[])
                .await
                .unwrap()
                .get(0);
            last.insert((tenant, table), id);
        }
    }
    client.batch_execute("ANALYZE").await.unwrap();
    let app = parapet_tests::connect(&db.app_role_url().await).await;
    for (tenant, other) in [("acme", "globex"), ("globex", "acme")] {
        app.batch_execute(&format!("SET app.tenant_id = '{tenant}'"))
            .await
            .unwrap();
        for n in 1..=3 {
            let lead: i64 = app
                .query_one(
                    "INSERT INTO leads (org_id, name) VALUES ($1, 'new') RETURNING id",
                    &[&tenant],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(lead, last[&(tenant, "leads")] + n, "{tenant}");
            let deal: i64 = app
                .query_one(
                    "INSERT INTO deals (org_id, lead_id, title, stage) \
                     VALUES ($1, $2, 'new', 'won') RETURNING id",
                    &[&tenant, &lead],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(deal, last[&(tenant, "deals")] + n, "{tenant}");
        }
        // The tenant's requests can neither write the other's rows nor move its counters.
        let err = app
            .execute(
                "INSERT INTO leads (org_id, name) VALUES ($1, 'planted')",
                &[&other],
            )
            .await
            .unwrap_err();
        assert!(err.as_db_error().is_some(), "{err:?}");
        let err = app
            .query_one("SELECT reserve_tenant_ids($1, 'leads', 1000)", &[&other])
            .await
            .unwrap_err();
        assert!(err.as_db_error().is_some(), "{err:?}");
        let counters: i64 = app
            .query_one(
                "SELECT count(*) FROM tenant_id_counters WHERE tenant_id <> $1",
                &[&tenant],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(counters, 0, "{tenant} sees no other tenant's counters");
    }
    // The database itself refuses a deal on another tenant's lead (here as the superuser,
    // which row-level security does not stop): lead 3 is globex's, acme has no lead 3.
    let err = client
        .execute(
            "INSERT INTO deals (org_id, lead_id, title, stage) VALUES ('acme', 3, 'x', 'won')",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .is_some_and(|e| e.constraint() == Some("deals_lead_fkey")),
        "{err:?}"
    );

    // The lookups the API makes can still use their indexes under row-level security. The
    // tables are small enough for the planner to prefer a sequential scan now and then, so it
    // is told not to: an index that cannot serve the query would still leave one. Statistics
    // first: without them (autovacuum may or may not have run) the planner sometimes took the
    // tenant's stage index with a filter on `id` over the primary key.
    client.batch_execute("ANALYZE leads, deals").await.unwrap();
    app.batch_execute("SET enable_seqscan = off").await.unwrap();
    for (sql, index) in [
        ("SELECT * FROM leads WHERE id = 7", "leads_pkey"),
        (
            "SELECT * FROM leads ORDER BY created_at DESC, id DESC LIMIT 20",
            "leads_org_created_at_idx",
        ),
        ("SELECT * FROM deals WHERE id = 8", "deals_pkey"),
        (
            "SELECT * FROM deals WHERE stage = 'won' AND (amount, id) < (70000, 100) \
             ORDER BY amount DESC, id DESC LIMIT 20",
            "deals_org_stage_amount_idx",
        ),
    ] {
        let plan = column(&app, &format!("EXPLAIN (COSTS OFF) {sql}"))
            .await
            .join("\n");
        assert!(plan.contains(index), "{sql}:\n{plan}");
    }
}
