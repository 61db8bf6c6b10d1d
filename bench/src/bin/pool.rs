//! Pool benchmarks, on a PostgreSQL cluster of their own (`initdb`, free port,
//! `max_connections = 100`, the server default), so that nothing here can exhaust a shared server:
//!
//! 1. a pooled checkout vs a new connection per request, same indexed query;
//! 2. the product's query shapes with and without `migrations/0002_performance_indexes.sql`,
//!    on 1,000,000 leads;
//! 3. 1,000 tenants that each send a request: one pool of 20 per tenant (the original plan) vs
//!    parapet's pools keyed by database target under one budget.
//!
//! Prints markdown; `bash bench/run.sh pool` puts it into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use parapet_bench::{Latencies, mib, ms, rss_bytes, table};
use parapet_pool::{Isolation, IsolationScope, TenantPools};
use parapet_tenant::{DatabaseTarget, Features, Tenant, TenantId, TenantRecord};
use parapet_tests::{cluster::TempCluster, connect, with_database};
use tokio_postgres::NoTls;

const ORGS: usize = 100;
const LEADS: usize = 1_000_000;
const CONCURRENCY: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(5);

fn tenant(id: &str, database: DatabaseTarget) -> Tenant {
    Tenant::new(
        Arc::new(TenantRecord::new(TenantId::parse(id).unwrap()).database(database)),
        Arc::new(Features::new()),
    )
}

const LEADS_PAGE: &str =
    "SELECT id, name FROM leads WHERE org_id = $1 ORDER BY created_at DESC LIMIT 20";

#[tokio::main]
async fn main() {
    let cluster = TempCluster::start_with_max_connections(100);
    let admin = connect(&cluster.url()).await;
    admin.batch_execute("CREATE DATABASE bench").await.unwrap();
    let url = with_database(&cluster.url(), "bench");
    let client = connect(&url).await;
    parapet_migrate::Migrator::crm().run(&client).await.unwrap();
    let started = Instant::now();
    seed(&client).await;
    eprintln!("seeded in {:?}", started.elapsed());

    println!("### Pooled checkout vs a new connection per request\n");
    println!("{}", pooled_vs_new(&url).await);
    println!("### Query shapes with and without the performance indexes ({LEADS} leads)\n");
    println!("{}", indexes(&client).await);
    drop(client);
    println!("### 1,000 tenants, one request each: a pool of 20 per tenant vs parapet\n");
    println!("{}", thousand_tenants(&cluster, &url).await);
}

async fn seed(client: &tokio_postgres::Client) {
    // The replica role skips triggers (and foreign keys), the per-tenant numbering among them:
    // the rows bring their ids, and each tenant's counters are set to its largest afterwards.
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             INSERT INTO tenants (id, name) SELECT 'org' || g, 'Org ' || g FROM generate_series(0, {last}) g;
             INSERT INTO leads (id, org_id, name, created_at)
               SELECT g, 'org' || (g % {ORGS}), 'lead ' || g, now() - (g || ' seconds')::interval
               FROM generate_series(1, {LEADS}) g;
             INSERT INTO deals (id, org_id, title, stage, amount)
               SELECT g, 'org' || (g % {ORGS}), 'deal ' || g,
                      (ARRAY['prospecting','qualification','proposal','negotiation','won','lost'])[1 + g % 6],
                      (g * 7919) % 1000000
               FROM generate_series(1, 200000) g;
             INSERT INTO collab_activity (id, tenant_id, actor, action, subject_type, created_at)
               SELECT g, 'org' || (g % {ORGS}), 'user', 'viewed', 'lead', now() - (g || ' seconds')::interval
               FROM generate_series(1, 500000) g;
             INSERT INTO tenant_subscriptions (tenant_id, feature, status)
               SELECT 'org' || (g % {ORGS}), 'feature' || (g / {ORGS}), CASE WHEN g % 3 = 0 THEN 'canceled' ELSE 'active' END
               FROM generate_series(0, 1999) g;
             INSERT INTO billing_events (id, subscription_id, event_type, amount, processed_at)
               SELECT g, 1 + g % 2000, (ARRAY['invoice','payment','refund'])[1 + g % 3], g % 10000,
                      now() - (g || ' seconds')::interval
               FROM generate_series(1, 300000) g;
             INSERT INTO api_endpoints (id, tenant_id, method, path, type, status)
               SELECT g, 'org' || (g % {ORGS}), 'GET', '/p/' || g, (ARRAY['rest','graphql','webhook','rpc'])[1 + g % 4],
                      (ARRAY['active','deprecated','disabled'])[1 + g % 3]
               FROM generate_series(1, 100000) g;
             RESET session_replication_role;
             INSERT INTO tenant_id_counters (tenant_id, scope, last_id)
                       SELECT org_id, 'leads', max(id) FROM leads GROUP BY 1
             UNION ALL SELECT org_id, 'deals', max(id) FROM deals GROUP BY 1
             UNION ALL SELECT tenant_id, 'collab_activity', max(id) FROM collab_activity GROUP BY 1
             UNION ALL SELECT tenant_id, 'api_endpoints', max(id) FROM api_endpoints GROUP BY 1
             UNION ALL SELECT s.tenant_id, 'billing_events', max(b.id) FROM billing_events b
                       JOIN tenant_subscriptions s ON s.id = b.subscription_id GROUP BY 1;
             ANALYZE;",
            last = ORGS - 1
        ))
        .await
        .unwrap();
}

