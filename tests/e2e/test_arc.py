"""ARC end to end: a tenant relays a message that already carries a DKIM signature
(forwarded mail). Mailroom checks it through DNS (its resolver points at this test's
TXT server), records the result and adds an ARC set with the operator's sealing key
(`arc.domain`); the message reaches the sink, where dkimpy's ARC verifier passes the
chain with the sealing key published from `data_dir/arc-key.pem`, and the original
DKIM signature still verifies. A tampered copy fails the chain.
"""

from __future__ import annotations

import base64
import uuid

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailroom_harness import assert_queued, start_server, submit
from test_delivery import delivery_config
from fakes import DnsServer

ARC_DOMAIN = "arc.mailroom.test"


def spki_txt(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def txt():
    s = DnsServer()
    yield s
    s.stop()



@pytest.fixture(scope="module")
def server(tmp_path_factory, sink, txt):
    extra = delivery_config(sink.port) + (
        f'\n[arc]\ndomain = "{ARC_DOMAIN}"\nselector = "seal"\n'
        + txt.config()
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-arc"), extra_config=extra)
    yield srv
    srv.stop()


def test_forwarded_mail_gets_a_verifiable_arc_set(server, sink, txt):
    domain = f"fwd{uuid.uuid4().hex[:6]}.test"
    tenant = server.create_tenant("arc", domain=domain)
    # The original author's signature, made here with dkimpy, key published in DNS.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    txt.txt[f"orig._domainkey.{domain}"] = [spki_txt(key.public_key())]
    rcpt = f"ok-{uuid.uuid4().hex[:8]}@example.net"
    original = (
        f"From: Author <author@{domain}>\r\nTo: list@{domain}\r\n"
        f"Subject: forwarded with ARC\r\nDate: Tue, 01 Dec 2026 12:00:00 +0000\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{domain}>\r\n\r\nHello through a forwarder.\r\n"
    ).encode()
    sig = dkim.sign(original, b"orig", domain.encode(), pem,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    signed = sig + original

    client = server.smtp_starttls()
    try:
        client.login(tenant.username, tenant.password)
        assert_queued(submit(client, f"author@{domain}", [rcpt], signed))
    finally:
        client.close()

    got = sink.wait_for_rcpt(rcpt, timeout=20)
    data = got.data
    for header in (b"ARC-Seal:", b"ARC-Message-Signature:", b"ARC-Authentication-Results:"):
        assert header in data, data[:3000]
    assert b"dkim=pass" in data.split(b"\r\n\r\n", 1)[0], "Mailroom's own check of the original"

    sealer = serialization.load_pem_private_key(
        (server.data_dir / "arc-key.pem").read_bytes(), password=None)
    records = dict(txt.txt)
    records[f"seal._domainkey.{ARC_DOMAIN}"] = [spki_txt(sealer.public_key())]

    def dnsfunc(name, timeout=5):
        k = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        texts = records.get(k)
        return texts[0].encode() if texts else None

    cv, results, comment = dkim.arc_verify(data, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass, (cv, results, comment)
    # The author's signature survived the relay (it is one of several DKIM-Signatures).
    d = dkim.DKIM(data)
    count = data.count(b"\r\nDKIM-Signature:") + data.startswith(b"DKIM-Signature:")
    assert any(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(count)), "original DKIM lost"

    tampered = data.replace(b"Hello through a forwarder.", b"Hello through a thief.")
    cv, _, _ = dkim.arc_verify(tampered, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Fail, cv
