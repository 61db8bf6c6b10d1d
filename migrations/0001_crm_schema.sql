-- CRM schema for parapet's multi-tenant SaaS demo.
--
-- Every business row carries the id of the tenant that owns it (`org_id` or
-- `tenant_id`), referencing `tenants(id)` with ON DELETE CASCADE, so that
-- removing a tenant removes all of its data. Indexes beyond the primary keys
-- live in 0002_performance_indexes.sql, which builds them CONCURRENTLY.

-- The tenant directory: one row per customer organisation. The parapet-tenant
-- crate's PostgreSQL directory reads this table (and `tenant_subscriptions`).
CREATE TABLE tenants (
    id           TEXT PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    plan         TEXT NOT NULL DEFAULT 'free',
    -- NULL = the shared database, else the tenant's own connection string.
    database_url TEXT NULL,
    settings     JSONB NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What each tenant pays for: plans and feature flags with their billing state.
CREATE TABLE tenant_subscriptions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- A plan name or a feature flag.
    feature      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'trialing', 'past_due', 'canceled')),
    period_start TIMESTAMPTZ NOT NULL DEFAULT now(),
    period_end   TIMESTAMPTZ NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Sales leads of a tenant's organisation, before they become deals.
CREATE TABLE leads (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    email      TEXT,
    company    TEXT,
    status     TEXT NOT NULL DEFAULT 'new'
               CHECK (status IN ('new', 'contacted', 'qualified', 'lost', 'converted')),
    source     TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Deals in a tenant's sales pipeline, optionally born from a lead.
CREATE TABLE deals (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lead_id    BIGINT NULL REFERENCES leads (id) ON DELETE SET NULL,
    title      TEXT NOT NULL,
    stage      TEXT NOT NULL
               CHECK (stage IN ('prospecting', 'qualification', 'proposal', 'negotiation', 'won', 'lost')),
    -- Minor units (cents) of `currency`.
    amount     BIGINT NOT NULL DEFAULT 0 CHECK (amount >= 0),
    currency   TEXT NOT NULL DEFAULT 'USD',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The API surface a tenant exposes or consumes, for per-endpoint policies.
CREATE TABLE api_endpoints (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    type       TEXT NOT NULL CHECK (type IN ('rest', 'graphql', 'webhook', 'rpc')),
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deprecated', 'disabled')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Billing events (invoices, payments, refunds, ...) of a subscription, as
-- received from the payment provider; `processed_at` is NULL until handled.
CREATE TABLE billing_events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id BIGINT NOT NULL REFERENCES tenant_subscriptions (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    amount          BIGINT NOT NULL DEFAULT 0,
    payload         JSONB NOT NULL DEFAULT '{}',
    processed_at    TIMESTAMPTZ NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The activity feed of a tenant's workspace: who did what to which record.
CREATE TABLE collab_activity (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id   BIGINT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
