"""Certificates from ACME (`[tls.acme]`, README "Certificates from ACME") against
Debian's `pebble` (Let's Encrypt's ACME test CA) on loopback, on both backends:

- Mailroom starts before the CA answers: the order fails, `/readyz` stays 200 and shows
  `certificate.state = "failing"` with the error, and the self-signed certificate serves;
- the CA comes up (its HTTP-01 validation pointed at Mailroom's HTTP listener, names
  resolved by a test DNS server): the retry issues a certificate, which SMTP STARTTLS and
  implicit TLS present at once (verified by Python's ssl against pebble's root, fetched
  from its management endpoint), without a restart; the account and the certificate
  are 0600 files in data_dir;
- a restart reuses both (no new order);
- with `renew_before_days` beyond the certificate's lifetime every check renews: new
  certificates are swapped in while the process runs.

Ports are chosen at run time. A missing pebble skips, except under CI=true where it
fails (scripts/install-test-deps.sh installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from mailroom_harness import MailroomServer, binary_missing_reason, poll_until
from tls_fixtures import CertAuthority, DnsServer

HOST = "mail.acme.test"


def need_pebble() -> str:
    path = shutil.which("pebble")
    if path:
        return path
    msg = "pebble is not installed (run scripts/install-test-deps.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pebble:
    """pebble on 127.0.0.1 with its own HTTPS certificate (from `ca`), validating
    HTTP-01 on `http_port` and resolving names through `dns_port`."""

    def __init__(self, workdir: Path, ca: CertAuthority, http_port: int, dns_port: int):
        self.binary = need_pebble()
        self.workdir = workdir
        self.ca = ca
        ca.issue(["localhost"])
        self.acme_port, self.mgmt_port = free_port(), free_port()
        self.config = workdir / "pebble.json"
        self.config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(ca.dir / f"leaf{ca._n}.pem"),
            "privateKey": str(ca.dir / f"leaf{ca._n}.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}))
        self.dns_port = dns_port
        self.log = workdir / "pebble.log"
        self.proc: subprocess.Popen | None = None
        self.directory = f"https://localhost:{self.acme_port}/dir"

    def start(self):
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                   PEBBLE_AUTHZREUSE="0")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-config", str(self.config),
                 "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(self.workdir), env=env, start_new_session=True)
        ctx = ssl.create_default_context(cafile=str(self.ca.pem_path))

        def up():
            try:
                with urllib.request.urlopen(self.directory, context=ctx, timeout=2) as r:
                    return r.status == 200
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                return False

        poll_until(up, timeout=20, what="pebble's directory")

    def root_pem(self) -> str:
        ctx = ssl.create_default_context(cafile=str(self.ca.pem_path))
        url = f"https://localhost:{self.mgmt_port}/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.read().decode()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def starttls_cert(port: int, ctx: ssl.SSLContext) -> x509.Certificate:
    """The certificate presented after STARTTLS on 127.0.0.1:`port`, verified by `ctx`
    for HOST."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rb")

        def reply() -> bytes:
            while True:
                line = f.readline()
                assert line, "connection closed"
                if line[3:4] != b"-":
                    return line

        assert reply().startswith(b"220")
        sock.sendall(b"EHLO client.test\r\n")
        assert reply().startswith(b"250")
        sock.sendall(b"STARTTLS\r\n")
        assert reply().startswith(b"220")
        with ctx.wrap_socket(sock, server_hostname=HOST) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def implicit_tls_cert(port: int, ctx: ssl.SSLContext) -> x509.Certificate:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=HOST) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def https_cert(server: MailroomServer, ctx: ssl.SSLContext) -> x509.Certificate:
    """The certificate the HTTPS listener (`http.tls_listen`) presents as HOST."""
    host, port = json.loads((server.data_dir / "listeners.json").read_text())["https"][0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=HOST) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def certificate_status(server: MailroomServer) -> dict:
    r = server.api("GET", "/readyz", token=None)
    assert r.status == 200, r
    return r.body["certificate"]


