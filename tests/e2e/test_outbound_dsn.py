"""Outbound DSN and SIZE (issue 19 item 1), end to end: smtplib submits with DSN
parameters (RFC 3461 NOTIFY/ORCPT/RET/ENVID), Mailroom delivers to the scripted sink
(sink.py) and the sink's switches play the peer: `size_limit` (its EHLO SIZE), and
`offer_dsn` (DSN in its EHLO or not). Reports to the sender land at the same sink (the
static route sends every domain there), from the null sender.

- A message larger than the peer's SIZE is bounced 5.3.4 naming the limit, and never
  offered (no DATA reached the sink).
- To a peer that offers DSN, NOTIFY/ORCPT/RET/ENVID go along and Mailroom sends no
  success report (the peer answers for it); to a peer without DSN, NOTIFY=SUCCESS gets a
  `relayed` report.
- NOTIFY=DELAY gets one `delayed` report per configured threshold, not one per retry.
- A bounce that arrives later through the intake listener (at the VERP address) sends
  the original sender a `failed` report when its NOTIFY asked for failures explicitly.
"""

from __future__ import annotations

import time

import pytest

from mailroom_harness import assert_queued, assert_reply, make_message, poll_until, start_server
from test_delivery import (  # noqa: F401 (new_server is a fixture)
    delivery_config,
    events,
    new_server,
    parse_dsn,
    recipient_block,
    recipients,
    uniq,
    wait_states,
)
from sink import SmtpSink

WAIT = 20.0


@pytest.fixture
def peer(request):
    """A sink of the test's own; its state is attached to a failure report."""
    s = SmtpSink().start()
    request.node._mailroom_sinks = getattr(request.node, "_mailroom_sinks", []) + [s]
    yield s
    s.stop()


@pytest.fixture
def server(new_server, peer):
    """Starts a server delivering to this test's peer (test_delivery's `new_server`)."""
    return lambda **kw: new_server(peer.port, **kw)


def send_dsn(srv, tenant, rcpt: str, *, notify: str | None = None, ret: str | None = None,
             envid: str | None = None, body: str | None = None) -> str:
    """Submits one message with DSN parameters; returns its queue id."""
    kw = {"body": body} if body is not None else {}
    msg = make_message(mail_from=tenant.sender, to=[rcpt], subject="dsn e2e", **kw)
    mail_options = [o for o in (ret and f"RET={ret}", envid and f"ENVID={envid}") if o]
    rcpt_options = [f"NOTIFY={notify}", f"ORCPT=rfc822;{rcpt}"] if notify else []
    client = srv.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH PLAIN")
        client.ehlo_or_helo_if_needed()
        assert client.has_extn("dsn"), "the submission listener offers DSN"
        client.mail(tenant.sender, mail_options)
        code, text = client.rcpt(rcpt, rcpt_options)
        assert code == 250, (code, text)
        code, text = client.data(msg)
        msg_id = assert_queued((code, text))
    finally:
        try:
            client.quit()
        except Exception:
            client.close()
    return msg_id


def reports_to(peer: SmtpSink, sender: str, about: str) -> list:
    """What the null sender sent `sender` naming `about`."""
    needle = about.lower().encode()
    return [m for m in peer.snapshot() if m.mail_from == ""
            and [r.lower() for r in m.rcpts] == [sender.lower()] and needle in m.data.lower()]


def wait_reports(peer, sender, about, n=1):
    return peer.wait_for(lambda ms: (r := reports_to(peer, sender, about)) and len(r) >= n and r,
                         WAIT, what=f"{n} report(s) to {sender} about {about}")


