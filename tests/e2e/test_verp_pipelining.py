"""VERP without a price per recipient, against the real binary and the scripted sink:
a message to five recipients at one site, from a tenant's domain (so each recipient gets
its own `b+<id>-<idx>@bounces.<domain>` return path), reaches the sink as five
transactions on ONE connection with no RSET between them; a refused RCPT (550) and a
refused body (451) in the middle stay with their own recipient (bounced / deferred, then
delivered on the retry) while the others are delivered, with one RSET after the
transaction that was left open.
"""

from __future__ import annotations

import uuid

import pytest

from mailroom_harness import MailroomServer, binary_missing_reason, poll_until
from sink import SmtpSink
from test_delivery import delivery_config

DOMAIN = "verp-pipe.test"


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
    srv = MailroomServer(tmp_path_factory.mktemp("mailroom-verp-pipe"),
                         extra_config=delivery_config(sink.port))
    try:
        srv.start()
    except RuntimeError as err:
        srv.kill()
        pytest.fail(str(err), pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant(server):
    return server.create_tenant("verppipe", domain=DOMAIN)


def send(server, tenant, to: list[str]) -> str:
    body = {"from": f"app@{DOMAIN}", "to": to, "subject": "verp pipelining", "text": "hi\n"}
    r = server.api("POST", "/v1/messages", body, token=tenant.api_key)
    assert r.status == 202, r
    return r.body["id"]


def states(server, msg_id) -> dict[str, str]:
    r = server.api("GET", f"/v1/messages/{msg_id}")
    assert r.status == 200, r
    return {x["address"]: x["state"] for x in r.body["recipients"]}


def mails_of(sink, msg_id) -> list[tuple[int, str]]:
    prefix = f"b+{msg_id.lower()}-"
    with sink._lock:
        return [(cid, frm) for cid, frm in sink.mail_log if frm.startswith(prefix)]


def test_five_recipients_go_as_five_transactions_on_one_connection(server, sink, tenant):
    tag = uuid.uuid4().hex[:8]
    to = [f"ok{i}-{tag}@site.example.net" for i in range(5)]
    msg_id = send(server, tenant, to)
    poll_until(lambda: set(states(server, msg_id).values()) == {"delivered"},
               what="all five delivered")
    mails = mails_of(sink, msg_id)
    assert len(mails) == 5, (mails, sink.failure_report())
    conns = {cid for cid, _ in mails}
    assert len(conns) == 1, f"five transactions over {len(conns)} connections: {mails}"
    assert sorted(frm for _, frm in mails) == [
        f"b+{msg_id.lower()}-{i}@bounces.{DOMAIN}" for i in range(5)
    ]
    (cid,) = conns
    with sink._lock:
        assert cid not in sink.rset_log, "RSET between successful transactions"
    got = [m for m in sink.snapshot() if m.mail_from.startswith(f"b+{msg_id.lower()}-")]
    assert sorted(r for m in got for r in m.rcpts) == sorted(to)
    assert all(len(m.rcpts) == 1 and m.conn_id == cid for m in got), got


def test_a_failure_in_the_middle_stays_with_its_recipient(server, sink, tenant):
    tag = uuid.uuid4().hex[:8]
    to = [f"ok0-{tag}@site2.example.net", f"bad1-{tag}@site2.example.net",
          f"datalater2-{tag}@site2.example.net", f"ok3-{tag}@site2.example.net",
          f"ok4-{tag}@site2.example.net"]
    with sink._lock:
        rsets_before = len(sink.rset_log)
    msg_id = send(server, tenant, to)
    # The first attempt: every recipient has its own answer.
    first = poll_until(
        lambda: (lambda s: s if s[to[1]] == "bounced" and s[to[0]] == "delivered"
                 and s[to[3]] == "delivered" and s[to[4]] == "delivered"
                 and s[to[2]] in ("deferred", "delivered") else None)(states(server, msg_id)),
        what="first attempt recorded per recipient")
    mails = mails_of(sink, msg_id)
    first_conn = mails[0][0]
    assert [frm for cid, frm in mails[:5]] == [
        f"b+{msg_id.lower()}-{i}@bounces.{DOMAIN}" for i in range(5)
    ], mails
    assert {cid for cid, _ in mails[:5]} == {first_conn}, mails
    with sink._lock:
        rsets = [c for c in sink.rset_log[rsets_before:] if c == first_conn]
    # One RSET: after the transaction whose only RCPT was refused (DATA refused, MAIL
    # still in effect). The refused body ended its transaction: no RSET for it.
    assert len(rsets) == 1, (rsets, mails)
    # The 451 on the body is a deferral of that recipient alone; the retry delivers it.
    poll_until(lambda: states(server, msg_id)[to[2]] == "delivered",
               what="deferred recipient delivered on retry")
    assert first[to[1]] == "bounced"
    delivered = [m for m in sink.snapshot() if m.mail_from.startswith(f"b+{msg_id.lower()}-")]
    assert sorted(r for m in delivered for r in m.rcpts) == sorted(
        [to[0], to[2], to[3], to[4]]), delivered
    r = server.api("GET", f"/v1/events?type=deferred&message_id={msg_id}")
    assert r.status == 200, r
    assert [e.get("recipient") for e in r.body["events"]] == [to[2]], r.body
