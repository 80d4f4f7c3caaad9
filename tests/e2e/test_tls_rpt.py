"""TLS-RPT (RFC 8460) daily reports end to end. Mailroom delivers a message to a domain
whose `_smtp._tls` TXT record asks for reports by mail and by HTTPS; the node is then
restarted with `delivery.tls_rpt = "on"` and its report clock one day ahead
(`tls_rpt_clock_offset_secs = 86400`, test-only), so today's counters are "yesterday's"
and are reported at once:

- by mail: a `multipart/report; report-type="tlsrpt"` message from the operator's tenant,
  DKIM-signed with its domain, whose `application/tlsrpt+gzip` part holds the report;
- by HTTPS POST (`application/tlsrpt+gzip`) to a loopback receiver with a test-CA cert,
  which answers 503 twice first: the POST is tried again with backoff, not dropped;
- both reports validate against the RFC 8460 §4.4 JSON schema and count the success;
- once per day: after another restart the day is not reported again.
Runs on SQLite and PostgreSQL (MAILROOM_TEST_BACKEND).
"""

from __future__ import annotations

import email
import email.policy
import gzip
import http.server
import json
import threading
import time
import uuid

import jsonschema
import pytest

from mailroom_harness import poll_until, start_server
from sink import SmtpSink
from test_delivery import send, wait_states
from tls_fixtures import CertAuthority, DnsServer

TARGET = "rpt-target.test"
REPORTS = "reports.test"