def test_message_over_the_peer_size_limit_bounces_5_3_4_without_transfer(server, peer):
    peer.size_limit = 4000
    srv = server()
    tenant = srv.create_tenant("size", domain="acme.test")
    rcpt = uniq("ok")
    msg_id = send_dsn(srv, tenant, rcpt, ret="HDRS", body=("y" * 76 + "\r\n") * 100)
    recs = wait_states(srv, msg_id, {rcpt: "bounced"})
    last = events(recs[rcpt.lower()])[-1]
    reply = last["detail"]["reply"]
    assert reply["enhanced"] == "5.3.4", reply
    assert "SIZE limit of 4000 bytes" in reply["text"], reply
    assert last["detail"]["bounce_category"] == "message_too_large", last["detail"]
    # Never offered: no MAIL reached the peer with this message, no DATA at all before
    # the report (which is small: RET=HDRS returns the header only).
    report = wait_reports(peer, tenant.sender, rcpt)[0]
    assert peer.messages_for(rcpt) == [], "the message was not transferred"
    assert peer.data_started == 1, f"only the report's DATA reached the peer: {peer.data_started}"
    _, blocks, original = parse_dsn(report.data)
    b = recipient_block(blocks, rcpt)
    assert b["Action"] == "failed" and b["Status"] == "5.3.4", dict(b.items())
    assert "4000" in b["Diagnostic-Code"], dict(b.items())
    # A soft bounce: a too-large message says nothing about the mailbox (no suppression).
    assert last["detail"]["bounce_class"] == "soft", last["detail"]


def test_dsn_parameters_go_to_a_peer_that_offers_dsn_and_it_reports_success(server, peer):
    srv = server()
    tenant = srv.create_tenant("dsnpass", domain="acme.test")
    rcpt = uniq("ok")
    msg_id = send_dsn(srv, tenant, rcpt, notify="SUCCESS,FAILURE", ret="HDRS", envid="env-42")
    wait_states(srv, msg_id, {rcpt: "delivered"})
    got = peer.messages_for(rcpt)
    assert len(got) == 1, got
    m = got[0]
    assert "RET=HDRS" in m.mail_params and "ENVID=env-42" in m.mail_params, m.mail_params
    params = m.rcpt_params[rcpt]
    assert "NOTIFY=SUCCESS,FAILURE" in params and f"ORCPT=rfc822;{rcpt}" in params, params
    # The peer took NOTIFY along: a success report is its job, not Mailroom's. A second
    # message (without SUCCESS) delivered after it shows the recorder has moved on.
    later = uniq("ok")
    wait_states(srv, send_dsn(srv, tenant, later), {later: "delivered"})
    time.sleep(1.0)
    assert reports_to(peer, tenant.sender, rcpt) == []


def test_notify_success_to_a_peer_without_dsn_gets_a_relayed_report(server, peer):
    peer.offer_dsn = False
    srv = server()
    tenant = srv.create_tenant("relayed", domain="acme.test")
    rcpt, quiet = uniq("ok"), uniq("ok")
    msg_id = send_dsn(srv, tenant, rcpt, notify="SUCCESS", ret="HDRS", envid="env-7")
    quiet_id = send_dsn(srv, tenant, quiet, notify="FAILURE")
    wait_states(srv, msg_id, {rcpt: "delivered"})
    wait_states(srv, quiet_id, {quiet: "delivered"})
    m = peer.messages_for(rcpt)[0]
    assert "RET=" not in m.mail_params and "NOTIFY" not in m.rcpt_params[rcpt], \
        "no DSN parameters to a peer that does not offer DSN"
    report = wait_reports(peer, tenant.sender, rcpt)[0]
    parsed, blocks, _ = parse_dsn(report.data)
    assert parsed["Subject"] == "Successful Mail Delivery Report", parsed["Subject"]
    assert blocks[0]["Original-Envelope-Id"] == "env-7", dict(blocks[0].items())
    b = recipient_block(blocks, rcpt)
    assert b["Action"] == "relayed" and b["Status"] == "2.0.0", dict(b.items())
    assert b["Original-Recipient"] == f"rfc822; {rcpt}", dict(b.items())
    time.sleep(1.0)
    assert reports_to(peer, tenant.sender, quiet) == [], "NOTIFY=FAILURE: no success report"