/// Runs `op` from `CONCURRENCY` tasks for `RUN_FOR`; returns (requests, errors, latencies).
async fn drive<F, Fut>(op: F) -> (usize, usize, Latencies)
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send,
{
    let deadline = Instant::now() + RUN_FOR;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0, w);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if !op(i).await {
                        errors += 1;
                    }
                    lat.push(t.elapsed());
                    i += CONCURRENCY;
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Latencies::default();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.0.extend(lat);
        errors += e;
    }
    (all.0.len(), errors, all)
}

/// Drives `TenantPools` in `scope` on the shared database with row-level security.
async fn tenant_pools(url: &str, scope: IsolationScope) -> (usize, usize, Latencies) {
    let pools = TenantPools::builder(url)
        .isolation(Isolation::row_level_security())
        .scope(scope)
        .budget(CONCURRENCY * 2)
        .max_per_pool(CONCURRENCY)
        .build()
        .await
        .unwrap();
    let tenants: Arc<Vec<Tenant>> = Arc::new(
        (0..ORGS)
            .map(|i| tenant(&format!("org{i}"), DatabaseTarget::Shared))
            .collect(),
    );
    drive(move |i| {
        let (pools, t) = (pools.clone(), tenants[i % ORGS].clone());
        async move {
            let Ok(db) = pools.checkout(&t).await else {
                return false;
            };
            let org = t.id().to_string();
            db.query(LEADS_PAGE, &[&org])
                .await
                .map(|r| r.len() == 20)
                .unwrap_or(false)
        }
    })
    .await
}

