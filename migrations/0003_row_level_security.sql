-- Row-level security for the shared-schema isolation mode of parapet-pool.
--
-- Every CRM table that holds a tenant's data only shows, and only accepts, the rows of the tenant
-- named by the `app.tenant_id` setting, which parapet-pool sets on each checkout and resets when
-- the connection goes back to the pool. Without the setting, no row is visible (fail closed).
--
-- FORCE makes the policies apply to the tables' owner too. Superusers and roles with BYPASSRLS
-- still bypass every policy: the application must connect as an ordinary role.
--
-- `tenants` and `tenant_subscriptions` are the tenant directory, read before a tenant is known,
-- so they carry no policy: do not expose them to tenant-scoped queries.

ALTER TABLE leads ENABLE ROW LEVEL SECURITY;
ALTER TABLE leads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON leads
    USING (org_id = current_setting('app.tenant_id', true))
    WITH CHECK (org_id = current_setting('app.tenant_id', true));

ALTER TABLE deals ENABLE ROW LEVEL SECURITY;
ALTER TABLE deals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deals
    USING (org_id = current_setting('app.tenant_id', true))
    WITH CHECK (org_id = current_setting('app.tenant_id', true));

ALTER TABLE api_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_endpoints
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

ALTER TABLE collab_activity ENABLE ROW LEVEL SECURITY;
ALTER TABLE collab_activity FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON collab_activity
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Billing events belong to a tenant through their subscription.
ALTER TABLE billing_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON billing_events
    USING (EXISTS (
        SELECT 1 FROM tenant_subscriptions s
        WHERE s.id = billing_events.subscription_id
          AND s.tenant_id = current_setting('app.tenant_id', true)))
    WITH CHECK (EXISTS (
        SELECT 1 FROM tenant_subscriptions s
        WHERE s.id = billing_events.subscription_id
          AND s.tenant_id = current_setting('app.tenant_id', true)));
