-- Ids that say nothing about other tenants.
--
-- Until now every table took its ids from one identity sequence shared by all tenants, so the
-- gap between two ids a tenant received counted the rows every other tenant wrote in between:
-- a tenant could watch a competitor's write rate. From here on each tenant numbers its own rows
-- of `leads`, `deals`, `collab_activity`, `api_endpoints` and `billing_events`, 1, 2, 3, ...
-- with no gaps (a rolled-back insert gives its number back), so an id tells a tenant only how
-- many rows it wrote itself.
--
-- * `tenant_id_counters` holds the last id of each (tenant, table); `reserve_tenant_ids`
--   takes the next `n` of them in one statement and returns the first. The counter row is
--   locked until the transaction ends, so two inserts of one tenant into one table take turns;
--   inserts of different tenants never wait for each other.
-- * A `BEFORE INSERT` trigger numbers every row inserted without an id. Bulk loads (the demo's
--   seed) reserve a block with `reserve_tenant_ids` and insert the ids themselves: the trigger
--   does not fire for them.
-- * An id is unique within its tenant only, so the primary keys become (tenant, id), and a
--   deal's lead is the pair (org_id, lead_id): the database itself now refuses a deal that
--   points at another tenant's lead. Row-level security adds the tenant to every lookup by id,
--   so `WHERE id = $1` still reads one row through the new primary key.
-- * Rows that exist keep their ids (links to them stay valid); each tenant's counter starts at
--   its largest existing id. The indexes of 0002 do not contain `id` and are untouched.
--
-- `tenant_subscriptions` keeps its global ids: it is the tenant directory, written by the
-- operator, not by tenants.
--
-- Needs PostgreSQL 15 (`ON DELETE SET NULL (lead_id)`).

-- This migration reads and fixes every tenant's rows: fail rather than see a filtered part.
SET LOCAL row_security = off;

CREATE TABLE tenant_id_counters (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The table whose rows the counter numbers.
    scope     TEXT NOT NULL,
    last_id   BIGINT NOT NULL CHECK (last_id >= 0),
    PRIMARY KEY (tenant_id, scope)
);

-- A tenant's requests may only move their own counters.
ALTER TABLE tenant_id_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_id_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_id_counters
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Reserves the next `n` ids of `tenant` in `scope` and returns the first of them. The functions
-- keep the search path of this migration, so a session's own search path (a schema per tenant)
-- never changes which counters they move.
CREATE FUNCTION reserve_tenant_ids(p_tenant TEXT, p_scope TEXT, p_n BIGINT) RETURNS BIGINT
LANGUAGE sql VOLATILE STRICT SET search_path FROM CURRENT AS $$
    INSERT INTO tenant_id_counters AS c (tenant_id, scope, last_id)
    VALUES (p_tenant, p_scope, p_n)
    ON CONFLICT (tenant_id, scope) DO UPDATE SET last_id = c.last_id + EXCLUDED.last_id
    RETURNING last_id - p_n + 1
$$;

-- Numbers a row inserted without an id; the trigger's argument names the tenant column.
CREATE FUNCTION assign_tenant_id() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.id := reserve_tenant_ids(to_jsonb(NEW) ->> TG_ARGV[0], TG_TABLE_NAME, 1);
    RETURN NEW;
END
$$;

-- Billing events belong to a tenant through their subscription.
CREATE FUNCTION assign_billing_event_id() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.id := reserve_tenant_ids(
        (SELECT tenant_id FROM tenant_subscriptions WHERE id = NEW.subscription_id),
        TG_TABLE_NAME, 1);
    RETURN NEW;
END
$$;

-- A deal's lead is the tenant's own lead. The application always checked it; a link to another
-- tenant's lead that an older version let through is cut rather than kept.
ALTER TABLE deals DROP CONSTRAINT deals_lead_id_fkey;
UPDATE deals d SET lead_id = NULL
WHERE lead_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = d.lead_id AND l.org_id = d.org_id);

ALTER TABLE leads ALTER COLUMN id DROP IDENTITY;
ALTER TABLE leads DROP CONSTRAINT leads_pkey, ADD PRIMARY KEY (org_id, id);
CREATE TRIGGER assign_id BEFORE INSERT ON leads
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION assign_tenant_id('org_id');

ALTER TABLE deals ALTER COLUMN id DROP IDENTITY;
ALTER TABLE deals DROP CONSTRAINT deals_pkey, ADD PRIMARY KEY (org_id, id);
ALTER TABLE deals ADD CONSTRAINT deals_lead_fkey FOREIGN KEY (org_id, lead_id)
    REFERENCES leads (org_id, id) ON DELETE SET NULL (lead_id);
CREATE TRIGGER assign_id BEFORE INSERT ON deals
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION assign_tenant_id('org_id');

ALTER TABLE collab_activity ALTER COLUMN id DROP IDENTITY;
ALTER TABLE collab_activity DROP CONSTRAINT collab_activity_pkey, ADD PRIMARY KEY (tenant_id, id);
CREATE TRIGGER assign_id BEFORE INSERT ON collab_activity
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION assign_tenant_id('tenant_id');

ALTER TABLE api_endpoints ALTER COLUMN id DROP IDENTITY;
ALTER TABLE api_endpoints DROP CONSTRAINT api_endpoints_pkey, ADD PRIMARY KEY (tenant_id, id);
CREATE TRIGGER assign_id BEFORE INSERT ON api_endpoints
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION assign_tenant_id('tenant_id');

-- Unique per tenant, hence per subscription.
ALTER TABLE billing_events ALTER COLUMN id DROP IDENTITY;
ALTER TABLE billing_events DROP CONSTRAINT billing_events_pkey,
    ADD PRIMARY KEY (subscription_id, id);
CREATE TRIGGER assign_id BEFORE INSERT ON billing_events
    FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION assign_billing_event_id();

-- The counters continue after the ids already given.
INSERT INTO tenant_id_counters (tenant_id, scope, last_id)
          SELECT org_id, 'leads', max(id) FROM leads GROUP BY org_id
UNION ALL SELECT org_id, 'deals', max(id) FROM deals GROUP BY org_id
UNION ALL SELECT tenant_id, 'collab_activity', max(id) FROM collab_activity GROUP BY tenant_id
UNION ALL SELECT tenant_id, 'api_endpoints', max(id) FROM api_endpoints GROUP BY tenant_id
UNION ALL SELECT s.tenant_id, 'billing_events', max(b.id)
          FROM billing_events b JOIN tenant_subscriptions s ON s.id = b.subscription_id
          GROUP BY s.tenant_id;