async fn pooled_vs_new(url: &str) -> String {
    let session = tenant_pools(url, IsolationScope::Session).await;
    let per_tx = tenant_pools(url, IsolationScope::Transaction).await;
    // What users would pick instead for a single-tenant service: deadpool-postgres with its
    // statement cache, no tenant setting, no reset.
    let plain = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        url.parse::<tokio_postgres::Config>().unwrap(),
        NoTls,
    ))
    .max_size(CONCURRENCY)
    .build()
    .unwrap();
    let deadpool = drive(move |i| {
        let pool = plain.clone();
        async move {
            let Ok(client) = pool.get().await else {
                return false;
            };
            let Ok(stmt) = client.prepare_cached(LEADS_PAGE).await else {
                return false;
            };
            let org = format!("org{}", i % ORGS);
            client
                .query(&stmt, &[&org])
                .await
                .map(|r| r.len() == 20)
                .unwrap_or(false)
        }
    })
    .await;
    // The floor: each client keeps one connection and runs the prepared statement on it, with
    // no pool, so one request is one round trip and nothing else.
    let kept: Arc<Vec<(tokio_postgres::Client, tokio_postgres::Statement)>> = {
        let mut kept = Vec::new();
        for _ in 0..CONCURRENCY {
            let client = connect(url).await;
            let stmt = client.prepare(LEADS_PAGE).await.unwrap();
            kept.push((client, stmt));
        }
        Arc::new(kept)
    };
    let alone = drive(move |i| {
        let kept = kept.clone();
        async move {
            let (client, stmt) = &kept[i % CONCURRENCY];
            let org = format!("org{}", i % ORGS);
            client
                .query(stmt, &[&org])
                .await
                .map(|r| r.len() == 20)
                .unwrap_or(false)
        }
    })
    .await;
    let url = url.to_owned();
    let fresh = drive(move |i| {
        let url = url.clone();
        async move {
            let Ok((client, conn)) = tokio_postgres::connect(&url, NoTls).await else {
                return false;
            };
            let task = tokio::spawn(conn);
            let org = format!("org{}", i % ORGS);
            let ok = client
                .query(LEADS_PAGE, &[&org])
                .await
                .map(|r| r.len() == 20)
                .unwrap_or(false);
            drop(client);
            let _ = task.await;
            ok
        }
    })
    .await;
    let secs = RUN_FOR.as_secs_f64();
    let row = |label: &str, (n, errors, lat): &(usize, usize, Latencies)| {
        vec![
            label.to_owned(),
            format!("{:.0}", *n as f64 / secs),
            ms(lat.quantile(0.5)),
            ms(lat.quantile(0.99)),
            errors.to_string(),
        ]
    };
    let rows = vec![
        row(
            "parapet `TenantPools`, session scope (the default: RLS setting + reset per checkout)",
            &session,
        ),
        row(
            "parapet `TenantPools`, transaction scope (the setting per transaction, no reset)",
            &per_tx,
        ),
        row(
            "deadpool-postgres 0.14, no tenant isolation (`prepare_cached`)",
            &deadpool,
        ),
        row(
            "one kept connection per client, the prepared query alone",
            &alone,
        ),
        row("new connection per request", &fresh),
    ];
    let (pooled, deadpool, alone, fresh) = (session.0, deadpool.0, alone.0, fresh.0);
    format!(
        "{}\nPooled / new connection throughput: **{:.1}x** (target ≥ 30x); deadpool-postgres without isolation / new connection: {:.1}x; the query alone on a kept connection / new connection: {:.1}x; parapet / deadpool-postgres: {:.2}x. {CONCURRENCY} concurrent clients, {}s each, one after the other, `{LEADS_PAGE}` with random tenants, on a PostgreSQL cluster of the benchmark's own (client and server share the machine's cores).\n",
        table(&["", "requests/s", "p50", "p99", "errors"], &rows),
        pooled as f64 / fresh.max(1) as f64,
        deadpool as f64 / fresh.max(1) as f64,
        alone as f64 / fresh.max(1) as f64,
        pooled as f64 / deadpool.max(1) as f64,
        RUN_FOR.as_secs()
    )
}

/// A query shape: label, SQL, and the parameters of run `i`.
type Shape = (&'static str, &'static str, fn(usize) -> Vec<String>);

/// The product's query shapes, each with a random tenant.
fn shapes() -> Vec<Shape> {
    vec![
        ("leads, newest first", LEADS_PAGE, |i| {
            vec![format!("org{}", i % ORGS)]
        }),
        (
            "deals in a stage, largest first",
            "SELECT id, amount FROM deals WHERE org_id = $1 AND stage = $2 ORDER BY amount DESC LIMIT 20",
            |i| vec![format!("org{}", i % ORGS), "proposal".into()],
        ),
        (
            "activity, newest first",
            "SELECT id, action FROM collab_activity WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 20",
            |i| vec![format!("org{}", i % ORGS)],
        ),
        (
            "billing events of a subscription by type",
            "SELECT id, amount FROM billing_events WHERE subscription_id = $1::text::bigint AND event_type = $2 ORDER BY processed_at DESC LIMIT 20",
            |i| vec![(1 + i % 2000).to_string(), "payment".into()],
        ),
        (
            "active subscriptions of a tenant",
            "SELECT feature FROM tenant_subscriptions WHERE tenant_id = $1 AND status = 'active'",
            |i| vec![format!("org{}", i % ORGS)],
        ),
        (
            "active endpoints of a type",
            "SELECT count(*) FROM api_endpoints WHERE status = 'active' AND type = $1",
            |i| vec![["rest", "graphql", "webhook", "rpc"][i % 4].to_owned()],
        ),
    ]
}

