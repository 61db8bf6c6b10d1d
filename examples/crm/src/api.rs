//! The CRM routes. Every query runs on a connection checked out for the request's tenant, with
//! row-level security confining it to that tenant's rows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderName, HeaderValue, StatusCode, header};
use parapet::{CacheHandle, Db, Parapet, Tenant, pool::DbTransaction};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::Row;

use crate::{
    problem::{ApiError, Body, Params, RecordId, bad_request, canonical_integer, not_found},
    ready::Readiness,
};

/// What the handlers share (no credentials: readiness holds the pools, not a URL).
#[derive(Clone, Debug)]
pub struct AppState {
    /// Purges what a write changes (absent when the cache is off).
    pub cache: Option<CacheHandle>,
    /// What `/readyz` answers from.
    pub readiness: Readiness,
}

impl AppState {
    /// The state of an app served by `stack`: its cache handle, and readiness probed through
    /// its pools and its cache.
    pub fn new(stack: &Parapet) -> Self {
        let cache = stack.cache();
        Self {
            readiness: Readiness::new(stack.pools().cloned(), cache.clone()),
            cache,
        }
    }
}

const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
const LEAD_STATUSES: [&str; 5] = ["new", "contacted", "qualified", "lost", "converted"];
const STAGES: [&str; 6] = [
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "won",
    "lost",
];
/// The largest body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The API: `/api/*` behind the whole parapet stack, and the unauthenticated probes.
pub fn router(state: AppState, stack: Parapet, admin_token: Option<String>) -> Router {
    let cache = stack.cache();
    let api = Router::new()
        .route("/api/leads", get(list_leads).post(create_lead))
        .route("/api/leads/{id}", get(get_lead))
        .route("/api/deals", get(list_deals).post(create_deal))
        .route("/api/deals/{id}", get(get_deal).patch(update_deal))
        .route("/api/activity", get(list_activity))
        .route("/api/subscription", get(subscription))
        .route("/api/billing/events", get(billing_events))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(stack);
    let mut app = Router::new()
        .merge(api)
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz));
    if let (Some(cache), Some(token)) = (cache, admin_token) {
        app = app.nest_service("/admin/cache", cache.purge_service(token));
    }
    app.fallback(|| async { not_found("route").into_response() })
        .with_state(state)
}

/// A page of results and the cursor of the next one.
fn page(items: Vec<Value>, next: Option<String>, tag: &'static str) -> Response {
    (
        [(CACHE_TAG, HeaderValue::from_static(tag))],
        Json(json!({ "items": items, "next_cursor": next })),
    )
        .into_response()
}

fn one(item: Value, tag: &'static str) -> Response {
    ([(CACHE_TAG, HeaderValue::from_static(tag))], Json(item)).into_response()
}

