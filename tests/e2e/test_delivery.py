"""Delivery end to end: smtplib (STARTTLS + AUTH) -> Mailroom -> the scripted sink (sink.py).

Every server here has a `[delivery]` section whose one static route sends every domain
(`*`) to a sink on 127.0.0.1 in plain text, with `allow_private = true`, a 1 s retry
schedule without jitter (30 s for the queue-control server), and its own tmp dir. The
sink picks RCPT replies by local part (ok/bad/later/full, see sink.py), so each test uses
fresh addresses like `ok-1a2b3c4d@example.net`. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import email
import email.policy
import time
import uuid
from collections import Counter

import pytest

from mailroom_harness import (
    HOSTNAME,
    MailroomServer,
    assert_queued,
    assert_reply,
    make_message,
    poll_until,
    start_server,
    submit,
)
from sink import SmtpSink

WAIT = 20.0  # the longest any single wait may take


def delivery_config(sink_port: int, *, retry_secs=(1,), lifetime: int | None = None,
                    delay_report_secs=None) -> str:
    lines = [
        "[delivery]",
        "allow_private = true",
        f"retry_schedule_secs = [{', '.join(str(s) for s in retry_secs)}]",
        "retry_jitter = 0.0",
        "connect_timeout_secs = 5",
        "greeting_timeout_secs = 10",
        "command_timeout_secs = 10",
        "data_timeout_secs = 10",
    ]
    if lifetime is not None:
        lines.append(f"queue_lifetime_secs = {lifetime}")
    if delay_report_secs is not None:
        lines.append(f"delay_report_secs = [{', '.join(str(s) for s in delay_report_secs)}]")
    lines += [
        "",
        "[[delivery.routes]]",
        'domains = ["*"]',
        'host = "127.0.0.1"',
        f"port = {sink_port}",
        'tls = "none"',
    ]
    return "\n".join(lines) + "\n"


def uniq(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}@example.net"


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


def _start(workdir, sink_port: int, **kw) -> MailroomServer:
    return start_server(workdir, extra_config=delivery_config(sink_port, **kw))


@pytest.fixture(scope="module")
def dserver(tmp_path_factory, sink):
    srv = _start(tmp_path_factory.mktemp("mailroom-delivery"), sink.port)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def dtenant(dserver):
    """A tenant with the verified domain acme.test on the delivery server."""
    return dserver.create_tenant("acme", domain="acme.test")


@pytest.fixture
def fresh_sink(request):
    """A sink of the test's own (function scope), stopped afterwards; on failure its
    state is attached to the report."""
    made = []

    def make() -> SmtpSink:
        s = SmtpSink().start()
        made.append(s)
        request.node._mailroom_sinks = getattr(request.node, "_mailroom_sinks", []) + [s]
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def new_server(request, tmp_path_factory):
    """Starts extra servers in their own tmp dirs; logs are attached on failure."""
    made = []

    def make(sink_port: int, **kw) -> MailroomServer:
        srv = MailroomServer(tmp_path_factory.mktemp("mailroom-extra"),
                             extra_config=delivery_config(sink_port, **kw))
        made.append(srv)
        if not hasattr(request.node, "_mailroom_servers"):
            request.node._mailroom_servers = []
        request.node._mailroom_servers.append(srv)
        try:
            srv.start()
        except RuntimeError as err:
            pytest.fail(str(err), pytrace=False)
        return srv

    yield make
    for srv in made:
        srv.stop()


@pytest.fixture(autouse=True)
def _sink_restored(request):
    """The module sink is shared: whatever a test switched off is switched back on."""
    yield
    if "sink" in request.fixturenames:
        s = request.getfixturevalue("sink")
        s.greet_421 = False
        s.drop_in_data = False
        s.accept()


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def send(server: MailroomServer, tenant, rcpts: list[str], *, body: str | None = None,
         subject: str = "delivery e2e") -> tuple[str, bytes]:
    """Submits one message over STARTTLS + AUTH PLAIN; returns (queue id, bytes sent)."""
    kw = {"body": body} if body is not None else {}
    msg = make_message(mail_from=tenant.sender, to=rcpts, subject=subject, **kw)
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH PLAIN")
        msg_id = assert_queued(submit(client, tenant.sender, rcpts, msg))
    finally:
        try:
            client.quit()
        except Exception:
            client.close()
    return msg_id, msg


def get_message(server: MailroomServer, msg_id: str) -> dict:
    r = server.api("GET", f"/v1/messages/{msg_id}")
    assert r.status == 200, f"GET /v1/messages/{msg_id}: {r}"
    return r.body


def recipients(server: MailroomServer, msg_id: str) -> dict[str, dict]:
    return {x["address"].lower(): x for x in get_message(server, msg_id)["recipients"]}


ATTEMPT_EVENTS = {"deferred", "delivered", "bounced", "expired"}


def consistent(rec: dict) -> bool:
    """Whether a recipient's state and attempt count agree with its event timeline.

    GET /v1/messages/{id} reads the recipient rows and the events in separate queries
    (not one read transaction), so a view taken while an outcome commits can list the
    new event next to the old state and attempt count; the polls below wait for a view
    that agrees instead of acting on a torn one."""
    evs = rec.get("events") or []
    if not evs:
        return False
    last = evs[-1]["type"]
    want_state = "queued" if last == "accepted" else last
    return (rec["state"] == want_state
            and rec["attempts"] == sum(e["type"] in ATTEMPT_EVENTS for e in evs))


def wait_states(server: MailroomServer, msg_id: str, want: dict[str, set[str] | str],
                timeout: float = WAIT) -> dict[str, dict]:
    """Polls GET /v1/messages/{id} until every address in `want` is in one of its
    states; returns the recipients by address."""
    want = {a.lower(): ({s} if isinstance(s, str) else set(s)) for a, s in want.items()}
    last: dict = {}

    def check():
        nonlocal last
        last = recipients(server, msg_id)
        return last if all(last.get(a, {}).get("state") in s and consistent(last[a])
                           for a, s in want.items()) else None

    try:
        return poll_until(check, timeout, what=f"{msg_id} recipients in {want}")
    except AssertionError:
        summary = {a: (r["state"], r["attempts"], r.get("last_reply"),
                       [e["type"] for e in r["events"]]) for a, r in last.items()}
        raise AssertionError(
            f"after {timeout}s message {msg_id} is not in {want}: {summary}") from None


def events(rec: dict, kind: str | None = None) -> list[dict]:
    return [e for e in rec["events"] if kind is None or e["type"] == kind]


def queue(server: MailroomServer) -> dict:
    r = server.api("GET", "/v1/queue")
    assert r.status == 200, f"GET /v1/queue: {r}"
    return r.body


def dsn_for(sink: SmtpSink, sender: str, failed_address: str, timeout: float = WAIT):
    """Waits for a bounce report from the null sender to `sender` naming `failed_address`."""
    needle = failed_address.lower().encode()

    def find(ms):
        return [m for m in ms if m.mail_from == "" and
                [r.lower() for r in m.rcpts] == [sender.lower()] and needle in m.data.lower()]

    return sink.wait_for(find, timeout, what=f"a bounce to {sender} about {failed_address}")


def parse_dsn(data: bytes) -> tuple[email.message.EmailMessage, list, email.message.Message]:
    """Returns (report, delivery-status blocks [per-message, per-recipient...], the
    returned original message)."""
    report = email.message_from_bytes(data, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report", report.get_content_type()
    assert report.get_param("report-type") == "delivery-status", report["Content-Type"]
    status = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(status) == 1, f"expected one message/delivery-status part, got {len(status)}"
    blocks = status[0].get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, f"delivery-status blocks: {blocks!r}"
    returned = [p for p in report.walk()
                if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")]
    assert returned, "the report does not return the original message"
    original = returned[0]
    if original.get_content_type() == "message/rfc822":
        original = original.get_payload()[0]
    return report, blocks, original


def recipient_block(blocks: list, address: str):
    found = [b for b in blocks[1:]
             if address.lower() in str(b.get("Final-Recipient", "")).lower()]
    assert len(found) == 1, (
        f"expected one per-recipient block for {address}, got "
        f"{[dict(b.items()) for b in blocks[1:]]}")
    return found[0]


# --------------------------------------------------------------------------------------
# Delivered
# --------------------------------------------------------------------------------------


def test_delivered_with_received_header_and_body_intact(dserver, dtenant, sink):
    rcpt = uniq("ok")
    body = ("First line\r\n"
            ".leading dot survives\r\n"
            "..two leading dots\r\n"
            ".\r\n"
            "a lone dot above did not end the data\r\n"
            "last line\r\n")
    msg_id, sent = send(dserver, dtenant, [rcpt], body=body)

    rec = wait_states(dserver, msg_id, {rcpt: "delivered"})[rcpt.lower()]
    assert rec["attempts"] == 1, rec
    delivered = events(rec, "delivered")
    assert len(delivered) == 1, rec
    detail = delivered[0]["detail"]
    assert detail["reply"]["code"] == 250, detail
    assert detail["reply"]["enhanced"] == "2.0.0", detail
    assert detail["remote_ip"] == "127.0.0.1", detail
    assert detail["attempt"] == 1, detail
    assert [e["type"] for e in rec["events"]] == ["accepted", "delivered"], rec

    got = sink.wait_for_rcpt(rcpt)
    # VERP: the envelope sender is rewritten to the domain's return path (DSNs still go
    # to the submitted sender).
    domain = dtenant.sender.rsplit("@", 1)[1]
    assert got.mail_from == f"b+{msg_id.lower()}-0@bounces.{domain}", got
    assert got.rcpts == [rcpt], got
    assert got.helo == HOSTNAME, f"EHLO name {got.helo!r}"
    # Mailroom prepends its DKIM signatures and trace header; everything the client sent
    # follows untouched.
    assert got.data.startswith(b"DKIM-Signature: "), got.data[:300]
    assert b"\r\nReceived: " in got.data, got.data[:2000]
    assert got.data.endswith(sent), (
        f"body changed on the way\n--- sent ---\n{sent!r}\n--- got ---\n{got.data!r}")
    parsed = email.message_from_bytes(got.data, policy=email.policy.default)
    received = " ".join(str(parsed.get_all("Received")[0]).split())
    assert f"by {HOSTNAME} (Mailroom) with ESMTPSA id {msg_id}" in received, received
    assert f"for <{rcpt}>" in received, received
    assert b"\r\n.leading dot survives\r\n..two leading dots\r\n.\r\na lone dot" in got.data
    assert len(sink.messages_for(rcpt)) == 1, sink.messages_for(rcpt)


# --------------------------------------------------------------------------------------
# One message, three fates, and the bounce report
# --------------------------------------------------------------------------------------


def test_multi_recipient_fates_and_bounce_report(dserver, dtenant, sink):
    ok, bad, later = uniq("ok"), uniq("bad"), uniq("later")
    msg_id, sent = send(dserver, dtenant, [ok, bad, later], subject="three fates")

    recs = wait_states(dserver, msg_id,
                       {ok: "delivered", bad: "bounced", later: "delivered"})

    r_ok = recs[ok.lower()]
    assert [e["type"] for e in r_ok["events"]] == ["accepted", "delivered"], r_ok
    assert events(r_ok, "delivered")[0]["detail"]["reply"]["code"] == 250, r_ok

    r_bad = recs[bad.lower()]
    assert [e["type"] for e in r_bad["events"]] == ["accepted", "bounced"], r_bad
    d = events(r_bad, "bounced")[0]["detail"]
    assert d["bounce_class"] == "hard", d
    assert d["bounce_category"] == "bad_mailbox", d
    assert d["reply"]["code"] == 550 and d["reply"]["enhanced"] == "5.1.1", d

    r_later = recs[later.lower()]
    kinds = [e["type"] for e in r_later["events"]]
    assert kinds == ["accepted", "deferred", "delivered"], r_later
    d = events(r_later, "deferred")[0]["detail"]
    assert d["reply"]["code"] == 451 and d["reply"]["enhanced"] == "4.2.0", d
    assert d.get("next_attempt_at"), d
    assert r_later["attempts"] == 2, r_later

    # The sink saw: ok in the first transaction, later alone in the retry, bad never.
    first = sink.wait_for_rcpt(ok)
    assert first.rcpts == [ok], first
    retry = sink.wait_for_rcpt(later)
    assert retry.rcpts == [later], retry
    assert retry.data.endswith(sent) and first.data.endswith(sent)
    assert not sink.messages_for(bad)
    assert [c for a, c in sink.rcpt_log if a.lower() == later.lower()] == [451, 250]

    # The bounce report: from <>, to the original envelope sender, naming bad@ only.
    dsns = dsn_for(sink, dtenant.sender, bad)
    assert len(dsns) == 1, f"expected one bounce report, got {dsns!r}"
    report, blocks, original = parse_dsn(dsns[0].data)
    assert report["To"].addresses[0].addr_spec == dtenant.sender, report["To"]
    assert "MAILER-DAEMON@" in str(report["From"]), report["From"]
    assert report["Auto-Submitted"] == "auto-replied", report["Auto-Submitted"]
    assert f"dns; {HOSTNAME}" in str(blocks[0].get("Reporting-MTA")), dict(blocks[0].items())
    blk = recipient_block(blocks, bad)
    assert blk["Action"].strip() == "failed", dict(blk.items())
    assert blk["Status"].strip() == "5.1.1", dict(blk.items())
    assert "550" in blk["Diagnostic-Code"], dict(blk.items())
    finals = " ".join(str(b.get("Final-Recipient", "")) for b in blocks[1:]).lower()
    assert ok.lower() not in finals and later.lower() not in finals, finals
    sent_parsed = email.message_from_bytes(sent, policy=email.policy.default)
    assert original["Message-ID"] == sent_parsed["Message-ID"], original["Message-ID"]
    assert original["Subject"] == "three fates"


# --------------------------------------------------------------------------------------
# Destination down, then up
# --------------------------------------------------------------------------------------


def wait_event(server: MailroomServer, msg_id: str, rcpt: str, pred, what: str,
               timeout: float = WAIT) -> tuple[dict, dict]:
    """Polls until the recipient has an event for which pred(event) holds; returns
    (recipient, that event)."""
    last: dict = {}

    def check():
        nonlocal last
        last = recipients(server, msg_id)[rcpt.lower()]
        found = [e for e in last["events"] if pred(e)]
        return (last, found[0]) if found and consistent(last) else None

    try:
        return poll_until(check, timeout, what=what)
    except AssertionError:
        raise AssertionError(f"no event {what} for {rcpt} within {timeout}s: "
                             f"{[(e['type'], e['detail']) for e in last.get('events', [])]}"
                             ) from None


def _reply(e: dict) -> dict:
    return e["detail"].get("reply") or {}


@pytest.mark.parametrize("outage", ["refused", "greeting_421", "dropped_in_data"])
def test_destination_down_then_up(dserver, dtenant, sink, outage):
    """The sink goes down in one of three ways; the recipient is deferred with the
    matching reply (retried every second), then delivered once the sink is back.

    Mailroom keeps an idle connection open after the previous test's delivery; closing
    it (refuse / close_connections) can cost one extra deferral "I/O: server closed the
    connection" on the stale connection before the outage itself is seen: tolerated here
    (as a 4xx deferral) and reported by the print below."""
    rcpt = uniq("ok")
    if outage == "refused":
        sink.refuse()

        def signature(e):  # a connect that the closed port refused
            r = _reply(e)
            return (e["type"] == "deferred" and (r.get("code"), r.get("enhanced")) ==
                    (451, "4.4.1") and "refused" in r.get("text", "").lower())
    elif outage == "greeting_421":
        sink.close_connections()  # no idle connection may skip the greeting
        sink.greet_421 = True

        def signature(e):
            r = _reply(e)
            return e["type"] == "deferred" and (r.get("code"), r.get("enhanced")) == (421, "4.3.2")
    else:
        sink.drop_in_data = True
        t_set = time.time()

        def signature(e):  # a deferral recorded after the sink first dropped a transaction
            drops = [t for t in sink.drop_times if t >= t_set]
            return (e["type"] == "deferred" and _reply(e).get("code", 0) // 100 == 4
                    and bool(drops) and e["at"] >= drops[0] * 1000)

    msg_id, _ = send(dserver, dtenant, [rcpt])
    rec, _ = wait_event(dserver, msg_id, rcpt, signature, what=f"deferral by {outage}")
    assert rec["attempts"] >= 1, rec
    before = [e for e in rec["events"] if e["type"] == "deferred"]
    for e in before:
        assert _reply(e).get("code", 0) // 100 == 4, e
    stale = [e for e in before if not signature(e)]
    if stale:
        print(f"\n{outage}: {len(stale)} deferral(s) before the outage was seen: "
              f"{[_reply(e).get('text') for e in stale]}")
    assert not sink.messages_for(rcpt), "the sink recorded a message while it was down"

    sink.greet_421 = False
    sink.drop_in_data = False
    sink.accept()
    rec = wait_states(dserver, msg_id, {rcpt: "delivered"})[rcpt.lower()]
    kinds = [e["type"] for e in rec["events"]]
    assert kinds[0] == "accepted" and kinds[-1] == "delivered", kinds
    assert set(kinds[1:-1]) == {"deferred"}, kinds
    assert rec["attempts"] == len(kinds) - 1, rec
    sink.wait_for_rcpt(rcpt)
    assert len(sink.messages_for(rcpt)) == 1, sink.messages_for(rcpt)


# --------------------------------------------------------------------------------------
# Expiry
# --------------------------------------------------------------------------------------


def test_expiry_after_queue_lifetime_with_dsn(new_server, sink):
    srv = new_server(sink.port, lifetime=2)
    tenant = srv.create_tenant("acme", domain="acme.test")
    rcpt = uniq("full")
    t0 = time.monotonic()
    msg_id, sent = send(srv, tenant, [rcpt])

    rec = wait_states(srv, msg_id, {rcpt: "expired"})[rcpt.lower()]
    took = time.monotonic() - t0
    kinds = [e["type"] for e in rec["events"]]
    assert kinds[0] == "accepted" and kinds[-1] == "expired", kinds
    assert "deferred" in kinds, kinds
    assert set(kinds[1:-1]) == {"deferred"}, kinds
    for e in events(rec, "deferred"):
        r = e["detail"]["reply"]
        assert (r["code"], r["enhanced"]) == (452, "4.2.2"), e
    assert took >= 1.5, f"expired after {took:.1f}s, before the 2 s lifetime"
    assert not sink.messages_for(rcpt)

    dsns = dsn_for(sink, tenant.sender, rcpt)
    assert len(dsns) == 1, dsns
    _, blocks, original = parse_dsn(dsns[0].data)
    blk = recipient_block(blocks, rcpt)
    assert blk["Action"].strip() == "failed", dict(blk.items())
    # The last reply was 4.2.2; a final report carries it as permanent (5.2.2).
    assert blk["Status"].strip() == "5.2.2", dict(blk.items())
    assert "452" in blk["Diagnostic-Code"], dict(blk.items())
    sent_parsed = email.message_from_bytes(sent, policy=email.policy.default)
    assert original["Message-ID"] == sent_parsed["Message-ID"]


# --------------------------------------------------------------------------------------
# kill -9 with a queue of deferred messages
# --------------------------------------------------------------------------------------

RESTART_MESSAGES = 50


def test_restart_in_the_middle_of_deliveries(new_server, fresh_sink):
    sink = fresh_sink()
    sink.refuse()  # the destination is down from the start
    srv = new_server(sink.port)
    tenant = srv.create_tenant("acme", domain="acme.test")

    tag = uuid.uuid4().hex[:8]
    rcpt_of: dict[str, str] = {}
    client = None
    for i in range(RESTART_MESSAGES):
        if i % 10 == 0:  # 5 sessions of 10 messages
            if client is not None:
                client.quit()
            client = srv.smtp_starttls()
            assert_reply(tenant.login(client), 235, what="AUTH")
        rcpt = f"ok-{tag}-{i}@example.net"
        msg = make_message(mail_from=tenant.sender, to=[rcpt], subject=f"restart {i}")
        rcpt_of[assert_queued(submit(client, tenant.sender, [rcpt], msg))] = rcpt
    client.quit()
    assert len(rcpt_of) == RESTART_MESSAGES

    # Deliveries are under way (each attempted and deferred at least once) ...
    poll_until(lambda: queue(srv)["by_state"].get("deferred") == RESTART_MESSAGES,
               WAIT, what=f"{RESTART_MESSAGES} deferred recipients")
    attempts = sum(recipients(srv, m)[r.lower()]["attempts"] for m, r in rcpt_of.items())
    assert attempts >= RESTART_MESSAGES
    # ... then the process dies, the destination comes back, the process restarts.
    srv.kill()
    sink.accept()
    srv.start()

    def all_delivered():
        q = queue(srv)["by_state"]
        return q if q.get("delivered") == RESTART_MESSAGES else None

    try:
        poll_until(all_delivered, WAIT, what="every message delivered after the restart")
    except AssertionError:
        stuck = {m: recipients(srv, m)[r.lower()] for m, r in rcpt_of.items()}
        stuck = {m: (x["state"], x["attempts"], x["next_attempt_at"], x["last_reply"])
                 for m, x in stuck.items() if x["state"] != "delivered"}
        raise AssertionError(
            f"{len(stuck)} of {RESTART_MESSAGES} not delivered {WAIT}s after the restart "
            f"(now {int(time.time() * 1000)} ms): {stuck}; queue: {queue(srv)}") from None

    for msg_id, rcpt in rcpt_of.items():
        rec = recipients(srv, msg_id)[rcpt.lower()]
        assert rec["state"] == "delivered", (msg_id, rec)
        assert len(events(rec, "delivered")) == 1, (msg_id, rec)
    got = Counter(r.lower() for m in sink.snapshot() for r in m.rcpts)
    missing = [r for r in rcpt_of.values() if got[r.lower()] == 0]
    assert not missing, f"delivered per the API but never reached the sink: {missing}"
    assert set(got) == {r.lower() for r in rcpt_of.values()}, "unexpected recipients at the sink"
    # Nothing was in flight at the kill (the sink refused every attempt until after it,
    # so every recipient was recorded `deferred`): the restart must deliver each exactly
    # once. A duplicate here would mean an outcome recorded before the kill was lost.
    dups = {r: n for r, n in got.items() if n > 1}
    assert not dups, (
        f"after a restart with nothing in flight, {sum(n - 1 for n in dups.values())} "
        f"duplicate deliveries: {dups}")


# --------------------------------------------------------------------------------------
# Queue control: GET /v1/queue, DELETE (cancel), POST .../retry
# --------------------------------------------------------------------------------------


def test_queue_cancel_and_retry(new_server, fresh_sink):
    sink = fresh_sink()
    sink.refuse()
    srv = new_server(sink.port, retry_secs=(30,))
    tenant = srv.create_tenant("acme", domain="acme.test")

    a, b = uniq("ok"), uniq("ok")
    id_a, _ = send(srv, tenant, [a])
    id_b, _ = send(srv, tenant, [b])
    for msg_id, rcpt in ((id_a, a), (id_b, b)):
        rec = wait_states(srv, msg_id, {rcpt: "deferred"})[rcpt.lower()]
        assert rec["attempts"] == 1, rec
        # The next attempt is a schedule step (30 s) away, not sooner.
        last = events(rec, "deferred")[-1]
        assert rec["next_attempt_at"] - last["at"] >= 29_000, rec

    q = queue(srv)
    assert q["by_state"].get("deferred") == 2, q
    assert {"domain": "example.net", "pending": 2} in q["by_domain"], q
    assert tenant_forbidden(srv, tenant, "GET", "/v1/queue")

    # Cancel A: final, with a `cancelled` event, and out of the queue.
    r = srv.api("DELETE", f"/v1/messages/{id_a}")
    assert r.status == 200 and r.body == {"id": id_a, "cancelled": 1}, r
    rec_a = recipients(srv, id_a)[a.lower()]
    assert rec_a["state"] == "cancelled", rec_a
    assert [e["type"] for e in rec_a["events"]] == ["accepted", "deferred", "cancelled"], rec_a
    q = queue(srv)
    assert q["by_state"].get("deferred") == 1 and q["by_state"].get("cancelled") == 1, q

    # The destination is back; retry B now instead of in 30 s.
    sink.accept()
    t0 = time.monotonic()
    r = srv.api("POST", f"/v1/messages/{id_b}/retry")
    assert r.status == 200 and r.body == {"id": id_b, "retried": 1}, r
    rec_b = wait_states(srv, id_b, {b: "delivered"}, timeout=10)[b.lower()]
    assert time.monotonic() - t0 < 10, "retry waited for the schedule"
    assert rec_b["attempts"] == 2, rec_b
    sink.wait_for_rcpt(b)

    # Retrying or cancelling a final message changes nothing.
    r = srv.api("POST", f"/v1/messages/{id_a}/retry")
    assert r.status == 200 and r.body["retried"] == 0, r
    r = srv.api("DELETE", f"/v1/messages/{id_a}")
    assert r.status == 200 and r.body["cancelled"] == 0, r
    r = srv.api("DELETE", f"/v1/messages/{id_b}")
    assert r.status == 200 and r.body["cancelled"] == 0, r
    assert recipients(srv, id_b)[b.lower()]["state"] == "delivered"

    # A later message goes through the live engine; A (cancelled) still never does.
    c = uniq("ok")
    id_c, _ = send(srv, tenant, [c])
    wait_states(srv, id_c, {c: "delivered"}, timeout=10)
    sink.wait_for_rcpt(c)
    assert not sink.messages_for(a), "a cancelled message was delivered"
    assert recipients(srv, id_a)[a.lower()]["state"] == "cancelled"
    q = queue(srv)
    assert q["by_state"] == {"cancelled": 1, "delivered": 2}, q
    assert q["by_domain"] == [], q


def tenant_forbidden(srv: MailroomServer, tenant, method: str, path: str) -> bool:
    r = srv.api(method, path, token=tenant.api_key)
    assert r.status == 403, f"{method} {path} with a tenant key: {r}"
    return True