async fn time_shape(
    client: &tokio_postgres::Client,
    sql: &str,
    params: fn(usize) -> Vec<String>,
) -> Latencies {
    let stmt = client.prepare(sql).await.unwrap();
    let mut lat = Latencies::default();
    for i in 0..220 {
        let p = params(i * 7);
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = p
            .iter()
            .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let t = Instant::now();
        client.query(&stmt, &refs).await.unwrap();
        if i >= 20 {
            lat.0.push(t.elapsed()); // the first 20 warm the cache
        }
    }
    lat
}

async fn indexes(client: &tokio_postgres::Client) -> String {
    let index_sql = parapet_migrate::Migrator::crm().migrations()[1]
        .sql()
        .to_owned();
    let creates: Vec<String> = parapet_migrate::split_statements(&index_sql)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let names: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE '%_idx'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    let mut with = Vec::new();
    for (_, sql, params) in shapes() {
        with.push(time_shape(client, sql, params).await);
    }
    for name in &names {
        client
            .batch_execute(&format!("DROP INDEX {name}"))
            .await
            .unwrap();
    }
    client.batch_execute("ANALYZE").await.unwrap();
    let mut rows = Vec::new();
    let (mut sum_with, mut sum_without) = (0.0, 0.0);
    for ((label, sql, params), with) in shapes().into_iter().zip(with) {
        let without = time_shape(client, sql, params).await;
        let (w, wo) = (with.quantile(0.5), without.quantile(0.5));
        sum_with += w.as_secs_f64();
        sum_without += wo.as_secs_f64();
        rows.push(vec![
            label.to_owned(),
            ms(wo),
            ms(w),
            format!(
                "{:.1} %",
                (1.0 - w.as_secs_f64() / wo.as_secs_f64()) * 100.0
            ),
        ]);
    }
    for create in &creates {
        client.batch_execute(create).await.unwrap();
    }
    format!(
        "{}\nMedian of 200 runs per shape (after 20 warm-up runs), random tenants. Across the six shapes the indexes cut the summed median latency by **{:.1} %** (the original plan claimed 60-80 %).\n",
        table(
            &[
                "query shape",
                "p50 without indexes",
                "p50 with indexes",
                "faster by"
            ],
            &rows
        ),
        (1.0 - sum_with / sum_without) * 100.0
    )
}

