"""REQUIRETLS (RFC 8689) end to end. Submission offers REQUIRETLS only under TLS; a
message that asks for it (SMTP `MAIL FROM … REQUIRETLS`, HTTP `"require_tls": true`)
goes only over TLS that DANE (here) or MTA-STS validated, to an exchanger that offers
REQUIRETLS — which is passed the parameter on. Otherwise it bounces `5.7.30` with a DSN
to the sender.

- DANE-validated exchanger offering REQUIRETLS: delivered, the sink saw `REQUIRETLS`.
- Same exchanger, but REQUIRETLS not offered: bounced 5.7.30, DSN to the sender.
- No validated TLS (opportunistic): bounced 5.7.30 (HTTP submission), DSN to the sender.
- Each DSN returns none of the original's content (RFC 8689 §5: the report itself goes
  without REQUIRETLS): no message/rfc822 or text/rfc822-headers part, no subject, no body.
- REQUIRETLS is offered under TLS only (the 530 5.7.10 for a plain session is in the
  smtpd transcripts).
Runs on SQLite and PostgreSQL (MAILROOM_TEST_BACKEND).
"""

from __future__ import annotations

import email
import email.policy
import json
import uuid

import pytest

from mailroom_harness import assert_queued, assert_reply, make_message, start_server
from test_dane import publish  # noqa: F401
from test_dane import dns_server, pki, sink, spki_sha256  # noqa: F401 (fixtures)
from test_delivery import events, recipient_block, wait_states
from test_outbound_dsn import wait_reports


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink, dns_server):  # noqa: F811
    extra = (
        "[delivery]\n"
        "allow_private = true\n"
        f"mx_port = {sink.port}\n"
        "max_messages_per_connection = 1\n"
        "retry_schedule_secs = [1]\n"
        "retry_jitter = 0.0\n"
        "connect_timeout_secs = 5\n"
        + dns_server.config(dnssec=True)
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-requiretls"), extra_config=extra)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant(server, dns_server):
    t = server.create_tenant("rtls", domain="sender-rtls.test")
    # DSNs to the sender come back to the same sink.
    dns_server.mx["sender-rtls.test"] = ["10 mx.sender-rtls.test"]
    dns_server.a["mx.sender-rtls.test"] = ["127.0.0.1"]
    return t


SUBJECT = "requiretls e2e secret-subject"
BODY = "requiretls-secret-body-line"


def rcpt(domain: str) -> str:
    return f"r-{uuid.uuid4().hex[:8]}@{domain}"


def send_requiretls(server, tenant, to: str) -> str:
    msg = make_message(mail_from=tenant.sender, to=[to], subject=SUBJECT, body=BODY + "\r\n")
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH PLAIN")
        client.ehlo()
        assert client.has_extn("requiretls"), client.esmtp_features
        assert_reply(client.mail(tenant.sender, ["REQUIRETLS"]), 250, "2.1.0", what="MAIL")
        assert_reply(client.rcpt(to), 250, "2.1.5", what="RCPT")
        return assert_queued(client.data(msg))
    finally:
        client.quit()


def bounced_with_dsn(server, tenant, sink, msg_id: str, to: str, why: str):
    rec = wait_states(server, msg_id, {to: "bounced"})[to.lower()]
    assert "REQUIRETLS" in rec["last_reply"] and why in rec["last_reply"], rec
    assert "5.7.30" in json.dumps(events(rec, "bounced")[-1]["detail"]), rec
    assert not sink.messages_for(to), "sent despite REQUIRETLS"
    report = wait_reports(sink, tenant.sender, to)[0]
    msg = email.message_from_bytes(report.data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report", msg["Content-Type"]
    types = [p.get_content_type() for p in msg.iter_parts()]
    assert types == ["text/plain", "message/delivery-status"], types
    (status,) = [p for p in msg.iter_parts() if p.get_content_type() == "message/delivery-status"]
    b = recipient_block(status.get_payload(), to)
    assert (b["Action"], b["Status"]) == ("failed", "5.7.30"), dict(b.items())
    assert SUBJECT.encode() not in report.data and BODY.encode() not in report.data, report.data
    return rec


def test_dane_validated_and_offered_is_delivered_with_the_parameter(
        server, tenant, sink, dns_server, spki_sha256):  # noqa: F811
    publish(dns_server, "rtls-ok.test", f"3 1 1 {spki_sha256}", "secure")
    to = rcpt("rtls-ok.test")
    sink.requiretls = True
    msg_id = send_requiretls(server, tenant, to)
    rec = wait_states(server, msg_id, {to: "delivered"})[to.lower()]
    got = sink.wait_for_rcpt(to)
    assert got.tls and "REQUIRETLS" in got.mail_params.upper(), got
    d = events(rec, "delivered")[-1]["detail"]["tls_decision"]
    assert d["policy"] == "dane" and d["certificate_verified"] is True, d


def test_exchanger_without_requiretls_bounces_5_7_30(server, tenant, sink, dns_server,
                                                    spki_sha256):  # noqa: F811
    publish(dns_server, "rtls-notoffered.test", f"3 1 1 {spki_sha256}", "secure")
    to = rcpt("rtls-notoffered.test")
    sink.requiretls = False
    try:
        msg_id = send_requiretls(server, tenant, to)
        bounced_with_dsn(server, tenant, sink, msg_id, to, "does not offer REQUIRETLS")
    finally:
        sink.requiretls = True


def test_unvalidated_tls_bounces_5_7_30_http(server, tenant, sink, dns_server):  # noqa: F811
    # No TLSA, no MTA-STS: opportunistic TLS only.
    dns_server.mx["rtls-plain.test"] = ["10 mx.rtls-plain.test"]
    dns_server.a["mx.rtls-plain.test"] = ["127.0.0.1"]
    to = rcpt("rtls-plain.test")
    sink.requiretls = True
    body = {"from": tenant.sender, "to": [to], "subject": SUBJECT,
            "text": BODY + "\n", "require_tls": True}
    r = server.api("POST", "/v1/messages", body, token=tenant.api_key)
    assert r.status == 202, r
    bounced_with_dsn(server, tenant, sink, str(r.body["id"]), to, "not validated")


def test_requiretls_is_offered_only_under_tls(server):
    client = server.smtp()
    try:
        client.ehlo()
        assert not client.has_extn("requiretls"), client.esmtp_features
    finally:
        client.quit()
    client = server.smtp_starttls()
    try:
        assert client.has_extn("requiretls"), client.esmtp_features
    finally:
        client.quit()
