-- no-transaction
--
-- Indexes for the hot queries of the CRM schema, built CONCURRENTLY so that
-- they do not block writes on a live database. CREATE INDEX CONCURRENTLY
-- cannot run inside a transaction block, hence the header above: the runner
-- executes this file statement by statement, outside a transaction, and
-- rebuilds any index that an interrupted build left INVALID.

-- The tenant directory's lookup of a tenant's active plans and features.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tenant_subscriptions_active_tenant_status_idx
    ON tenant_subscriptions (tenant_id, status)
    WHERE status = 'active';

-- A tenant's newest leads first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_org_created_at_idx
    ON leads (org_id, created_at DESC);

-- A tenant's pipeline by stage, biggest deals first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_org_stage_amount_idx
    ON deals (org_id, stage, amount DESC);

-- Active endpoints by kind.
CREATE INDEX CONCURRENTLY IF NOT EXISTS api_endpoints_active_status_type_idx
    ON api_endpoints (status, type)
    WHERE status = 'active';

-- A subscription's events of one type, most recently processed first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS billing_events_subscription_type_processed_idx
    ON billing_events (subscription_id, event_type, processed_at DESC);

-- A tenant's activity feed, newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS collab_activity_tenant_created_at_idx
    ON collab_activity (tenant_id, created_at DESC);