async fn thousand_tenants(cluster: &TempCluster, url: &str) -> String {
    const TENANTS: usize = 1000;
    const CONC: usize = 100;
    let admin = connect(&cluster.url()).await;
    let mut rows = Vec::new();

    // The original plan: a map from tenant to a pool of 20, deadpool's defaults otherwise.
    let naive = Arc::new(tokio::sync::Mutex::new(HashMap::<
        usize,
        deadpool_postgres::Pool,
    >::new()));
    let pg: tokio_postgres::Config = format!("{url}?application_name=naive").parse().unwrap();
    let run = {
        let naive = naive.clone();
        move |i: usize| {
            let (naive, pg) = (naive.clone(), pg.clone());
            async move {
                let pool = naive
                    .lock()
                    .await
                    .entry(i)
                    .or_insert_with(|| {
                        deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(pg, NoTls))
                            .max_size(20)
                            .build()
                            .unwrap()
                    })
                    .clone();
                let Ok(client) = pool.get().await else {
                    return false;
                };
                client.query_one("SELECT 1", &[]).await.is_ok()
            }
        }
    };
    rows.push(
        one_request_each(
            "one pool of 20 per tenant (deadpool defaults)",
            TENANTS,
            CONC,
            &admin,
            "naive",
            run,
        )
        .await,
    );
    naive.lock().await.clear();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // parapet: tenants of the shared database share one pool under the server-derived budget.
    let pools = TenantPools::builder(format!("{url}?application_name=parapet_shared"))
        .build()
        .await
        .unwrap();
    let tenants: Arc<Vec<Tenant>> = Arc::new(
        (0..TENANTS)
            .map(|i| tenant(&format!("t{i}"), DatabaseTarget::Shared))
            .collect(),
    );
    let budget = pools.status().budget;
    let run = {
        let (pools, tenants) = (pools.clone(), tenants.clone());
        move |i: usize| {
            let (pools, t) = (pools.clone(), tenants[i].clone());
            async move {
                let Ok(db) = pools.checkout(&t).await else {
                    return false;
                };
                db.query_one("SELECT 1", &[]).await.is_ok()
            }
        }
    };
    rows.push(
        one_request_each(
            "parapet, shared database (one pool per target)",
            TENANTS,
            CONC,
            &admin,
            "parapet_shared",
            run,
        )
        .await,
    );
    drop(pools);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // parapet's worst case: every tenant has a database target of its own.
    let pools = TenantPools::builder(url.to_owned())
        .isolation(Isolation::DatabasePerTenant)
        .max_pools(TENANTS + 1)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let tenants: Arc<Vec<Tenant>> = Arc::new(
        (0..TENANTS)
            .map(|i| {
                tenant(
                    &format!("t{i}"),
                    DatabaseTarget::Dedicated(format!("{url}?application_name=parapet_own{i}")),
                )
            })
            .collect(),
    );
    let run = {
        let (pools, tenants) = (pools.clone(), tenants.clone());
        move |i: usize| {
            let (pools, t) = (pools.clone(), tenants[i].clone());
            async move {
                let Ok(db) = pools.checkout(&t).await else {
                    return false;
                };
                db.query_one("SELECT 1", &[]).await.is_ok()
            }
        }
    };
    rows.push(
        one_request_each(
            "parapet, 1,000 targets of their own",
            TENANTS,
            CONC,
            &admin,
            "parapet_own",
            run,
        )
        .await,
    );
    drop(pools);

    format!(
        "{}\nEach of {TENANTS} tenants sends one request, {CONC} at a time, against a server with `max_connections = 100`; parapet's budget read from it: {budget}. \"Held after\" is the connections still open once every request finished (pools keep idle connections until their idle timeout); memory is this process's resident-set growth during the run.\n",
        table(
            &[
                "",
                "errors",
                "peak server connections",
                "held after",
                "wall time",
                "client memory growth"
            ],
            &rows
        )
    )
}

async fn one_request_each<F, Fut>(
    label: &str,
    tenants: usize,
    concurrency: usize,
    admin: &tokio_postgres::Client,
    app: &str,
    op: F,
) -> Vec<String>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send,
{
    let peak = Arc::new(AtomicI64::new(0));
    let count_sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1";
    let pattern = format!("{app}%");
    let rss_before = rss_bytes();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, next, errors) = (op.clone(), next.clone(), errors.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tenants {
                        break;
                    }
                    let ok = tokio::time::timeout(Duration::from_secs(30), op(i))
                        .await
                        .unwrap_or(false);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut all_done = false;
    while !all_done {
        let n: i64 = admin
            .query_one(count_sql, &[&pattern])
            .await
            .unwrap()
            .get(0);
        peak.fetch_max(n, Ordering::Relaxed);
        all_done = workers.iter().all(|w| w.is_finished());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for w in workers {
        w.await.unwrap();
    }
    let took = started.elapsed();
    let held: i64 = admin
        .query_one(count_sql, &[&pattern])
        .await
        .unwrap()
        .get(0);
    let rss_after = rss_bytes();
    vec![
        label.to_owned(),
        errors.load(Ordering::Relaxed).to_string(),
        peak.load(Ordering::Relaxed).to_string(),
        held.to_string(),
        format!("{:.2} s", took.as_secs_f64()),
        mib(rss_after.saturating_sub(rss_before)),
    ]
}
