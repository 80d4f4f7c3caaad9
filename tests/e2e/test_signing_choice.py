"""Choice of DKIM signatures per tenant and per domain (issue 14): `ed25519+rsa` (the
default), `rsa`, `ed25519` and `none`, set over the API and the CLI. Each message goes
through SMTP to the sink and dkimpy checks what arrived against the records published
in this test's DNS server: the chosen signatures and only those, each verifying. With
`none`, a message the application signed itself arrives with its own signature intact
(no Mailroom signature, no tracking rewrite), and an unsigned one arrives unsigned.
"""

from __future__ import annotations

import base64
import uuid

import dkim
import nacl.signing

from mailroom_harness import assert_queued, make_message, submit
from test_cli import cli
# The module-scoped server with delivery to the sink and the DNS server that answers
# the published records, and the helpers that publish and verify a domain.
from test_domains import _lookup, _verified_domain, dns_server, server  # noqa: F401


def _send(server, sink, tenant, sender) -> bytes:
    """Submits a fresh message over STARTTLS + AUTH; returns it as the sink got it."""
    rcpt = f"ok-{uuid.uuid4().hex[:8]}@example.net"
    msg = make_message(mail_from=sender, to=[rcpt], subject="signing choice")
    with server.smtp_starttls() as client:
        client.login(tenant.username, tenant.password)
        assert_queued(submit(client, sender, [rcpt], msg))
    got = sink.wait_for_rcpt(rcpt)
    return got.data if isinstance(got.data, bytes) else got.data.encode()


def _algorithms(data: bytes) -> list[bytes]:
    headers, _ = dkim.rfc822_parse(data)
    return [dkim.util.parse_tag_value(v)[b"a"] for n, v in headers
            if n.lower() == b"dkim-signature"]


def _all_verify(data: bytes, dns_server) -> None:
    d = dkim.DKIM(data)
    for idx in range(len(_algorithms(data))):
        assert d.verify(idx=idx, dnsfunc=_lookup(dns_server, [])), f"signature {idx} fails"


def test_each_choice_signs_with_exactly_its_algorithms(server, sink, dns_server):
    tenant = server.create_tenant("signing")
    domain = _verified_domain(server, dns_server, tenant)
    sender = f"app@{domain}"

    # The default: both, each verifying.
    r = server.api("GET", f"/v1/domains/{domain}/signing", token=tenant.api_key)
    assert r.status == 200 and r.body == {"domain": domain, "signatures": "ed25519+rsa",
                                          "source": "default"}, r
    data = _send(server, sink, tenant, sender)
    assert sorted(_algorithms(data)) == [b"ed25519-sha256", b"rsa-sha256"], data[:1500]
    _all_verify(data, dns_server)

    # The tenant's choice applies to its domains.
    r = server.api("PUT", f"/v1/tenants/{tenant.id}/signing", {"signatures": "rsa"},
                   token=tenant.api_key)
    assert r.status == 200 and r.body["signatures"] == "rsa" and r.body["source"] == "tenant", r
    data = _send(server, sink, tenant, sender)
    assert _algorithms(data) == [b"rsa-sha256"], data[:1500]
    _all_verify(data, dns_server)

    # A domain's own choice wins over the tenant's.
    r = server.api("PUT", f"/v1/domains/{domain}/signing", {"signatures": "ed25519"},
                   token=tenant.api_key)
    assert r.status == 200 and r.body == {"domain": domain, "signatures": "ed25519",
                                          "source": "domain"}, r
    data = _send(server, sink, tenant, sender)
    assert _algorithms(data) == [b"ed25519-sha256"], data[:1500]
    _all_verify(data, dns_server)

    # Clearing the domain's choice falls back to the tenant's.
    r = server.api("PUT", f"/v1/domains/{domain}/signing", {"signatures": None},
                   token=tenant.api_key)
    assert r.status == 200 and r.body["signatures"] == "rsa" and r.body["source"] == "tenant", r
    r = server.api("GET", f"/v1/tenants/{tenant.id}/signing", token=tenant.api_key)
    assert r.status == 200 and r.body["domains"] == [], r
    data = _send(server, sink, tenant, sender)
    assert _algorithms(data) == [b"rsa-sha256"]


