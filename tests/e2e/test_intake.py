"""Bounce and complaint intake end to end: send two messages over the HTTP API through
a static route to the sink, read their VERP envelope senders at the sink, then submit an
RFC 3464 DSN and an RFC 5965 ARF report to the intake listener with smtplib. The right
events (`bounced` with `async: true`, `complained`) and suppressions follow; mail for any
other address is refused with 550 5.1.1; with a small `health.min_sample` the hard bounce
pauses the tenant (event, HTTP 403) until the operator resumes it.
"""

from __future__ import annotations

import smtplib
import uuid

import pytest

from mailroom_harness import MailroomServer, binary_missing_reason, poll_until
from sink import SmtpSink
from test_delivery import delivery_config

DOMAIN = "acme.test"


def uniq(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}@example.net"


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    extra = delivery_config(sink.port) + (
        "\n[intake]\n"
        'listen = ["127.0.0.1:0"]\n'
        "\n[health]\n"
        "min_sample = 2\n"
    )
    srv = MailroomServer(tmp_path_factory.mktemp("mailroom-intake"), extra_config=extra)
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


def send(server, tenant, to):
    body = {"from": f"app@{DOMAIN}", "to": [to], "subject": "intake e2e", "text": "hello\n"}
    return server.api("POST", "/v1/messages", body, token=tenant.api_key)


def state_of(server, msg_id):
    r = server.api("GET", f"/v1/messages/{msg_id}")
    assert r.status == 200, r
    return r.body["recipients"][0]["state"]


def events(server, kind, **query):
    q = "&".join(f"{k}={v}" for k, v in {"type": kind, **query}.items())
    r = server.api("GET", f"/v1/events?{q}")
    assert r.status == 200, r
    return r.body["events"]


def dsn(verp: str, rcpt: str) -> str:
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: {verp}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BB"\r\n'
        "\r\n"
        "--BB\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--BB\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mail.example.net\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n"
        "\r\n"
        f"--BB\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <{verp}>\r\n"
        f"From: app@{DOMAIN}\r\nTo: {rcpt}\r\nSubject: intake e2e\r\n\r\n"
        "--BB--\r\n"
    )


def arf(verp: str, original: bytes) -> str:
    head = original.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return (
        "From: fbl@isp.example\r\n"
        f"To: {verp}\r\n"
        "Subject: Complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="FF"\r\n'
        "\r\n"
        "--FF\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--FF\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        "Source-IP: 127.0.0.1\r\n\r\n"
        f"--FF\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <{verp}>\r\n{head}\r\n\r\n"
        "body\r\n--FF--\r\n"
    )


def submit(server, sender: str, rcpt: str, message: str):
    host, port = intake_addr(server)
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.ehlo("mx.example.net")
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.sendmail(sender, [rcpt], message.encode())


def test_dsn_and_arf_are_recorded_and_other_mail_refused(server, sink):
    tenant = server.create_tenant("intake", domain=DOMAIN)
    to_a, to_b = uniq("ok"), uniq("ok")
    ids = []
    for to in (to_a, to_b):
        r = send(server, tenant, to)
        assert r.status == 202, r
        ids.append(r.body["id"])
    got_a, got_b = sink.wait_for_rcpt(to_a), sink.wait_for_rcpt(to_b)
    verp_a, verp_b = got_a.mail_from, got_b.mail_from
    assert verp_a == f"b+{ids[0].lower()}-0@bounces.{DOMAIN}", got_a
    for msg_id in ids:
        poll_until(lambda: state_of(server, msg_id) == "delivered", what="delivered")

    # Anything but a VERP address of a stored message is refused at RCPT.
    host, port = intake_addr(server)
    for rcpt in (f"someone@bounces.{DOMAIN}", "postmaster@example.com",
                 f"b+{ids[0].lower()}-7@bounces.{DOMAIN}",
                 f"b+{ids[0].lower()}-0@bounces.other.test"):
        with smtplib.SMTP(host, port, timeout=10) as s:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
                s.sendmail("", [rcpt], b"Subject: x\r\n\r\nx\r\n")
            code, text = err.value.recipients[rcpt]
            assert code == 550 and text.startswith(b"5.1.1"), (rcpt, code, text)
    # A message that is neither a DSN nor a feedback report is refused after DATA.
    with smtplib.SMTP(host, port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPDataError) as err:
            s.sendmail("friend@example.org", [verp_a], b"Subject: hi\r\n\r\nout of office\r\n")
        assert err.value.smtp_code == 550

    # The DSN from the null sender: async hard bounce, suppressed.
    submit(server, "", verp_a, dsn(verp_a, to_a))
    bounced = poll_until(lambda: events(server, "bounced", message_id=ids[0]), what="bounced")
    assert bounced[0]["recipient"] == to_a
    assert bounced[0]["detail"]["async"] is True
    assert bounced[0]["detail"]["bounce_class"] == "hard"
    assert state_of(server, ids[0]) == "bounced"
    r = server.api("GET", f"/v1/suppressions/{to_a}", token=tenant.api_key)
    assert r.status == 200 and r.body["reason"] == "bounce", r

    # The ARF complaint about message B.
    submit(server, "fbl@isp.example", verp_b, arf(verp_b, got_b.data))
    complained = poll_until(lambda: events(server, "complained", message_id=ids[1]),
                            what="complained")
    assert complained[0]["recipient"] == to_b
    assert complained[0]["detail"]["feedback_type"] == "abuse"
    assert state_of(server, ids[1]) == "delivered"
    r = server.api("GET", f"/v1/suppressions/{to_b}", token=tenant.api_key)
    assert r.status == 200 and r.body["reason"] == "complaint", r

    # Sender health (min_sample = 2): 1 hard bounce of 2 recipients pauses the tenant.
    r = server.api("GET", f"/v1/tenants/{tenant.id}/health", token=tenant.api_key)
    assert r.status == 200, r
    assert r.body["status"] == "paused" and r.body["level"] == "paused", r.body
    assert r.body["bounce_rate"] == 0.5, r.body
    paused = events(server, "sender_health.paused", tenant=tenant.id)
    assert paused and paused[0]["detail"]["counts"]["hard_bounces"] == 1, paused
    r = send(server, tenant, uniq("ok"))
    assert r.status == 403, r

    # The operator resumes it; the window starts afresh.
    r = server.api("PATCH", f"/v1/tenants/{tenant.id}", {"status": "active"})
    assert r.status == 200, r
    r = send(server, tenant, uniq("ok"))
    assert r.status == 202, r
