"""The HTTPS listener (`http.tls_listen`): the same API and console as the plain HTTP
listener, over TLS with the SMTP listeners' certificate — verified by a real TLS client
against the test's own CA, swapped by a reload without a restart, and the client's
address still reaching the API (the sign-in limit is per client address).

(The ACME certificate on this listener is in test_acme.py's flow: the listener serves
whatever certificate `tls.rs` holds, which ACME replaces.)"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time

import pytest

from mailroom_harness import MailroomServer, binary_missing_reason


def make_ca(dir_):
    """A CA and a server certificate for `mail.https.test` signed by it (openssl)."""
    ca_key, ca = dir_ / "ca.key", dir_ / "ca.pem"
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=30)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-subj", "/CN=Mailroom test CA", "-days", "2",
        "-keyout", str(ca_key), "-out", str(ca))
    return ca_key, ca


def issue(dir_, ca_key, ca, cn: str):
    key, csr, cert = dir_ / "key.pem", dir_ / f"{cn}.csr", dir_ / "cert.pem"
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=30)
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr))
    ext = dir_ / "ext.cnf"
    ext.write_text(f"subjectAltName=DNS:{cn}\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    key.chmod(0o600)
    return cert, key


def get(addr, path: str, ctx: ssl.SSLContext, host: str, headers=None):
    conn = http.client.HTTPSConnection(addr[0], addr[1], context=ctx, timeout=10)
    # SNI and the name checked are `host`; the TCP connection goes to the loopback port.
    conn.sock = ctx.wrap_socket(socket.create_connection(addr, timeout=10), server_hostname=host)
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def served_cn(addr) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(addr, timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                         input=der, capture_output=True, check=True, timeout=10)
    return out.stdout.decode()


def test_https_serves_the_api_with_the_configured_certificate_and_swaps_it(tmp_path):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_key, ca = make_ca(certs)
    cert, key = issue(certs, ca_key, ca, "mail.https.test")
    srv = MailroomServer(tmp_path, extra_config=(
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'))
    text = srv.config_path.read_text()
    assert 'listen = "127.0.0.1:0"\n' in text
    srv.config_path.write_text(text.replace(
        '[http]\nlisten = "127.0.0.1:0"\n',
        '[http]\nlisten = "127.0.0.1:0"\ntls_listen = ["127.0.0.1:0"]\n', 1))
    srv.start()
    try:
        listeners = json.loads((srv.data_dir / "listeners.json").read_text())
        host, port = listeners["https"][0].rsplit(":", 1)
        addr = (host, int(port))

        trusted = ssl.create_default_context(cafile=str(ca))
        status, body = get(addr, "/healthz", trusted, "mail.https.test")
        assert status == 200, body
        # The API itself, with its authentication, over TLS.
        status, body = get(addr, "/v1/tenants", trusted, "mail.https.test",
                           {"Authorization": f"Bearer {srv.operator_token}"})
        assert status == 200, body
        status, _ = get(addr, "/v1/tenants", trusted, "mail.https.test",
                        {"Authorization": "Bearer wrong"})
        assert status == 401
        # Without the test CA the certificate is refused: the check above can fail.
        with pytest.raises(ssl.SSLCertVerificationError):
            get(addr, "/healthz", ssl.create_default_context(), "mail.https.test")
        # A wrong name is refused too.
        with pytest.raises(ssl.SSLCertVerificationError):
            get(addr, "/healthz", trusted, "other.https.test")
        # A client that never finishes its handshake does not hold up the others.
        # (Handshakes time out after 10 s: one done in the accept loop itself would make
        # this request wait that long.)
        stalled = socket.create_connection(addr, timeout=5)
        try:
            started = time.monotonic()
            status, _ = get(addr, "/healthz", trusted, "mail.https.test")
            assert status == 200
            assert time.monotonic() - started < 5.0, "a stalled handshake held up another"
        finally:
            stalled.close()

        # Renewed in place and reloaded: HTTPS presents the new certificate at once.
        issue(certs, ca_key, ca, "renewed.https.test")
        r = srv.api("POST", "/v1/admin/reload")
        assert r.status == 200, r
        assert "renewed.https.test" in served_cn(addr)
        status, _ = get(addr, "/healthz", trusted, "renewed.https.test")
        assert status == 200
    finally:
        srv.stop()