def acme_config(pebble: Pebble, ca: CertAuthority, renew_before_days: int) -> str:
    return (
        "[delivery]\nenabled = false\n\n"
        "[tls.acme]\n"
        f'directory = "{pebble.directory}"\n'
        'contact = "postmaster@acme.test"\n'
        f'hosts = ["{HOST}"]\n'
        f"renew_before_days = {renew_before_days}\n"
        "check_interval_secs = 2\n"
        f'ca_file = "{ca.pem_path}"\n'
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_issue_serve_reuse_and_renew(tmp_path, monkeypatch):
    need_pebble()
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    ca = CertAuthority(tmp_path / "pki")
    dns = DnsServer()
    dns.a[HOST] = ["127.0.0.1"]
    http_port = free_port()
    monkeypatch.setenv("MAILROOM_HTTP__LISTEN", f"127.0.0.1:{http_port}")
    monkeypatch.setenv("MAILROOM_HTTP__TLS_LISTEN", '["127.0.0.1:0"]')
    pebble = Pebble(tmp_path, ca, http_port, dns.port)
    server = MailroomServer(tmp_path / "mailroom",
                            extra_config=acme_config(pebble, ca, renew_before_days=30))
    try:
        # 1. The CA is not up yet: the order fails, visibly, and the node stays ready.
        server.start()
        status = poll_until(lambda: (s := certificate_status(server))["state"] == "failing" and s,
                            timeout=20, what="the failed order in /readyz")
        assert status["source"] == "acme" and status["hosts"] == [HOST], status
        assert status["last_error"] and status["serial"] is None, status
        assert server.readyz() == 200
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        first = starttls_cert(server.submission_port, insecure)
        assert first.issuer == first.subject, "the self-signed certificate serves meanwhile"

        # 2. The CA comes up: the retry issues, and the listeners present it at once.
        pebble.start()
        status = poll_until(lambda: (s := certificate_status(server))["state"] == "valid" and s,
                            timeout=20, what="an issued certificate in /readyz")
        assert status["last_error"] is None and status["not_after"], status
        root = tmp_path / "pebble-root.pem"
        root.write_text(pebble.root_pem())
        verify = ssl.create_default_context(cafile=str(root))
        issued = starttls_cert(server.submission_port, verify)
        names = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert names.value.get_values_for_type(x509.DNSName) == [HOST]
        serial = issued.serial_number
        assert f"{serial:x}" in status["serial"].replace(":", "").lstrip("0"), status
        assert implicit_tls_cert(server.implicit_tls_port, verify).serial_number == serial
        assert https_cert(server, verify).serial_number == serial, "HTTPS presents it too"
        # Without pebble's root the same certificate is refused: the check can fail.
        with pytest.raises(ssl.SSLCertVerificationError):
            starttls_cert(server.submission_port, ssl.create_default_context())
        acme_dir = server.data_dir / "acme"
        assert mode(acme_dir) == 0o700
        for name in ["account.json", "cert.pem"]:
            assert mode(acme_dir / name) == 0o600, name
        account = (acme_dir / "account.json").read_bytes()
        stored = (acme_dir / "cert.pem").read_bytes()
        assert b"PRIVATE KEY" in stored

        # 3. A restart reuses the account and the certificate: no new order.
        server.stop()
        server.start()
        assert starttls_cert(server.submission_port, verify).serial_number == serial
        time.sleep(3)  # a check interval and more: nothing is due
        assert certificate_status(server)["serial"] == status["serial"]
        assert (acme_dir / "cert.pem").read_bytes() == stored
        assert (acme_dir / "account.json").read_bytes() == account

        # 4. Renewal without a restart: with renew_before_days beyond the lifetime every
        # check renews, and each new certificate is presented while the process runs.
        server.stop()
        server.config_path.write_text(server.config_path.read_text().replace(
            "renew_before_days = 30", "renew_before_days = 36500"))
        server.start()
        pid = server.pid
        seen = {serial}

        def renewed():
            cert = starttls_cert(server.submission_port, verify)
            seen.add(cert.serial_number)
            return len(seen) >= 3

        poll_until(renewed, timeout=20, interval=0.5, what="two renewals")
        assert server.pid == pid and server.alive()
        now = certificate_status(server)
        assert now["state"] == "valid" and now["renewed_at"], now
        assert implicit_tls_cert(server.implicit_tls_port, verify).serial_number in seen
        assert https_cert(server, verify).serial_number != serial, "HTTPS presents the renewal"
        assert (acme_dir / "account.json").read_bytes() == account, "the account is reused"
    finally:
        server.stop()
        pebble.stop()
        dns.stop()
        if server.database is not None:
            server.database.drop()


def test_challenge_route_answers_only_pending_tokens(server):
    """Any node answers `/.well-known/acme-challenge/{token}` from the store; a token
    that is not pending is a 404 problem naming the token."""
    r = server.api("GET", "/.well-known/acme-challenge/NoSuchToken_123", token=None)
    assert r.status == 404, r
    assert r.body["field"] == "token", r
    r = server.api("GET", "/.well-known/acme-challenge/bad%20token", token=None)
    assert r.status == 404 and r.body["field"] == "token", r


def test_check_config_validates_the_section(tmp_path):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    from mailroom_harness import mailroom_bin
    cfg = tmp_path / "mailroom.toml"
    for text, key in [
        ('[tls.acme]\nhosts = ["*.example.com"]\n', "tls.acme.hosts"),
        ('[tls.acme]\nhosts = ["mail.example.com"]\ndirectory = "http://ca.example/dir"\n',
         "tls.acme.directory"),
        ('[tls.acme]\nhosts = ["mail.example.com"]\nca_file = "/nonexistent/root.pem"\n',
         "tls.acme.ca_file"),
    ]:
        cfg.write_text(text)
        r = subprocess.run([str(mailroom_bin()), "check-config", str(cfg)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and key in r.stderr, (text, r)
    cfg.write_text('[tls.acme]\ncontact = "ops@example.com"\nhosts = ["mail.example.com"]\n')
    r = subprocess.run([str(mailroom_bin()), "check-config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
