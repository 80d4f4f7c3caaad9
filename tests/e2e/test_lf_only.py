"""LF-only messages end to end: a file with Unix line endings is sent by the real
`curl --upload-file` (smtps:// with AUTH) to the real binary, which stores every line
as a CRLF line (Postfix's `smtpd_forbid_bare_newline = normalize`). The sink receives
CRLF lines only, and dkimpy verifies both DKIM signatures against the records this test
publishes on a loopback DNS server (see test_domains.py).

curl is installed by scripts/install-test-deps.sh; without it the test is skipped, and
fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import dkim
import pytest

from mailroom_harness import start_server
from test_delivery import delivery_config
from fakes import DnsServer
from test_domains import _lookup, _verified_domain


@pytest.fixture(scope="module")
def dns_server():
    s = DnsServer()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink, dns_server):
    extra = delivery_config(sink.port) + (
        dns_server.config()
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-lf-only"), extra_config=extra)
    yield srv
    srv.stop()


def curl_binary() -> str:
    curl = shutil.which("curl")
    if not curl:
        message = "curl is not installed (run scripts/install-test-deps.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return curl


def test_curl_upload_of_an_lf_only_file_is_stored_as_crlf_and_signed(server, sink, dns_server,
                                                                      tmp_path):
    curl = curl_binary()
    tenant = server.create_tenant("lfonly")
    domain = _verified_domain(server, dns_server, tenant)
    sender = f"app@{domain}"
    rcpt = f"ok-{uuid.uuid4().hex[:8]}@example.net"
    lines = [f"From: <{sender}>", f"To: <{rcpt}>", "Subject: a file with Unix line endings",
             "", "line one", "line two, after which an empty line", "", "last line"]
    path = tmp_path / "unix.eml"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    assert b"\r" not in path.read_bytes()

    host, port = server.implicit_tls_addr
    run = subprocess.run(
        [curl, "--silent", "--show-error", "--insecure", "--max-time", "30",
         f"smtps://{host}:{port}", "--user", f"{tenant.username}:{tenant.password}",
         "--mail-from", sender, "--mail-rcpt", rcpt, "--upload-file", str(path)],
        capture_output=True, timeout=60)
    assert run.returncode == 0, (run.returncode, run.stderr.decode(errors="replace"))

    got = sink.wait_for_rcpt(rcpt)
    data = got.data if isinstance(got.data, bytes) else got.data.encode()
    # Every line of the file arrived as a CRLF line; no bare LF is left.
    assert b"\n" not in data.replace(b"\r\n", b""), data
    body = data.split(b"\r\n\r\n", 1)[1]
    assert body.startswith(b"line one\r\nline two, after which an empty line\r\n\r\nlast line\r\n"), body
    assert b"Subject: a file with Unix line endings\r\n" in data
    assert data.count(b"DKIM-Signature:") == 2, data[:2000]
    asked = []
    d = dkim.DKIM(data)
    for idx in range(2):
        assert d.verify(idx=idx, dnsfunc=_lookup(dns_server, asked)), f"signature {idx} did not verify"
    assert any(a.endswith(f"._domainkey.{domain}") for a in asked), asked
