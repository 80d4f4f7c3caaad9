-- Report intake (issue 16 item 6): DMARC aggregate (RFC 7489) and TLS-RPT (RFC 8460)
-- reports received for tenants' domains, summed per domain, day, source and reporter.
-- `received_reports` keeps each report's identity so a report sent twice counts once.

CREATE TABLE received_reports (
    kind         TEXT NOT NULL,
    org          TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    domain       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, org, report_id)
);
CREATE INDEX received_reports_domain ON received_reports(domain);

CREATE TABLE dmarc_report_rows (
    domain      TEXT NOT NULL,
    day         TEXT NOT NULL,
    source_ip   TEXT NOT NULL,
    org         TEXT NOT NULL,
    messages    INTEGER NOT NULL,
    spf_pass    INTEGER NOT NULL,
    spf_fail    INTEGER NOT NULL,
    dkim_pass   INTEGER NOT NULL,
    dkim_fail   INTEGER NOT NULL,
    dmarc_pass  INTEGER NOT NULL,
    dmarc_fail  INTEGER NOT NULL,
    PRIMARY KEY (domain, day, source_ip, org)
);

CREATE TABLE tlsrpt_report_rows (
    domain       TEXT NOT NULL,
    day          TEXT NOT NULL,
    org          TEXT NOT NULL,
    policy_type  TEXT NOT NULL,
    result_type  TEXT NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (domain, day, org, policy_type, result_type)
);
