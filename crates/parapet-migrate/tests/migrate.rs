//! Applying the project's migrations to a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ADVISORY_LOCKS_HERE, TestDb, history_versions, index_valid, table_exists};
use parapet_migrate::embedded;

const TABLES: [&str; 7] = [
    "tenants",
    "tenant_subscriptions",
    "leads",
    "deals",
    "api_endpoints",
    "billing_events",
    "collab_activity",
];

#[tokio::test]
async fn fresh_database_gets_every_migration_and_table() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;

    let report = embedded().run(&client).await.expect("first run");
    assert_eq!(report.applied_versions(), [1, 2, 3, 4]);
    assert!(!report.applied[0].no_transaction);
    assert!(report.applied[1].no_transaction);
    assert!(!report.applied[2].no_transaction);
    assert!(!report.applied[3].no_transaction);
    assert!(report.repaired.is_empty());
    assert_eq!(report.already_applied, 0);
    assert!(!report.is_noop());
    let text = report.to_string();
    assert!(text.contains("applied 0001_crm_schema in "), "{text}");
    assert!(
        text.contains("applied 0002_performance_indexes (no transaction) in "),
        "{text}"
    );

    for table in TABLES {
        assert!(
            table_exists(&client, table).await,
            "table {table} is missing"
        );
    }

    let history = client
        .query(
            "SELECT version, name, checksum, no_transaction, duration_ms \
             FROM parapet_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(history.len(), 4);
    for (row, migration) in history.iter().zip(embedded().migrations()) {
        assert_eq!(row.get::<_, i64>(0), migration.version());
        assert_eq!(row.get::<_, &str>(1), migration.name());
        assert_eq!(row.get::<_, &str>(2), migration.checksum());
        assert_eq!(row.get::<_, bool>(3), migration.no_transaction());
        assert!(row.get::<_, i64>(4) >= 0);
    }

    // The schema as specified, column by column.
    let columns = client
        .query(
            "SELECT table_name::text || '.' || column_name::text || ' ' || data_type::text \
                    || CASE WHEN is_nullable = 'YES' THEN ' NULL' ELSE '' END \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> 'parapet_migrations' \
             ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>();
    let tz = "timestamp with time zone";
    let expected = [
        "api_endpoints.id bigint".to_owned(),
        "api_endpoints.tenant_id text".to_owned(),
        "api_endpoints.method text".to_owned(),
        "api_endpoints.path text".to_owned(),
        "api_endpoints.type text".to_owned(),
        "api_endpoints.status text".to_owned(),
        format!("api_endpoints.created_at {tz}"),
        "billing_events.id bigint".to_owned(),
        "billing_events.subscription_id bigint".to_owned(),
        "billing_events.event_type text".to_owned(),
        "billing_events.amount bigint".to_owned(),
        "billing_events.payload jsonb".to_owned(),
        format!("billing_events.processed_at {tz} NULL"),
        format!("billing_events.created_at {tz}"),
        "collab_activity.id bigint".to_owned(),
        "collab_activity.tenant_id text".to_owned(),
        "collab_activity.actor text".to_owned(),
        "collab_activity.action text".to_owned(),
        "collab_activity.subject_type text".to_owned(),
        "collab_activity.subject_id bigint NULL".to_owned(),
        format!("collab_activity.created_at {tz}"),
        "deals.id bigint".to_owned(),
        "deals.org_id text".to_owned(),
        "deals.lead_id bigint NULL".to_owned(),
        "deals.title text".to_owned(),
        "deals.stage text".to_owned(),
        "deals.amount bigint".to_owned(),
        "deals.currency text".to_owned(),
        format!("deals.created_at {tz}"),
        format!("deals.updated_at {tz}"),
        "leads.id bigint".to_owned(),
        "leads.org_id text".to_owned(),
        "leads.name text".to_owned(),
        "leads.email text NULL".to_owned(),
        "leads.company text NULL".to_owned(),
        "leads.status text".to_owned(),
        "leads.source text NULL".to_owned(),
        format!("leads.created_at {tz}"),
        format!("leads.updated_at {tz}"),
        "tenant_id_counters.tenant_id text".to_owned(),
        "tenant_id_counters.scope text".to_owned(),
        "tenant_id_counters.last_id bigint".to_owned(),
        "tenant_subscriptions.id bigint".to_owned(),
        "tenant_subscriptions.tenant_id text".to_owned(),
        "tenant_subscriptions.feature text".to_owned(),
        "tenant_subscriptions.status text".to_owned(),
        format!("tenant_subscriptions.period_start {tz}"),
        format!("tenant_subscriptions.period_end {tz} NULL"),
        format!("tenant_subscriptions.created_at {tz}"),
        "tenants.id text".to_owned(),
        "tenants.name text".to_owned(),
        "tenants.status text".to_owned(),
        "tenants.plan text".to_owned(),
        "tenants.database_url text NULL".to_owned(),
        "tenants.settings jsonb".to_owned(),
        format!("tenants.created_at {tz}"),
        format!("tenants.updated_at {tz}"),
    ];
    assert_eq!(columns, expected);

    // Defaults, checks and cascades behave as specified.
    client
        .batch_execute(
            "INSERT INTO tenants (id, name) VALUES ('acme', 'Acme');
             INSERT INTO leads (org_id, name) VALUES ('acme', 'Ada');
             INSERT INTO deals (org_id, lead_id, title, stage, amount)
                 SELECT 'acme', id, 'Big deal', 'proposal', 12345 FROM leads;",
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT t.status, t.plan, t.settings::text, l.status, d.currency \
             FROM tenants t JOIN leads l ON l.org_id = t.id JOIN deals d ON d.lead_id = l.id",
            &[],
        )
        .await
        .unwrap();
    let defaults: (&str, &str, &str, &str, &str) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(defaults, ("active", "free", "{}", "new", "USD"));
    for bad in [
        "INSERT INTO tenants (id, name) VALUES ('Bad Id', 'x')",
        "INSERT INTO tenants (id, name, status) VALUES ('x', 'x', 'gone')",
        "INSERT INTO deals (org_id, title, stage, amount) VALUES ('acme', 'x', 'won', -1)",
        "INSERT INTO deals (org_id, title, stage) VALUES ('acme', 'x', 'maybe')",
        "INSERT INTO api_endpoints (tenant_id, method, path, type) VALUES ('acme', 'GET', '/', 'soap')",
        "INSERT INTO tenant_subscriptions (tenant_id, feature, status) VALUES ('nobody', 'pro', 'active')",
    ] {
        let err = client.batch_execute(bad).await.expect_err(bad);
        assert!(err.as_db_error().is_some(), "{bad}: {err:?}");
    }
    client.batch_execute("DELETE FROM tenants").await.unwrap();
    let left: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM leads) + (SELECT count(*) FROM deals)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "deleting a tenant cascades to its rows");
}

