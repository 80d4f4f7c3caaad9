"""MTA-STS (RFC 8461) end to end: delivery to exchangers found through MX, with the
`_mta-sts` TXT records in a DNS server run by the test, policies served over HTTPS by a
loopback server whose certificate a test CA signed (Mailroom trusts it through the
test-only `delivery.tls_test_ca_file`, and fetches from `delivery.mta_sts_port`), and a
sink that offers STARTTLS with a certificate from the same CA.

- `enforce`, MX matches: delivered over verified TLS; the attempt's `tls_decision` says
  mta-sts / enforce / verified.
- `enforce`, MX does not match: deferred with a reply naming MTA-STS; the sink never sees it.
- `enforce`, the exchanger does not offer STARTTLS: deferred, never sent in clear.
- `testing`, the certificate does not name the MX: delivered anyway (opportunistic), the
  decision says why it was not verified, the failure is counted for TLS-RPT.
- the cached policy holds while `_mta-sts` answers SERVFAIL and the policy host is gone.
Runs on SQLite and PostgreSQL (MAILROOM_TEST_BACKEND).
"""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from mailroom_harness import pg_query, poll_until, start_server
from sink import SmtpSink
from test_delivery import events, send, wait_states
from tls_fixtures import DnsServer, PolicyServer, CertAuthority

SINK_NAMES = ["mx.enforce-ok.test", "mx.cached.test", "mx.plain.test"]


def policy(mode: str, *mx: str, max_age: int = 86400) -> str:
    lines = ["version: STSv1", f"mode: {mode}"] + [f"mx: {m}" for m in mx] + [f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return CertAuthority(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="module")
def tls_sink(pki):
    s = SmtpSink(hostname="mx.enforce-ok.test")
    s.tls_context = pki.issue(SINK_NAMES)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def plain_sink(tls_sink):
    """Same port as the TLS sink (delivery.mx_port is one port), on 127.0.0.2: no STARTTLS."""
    s = SmtpSink(host="127.0.0.2", port=tls_sink.port, hostname="mx.plain.test").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dns_server():
    s = DnsServer()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def policies(pki):
    names = [f"mta-sts.{d}" for d in ("enforce-ok.test", "enforce-bad.test", "plain.test",
                                      "testing.test", "cached.test")]
    s = PolicyServer(pki.issue(names))
    yield s
    s.stop()


def publish(dns_server, policies, domain: str, mx_host: str, ip: str, text: str | None,
            sts_id: str = "20261206"):
    dns_server.mx[domain] = [f"10 {mx_host}"]
    dns_server.a[mx_host] = [ip]
    dns_server.a[f"mta-sts.{domain}"] = ["127.0.0.1"]
    if text is not None:
        dns_server.txt[f"_mta-sts.{domain}"] = [f"v=STSv1; id={sts_id};"]
        policies.policies[f"mta-sts.{domain}"] = text


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki, tls_sink, plain_sink, dns_server, policies):
    extra = (
        "[delivery]\n"
        "allow_private = true\n"
        f"mx_port = {tls_sink.port}\n"
        'mta_sts = "on"\n'
        f"mta_sts_port = {policies.port}\n"
        f'tls_test_ca_file = "{pki.pem_path}"\n'
        # Every message on a new connection, so each one meets the policy afresh.
        "max_messages_per_connection = 1\n"
        "retry_schedule_secs = [1]\n"
        "retry_jitter = 0.0\n"
        "connect_timeout_secs = 5\n"
        "greeting_timeout_secs = 10\n"
        "command_timeout_secs = 10\n"
        "data_timeout_secs = 10\n"
        + dns_server.config()
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-mta-sts"), extra_config=extra)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant(server):
    return server.create_tenant("sts", domain="sender-sts.test")


def rcpt(domain: str) -> str:
    return f"ok-{uuid.uuid4().hex[:8]}@{domain}"


def decision(rec: dict, kind: str) -> dict:
    got = events(rec, kind)
    assert got, rec
    d = got[-1]["detail"].get("tls_decision")
    assert d, got[-1]
    return d


def tls_counts(server, domain: str) -> dict[str, int]:
    sql = ("SELECT result_type, SUM(count) FROM tls_results WHERE domain = '%s' "
           "GROUP BY result_type" % domain)
    if server.backend == "postgres":
        rows = pg_query(sql, database=server.database.name)
    else:
        with sqlite3.connect(server.data_dir / "mailroom.db") as db:
            rows = db.execute(sql).fetchall()
    return {r: int(n) for r, n in rows}


def test_enforce_with_matching_mx_is_delivered_over_verified_tls(server, tenant, tls_sink,
                                                                dns_server, policies):
    publish(dns_server, policies, "enforce-ok.test", "mx.enforce-ok.test", "127.0.0.1",
            policy("enforce", "mx.enforce-ok.test", "*.backup.test"))
    to = rcpt("enforce-ok.test")
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "delivered"})[to.lower()]
    got = tls_sink.wait_for_rcpt(to)
    assert got.tls in ("TLSv1.3", "TLSv1.2"), got
    d = decision(rec, "delivered")
    assert d["policy"] == "mta-sts" and d["mode"] == "enforce", d
    assert d["certificate_verified"] is True, d
    assert d["version"] == got.tls and d["cipher"], d
    assert policies.fetches.get("mta-sts.enforce-ok.test", 0) >= 1
    assert tls_counts(server, "enforce-ok.test").get("success", 0) >= 1


