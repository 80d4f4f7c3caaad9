"""DANE (RFC 7672) end to end, with `dns.dnssec = true`: Mailroom's name server is the
test's DNS responder playing a validating resolver (AD bit on names marked secure,
SERVFAIL + extended DNS error 6 on names marked bogus). The sink's certificate is issued
at run time by a CA Mailroom does NOT trust (no `tls_test_ca_file`) and names none of the
MX hosts, so only a TLSA match can make its TLS "verified".

- `3 1 1` with the sink key's SHA-256, secure: delivered, tls_decision policy `dane`,
  certificate verified, TLS-RPT counts a `tlsa` success.
- a wrong digest, secure: deferred naming DANE, never sent.
- a bogus TLSA answer: deferred, the exchanger never even contacted.
- the same wrong digest but insecure (no AD): DANE does not apply, delivered
  opportunistically.
- RFC 7672 §2.2.1: the same wrong digest, secure, under an MX RRset that is insecure:
  DANE does not apply (the host name was not learnt securely), delivered
  opportunistically; a bogus MX answer: deferred, never sent.
Runs on SQLite and PostgreSQL (MAILROOM_TEST_BACKEND).
"""

from __future__ import annotations

import hashlib
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from mailroom_harness import start_server
from sink import SmtpSink
from test_delivery import send, wait_states
from test_mta_sts import decision, tls_counts
from tls_fixtures import CertAuthority, DnsServer


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return CertAuthority(tmp_path_factory.mktemp("dane-ca"))


@pytest.fixture(scope="module")
def sink(pki):
    s = SmtpSink(hostname="mx.dane.test")
    s.tls_context = pki.issue(["unrelated-name.test"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def spki_sha256(pki, sink):
    spki = pki.last_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@pytest.fixture(scope="module")
def dns_server():
    s = DnsServer()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink, dns_server):
    extra = (
        "[delivery]\n"
        "allow_private = true\n"
        f"mx_port = {sink.port}\n"
        'mta_sts = "on"\n'
        "max_messages_per_connection = 1\n"
        "retry_schedule_secs = [1]\n"
        "retry_jitter = 0.0\n"
        "connect_timeout_secs = 5\n"
        "greeting_timeout_secs = 10\n"
        "command_timeout_secs = 10\n"
        "data_timeout_secs = 10\n"
        + dns_server.config(dnssec=True)
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-dane"), extra_config=extra)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant(server):
    return server.create_tenant("dane", domain="sender-dane.test")


def publish(dns_server, domain: str, tlsa: str, security: str, mx_security: str = "secure"):
    host = f"mx.{domain}"
    dns_server.mx[domain] = [f"10 {host}"]
    if mx_security == "secure":
        dns_server.secure.add(domain)
    elif mx_security == "bogus":
        dns_server.bogus.add(domain)
    dns_server.a[host] = ["127.0.0.1"]
    owner = f"_25._tcp.{host}"
    dns_server.tlsa[owner] = [tlsa]
    if security == "secure":
        dns_server.secure.add(owner)
    elif security == "bogus":
        dns_server.bogus.add(owner)


def rcpt(domain: str) -> str:
    return f"d-{uuid.uuid4().hex[:8]}@{domain}"


def test_matching_dane_ee_is_delivered_as_verified(server, tenant, sink, dns_server,
                                                   spki_sha256):
    publish(dns_server, "dane-ok.test", f"3 1 1 {spki_sha256}", "secure")
    to = rcpt("dane-ok.test")
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "delivered"})[to.lower()]
    got = sink.wait_for_rcpt(to)
    assert got.tls in ("TLSv1.3", "TLSv1.2"), got
    d = decision(rec, "delivered")
    assert d["policy"] == "dane", d
    assert d["certificate_verified"] is True, d
    assert ("_25._tcp.mx.dane-ok.test", "TLSA") in dns_server.asked
    assert tls_counts(server, "dane-ok.test").get("success", 0) >= 1


def test_wrong_digest_is_deferred_and_never_sent(server, tenant, sink, dns_server):
    publish(dns_server, "dane-bad.test", "3 1 1 " + "00" * 32, "secure")
    to = rcpt("dane-bad.test")
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "deferred"})[to.lower()]
    assert "DANE" in rec["last_reply"] and "tlsa-invalid" in rec["last_reply"], rec
    assert not sink.messages_for(to)
    d = decision(rec, "deferred")
    assert d["policy"] == "dane" and d["certificate_verified"] is False, d
    assert tls_counts(server, "dane-bad.test").get("tlsa-invalid", 0) >= 1


def test_bogus_answer_is_deferred_without_connecting(server, tenant, sink, dns_server,
                                                     spki_sha256):
    publish(dns_server, "dane-bogus.test", f"3 1 1 {spki_sha256}", "bogus")
    to = rcpt("dane-bogus.test")
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "deferred"})[to.lower()]
    assert "DANE" in rec["last_reply"] and "bogus" in rec["last_reply"], rec
    assert not sink.messages_for(to)
    assert tls_counts(server, "dane-bogus.test").get("dnssec-invalid", 0) >= 1


def test_insecure_tlsa_is_ignored(server, tenant, sink, dns_server):
    publish(dns_server, "dane-insecure.test", "3 1 1 " + "00" * 32, "insecure")
    to = rcpt("dane-insecure.test")
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "delivered"})[to.lower()]
    assert sink.wait_for_rcpt(to).tls
    d = decision(rec, "delivered")
    assert d["policy"] == "opportunistic" and d["certificate_verified"] is False, d


def test_insecure_mx_means_no_dane(server, tenant, sink, dns_server):
    """Secure TLSA records that would refuse the sink, but the MX RRset that named the
    host is insecure: DANE does not apply, delivered opportunistically."""
    publish(dns_server, "dane-insecure-mx.test", "3 1 1 " + "00" * 32, "secure",
            mx_security="insecure")
    to = rcpt("dane-insecure-mx.test")
    msg_id, _ = send(server, tenant, [to])
    rec = wait_states(server, msg_id, {to: "delivered"})[to.lower()]
    assert sink.wait_for_rcpt(to).tls
    d = decision(rec, "delivered")
    assert d["policy"] == "opportunistic" and d["certificate_verified"] is False, d
    assert ("_25._tcp.mx.dane-insecure-mx.test", "TLSA") not in dns_server.asked


def test_bogus_mx_is_deferred_and_never_sent(server, tenant, sink, dns_server, spki_sha256):
    publish(dns_server, "dane-bogus-mx.test", f"3 1 1 {spki_sha256}", "secure",
            mx_security="bogus")
    to = rcpt("dane-bogus-mx.test")
    msg_id, _ = send(server, tenant, [to])
    wait_states(server, msg_id, {to: "deferred"})
    assert not sink.messages_for(to)
    assert ("_25._tcp.mx.dane-bogus-mx.test", "TLSA") not in dns_server.asked
