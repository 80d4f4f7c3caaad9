"""DMARC aggregate and TLS-RPT report intake end to end. The domain's records suggest
`rua=mailto:dmarc@bounces.<domain>` (DMARC) and `rua=mailto:tls-rpt@bounces.<domain>`
(TLS-RPT); reports written here the way Google (a zip as the whole body) and Microsoft
(a gzip attachment beside a text part) send them, and a TLS-RPT report
(`multipart/report; report-type=tlsrpt`, gzipped JSON), go to those addresses through
the intake listener with smtplib and are summed per day by
`GET /v1/domains/{name}/reports`, sources outside Mailroom's own addresses flagged
`foreign`. The same report twice counts once; a zip bomb, a gzip bomb, malformed XML
and another domain's report are refused with replies naming the problem, and the
session goes on.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import smtplib
import zipfile
from email.message import EmailMessage

import pytest

from mailroom_harness import MailroomServer, binary_missing_reason

DOMAIN = "reports.test"
# 2026-12-05T00:00:00Z .. 23:59:59Z
BEGIN, END = 1796428800, 1796515199
DAY = "2026-12-05"
OWN_IP = "192.0.2.10"  # listed in intake.own_ips
FOREIGN_IP = "203.0.113.66"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    extra = (
        "[intake]\n"
        'listen = ["127.0.0.1:0"]\n'
        f'own_ips = ["{OWN_IP}"]\n'
    )
    srv = MailroomServer(tmp_path_factory.mktemp("mailroom-reports"), extra_config=extra)
    try:
        srv.start()
    except RuntimeError as err:
        srv.kill()
        pytest.fail(str(err), pytrace=False)
    yield srv
    srv.stop()


def intake_addr(server) -> tuple[str, int]:
    host, _, port = server.listeners["intake"][0].rpartition(":")
    return host.strip("[]"), int(port)


def record_row(ip: str, count: int, dkim: str, spf: str, spf_raw: str, dkim_raw: str | None,
               envelope: bool = False) -> str:
    dkim_auth = (
        f"<dkim><domain>{DOMAIN}</domain><selector>mr202612e</selector>"
        f"<result>{dkim_raw}</result></dkim>" if dkim_raw else ""
    )
    ids = (f"<envelope_to>example.com</envelope_to><envelope_from>bounces.{DOMAIN}</envelope_from>"
           if envelope else "")
    return (
        "<record><row>"
        f"<source_ip>{ip}</source_ip><count>{count}</count>"
        f"<policy_evaluated><disposition>none</disposition><dkim>{dkim}</dkim><spf>{spf}</spf>"
        "</policy_evaluated></row>"
        f"<identifiers>{ids}<header_from>{DOMAIN}</header_from></identifiers>"
        f"<auth_results>{dkim_auth}<spf><domain>bounces.{DOMAIN}</domain>"
        f"{'<scope>mfrom</scope>' if envelope else ''}<result>{spf_raw}</result></spf>"
        "</auth_results></record>"
    )


def google_xml(report_id: str, domain: str = DOMAIN) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<feedback>\n'
        "<report_metadata><org_name>google.com</org_name>"
        "<email>noreply-dmarc-support@google.com</email>"
        "<extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>"
        f"<report_id>{report_id}</report_id>"
        f"<date_range><begin>{BEGIN}</begin><end>{END}</end></date_range></report_metadata>\n"
        f"<policy_published><domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf>"
        "<p>none</p><sp>none</sp><pct>100</pct><np>none</np></policy_published>\n"
        + record_row(OWN_IP, 7, "pass", "pass", "pass", "pass")
        + record_row("127.0.0.1", 1, "pass", "pass", "pass", "pass")
        + record_row(FOREIGN_IP, 2, "fail", "fail", "softfail", None)
        + "\n</feedback>\n"
    )


def microsoft_xml() -> str:
    return (
        '<?xml version="1.0"?>\n<feedback xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n<version>1.0</version>'
        "<report_metadata><org_name>Outlook.com</org_name>"
        "<email>dmarcreport@microsoft.com</email>"
        "<report_id>0d3c46a6d7f34c4bb2a8bd23c1b1f2a0</report_id>"
        f"<date_range><begin>{BEGIN}</begin><end>{END + 1}</end></date_range></report_metadata>"
        f"<policy_published><domain>{DOMAIN}</domain><adkim>r</adkim><aspf>r</aspf><p>none</p>"
        "<sp>none</sp><pct>100</pct><fo>0</fo></policy_published>"
        + record_row(OWN_IP, 4, "pass", "fail", "fail", "pass", envelope=True)
        + "</feedback>"
    )


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def google_message(payload: bytes, to: str) -> bytes:
    """Google: the zip is the whole body."""
    m = EmailMessage()
    m["From"] = "noreply-dmarc-support@google.com"
    m["To"] = to
    m["Subject"] = f"Report domain: {DOMAIN} Submitter: google.com Report-ID: <x>"
    name = f"google.com!{DOMAIN}!{BEGIN}!{END}.zip"
    m.set_content(payload, maintype="application", subtype="zip", filename=name,
                  disposition="attachment")
    return m.as_bytes()


def microsoft_message(payload: bytes, to: str, ctype=("application", "gzip"),
                      name: str = f"protection.outlook.com!{DOMAIN}!{BEGIN}!{END + 1}.xml.gz"):
    """Microsoft: a text part and the gzip attachment."""
    m = EmailMessage()
    m["From"] = "DMARC Aggregate Report <dmarcreport@microsoft.com>"
    m["To"] = to
    m["Subject"] = f"Report Domain: {DOMAIN} Submitter: protection.outlook.com Report-ID: <x>"
    m.set_content("This is a DMARC aggregate report from Microsoft Corporation.\n")
    m.add_attachment(payload, maintype=ctype[0], subtype=ctype[1], filename=name)
    return m.as_bytes()


def tlsrpt_message(to: str) -> bytes:
    report = {
        "organization-name": "Google Inc.",
        "date-range": {"start-datetime": f"{DAY}T00:00:00Z",
                       "end-datetime": f"{DAY}T23:59:59Z"},
        "contact-info": "smtp-tls-reporting@google.com",
        "report-id": f"{DAY}T00:00:00Z_{DOMAIN}",
        "policies": [{
            "policy": {"policy-type": "sts",
                       "policy-string": ["version: STSv1", "mode: enforce",
                                         f"mx: mx.{DOMAIN}", "max_age: 86400"],
                       "policy-domain": DOMAIN, "mx-host": [f"mx.{DOMAIN}"]},
            "summary": {"total-successful-session-count": 120,
                        "total-failure-session-count": 5},
            "failure-details": [{"result-type": "certificate-expired",
                                 "sending-mta-ip": "198.51.100.1",
                                 "receiving-mx-hostname": f"mx.{DOMAIN}",
                                 "failed-session-count": 3}],
        }],
    }
    m = EmailMessage()
    m["From"] = "noreply-smtp-tls-reporting@google.com"
    m["To"] = to
    m["Subject"] = f"Report Domain: {DOMAIN} Submitter: google.com Report-ID: <x>"
    m["TLS-Report-Domain"] = DOMAIN
    m["TLS-Report-Submitter"] = "google.com"
    m.set_content("This is an aggregate TLS report from google.com\n")
    m.add_attachment(gzip.compress(json.dumps(report).encode()), maintype="application",
                     subtype="tlsrpt+gzip", filename=f"google.com!{DOMAIN}!{BEGIN}!{END}.json.gz")
    m.replace_header("Content-Type", m["Content-Type"].replace("multipart/mixed",
                                                                "multipart/report"))
    m.set_param("report-type", "tlsrpt")
    return m.as_bytes()


def suggested(records, kind: str) -> str:
    rec = next(r for r in records if r["kind"] == kind)
    found = re.search(r"rua=mailto:([^;,\s]+)", rec["value"])
    assert found, rec
    return found.group(1)


def refused(s: smtplib.SMTP, rcpt: str, message: bytes) -> tuple[int, str]:
    with pytest.raises(smtplib.SMTPDataError) as err:
        s.sendmail("noreply@reporter.example", [rcpt], message)
    s.rset()
    return err.value.smtp_code, err.value.smtp_error.decode()


def test_reports_are_summed_and_bad_ones_refused(server):
    tenant = server.create_tenant("reports", domain=DOMAIN)
    r = server.api("GET", f"/v1/domains/{DOMAIN}", token=tenant.api_key)
    assert r.status == 200, r
    dmarc_to = suggested(r.body["records"], "dmarc")
    tls_to = suggested(r.body["records"], "tls_rpt")
    assert dmarc_to == f"dmarc@bounces.{DOMAIN}", r.body["records"]
    assert tls_to == f"tls-rpt@bounces.{DOMAIN}", r.body["records"]
    tls_rec = next(x for x in r.body["records"] if x["kind"] == "tls_rpt")
    assert tls_rec["name"] == f"_smtp._tls.{DOMAIN}" and tls_rec["required"] is False

    host, port = intake_addr(server)
    google = google_message(zipped(f"google.com!{DOMAIN}!{BEGIN}!{END}.xml",
                                   google_xml("11873490713209458012").encode()), dmarc_to)
    microsoft = microsoft_message(gzip.compress(microsoft_xml().encode()), dmarc_to)
    with smtplib.SMTP(host, port, timeout=30) as s:
        s.ehlo("mail-reporter.example")
        # Mail for a reporting address of a domain nobody has is refused at RCPT.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            s.sendmail("", ["dmarc@bounces.unknown.test"], b"Subject: x\r\n\r\nx\r\n")
        code, text = err.value.recipients["dmarc@bounces.unknown.test"]
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)

        assert s.sendmail("noreply-dmarc-support@google.com", [dmarc_to], google) == {}
        # Sent again (a reporter's retry): accepted, counted once.
        assert s.sendmail("noreply-dmarc-support@google.com", [dmarc_to], google) == {}
        assert s.sendmail("dmarcreport@microsoft.com", [dmarc_to], microsoft) == {}

        # A zip bomb: 17 MiB of zeros in a few kilobytes.
        bomb = zipped("bomb.xml", b"\0" * (17 * 1024 * 1024))
        assert len(bomb) < 100_000
        code, text = refused(s, dmarc_to, google_message(bomb, dmarc_to))
        assert code == 552 and text.startswith("5.3.4") and "decompressed" in text, text
        gz_bomb = gzip.compress(b" " * (17 * 1024 * 1024))
        code, text = refused(s, dmarc_to, microsoft_message(gz_bomb, dmarc_to))
        assert code == 552 and text.startswith("5.3.4"), text
        # Malformed XML: the reply says so.
        broken = google_xml("broken-1").replace("</record>", "", 1).encode()
        code, text = refused(s, dmarc_to, microsoft_message(gzip.compress(broken), dmarc_to))
        assert code == 550 and text.startswith("5.6.0"), text
        assert "malformed DMARC aggregate report" in text, text
        # Not an archive at all.
        code, text = refused(s, dmarc_to, google_message(b"PK\x03\x04 truncated", dmarc_to))
        assert code == 550 and "zip archive" in text, text
        # Another domain's report sent to this domain's address.
        other = google_message(zipped("r.xml", google_xml("other-1", "elsewhere.test").encode()),
                               dmarc_to)
        code, text = refused(s, dmarc_to, other)
        assert code == 550 and text.startswith("5.7.1") and "elsewhere.test" in text, text
        # No report in it.
        code, text = refused(s, dmarc_to, b"Subject: hello\r\n\r\nJust saying hi.\r\n")
        assert code == 550 and "no DMARC aggregate or TLS-RPT report" in text, text

        # The session goes on: the TLS-RPT report in the same connection.
        assert s.sendmail("noreply-smtp-tls-reporting@google.com", [tls_to],
                          tlsrpt_message(tls_to)) == {}

    r = server.api("GET", f"/v1/domains/{DOMAIN}/reports?from=2026-12-01&to=2026-12-31",
                   token=tenant.api_key)
    assert r.status == 200, r
    body = r.body
    assert (body["domain"], body["from"], body["to"]) == (DOMAIN, "2026-12-01", "2026-12-31")
    [day] = body["days"]
    assert day["day"] == DAY
    # Google: 7 + 1 + 2 (counted once), Microsoft: 4.
    assert day["messages"] == 14, day
    assert (day["spf_pass"], day["spf_fail"]) == (8, 6), day
    assert (day["dkim_pass"], day["dkim_fail"]) == (12, 2), day
    assert (day["dmarc_pass"], day["dmarc_fail"]) == (12, 2), day
    assert day["foreign_messages"] == 2, day
    sources = {(x["source_ip"], x["org"]): x for x in day["sources"]}
    assert set(sources) == {(OWN_IP, "google.com"), ("127.0.0.1", "google.com"),
                            (FOREIGN_IP, "google.com"), (OWN_IP, "Outlook.com")}, sources
    assert sources[(FOREIGN_IP, "google.com")]["foreign"] is True
    assert sources[(FOREIGN_IP, "google.com")]["dmarc_fail"] == 2
    assert sources[(OWN_IP, "google.com")]["foreign"] is False  # intake.own_ips
    assert sources[("127.0.0.1", "google.com")]["foreign"] is False  # a listen address
    assert sources[(OWN_IP, "Outlook.com")]["spf_fail"] == 4
    assert day["tls"] == {"successful_sessions": 120, "failed_sessions": 5,
                          "failures_by_result": {"certificate-expired": 3,
                                                 "unspecified": 2}}, day["tls"]
    assert body["totals"]["messages"] == 14 and body["totals"]["foreign_messages"] == 2

    # Days outside the range are not shown; the operator sees it too.
    r = server.api("GET", f"/v1/domains/{DOMAIN}/reports?from=2026-12-06&to=2026-12-31")
    assert r.status == 200 and r.body["days"] == [], r
    # Another tenant does not see the domain at all; bad ranges name the field.
    other = server.create_tenant("reports-other")
    r = server.api("GET", f"/v1/domains/{DOMAIN}/reports", token=other.api_key)
    assert r.status == 404, r
    r = server.api("GET", f"/v1/domains/{DOMAIN}/reports?from=yesterday", token=tenant.api_key)
    assert r.status == 422 and r.body["field"] == "from", r
    # An empty value is not a day either (not read as "absent": schemathesis found it).
    r = server.api("GET", f"/v1/domains/{DOMAIN}/reports?to=", token=tenant.api_key)
    assert r.status == 422 and r.body["field"] == "to", r
    r = server.api("GET", f"/v1/domains/{DOMAIN}/reports?from=2026-12-31&to=2026-12-01",
                   token=tenant.api_key)
    assert r.status == 422 and r.body["field"] == "from", r
    r = server.api("GET", f"/v1/domains/{DOMAIN}/reports?since=2026-12-01",
                   token=tenant.api_key)
    assert r.status == 422 and r.body["field"] == "since", r