#[tokio::test]
async fn second_run_is_a_no_op() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    embedded().run(&client).await.expect("first run");
    let before = history_rows(&client).await;

    let report = embedded().run(&client).await.expect("second run");
    assert!(report.is_noop(), "{report}");
    assert!(report.applied.is_empty());
    assert!(report.repaired.is_empty());
    assert_eq!(report.already_applied, 4);
    assert_eq!(
        report.to_string(),
        "nothing to do: all 4 migrations already applied"
    );
    assert_eq!(history_rows(&client).await, before);

    let status = embedded().status(&client).await.unwrap();
    assert!(status.is_up_to_date(), "{status}");
    assert!(status.pending_versions().is_empty());
}

async fn history_rows(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT concat_ws('|', version, name, checksum, no_transaction, applied_at, duration_ms) \
             FROM parapet_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn concurrent_runners_apply_each_migration_once() {
    let db = TestDb::create("migrate").await;
    let (a, b) = (db.client().await, db.client().await);
    let migrator = embedded();
    let (ra, rb) = tokio::join!(migrator.run(&a), migrator.run(&b));
    let (ra, rb) = (ra.expect("runner a"), rb.expect("runner b"));

    let mut applied = ra.applied_versions();
    applied.extend(rb.applied_versions());
    applied.sort_unstable();
    assert_eq!(applied, [1, 2, 3, 4], "a: {ra}\nb: {rb}");
    assert!(ra.is_noop() || rb.is_noop(), "a: {ra}\nb: {rb}");
    assert_eq!(history_versions(&a).await, [1, 2, 3, 4]);

    // The lock is released: a third run gets it and has nothing to do.
    assert!(migrator.run(&b).await.unwrap().is_noop());
    let held: i64 = a.query_one(ADVISORY_LOCKS_HERE, &[]).await.unwrap().get(0);
    assert_eq!(held, 0, "advisory lock left held");
}

#[tokio::test]
async fn the_six_indexes_exist_and_are_valid() {
    let db = TestDb::create("migrate").await;
    let client = db.client().await;
    embedded().run(&client).await.expect("run");

    let expected = [
        (
            "tenant_subscriptions_active_tenant_status_idx",
            "ON public.tenant_subscriptions USING btree (tenant_id, status) WHERE (status = 'active'::text)",
        ),
        (
            "leads_org_created_at_idx",
            "ON public.leads USING btree (org_id, created_at DESC)",
        ),
        (
            "deals_org_stage_amount_idx",
            "ON public.deals USING btree (org_id, stage, amount DESC)",
        ),
        (
            "api_endpoints_active_status_type_idx",
            "ON public.api_endpoints USING btree (status, type) WHERE (status = 'active'::text)",
        ),
        (
            "billing_events_subscription_type_processed_idx",
            "ON public.billing_events USING btree (subscription_id, event_type, processed_at DESC)",
        ),
        (
            "collab_activity_tenant_created_at_idx",
            "ON public.collab_activity USING btree (tenant_id, created_at DESC)",
        ),
    ];
    let rows = client
        .query(
            "SELECT indexname::text, indexdef FROM pg_indexes \
             WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' ORDER BY indexname",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "exactly six secondary indexes");
    for (name, definition) in expected {
        let def = rows
            .iter()
            .find(|row| row.get::<_, &str>(0) == name)
            .map(|row| row.get::<_, String>(1))
            .unwrap_or_else(|| panic!("index {name} is missing"));
        assert!(def.contains(definition), "{name}: {def}");
        assert_eq!(
            index_valid(&client, name).await,
            Some(true),
            "{name} is valid"
        );
    }
}
