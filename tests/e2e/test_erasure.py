"""GDPR erasure end to end: `mailroom erasure ADDRESS` and `POST /v1/erasure`.

smtplib (STARTTLS + AUTH) submits a message to an address the scripted sink refuses
(`bad-…`: 550 naming the address, so it is in the reply, the bounce event, the
suppression Mailroom adds and the delivery report sent back to the sender) and to one it
accepts, with NOTIFY=FAILURE so the body is kept after delivery; the address is in the
headers, subject and text too. Once everything is delivered the address is found in the
store (the control: the search can fail), erased, and then found nowhere: not in the
database files (SQLite: every file in the data directory, byte for byte, and every row
with bodies inflated; PostgreSQL: every row of every table, bodies inflated), not in
any API answer. The `address.erased` event names it only by its SHA-256; a second
erasure changes nothing. A second message, still queued when erased, is cancelled.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import uuid
import zlib

from mailroom_harness import (
    assert_queued,
    assert_reply,
    make_message,
    mailroom_bin,
    poll_until,
    start_server,
)
from sink import SmtpSink


def delivery_config(sink_port: int) -> str:
    return "\n".join([
        "[delivery]",
        "allow_private = true",
        "retry_schedule_secs = [1]",
        "retry_jitter = 0.0",
        "",
        "[[delivery.routes]]",
        'domains = ["*"]',
        'host = "127.0.0.1"',
        f"port = {sink_port}",
        'tls = "none"',
    ]) + "\n"


def inflate(codec, body: bytes) -> bytes:
    return zlib.decompress(body, -15) if int(codec) == 1 else body


def stored_text(srv) -> str:
    """Every row of every table as text, message bodies inflated, lowercased."""
    out = []
    if srv.backend == "postgres":
        tables = [r[0] for r in srv.database.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
        assert "recipients" in tables and "message_bodies" in tables, tables
        for t in tables:
            out += [str(r[0]) for r in srv.database.query(f'SELECT t::text FROM "{t}" t')]
        for codec, body in srv.database.query(
                "SELECT codec, encode(body, 'hex') FROM message_bodies"):
            out.append(inflate(codec, bytes.fromhex(body)).decode("utf-8", "replace"))
    else:
        db = sqlite3.connect(f"file:{srv.data_dir / 'mailroom.db'}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            assert "recipients" in tables, tables
            for t in tables:
                for row in db.execute(f'SELECT * FROM "{t}"'):
                    out += [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                            for v in row]
            for codec, body in db.execute("SELECT codec, body FROM message_bodies"):
                out.append(inflate(codec, body).decode("utf-8", "replace"))
        finally:
            db.close()
    return "\n".join(out).lower()


def files_holding(srv, needle: str) -> list[str]:
    """SQLite: the data directory's files whose bytes contain `needle` (any case)."""
    if srv.backend == "postgres":
        return []
    n = needle.lower().encode()
    return [str(p) for p in srv.data_dir.rglob("*")
            if p.is_file() and n in p.read_bytes().lower()]


