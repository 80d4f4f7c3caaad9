"""Configuration reload without a restart: SIGHUP, `POST /v1/admin/reload` and
`mailroom reload` re-read the file the server started with.

- a limit (`limits.messages_per_day`) and a route (`[[delivery.routes]]` moved from sink A
  to sink B) changed in the file, then SIGHUP: new mail goes to sink B and the third
  message of a fresh tenant hears `451 4.7.1` (daily quota), same process;
- a bad file (a string where a number belongs): the API answers 422 naming the key,
  `mailroom reload` exits 1 with the reason, SIGHUP logs it, and nothing changed (mail
  still goes where it went, no limit appeared);
- a listener change (`smtp.submission_listen`, `http.listen`): named in the reply's
  `restart_required`, in `mailroom reload`'s output and in the log; the old listeners
  keep serving;
- certificates: `tls.cert_file`/`tls.key_file` set to a new pair, reload, the implicit-TLS
  listener presents it; the files replaced in place (a renewal), reload, the new one.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import uuid

import pytest

from mailroom_harness import (
    MailroomServer,
    assert_queued,
    assert_reply,
    make_message,
    mailroom_bin,
    poll_until,
    start_server,
    submit,
)
from sink import SmtpSink

WAIT = 20.0


def delivery(sink_port: int) -> str:
    return (
        "[delivery]\n"
        "allow_private = true\n"
        "retry_schedule_secs = [1]\n"
        "retry_jitter = 0.0\n"
        "\n"
        "[[delivery.routes]]\n"
        'domains = ["*"]\n'
        'host = "127.0.0.1"\n'
        f"port = {sink_port}\n"
        'tls = "none"\n'
    )


def uniq(kind: str = "ok") -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}@example.net"


@pytest.fixture
def sinks():
    a, b = SmtpSink().start(), SmtpSink().start()
    yield a, b
    a.stop()
    b.stop()


def rewrite(srv: MailroomServer, old: str, new: str):
    text = srv.config_path.read_text()
    assert old in text, f"{old!r} not in the config file"
    srv.config_path.write_text(text.replace(old, new))


def send(srv: MailroomServer, tenant, rcpt: str):
    """One message over STARTTLS + AUTH; returns the MAIL FROM reply, or the DATA reply
    when MAIL FROM was accepted."""
    with srv.smtp_starttls() as c:
        assert_reply(tenant.login(c), 235, "2.7.0", what="AUTH")
        code, text = c.mail(tenant.sender)
        if code != 250:
            return code, text
        assert_reply(c.rcpt(rcpt), 250, "2.1.5", what=f"RCPT TO:<{rcpt}>")
        return c.data(make_message(tenant.sender, [rcpt], subject="reload"))


def hup(srv: MailroomServer, marker: str, before: int):
    """SIGHUP, then wait until the log shows the reload's outcome (`marker`) after
    offset `before`."""
    os.kill(srv.pid, signal.SIGHUP)
    poll_until(
        lambda: marker in srv.log_path.read_text(errors="replace")[before:],
        timeout=WAIT,
        what=f"{marker!r} in the log after SIGHUP",
    )
    assert srv.alive(), "the server died on SIGHUP"


def log_size(srv: MailroomServer) -> int:
    return len(srv.log_path.read_text(errors="replace"))


def cli_reload(srv: MailroomServer) -> subprocess.CompletedProcess:
    host, port = srv.http_addr
    return subprocess.run(
        [str(mailroom_bin()), "reload", "--url", f"http://{host}:{port}",
         "--token", srv.operator_token],
        capture_output=True, text=True, timeout=WAIT,
    )


def test_sighup_changes_a_limit_and_a_route(tmp_path, sinks):
    a, b = sinks
    srv = start_server(tmp_path, extra_config=delivery(a.port))
    try:
        before_tenant = srv.create_tenant("before", "before.test")
        for _ in range(3):
            rcpt = uniq()
            assert_queued(send(srv, before_tenant, rcpt))
            a.wait_for_rcpt(rcpt, timeout=WAIT)

        rewrite(srv, f"port = {a.port}\n", f"port = {b.port}\n")
        with open(srv.config_path, "a") as f:
            f.write("\n[limits]\nmessages_per_day = 2\n")
        hup(srv, "configuration reloaded", log_size(srv))

        fresh = srv.create_tenant("after", "after.test")
        first, second = uniq(), uniq()
        assert_queued(send(srv, fresh, first))
        b.wait_for_rcpt(first, timeout=WAIT)
        assert_queued(send(srv, fresh, second))
        b.wait_for_rcpt(second, timeout=WAIT)
        assert not a.messages_for(first) and not a.messages_for(second), \
            "mail still went to the old route"
        # The third message of the day is over the new default limit.
        assert_reply(send(srv, fresh, uniq()), 451, "4.7.1", what="MAIL FROM over the quota")
        assert srv.alive()
    finally:
        srv.stop()


def test_a_bad_file_changes_nothing_and_says_why(tmp_path, sinks):
    a, _ = sinks
    srv = start_server(tmp_path, extra_config=delivery(a.port))
    try:
        tenant = srv.create_tenant("bad", "bad.test")
        good = srv.config_path.read_text()
        # A limit and a route change, in a file that does not load: neither may apply.
        srv.config_path.write_text(
            good.replace(f"port = {a.port}\n", "port = 1\n")
            + '\n[limits]\nmessages_per_day = "two"\n'
        )

        r = srv.api("POST", "/v1/admin/reload")
        assert r.status == 422, r
        assert r.headers["content-type"].startswith("application/problem+json"), r
        assert "messages_per_day" in r.body["detail"], r.body
        assert r.body["detail"].startswith("nothing was changed"), r.body

        out = cli_reload(srv)
        assert out.returncode == 1, out
        assert "messages_per_day" in out.stderr, out.stderr

        before = log_size(srv)
        hup(srv, "configuration reload failed", before)
        assert "messages_per_day" in srv.log_path.read_text(errors="replace")[before:]

        for _ in range(3):
            rcpt = uniq()
            assert_queued(send(srv, tenant, rcpt))
            a.wait_for_rcpt(rcpt, timeout=WAIT)

        # A tenant's token may not reload.
        r = srv.api("POST", "/v1/admin/reload", token=tenant.api_key)
        assert r.status == 403, r
    finally:
        srv.stop()


def test_a_listener_change_is_named_in_a_warning(tmp_path):
    srv = start_server(tmp_path)
    try:
        old_submission = srv.submission_addr
        rewrite(srv, 'submission_listen = ["127.0.0.1:0"]',
                'submission_listen = ["127.0.0.1:0", "127.0.0.2:0"]')
        rewrite(srv, '[http]\nlisten = "127.0.0.1:0"', '[http]\nlisten = "127.0.0.3:0"')
        rewrite(srv, "[smtp]\n", '[log]\nlevel = "debug"\n\n[smtp]\n')

        r = srv.api("POST", "/v1/admin/reload")
        assert r.status == 200, r
        assert "smtp.submission_listen" in r.body["restart_required"], r.body
        assert "http.listen" in r.body["restart_required"], r.body
        assert r.body["applied"] == ["log.level"], r.body
        assert r.body["file"] == str(srv.config_path), r.body
        log = srv.log_path.read_text(errors="replace")
        assert "smtp.submission_listen changed but takes effect only after a restart" in log

        out = cli_reload(srv)
        assert out.returncode == 0, out
        assert "warning: smtp.submission_listen changed but takes effect only after a restart" \
            in out.stdout, out.stdout
        assert "warning: http.listen changed" in out.stdout, out.stdout

        # The old listeners still serve.
        with socket.create_connection(old_submission, timeout=5) as s:
            assert s.recv(512).startswith(b"220 "), "no greeting on the old listener"
        assert srv.readyz() == 200
    finally:
        srv.stop()


def make_cert(dir_, cn: str):
    cert, key = dir_ / "cert.pem", dir_ / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", f"/CN={cn}", "-days", "2", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    os.chmod(key, 0o600)
    return cert, key


def served_cn(srv: MailroomServer) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(srv.implicit_tls_addr, timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                         input=der, capture_output=True, check=True, timeout=10)
    return out.stdout.decode().strip()


def test_reload_swaps_the_certificate(tmp_path):
    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("openssl is not installed")
    srv = start_server(tmp_path)
    try:
        certs = tmp_path / "certs"
        certs.mkdir()
        cert, key = make_cert(certs, "first.reload.test")
        assert "first.reload.test" not in served_cn(srv)
        with open(srv.config_path, "a") as f:
            f.write(f'\n[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n')
        r = srv.api("POST", "/v1/admin/reload")
        assert r.status == 200, r
        assert r.body["applied"] == ["tls.cert_file", "tls.key_file"], r.body
        assert "first.reload.test" in served_cn(srv)

        # Renewed in place: same paths, new contents.
        make_cert(certs, "second.reload.test")
        r = srv.api("POST", "/v1/admin/reload")
        assert r.status == 200 and r.body["applied"] == [], r
        assert "second.reload.test" in served_cn(srv)

        # A key that does not match its certificate: refused, the served one kept.
        other = tmp_path / "other"
        other.mkdir()
        _, other_key = make_cert(other, "other.reload.test")
        key.write_bytes(other_key.read_bytes())
        r = srv.api("POST", "/v1/admin/reload")
        assert r.status == 422, r
        assert "tls.cert_file" in r.body["detail"], r.body
        assert "second.reload.test" in served_cn(srv)
    finally:
        srv.stop()