def test_enforce_with_other_mx_is_deferred_and_never_sent(server, tenant, tls_sink,
                                                         dns_server, policies):
    publish(dns_server, policies, "enforce-bad.test", "mx.attacker.test", "127.0.0.1",
            policy("enforce", "mx.enforce-bad.test"))
    to = rcpt("enforce-bad.test")
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "deferred"})[to.lower()]
    assert "MTA-STS" in rec["last_reply"], rec
    assert "mx.attacker.test" in rec["last_reply"], rec
    assert not tls_sink.messages_for(to)
    assert tls_counts(server, "enforce-bad.test").get("validation-failure", 0) >= 1


def test_enforce_without_starttls_is_deferred_never_plaintext(server, tenant, plain_sink,
                                                             dns_server, policies):
    publish(dns_server, policies, "plain.test", "mx.plain.test", "127.0.0.2",
            policy("enforce", "mx.plain.test"))
    to = rcpt("plain.test")
    before = plain_sink.connections
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "deferred"})[to.lower()]
    assert "MTA-STS" in rec["last_reply"] and "starttls-not-supported" in rec["last_reply"], rec
    assert plain_sink.connections > before, "the exchanger was never tried"
    assert not plain_sink.messages_for(to), "sent in clear despite MTA-STS enforce"
    d = decision(rec, "deferred")
    assert d["policy"] == "mta-sts" and d["certificate_verified"] is False, d
    assert tls_counts(server, "plain.test").get("starttls-not-supported", 0) >= 1


def test_testing_mode_delivers_and_counts_the_failure(server, tenant, tls_sink,
                                                     dns_server, policies):
    # The sink's certificate does not name mx.testing.test: verification fails.
    publish(dns_server, policies, "testing.test", "mx.testing.test", "127.0.0.1",
            policy("testing", "mx.testing.test"))
    to = rcpt("testing.test")
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "delivered"})[to.lower()]
    assert tls_sink.wait_for_rcpt(to).tls, "testing mode still uses TLS when offered"
    d = decision(rec, "delivered")
    assert d["policy"] == "mta-sts" and d["mode"] == "testing", d
    assert d["certificate_verified"] is False, d
    assert "certificate-host-mismatch" in d["reason"], d
    assert tls_counts(server, "testing.test").get("certificate-host-mismatch", 0) >= 1


def test_cached_policy_holds_while_dns_fails(server, tenant, tls_sink, dns_server, policies):
    publish(dns_server, policies, "cached.test", "mx.cached.test", "127.0.0.1",
            policy("enforce", "mx.cached.test"))
    first = rcpt("cached.test")
    msg_id, _ = send(server, tenant, [first])
    wait_states(server, msg_id, {first: "delivered"})
    assert policies.fetches.get("mta-sts.cached.test") == 1
    # DNS for _mta-sts fails, the policy host is gone, and the MX now points elsewhere:
    # the cached enforce policy must still refuse the unlisted exchanger.
    dns_server.servfail.add("_mta-sts.cached.test")
    del policies.policies["mta-sts.cached.test"]
    dns_server.mx["cached.test"] = ["10 mx.elsewhere.test"]
    dns_server.a["mx.elsewhere.test"] = ["127.0.0.1"]
    second = rcpt("cached.test")
    msg_id, _ = send(server, tenant, [second])
    rec = wait_states(server, msg_id, {second: "deferred"})[second.lower()]
    assert "MTA-STS" in rec["last_reply"] and "mx.elsewhere.test" in rec["last_reply"], rec
    assert not tls_sink.messages_for(second)
    assert ("_mta-sts.cached.test", "TXT") in dns_server.asked
    # DNS back, MX back: the same cached policy lets it through.
    dns_server.servfail.discard("_mta-sts.cached.test")
    dns_server.mx["cached.test"] = ["10 mx.cached.test"]
    wait_states(server, msg_id, {second: "delivered"})
    assert tls_sink.wait_for_rcpt(second).tls
    assert policies.fetches.get("mta-sts.cached.test") == 1, "the cached policy was refetched"