def test_none_passes_the_applications_own_signature_through(server, sink, dns_server):
    tenant = server.create_tenant("selfsign")
    domain = _verified_domain(server, dns_server, tenant)
    # Tracking on: with `none`, a signed message must still not be rewritten.
    r = server.api("PATCH", f"/v1/tenants/{tenant.id}",
                   {"track_opens": True, "track_clicks": True}, token=tenant.api_key)
    assert r.status == 200, r
    # Over the CLI this time.
    done = cli(server, "signing", "set", "--domain", domain, "none")
    assert done.returncode == 0, done.stderr
    assert '"none"' in done.stdout, done.stdout
    done = cli(server, "signing", "show", "--tenant", tenant.name)
    assert done.returncode == 0 and domain in done.stdout, (done.stdout, done.stderr)

    # The application's own Ed25519 key, published under its own selector.
    key = nacl.signing.SigningKey.generate()
    dns_server.txt[f"app._domainkey.{domain}"] = [
        "v=DKIM1; k=ed25519; p=" + base64.b64encode(key.verify_key.encode()).decode()]
    sender = f"news@{domain}"
    rcpt = f"ok-{uuid.uuid4().hex[:8]}@example.net"
    html = ("Content-Type: text/html; charset=utf-8\r\n\r\n"
            "<p><a href=\"https://shop.example/spring\">Spring sale</a></p>\r\n")
    unsigned = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: self-signed\r\n"
                f"Message-ID: <{uuid.uuid4().hex}@{domain}>\r\n"
                "Date: Sun, 06 Dec 2026 18:00:00 +0000\r\nMIME-Version: 1.0\r\n" + html).encode()
    signature = dkim.sign(unsigned, b"app", domain.encode(), base64.b64encode(bytes(key)),
                          signature_algorithm=b"ed25519-sha256",
                          include_headers=[b"from", b"to", b"subject", b"message-id", b"date"])
    signed = signature + unsigned
    with server.smtp_starttls() as client:
        client.login(tenant.username, tenant.password)
        assert_queued(submit(client, sender, [rcpt], signed))
    got = sink.wait_for_rcpt(rcpt)
    data = got.data if isinstance(got.data, bytes) else got.data.encode()
    assert _algorithms(data) == [b"ed25519-sha256"], data[:1500]
    assert b"/t/c/" not in data and b"https://shop.example/spring" in data, data[-600:]
    assert data.endswith(unsigned.split(b"\r\n\r\n", 1)[1]), "body changed"
    asked = []
    assert dkim.DKIM(data).verify(idx=0, dnsfunc=_lookup(dns_server, asked)), data[:1500]
    assert f"app._domainkey.{domain}" in asked, asked

    # Unsigned mail under `none` goes out unsigned.
    data = _send(server, sink, tenant, sender)
    assert _algorithms(data) == [], data[:1500]


def test_bad_choices_get_a_precise_answer(server, sink, dns_server):
    tenant = server.create_tenant("badsign")
    other = server.create_tenant("othersign")
    domain = _verified_domain(server, dns_server, other)
    for body in ({"signatures": "dsa"}, {"signatures": 3}, {}, {"signatures": "rsa", "x": 1}):
        r = server.api("PUT", f"/v1/tenants/{tenant.id}/signing", body, token=tenant.api_key)
        assert r.status in (400, 422), (body, r)
        assert r.headers.get("content-type", "").startswith("application/problem+json"), r
    r = server.api("PUT", f"/v1/tenants/{tenant.id}/signing", {"signatures": "dsa"},
                   token=tenant.api_key)
    assert r.status == 422 and r.body["field"] == "signatures", r
    # Another tenant's domain does not exist for this one.
    r = server.api("PUT", f"/v1/domains/{domain}/signing", {"signatures": "none"},
                   token=tenant.api_key)
    assert r.status == 404, r
    r = server.api("GET", f"/v1/tenants/{other.id}/signing", token=tenant.api_key)
    assert r.status in (403, 404), r
    done = cli(server, "signing", "set", "--tenant", tenant.name, "dsa")
    assert done.returncode != 0 and "signatures" in done.stderr, done.stderr
