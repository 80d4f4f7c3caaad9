-- Bounce and complaint intake, and sender health.
--
-- One row per tenant whose sender health has been assessed: the level it was last
-- found at (ok | warning | paused), so a warning or a pause is raised once per
-- crossing, and the start of the counting window: outcomes recorded before
-- `window_start` are not counted (it moves to the resume time when an operator
-- resumes a paused tenant, so the old bad sample does not pause it again at once).
CREATE TABLE sender_health (
    tenant_id     TEXT PRIMARY KEY,
    level         TEXT NOT NULL,
    window_start  INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Rolling rates count a tenant's delivered/bounced/complained events in a time
-- window; the same index (one column longer) still serves the (tenant, type) lookups.
DROP INDEX IF EXISTS events_tenant;
CREATE INDEX events_tenant ON events(tenant_id, type, at);