def test_notify_delay_reports_once_per_threshold_then_the_failure(server, peer):
    # Retries every second for 7 s; delay thresholds at 2 s and 4 s: two delay reports
    # over about six attempts, then the expiry's failure report.
    srv = server(delay_report_secs=(2, 4), lifetime=7)
    tenant = srv.create_tenant("delay", domain="acme.test")
    rcpt, plain = uniq("full"), uniq("full")
    msg_id = send_dsn(srv, tenant, rcpt, notify="DELAY,FAILURE", ret="HDRS")
    plain_id = send_dsn(srv, tenant, plain, ret="HDRS")  # no NOTIFY: failures only
    recs = wait_states(srv, msg_id, {rcpt: "expired"}, timeout=30)
    wait_states(srv, plain_id, {plain: "expired"}, timeout=30)
    attempts = recs[rcpt.lower()]["attempts"]
    assert attempts >= 5, f"enough retries to show one report per threshold: {attempts}"
    reports = wait_reports(peer, tenant.sender, rcpt, n=3)
    time.sleep(1.0)
    reports = reports_to(peer, tenant.sender, rcpt)
    actions = []
    for r in reports:
        _, blocks, _ = parse_dsn(r.data)
        b = recipient_block(blocks, rcpt)
        actions.append((b["Action"], b["Status"]))
    assert sorted(actions) == [("delayed", "4.2.2"), ("delayed", "4.2.2"), ("failed", "5.2.2")], \
        f"{attempts} attempts gave {actions}"
    plain_reports = reports_to(peer, tenant.sender, plain)
    assert len(plain_reports) == 1, plain_reports
    _, blocks, _ = parse_dsn(plain_reports[0].data)
    assert recipient_block(blocks, plain)["Action"] == "failed"


def test_a_late_bounce_through_intake_reports_to_a_sender_that_asked(tmp_path, peer):
    from test_intake import dsn as late_dsn
    from test_intake import submit as intake_submit

    srv = start_server(tmp_path, extra_config=delivery_config(peer.port)
                       + '\n[intake]\nlisten = ["127.0.0.1:0"]\n')
    try:
        tenant = srv.create_tenant("late", domain="late.test")
        asked, quiet, silent = uniq("ok"), uniq("ok"), uniq("ok")
        asked_id = send_dsn(srv, tenant, asked, notify="FAILURE", ret="HDRS", envid="late-1")
        quiet_id = send_dsn(srv, tenant, quiet, notify="SUCCESS")
        silent_id = send_dsn(srv, tenant, silent)  # no NOTIFY: no late report
        sent = ((asked, asked_id), (quiet, quiet_id), (silent, silent_id))
        for rcpt, msg_id in sent:
            wait_states(srv, msg_id, {rcpt: "delivered"})
        for rcpt, msg_id in sent:
            verp = peer.messages_for(rcpt)[0].mail_from
            assert verp.startswith("b+") and verp.endswith("@bounces.late.test"), verp
            intake_submit(srv, "", verp, late_dsn(verp, rcpt))
            # Not wait_states: an async bounce is an event without an attempt.
            poll_until(lambda: recipients(srv, msg_id)[rcpt.lower()]["state"] == "bounced",
                       WAIT, what=f"{rcpt} bounced by the late report")
        report = wait_reports(peer, tenant.sender, asked)[0]
        _, blocks, original = parse_dsn(report.data)
        assert blocks[0]["Original-Envelope-Id"] == "late-1", dict(blocks[0].items())
        b = recipient_block(blocks, asked)
        assert (b["Action"], b["Status"]) == ("failed", "5.1.1"), dict(b.items())
        assert "User unknown" in b["Diagnostic-Code"], dict(b.items())
        assert original.get_content_type() == "text/rfc822-headers", "RET=HDRS"
        assert "Subject: dsn e2e" in original.get_payload(), original.get_payload()
        time.sleep(1.0)
        assert reports_to(peer, tenant.sender, quiet) == [], "NOTIFY without FAILURE: no report"
        assert reports_to(peer, tenant.sender, silent) == [], "no NOTIFY: no late report"
    finally:
        srv.stop()