fn created(item: Value, location: String) -> Response {
    let mut response = (StatusCode::CREATED, Json(item)).into_response();
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn purge(state: &AppState, db: &Db, tags: &[&str]) {
    if let Some(cache) = &state.cache {
        for tag in tags {
            cache.purge_tag(Some(db.tenant()), tag).await;
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageParams {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `limit`: 1 to 100 in canonical form (so `limit=05` is not a second cache entry of
/// `limit=5`), 20 when absent.
fn limit(limit: Option<&str>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(20),
        Some(raw) => canonical_integer(raw, 1..=100).ok_or_else(|| {
            bad_request("limit must be an integer from 1 to 100, without leading zeros")
        }),
    }
}

/// The latest time a list cursor may name: 9999-12-31T23:59:59.999999Z, in microseconds since
/// 1970 (PostgreSQL's own range goes further, but no row of this API is that late).
const MAX_CURSOR_MICROS: i64 = 253_402_300_799_999_999;

/// A cursor is `<key>.<id>` of the last item of the previous page: two integers in canonical
/// form (digits only, no sign, no leading zero), the key in `keys`, the id positive. Anything
/// else, out-of-range numbers included, is a 400: the query never sees them.
fn cursor(
    raw: Option<&str>,
    keys: std::ops::RangeInclusive<i64>,
) -> Result<Option<(i64, i64)>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    raw.split_once('.')
        .and_then(|(key, id)| {
            Some((
                canonical_integer(key, keys)?,
                canonical_integer(id, 1..=i64::MAX)?,
            ))
        })
        .map(Some)
        .ok_or_else(|| bad_request("cursor is not one this API returned"))
}

/// A cursor of a list ordered by creation time: the time (as microseconds since 1970) and
/// the id of the last item.
fn time_cursor(raw: Option<&str>) -> Result<Option<(SystemTime, i64)>, ApiError> {
    Ok(cursor(raw, 0..=MAX_CURSOR_MICROS)?.map(|(micros, id)| {
        // In range: 0 ..= MAX_CURSOR_MICROS.
        let micros = u64::try_from(micros).unwrap_or_default();
        (UNIX_EPOCH + Duration::from_micros(micros), id)
    }))
}

fn next_cursor(rows: &[Row], limit: i64, key_column: &str) -> Option<String> {
    let last = rows.last()?;
    (rows.len() as i64 == limit).then(|| {
        format!(
            "{}.{}",
            last.get::<_, i64>(key_column),
            last.get::<_, i64>("id")
        )
    })
}

const TIMESTAMP: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#;

fn lead_json(row: &Row) -> Value {
    json!({
        "id": row.get::<_, i64>("id"),
        "name": row.get::<_, String>("name"),
        "email": row.get::<_, Option<String>>("email"),
        "company": row.get::<_, Option<String>>("company"),
        "status": row.get::<_, String>("status"),
        "source": row.get::<_, Option<String>>("source"),
        "created_at": row.get::<_, String>("created"),
    })
}

fn lead_columns() -> String {
    format!(
        "id, name, email, company, status, source, \
         to_char(created_at AT TIME ZONE 'UTC', {TIMESTAMP}) AS created, \
         (extract(epoch FROM created_at) * 1000000)::bigint AS micros"
    )
}

async fn list_leads(db: Db, Params(params): Params<PageParams>) -> Result<Response, ApiError> {
    let limit = limit(params.limit.as_deref())?;
    let rows = match time_cursor(params.cursor.as_deref())? {
        None => {
            db.query(
                &format!(
                    "SELECT {} FROM leads ORDER BY created_at DESC, id DESC LIMIT $1",
                    lead_columns()
                ),
                &[&limit],
            )
            .await?
        }
        Some((created, id)) => {
            db.query(
                &format!(
                    "SELECT {} FROM leads WHERE (created_at, id) < ($1::timestamptz, $2) \
                     ORDER BY created_at DESC, id DESC LIMIT $3",
                    lead_columns()
                ),
                &[&created, &id, &limit],
            )
            .await?
        }
    };
    let next = next_cursor(&rows, limit, "micros");
    Ok(page(rows.iter().map(lead_json).collect(), next, "leads"))
}

async fn get_lead(db: Db, RecordId(id): RecordId) -> Result<Response, ApiError> {
    let row = db
        .query_opt(
            &format!("SELECT {} FROM leads WHERE id = $1", lead_columns()),
            &[&id],
        )
        .await?
        .ok_or_else(|| not_found("lead"))?;
    Ok(one(lead_json(&row), "leads"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLead {
    name: String,
    email: Option<String>,
    company: Option<String>,
    status: Option<String>,
    source: Option<String>,
}

fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(bad_request(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    value.map(|v| text(field, v, max)).transpose()
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(bad_request(format!(
            "{field} must be one of: {}",
            allowed.join(", ")
        )))
    }
}

async fn record_activity(
    tx: &DbTransaction<'_>,
    tenant: &str,
    action: &str,
    subject: &str,
    id: i64,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO collab_activity (tenant_id, actor, action, subject_type, subject_id) \
         VALUES ($1, 'api', $2, $3, $4)",
        &[&tenant, &action, &subject, &id],
    )
    .await?;
    Ok(())
}

async fn create_lead(
    State(state): State<AppState>,
    mut db: Db,
    Body(lead): Body<NewLead>,
) -> Result<Response, ApiError> {
    let name = text("name", &lead.name, 200)?;
    let email = optional_text("email", lead.email.as_deref(), 320)?;
    if email.as_deref().is_some_and(|e| !e.contains('@')) {
        return Err(bad_request("email must be an email address"));
    }
    let company = optional_text("company", lead.company.as_deref(), 200)?;
    let status = one_of(
        "status",
        lead.status.as_deref().unwrap_or("new"),
        &LEAD_STATUSES,
    )?;
    let source = optional_text("source", lead.source.as_deref(), 100)?;
    let tenant = db.tenant().as_str().to_owned();
    let tx = db.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO leads (org_id, name, email, company, status, source) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {}",
                lead_columns()
            ),
            &[&tenant, &name, &email, &company, &status, &source],
        )
        .await?;
    let id: i64 = row.get("id");
    record_activity(&tx, &tenant, "created", "lead", id).await?;
    tx.commit().await?;
    purge(&state, &db, &["leads", "activity"]).await;
    Ok(created(lead_json(&row), format!("/api/leads/{id}")))
}

fn deal_json(row: &Row) -> Value {
    json!({
        "id": row.get::<_, i64>("id"),
        "lead_id": row.get::<_, Option<i64>>("lead_id"),
        "title": row.get::<_, String>("title"),
        "stage": row.get::<_, String>("stage"),
        "amount": row.get::<_, i64>("amount"),
        "currency": row.get::<_, String>("currency"),
        "created_at": row.get::<_, String>("created"),
        "updated_at": row.get::<_, String>("updated"),
    })
}

fn deal_columns() -> String {
    format!(
        "id, lead_id, title, stage, amount, currency, \
         to_char(created_at AT TIME ZONE 'UTC', {TIMESTAMP}) AS created, \
         to_char(updated_at AT TIME ZONE 'UTC', {TIMESTAMP}) AS updated"
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DealParams {
    stage: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list_deals(db: Db, Params(params): Params<DealParams>) -> Result<Response, ApiError> {
    let limit = limit(params.limit.as_deref())?;
    let stage = params
        .stage
        .as_deref()
        .map(|s| one_of("stage", s, &STAGES))
        .transpose()?;
    // Largest amount first; the cursor is the last (amount, id).
    let after = cursor(params.cursor.as_deref(), 0..=MAX_AMOUNT)?;
    let (amount, id) = after.unwrap_or((i64::MAX, i64::MAX));
    let sql = format!(
        "SELECT {} FROM deals WHERE ($1::text IS NULL OR stage = $1) AND (amount, id) < ($2, $3) \
         ORDER BY amount DESC, id DESC LIMIT $4",
        deal_columns()
    );
    let rows = db.query(&sql, &[&stage, &amount, &id, &limit]).await?;
    let next = next_cursor(&rows, limit, "amount");
    Ok(page(rows.iter().map(deal_json).collect(), next, "deals"))
}

async fn get_deal(db: Db, RecordId(id): RecordId) -> Result<Response, ApiError> {
    let row = db
        .query_opt(
            &format!("SELECT {} FROM deals WHERE id = $1", deal_columns()),
            &[&id],
        )
        .await?
        .ok_or_else(|| not_found("deal"))?;
    Ok(one(deal_json(&row), "deals"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDeal {
    title: String,
    stage: Option<String>,
    amount: i64,
    currency: Option<String>,
    lead_id: Option<i64>,
}

const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

fn amount(value: i64) -> Result<i64, ApiError> {
    if (0..=MAX_AMOUNT).contains(&value) {
        Ok(value)
    } else {
        Err(bad_request(format!(
            "amount is in minor units, from 0 to {MAX_AMOUNT}"
        )))
    }
}

async fn create_deal(
    State(state): State<AppState>,
    mut db: Db,
    Body(deal): Body<NewDeal>,
) -> Result<Response, ApiError> {
    let title = text("title", &deal.title, 200)?;
    let stage = one_of(
        "stage",
        deal.stage.as_deref().unwrap_or("prospecting"),
        &STAGES,
    )?;
    let amount = amount(deal.amount)?;
    let currency = deal.currency.unwrap_or_else(|| "USD".to_owned());
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad_request("currency must be an ISO 4217 code such as USD"));
    }
    let tenant = db.tenant().as_str().to_owned();
    let tx = db.transaction().await?;
    if let Some(lead) = deal.lead_id {
        // A foreign key is checked without row-level security: look the lead up as the tenant
        // first, so a deal can never point at another tenant's lead.
        if tx
            .query("SELECT 1 FROM leads WHERE id = $1", &[&lead])
            .await?
            .is_empty()
        {
            return Err(bad_request("lead_id names no lead of this tenant"));
        }
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO deals (org_id, lead_id, title, stage, amount, currency) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {}",
                deal_columns()
            ),
            &[&tenant, &deal.lead_id, &title, &stage, &amount, &currency],
        )
        .await?;
    let id: i64 = row.get("id");
    record_activity(&tx, &tenant, "created", "deal", id).await?;
    tx.commit().await?;
    purge(&state, &db, &["deals", "activity"]).await;
    Ok(created(deal_json(&row), format!("/api/deals/{id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DealChange {
    title: Option<String>,
    stage: Option<String>,
    amount: Option<i64>,
}

async fn update_deal(
    State(state): State<AppState>,
    mut db: Db,
    RecordId(id): RecordId,
    Body(change): Body<DealChange>,
) -> Result<Response, ApiError> {
    if change.title.is_none() && change.stage.is_none() && change.amount.is_none() {
        return Err(bad_request(
            "nothing to change: send title, stage or amount",
        ));
    }
    let title = optional_text("title", change.title.as_deref(), 200)?;
    let stage = change
        .stage
        .as_deref()
        .map(|s| one_of("stage", s, &STAGES))
        .transpose()?;
    let amount = change.amount.map(amount).transpose()?;
    let tenant = db.tenant().as_str().to_owned();
    let tx = db.transaction().await?;
    let row = tx
        .query(
            &format!(
                "UPDATE deals SET title = coalesce($2, title), stage = coalesce($3, stage), \
                 amount = coalesce($4, amount), updated_at = now() WHERE id = $1 RETURNING {}",
                deal_columns()
            ),
            &[&id, &title, &stage, &amount],
        )
        .await?;
    let Some(row) = row.first() else {
        return Err(not_found("deal"));
    };
    record_activity(&tx, &tenant, "updated", "deal", id).await?;
    tx.commit().await?;
    purge(&state, &db, &["deals", "activity"]).await;
    Ok(Json(deal_json(row)).into_response())
}

async fn list_activity(db: Db, Params(params): Params<PageParams>) -> Result<Response, ApiError> {
    let limit = limit(params.limit.as_deref())?;
    let (created, id) = time_cursor(params.cursor.as_deref())?.unzip();
    let rows = db
        .query(
            &format!(
                "SELECT id, actor, action, subject_type, subject_id, \
                 to_char(created_at AT TIME ZONE 'UTC', {TIMESTAMP}) AS created, \
                 (extract(epoch FROM created_at) * 1000000)::bigint AS micros \
                 FROM collab_activity \
                 WHERE $1::timestamptz IS NULL OR (created_at, id) < ($1, $2::bigint) \
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ),
            &[&created, &id, &limit],
        )
        .await?;
    let next = next_cursor(&rows, limit, "micros");
    let items = rows
        .iter()
        .map(|row| {
            json!({
                "id": row.get::<_, i64>("id"),
                "actor": row.get::<_, String>("actor"),
                "action": row.get::<_, String>("action"),
                "subject_type": row.get::<_, String>("subject_type"),
                "subject_id": row.get::<_, Option<i64>>("subject_id"),
                "created_at": row.get::<_, String>("created"),
            })
        })
        .collect();
    Ok(page(items, next, "activity"))
}

async fn subscription(tenant: Tenant, db: Db) -> Result<Response, ApiError> {
    // tenant_subscriptions is directory data (no row-level security): filter by tenant.
    let rows = db
        .query(
            &format!(
                "SELECT id, feature, status, \
                 to_char(period_start AT TIME ZONE 'UTC', {TIMESTAMP}) AS since \
                 FROM tenant_subscriptions WHERE tenant_id = $1 ORDER BY id"
            ),
            &[&tenant.id().as_str()],
        )
        .await?;
    let subscriptions: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "id": row.get::<_, i64>("id"),
                "feature": row.get::<_, String>("feature"),
                "status": row.get::<_, String>("status"),
                "since": row.get::<_, String>("since"),
            })
        })
        .collect();
    Ok(one(
        json!({
            "tenant": tenant.id(),
            "name": tenant.record().name,
            "plan": tenant.plan(),
            "features": tenant.features(),
            "subscriptions": subscriptions,
        }),
        "subscription",
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BillingParams {
    subscription_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<String>,
}

async fn billing_events(
    db: Db,
    Params(params): Params<BillingParams>,
) -> Result<Response, ApiError> {
    let limit = limit(params.limit.as_deref())?;
    let subscription_id = params
        .subscription_id
        .as_deref()
        .map(|raw| {
            canonical_integer(raw, 1..=i64::MAX).ok_or_else(|| {
                bad_request("subscription_id must be a positive integer, without leading zeros")
            })
        })
        .transpose()?;
    let event_type = optional_text("type", params.event_type.as_deref(), 100)?;
    let rows = db
        .query(
            &format!(
                "SELECT id, subscription_id, event_type, amount, payload, \
                 to_char(processed_at AT TIME ZONE 'UTC', {TIMESTAMP}) AS processed, \
                 to_char(created_at AT TIME ZONE 'UTC', {TIMESTAMP}) AS created \
                 FROM billing_events \
                 WHERE ($1::bigint IS NULL OR subscription_id = $1) \
                   AND ($2::text IS NULL OR event_type = $2) \
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ),
            &[&subscription_id, &event_type, &limit],
        )
        .await?;
    let items = rows
        .iter()
        .map(|row| {
            json!({
                "id": row.get::<_, i64>("id"),
                "subscription_id": row.get::<_, i64>("subscription_id"),
                "type": row.get::<_, String>("event_type"),
                "amount": row.get::<_, i64>("amount"),
                "payload": row.get::<_, Value>("payload"),
                "processed_at": row.get::<_, Option<String>>("processed"),
                "created_at": row.get::<_, String>("created"),
            })
        })
        .collect();
    Ok(page(items, None, "billing"))
}

/// PostgreSQL is required; Redis is an accelerator: without it the API is degraded, not down.
///
/// PostgreSQL is asked through the API's own pool, Redis through the cache's own connection
/// (one server, a Cluster or Sentinel, over TLS or not, exactly as the cache reaches it); one
/// probe's result answers every call for a second ([`Readiness`]).
async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.readiness.check().await;
    let redis = match report.redis {
        None => "not configured",
        Some(true) => "up",
        Some(false) => "down",
    };
    let (status, code) = match (report.postgres, report.redis) {
        (false, _) => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        (true, Some(false)) => ("degraded", StatusCode::OK),
        (true, _) => ("ready", StatusCode::OK),
    };
    let body = json!({
        "status": status,
        "postgres": if report.postgres { "up" } else { "down" },
        "redis": redis,
    });
    (
        code,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response()
}
