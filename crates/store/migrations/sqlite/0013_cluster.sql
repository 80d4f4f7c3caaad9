-- Nodes sharing a store (issue 13). On SQLite there is one node, but the same roles
-- hold: leases are owned and fenced, the directory version moves with every change.

ALTER TABLE recipients ADD COLUMN lease_owner TEXT;
ALTER TABLE recipients ADD COLUMN lease_token INTEGER;
CREATE INDEX recipients_lease_token ON recipients(lease_token) WHERE lease_token IS NOT NULL;
CREATE INDEX recipients_lease_owner ON recipients(lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    started_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    version     TEXT NOT NULL,
    detail      TEXT NOT NULL
);

-- A job only one node may run at a time, held until `until` and renewed by its owner.
CREATE TABLE singletons (
    name   TEXT PRIMARY KEY,
    owner  TEXT NOT NULL,
    until  INTEGER NOT NULL
);

-- Moves with every change to what nodes cache (policy directory, DKIM keys).
CREATE TABLE directory_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO directory_version (id, version) VALUES (1, 0);

CREATE TRIGGER dv_tenants_i AFTER INSERT ON tenants BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_tenants_u AFTER UPDATE ON tenants BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_tenants_d AFTER DELETE ON tenants BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_cred_i AFTER INSERT ON smtp_credentials BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_cred_u AFTER UPDATE ON smtp_credentials BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_cred_d AFTER DELETE ON smtp_credentials BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_ips_i AFTER INSERT ON allowed_ips BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_ips_u AFTER UPDATE ON allowed_ips BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_ips_d AFTER DELETE ON allowed_ips BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_domains_i AFTER INSERT ON domains BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_domains_u AFTER UPDATE OF tenant_id, verified, status, allowed_local_parts ON domains BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_domains_d AFTER DELETE ON domains BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_dkim_i AFTER INSERT ON dkim_keys BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_dkim_u AFTER UPDATE ON dkim_keys BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_dkim_d AFTER DELETE ON dkim_keys BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_sandbox_i AFTER INSERT ON sandbox_recipients BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_sandbox_d AFTER DELETE ON sandbox_recipients BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_keys_i AFTER INSERT ON api_keys BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_keys_u AFTER UPDATE OF tenant_id, name, scope ON api_keys BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_keys_d AFTER DELETE ON api_keys BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_secrets_i AFTER INSERT ON api_key_secrets BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_secrets_u AFTER UPDATE ON api_key_secrets BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_secrets_d AFTER DELETE ON api_key_secrets BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_op_i AFTER INSERT ON operator_token BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_op_u AFTER UPDATE ON operator_token BEGIN UPDATE directory_version SET version = version + 1; END;
