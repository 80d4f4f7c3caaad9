"""Trusting the generated self-signed certificate, as the README's "TLS: trusting the
generated certificate" section says: each client verifies `data_dir/tls/cert.pem` for
both `localhost` and `127.0.0.1`, over STARTTLS and implicit TLS, and refuses the
server without it (so each check can fail). Clients: Python's ssl (smtplib), curl
`--cacert`, swaks `--tls-verify --tls-ca-path`, and Node's tls module with
`NODE_EXTRA_CA_CERTS` (what nodemailer uses). A missing tool skips its test, except
under CI=true where it fails (scripts/install-test-deps.sh installs them).
"""

from __future__ import annotations

import os
import shutil
import smtplib
import ssl
import subprocess

import pytest

from mailroom_harness import poll_until, start_server

HOSTS = ["localhost", "127.0.0.1"]


def need(tool: str):
    if shutil.which(tool):
        return
    msg = f"{tool} is not installed (run scripts/install-test-deps.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("mailroom-tls"),
                       extra_config="[delivery]\nenabled = false\n")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cert(server) -> str:
    path = server.data_dir / "tls" / "cert.pem"
    # Written while the server starts, possibly just after listeners.json.
    poll_until(lambda: path.is_file() and b"END CERTIFICATE" in path.read_bytes(),
               timeout=10, what=str(path))
    return str(path)


@pytest.mark.parametrize("host", HOSTS)
def test_python_ssl_with_cafile(server, cert, host):
    ctx = ssl.create_default_context(cafile=cert)
    with smtplib.SMTP(host, server.submission_port, timeout=10) as s:
        s.starttls(context=ctx)
        assert s.sock.getpeercert()["subjectAltName"], "no verified peer certificate"
    with smtplib.SMTP_SSL(host, server.implicit_tls_port, context=ctx, timeout=10) as s:
        assert s.noop()[0] == 250
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(host, server.implicit_tls_port,
                         context=ssl.create_default_context(), timeout=10)


@pytest.mark.parametrize("host", HOSTS)
def test_curl_with_cacert(server, cert, host):
    need("curl")
    for url, extra in ((f"smtps://{host}:{server.implicit_tls_port}", []),
                       (f"smtp://{host}:{server.submission_port}", ["--ssl-reqd"])):
        base = ["curl", "-sS", "--max-time", "10", *extra, url, "-X", "NOOP"]
        ok = subprocess.run([*base, "--cacert", cert], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        bad = subprocess.run(base, capture_output=True, text=True)
        assert bad.returncode == 60, (bad.returncode, bad.stderr)  # peer cert not trusted


@pytest.mark.parametrize("host", HOSTS)
def test_swaks_with_tls_ca_path(server, cert, host):
    need("swaks")
    base = ["swaks", "--server", f"{host}:{server.submission_port}", "--tls", "--tls-verify",
            "--quit-after", "EHLO"]
    ok = subprocess.run([*base, "--tls-ca-path", cert], capture_output=True, text=True,
                        timeout=20)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(base, capture_output=True, text=True, timeout=20)
    assert bad.returncode != 0 and "certificate verify failed" in bad.stdout + bad.stderr, \
        bad.stdout + bad.stderr


NODE_CLIENT = """
const tls = require('tls');
const [host, port] = [process.argv[1], Number(process.argv[2])];
const opts = {host, port};
if (host !== '127.0.0.1') opts.servername = host;
const s = tls.connect(opts, () => { console.log('authorized=' + s.authorized); s.end(); });
s.on('error', e => { console.log('error=' + e.code); process.exitCode = 1; });
"""


@pytest.mark.parametrize("host", HOSTS)
def test_node_with_extra_ca_certs(server, cert, host):
    need("node")
    cmd = ["node", "-e", NODE_CLIENT, host, str(server.implicit_tls_port)]
    env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"}
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=20,
                        env={**env, "NODE_EXTRA_CA_CERTS": cert})
    assert ok.returncode == 0 and "authorized=true" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env)
    assert bad.returncode == 1 and "SELF_SIGNED" in bad.stdout, bad.stdout + bad.stderr
