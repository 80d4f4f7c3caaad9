-- Traffic shaping state shared by every node (issue 17): throttles and suspensions
-- with cause and expiry, warm-up counts per day/address/provider, warm-up starts,
-- tenant egress pools.

CREATE TABLE shaping_throttles (
    id          BIGSERIAL PRIMARY KEY,
    site        TEXT NOT NULL,
    provider    TEXT,
    -- '' = every tenant at the site.
    tenant      TEXT NOT NULL DEFAULT '',
    action      TEXT NOT NULL,
    value       BIGINT,
    rule        TEXT NOT NULL,
    cause       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    UNIQUE (site, tenant, action)
);
CREATE INDEX shaping_throttles_expiry ON shaping_throttles(expires_at);

CREATE TABLE egress_counts (
    day       BIGINT NOT NULL,
    address   TEXT NOT NULL,
    provider  TEXT NOT NULL,
    sent      BIGINT NOT NULL,
    PRIMARY KEY (day, address, provider)
);

CREATE TABLE egress_warmup (
    address    TEXT PRIMARY KEY,
    start_day  BIGINT NOT NULL
);

CREATE TABLE tenant_egress_pools (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    pool       TEXT NOT NULL
);