def test_erasure_leaves_no_trace(tmp_path):
    sink = SmtpSink().start()
    srv = start_server(tmp_path, extra_config=delivery_config(sink.port))
    try:
        tag = uuid.uuid4().hex[:8]
        tenant = srv.create_tenant("acme", f"acme-{tag}.test")
        other = srv.create_tenant("other", f"other-{tag}.test")
        alice = f"Bad-Alice-{tag}@Example.NET"
        needle = alice.lower()
        bob = f"ok-bob-{tag}@example.net"
        msg = make_message(tenant.sender, [alice, bob], subject=f"Hello {alice}",
                           body=f"Dear {alice},\r\nyour order has shipped.\r\n" * 20)
        with srv.smtp_starttls() as c:
            assert_reply(tenant.login(c), 235, "2.7.0", what="AUTH")
            assert_reply(c.mail(tenant.sender), 250, "2.1.0", what="MAIL FROM")
            for rcpt in (alice, bob):
                assert_reply(c.rcpt(rcpt, ["NOTIFY=FAILURE"]), 250, "2.1.5", what="RCPT")
            first = assert_queued(c.data(msg))
        # Bob's copy, and the bounce report for Alice back to the sender.
        sink.wait_for_rcpt(bob)
        report = sink.wait_for_rcpt(tenant.sender)
        assert needle in report.data.decode("utf-8", "replace").lower()
        poll_until(lambda: srv.api("GET", f"/v1/suppressions/{alice}?tenant={tenant.id}")
                   .status == 200, what="the hard bounce's suppression")
        poll_until(lambda: all(r["state"] in ("delivered", "bounced") for r in
                               srv.api("GET", f"/v1/messages/{first}").body["recipients"]),
                   what="both recipients final")
        # The other tenant knows the address too (a manual suppression): untouched by
        # a tenant-limited erasure, gone after the operator's.
        r = srv.api("POST", "/v1/suppressions", {"address": alice}, token=other.api_key)
        assert r.status in (200, 201), r

        # Control: the address is stored now, so the search below can fail.
        assert needle in stored_text(srv)

        host, port = srv.http_addr
        out = subprocess.run(
            [str(mailroom_bin()), "erasure", alice, "--tenant", tenant.id,
             "--url", f"http://{host}:{port}", "--token", srv.operator_token],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out
        erased = json.loads(out.stdout)
        sha = hashlib.sha256(needle.encode()).hexdigest()
        assert erased["address_sha256"] == sha, erased
        assert erased["tenant_id"] == tenant.id, erased
        counts = erased["counts"]
        assert counts["recipients"] == 1, erased
        assert counts["suppressions"] == 1, erased
        assert counts["bodies"] >= 1, erased
        assert counts["events"] >= 2, erased  # accepted, bounced (+ the report's)
        redacted = erased["redacted"]
        assert redacted == f"erased-{sha[:16]}@erased.invalid", erased

        # The other tenant's suppression is still there; the operator erases it too.
        r = srv.api("GET", f"/v1/suppressions/{alice}?tenant={other.id}")
        assert r.status == 200, r
        r = srv.api("POST", "/v1/erasure", {"address": alice})
        assert r.status == 200, r
        assert r.body["counts"]["suppressions"] == 1, r
        assert r.body["tenant_id"] is None, r

        text = stored_text(srv)
        assert needle not in text, text[max(0, text.find(needle) - 300):text.find(needle) + 300]
        assert redacted in text
        assert files_holding(srv, needle) == [], "the address is still in the files"

        for path, token in [(f"/v1/messages/{first}", tenant.api_key),
                            ("/v1/events?limit=1000", tenant.api_key),
                            ("/v1/events?limit=1000", srv.operator_token),
                            (f"/v1/suppressions?tenant={tenant.id}", srv.operator_token),
                            ("/v1/messages?limit=100", tenant.api_key)]:
            r = srv.api("GET", path, token=token)
            assert r.status == 200, (path, r)
            assert needle not in r.raw.decode().lower(), (path, r.raw[:2000])
        m = srv.api("GET", f"/v1/messages/{first}").body
        assert sorted(x["address"] for x in m["recipients"]) == sorted([redacted, bob]), m

        events = srv.api("GET", "/v1/events?type=address.erased").body["events"]
        assert len(events) == 2, events
        assert all(e["detail"]["address_sha256"] == sha for e in events), events

        # Idempotent: nothing left to change.
        r = srv.api("POST", "/v1/erasure", {"address": alice.upper()})
        assert r.status == 200 and r.body["total"] == 0, r

        # Mail still waiting for the address is cancelled, and says why.
        sink.refuse()
        carol = f"ok-carol-{tag}@example.net"
        r = srv.api("POST", "/v1/messages", {"from": tenant.sender, "to": [carol],
                                             "subject": "s", "text": "t"},
                    token=tenant.api_key)
        assert r.status == 202, r
        queued = r.body["id"]
        r = srv.api("POST", "/v1/erasure", {"address": carol}, token=tenant.api_key)
        assert r.status == 200, r
        assert r.body["counts"]["cancelled"] == 1, r
        m = srv.api("GET", f"/v1/messages/{queued}").body
        assert m["recipients"][0]["state"] == "cancelled", m
        assert carol not in json.dumps(m).lower(), m
    finally:
        srv.stop()
        sink.stop()
