-- Transport security (issue 16): the MTA-STS policy cache, shared by every node, and the
-- TLS-RPT counters (RFC 8460) of each day's delivery attempts.

CREATE TABLE sts_policies (
    domain      TEXT PRIMARY KEY,
    policy_id   TEXT NOT NULL,
    policy      TEXT NOT NULL,
    fetched_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE tls_results (
    day            TEXT NOT NULL,
    domain         TEXT NOT NULL,
    policy_type    TEXT NOT NULL,
    policy_string  TEXT NOT NULL,
    mx_host        TEXT NOT NULL,
    result_type    TEXT NOT NULL,
    count          BIGINT NOT NULL,
    PRIMARY KEY (day, domain, policy_type, policy_string, mx_host, result_type)
);
