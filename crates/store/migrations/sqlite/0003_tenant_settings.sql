-- Per-tenant settings: whether failed recipients produce a bounce report (DSN) to the
-- envelope sender.
ALTER TABLE tenants ADD COLUMN bounce_reports INTEGER NOT NULL DEFAULT 1;
