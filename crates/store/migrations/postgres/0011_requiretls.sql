-- REQUIRETLS (RFC 8689): the message asked to travel only over validated TLS to
-- exchangers that offer REQUIRETLS.
ALTER TABLE messages ADD COLUMN require_tls BOOLEAN NOT NULL DEFAULT FALSE;