# RFC 8460 §4.4 as a JSON schema (required members and their types).
SCHEMA = {
    "type": "object",
    "required": ["organization-name", "date-range", "contact-info", "report-id", "policies"],
    "properties": {
        "organization-name": {"type": "string"},
        "contact-info": {"type": "string"},
        "report-id": {"type": "string"},
        "date-range": {
            "type": "object",
            "required": ["start-datetime", "end-datetime"],
            "properties": {
                "start-datetime": {"type": "string", "format": "date-time"},
                "end-datetime": {"type": "string", "format": "date-time"},
            },
        },
        "policies": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["policy", "summary"],
                "properties": {
                    "policy": {
                        "type": "object",
                        "required": ["policy-type", "policy-domain"],
                        "properties": {
                            "policy-type": {"enum": ["tlsa", "sts", "no-policy-found"]},
                            "policy-string": {"type": "array", "items": {"type": "string"}},
                            "policy-domain": {"type": "string"},
                            "mx-host": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "summary": {
                        "type": "object",
                        "required": ["total-successful-session-count",
                                     "total-failure-session-count"],
                        "properties": {
                            "total-successful-session-count": {"type": "integer", "minimum": 0},
                            "total-failure-session-count": {"type": "integer", "minimum": 0},
                        },
                    },
                    "failure-details": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["result-type", "failed-session-count"],
                            "properties": {
                                "result-type": {"type": "string"},
                                "receiving-mx-hostname": {"type": "string"},
                                "failed-session-count": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                },
            },
        },
    },
}


class ReportReceiver:
    """HTTPS on 127.0.0.1: keeps every accepted POST's content type and body; the
    first `refuse_first` POSTs are answered 503 (and only counted in `refused`)."""

    def __init__(self, context):
        self.posts: list[tuple[str, bytes]] = []
        self.refuse_first = 0
        self.refused: list[float] = []
        self.accepted: list[float] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if len(outer.refused) < outer.refuse_first:
                    outer.refused.append(time.monotonic())
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.accepted.append(time.monotonic())
                outer.posts.append((self.headers.get("Content-Type", ""), body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return CertAuthority(tmp_path_factory.mktemp("tlsrpt-ca"))


@pytest.fixture(scope="module")
def sink(pki):
    s = SmtpSink(hostname="mx.rpt.test")
    s.tls_context = pki.issue([f"mx.{TARGET}"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def receiver(pki):
    r = ReportReceiver(pki.issue([f"rpt.{REPORTS}"]))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def dns_server(receiver):
    s = DnsServer()
    for domain in (TARGET, REPORTS, "ops-rpt.test"):
        s.mx[domain] = [f"10 mx.{domain}"]
        s.a[f"mx.{domain}"] = ["127.0.0.1"]
    s.a[f"rpt.{REPORTS}"] = ["127.0.0.1"]
    s.txt[f"_smtp._tls.{TARGET}"] = [
        f"v=TLSRPTv1; rua=mailto:tlsrpt@{REPORTS},https://rpt.{REPORTS}:{receiver.port}/tlsrpt"]
    yield s
    s.stop()


def test_daily_report_by_mail_and_https(tmp_path, pki, sink, receiver, dns_server):
    extra = (
        "[delivery]\n"
        "allow_private = true\n"
        f"mx_port = {sink.port}\n"
        f'tls_test_ca_file = "{pki.pem_path}"\n'
        "retry_schedule_secs = [1]\n"
        "retry_jitter = 0.0\n"
        + dns_server.config()
    )
    srv = start_server(tmp_path, extra_config=extra)
    try:
        ops = srv.create_tenant("ops", domain="ops-rpt.test")
        to = f"u-{uuid.uuid4().hex[:8]}@{TARGET}"
        msg_id, _ = send(srv, ops, [to])
        wait_states(srv, msg_id, {to: "delivered"})
        srv.stop()
        text = srv.config_path.read_text()
        srv.config_path.write_text(text.replace(
            "[delivery]\n",
            "[delivery]\n"
            'tls_rpt = "on"\n'
            f'tls_rpt_tenant = "{ops.name}"\n'
            'tls_rpt_from = "tlsrpt@ops-rpt.test"\n'
            'tls_rpt_organization = "Mailroom e2e"\n'
            "tls_rpt_check_secs = 1\n"
            "tls_rpt_clock_offset_secs = 86400\n", 1))
        # The receiver fails twice (503): the POST is tried again later, with backoff
        # (check interval 1 s: after 1 s, then 2 s), not dropped (RFC 8460 §5.3).
        receiver.refuse_first = 2
        srv.start()

        today = time.strftime("%Y-%m-%d", time.gmtime())
        # By HTTPS.
        poll_until(lambda: receiver.posts, 30, what="the TLS-RPT POST")
        assert len(receiver.refused) == 2, receiver.refused
        gaps = [receiver.refused[1] - receiver.refused[0],
                receiver.accepted[0] - receiver.refused[1]]
        assert gaps[0] >= 0.9 and gaps[1] >= 1.8, gaps
        ctype, body = receiver.posts[0]
        assert ctype == "application/tlsrpt+gzip", ctype
        posted = json.loads(gzip.decompress(body))
        check_report(posted, today)

        # By mail: a multipart/report from the operator's tenant, DKIM-signed.
        mail = sink.wait_for_rcpt(f"tlsrpt@{REPORTS}")
        msg = email.message_from_bytes(mail.data, policy=email.policy.default)
        assert msg.get_content_type() == "multipart/report", msg["Content-Type"]
        assert msg.get_param("report-type") == "tlsrpt", msg["Content-Type"]
        assert msg["TLS-Report-Domain"] == TARGET
        assert "d=ops-rpt.test" in str(msg["DKIM-Signature"]).replace(" ", ""), msg["DKIM-Signature"]
        parts = [p for p in msg.iter_parts() if p.get_content_type() == "application/tlsrpt+gzip"]
        assert len(parts) == 1, [p.get_content_type() for p in msg.iter_parts()]
        mailed = json.loads(gzip.decompress(parts[0].get_content()))
        check_report(mailed, today)
        assert mailed == posted

        # Once per day: a restart does not report the day again. The report mail's
        # delivery is recorded first: a message the sink took but whose outcome the
        # node had not yet written may be sent again after a restart (at least once),
        # which is not what this checks.
        def report_delivered():
            r = srv.api("GET", f"/v1/messages?recipient=tlsrpt@{REPORTS}", token=ops.api_key)
            items = r.body["items"] if r.status == 200 else []
            return [m for m in items if m.get("state") == "delivered"]
        poll_until(report_delivered, 30, what="the report mail recorded as delivered")
        srv.stop()
        srv.start()
        time.sleep(3)
        assert len(receiver.posts) == 1, receiver.posts
        assert len(sink.messages_for(f"tlsrpt@{REPORTS}")) == 1
    finally:
        srv.stop()


def check_report(report: dict, day: str):
    jsonschema.validate(report, SCHEMA)
    assert report["date-range"]["start-datetime"] == f"{day}T00:00:00Z", report
    assert report["organization-name"] == "Mailroom e2e"
    (policy,) = report["policies"]
    assert policy["policy"]["policy-domain"] == TARGET
    assert policy["policy"]["policy-type"] == "no-policy-found", policy
    assert policy["summary"]["total-successful-session-count"] >= 1, policy
