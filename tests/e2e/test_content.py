"""Content protection and engagement tracking end to end, against the real binary:

- a tracked HTML message is delivered to the sink with its link rewritten; the link is
  followed with urllib (redirect not followed) -> 302 to the original URL, and the
  `clicked` event appears in GET /v1/events; a tampered link gets 404;
- a real clamd (started here, foreground, its own config in a temp dir, a one-line
  `.ndb` signature database made for this test, TCP on a free 127.0.0.1 port) finds
  the test payload in an attachment -> 422 with rule `malware`; a clean one passes;
- a message quarantined by the heuristics is not delivered until it is released.

Only the clamd test needs clamd (its own server, `clamd_server`); it skips with a reason
if clamd is not installed (scripts/install-test-deps.sh installs Debian's
clamav-daemon), and under CI=true that skip is a failure (conftest.py).
"""

from __future__ import annotations

import base64
import email
import email.policy
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from html.parser import HTMLParser

import pytest

from mailroom_harness import MailroomServer, binary_missing_reason, poll_until
from sink import SmtpSink
from test_delivery import delivery_config

WAIT = 20.0
PAYLOAD = b"MAILROOM-CONTENT-E2E-TEST-PAYLOAD-5d1c9e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clamd_binary() -> str | None:
    return shutil.which("clamd") or (
        "/usr/sbin/clamd" if shutil.os.path.exists("/usr/sbin/clamd") else None)


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    binary = clamd_binary()
    if not binary:
        pytest.skip("clamd is not installed (scripts/install-test-deps.sh installs clamav-daemon)")
    d = tmp_path_factory.mktemp("clamd")
    db = d / "db"
    db.mkdir()
    # An extended signature: any file type (0), any offset (*), the payload's hex.
    (db / "mailroom-test.ndb").write_text(f"Mailroom.Test.Payload:0:*:{PAYLOAD.hex()}\n")
    port = free_port()
    conf = d / "clamd.conf"
    conf.write_text(
        "Foreground yes\n"
        f"DatabaseDirectory {db}\n"
        f"TemporaryDirectory {d}\n"
        f"PidFile {d / 'clamd.pid'}\n"
        f"LogFile {d / 'clamd.log'}\n"
        "LogSyslog no\n"
        "TCPAddr 127.0.0.1\n"
        f"TCPSocket {port}\n"
        "ScanMail yes\n"
        "StreamMaxLength 25M\n"
    )
    proc = subprocess.Popen([binary, "--config-file", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def pong():
        if proc.poll() is not None:
            raise AssertionError("clamd exited: " + (d / "clamd.log").read_text(errors="replace")[-2000:]
                                 if (d / "clamd.log").exists() else "clamd exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    try:
        poll_until(pong, timeout=60, interval=0.5, what="clamd answering PING")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


def _content_server(tmp_path_factory, sink, clamd_port: int | None) -> MailroomServer:
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    content = "\n[content]\nscore_threshold = 6\n"
    if clamd_port is not None:
        content += f'clamd = "tcp:127.0.0.1:{clamd_port}"\n'
    srv = MailroomServer(tmp_path_factory.mktemp("mailroom-content"),
                         extra_config=delivery_config(sink.port) + content)
    try:
        srv.start()
    except RuntimeError as err:
        srv.kill()
        pytest.fail(str(err), pytrace=False)
    return srv


def _tracking_tenant(server):
    t = server.create_tenant("content", domain="acme.test")
    r = server.api("PATCH", f"/v1/tenants/{t.id}",
                   {"track_opens": True, "track_clicks": True, "list_unsubscribe": True},
                   token=t.api_key)
    assert r.status == 200, r
    return t


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink):
    """Tracking and quarantine need no virus scanner: this server has none configured,
    so those tests run (and fail) whether clamd is installed or not."""
    srv = _content_server(tmp_path_factory, sink, None)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant(server):
    return _tracking_tenant(server)


@pytest.fixture(scope="module")
def clamd_server(tmp_path_factory, sink, clamd):
    srv = _content_server(tmp_path_factory, sink, clamd)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def clamd_tenant(clamd_server):
    return _tracking_tenant(clamd_server)


def uniq(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}@example.net"


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img" and "src" in a:
            self.images.append(a["src"])


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str):
    """GET without following redirects: (status, Location)."""
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as r:
            return r.status, r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location")


def events(server, tenant, msg_id, kind):
    r = server.api("GET", f"/v1/events?message_id={msg_id}&type={kind}", token=tenant.api_key)
    assert r.status == 200, r
    return r.body["events"]


def send(server, tenant, to, **extra):
    body = {"from": "news@acme.test", "to": [to], "subject": "Spring",
            "text": "See https://shop.example/spring",
            "html": "<table><tr><td><a href=\"https://shop.example/spring?x=1&amp;y=2\">Spring sale</a>"
                    " <a href=\"mailto:help@acme.test\">help</a>"
                    " <img src=\"https://cdn.example/logo.png\"></td></tr></table>"}
    body.update(extra)
    return server.api("POST", "/v1/messages", body, token=tenant.api_key)


def test_tracked_link_is_delivered_clicked_and_recorded(server, tenant, sink):
    to = uniq("reader")
    r = send(server, tenant, to)
    assert r.status == 202, r
    got = sink.wait_for_rcpt(to, timeout=WAIT)
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "X-Mailroom-Track" not in msg
    assert "shop.example/spring" in msg.get_body(("plain",)).get_content(), "plain text untouched"
    parser = Links()
    parser.feed(msg.get_body(("html",)).get_content())
    host, port = server.http_addr
    base = f"http://{host}:{port}"
    click = parser.hrefs[0]
    assert click.startswith(f"{base}/t/c/"), parser.hrefs
    assert parser.hrefs[1] == "mailto:help@acme.test"
    assert parser.images[0] == "https://cdn.example/logo.png"
    assert parser.images[1].startswith(f"{base}/t/o/")

    status, location = fetch(click)
    assert (status, location) == (302, "https://shop.example/spring?x=1&y=2")
    tampered = click[:-2] + ("AA" if not click.endswith("AA") else "BB")
    status, location = fetch(tampered)
    assert status == 404 and location is None

    clicked = poll_until(lambda: events(server, tenant, r.body["id"], "clicked"),
                         timeout=WAIT, what="clicked event")
    assert len(clicked) == 1
    assert clicked[0]["detail"]["url"] == "https://shop.example/spring?x=1&y=2"
    assert clicked[0]["detail"]["ip"] == "127.0.0.1"
    assert clicked[0]["recipient"] == to


def test_infected_attachment_is_rejected_by_clamd(clamd_server, clamd_tenant, sink):
    server, tenant = clamd_server, clamd_tenant
    infected = base64.b64encode(b"quarterly notes\n" + PAYLOAD + b"\nend\n").decode()
    r = send(server, tenant, uniq("virus"),
             attachments=[{"filename": "notes.txt", "content_type": "text/plain",
                           "content": infected}])
    assert r.status == 422, r
    assert r.body["rule"] == "malware", r.body
    assert "Mailroom.Test.Payload" in r.body["detail"]
    clean = base64.b64encode(b"quarterly notes, nothing else\n").decode()
    to = uniq("clean")
    r = send(server, tenant, to, attachments=[{"filename": "notes.txt",
                                               "content_type": "text/plain", "content": clean}])
    assert r.status == 202, r
    sink.wait_for_rcpt(to, timeout=WAIT)


def test_quarantined_message_is_delivered_after_release(server, tenant, sink):
    to = uniq("held")
    r = send(server, tenant, to, subject="Urgent action required",
             text="Please verify your account.",
             html="<p><a href=\"https://collector.example/\">https://www.bank.example/login</a></p>")
    assert r.status == 202, r
    assert r.body["recipients"][0]["status"] == "quarantined"
    time.sleep(1.0)
    assert sink.messages_for(to) == [], "a quarantined message was delivered"
    q = server.api("GET", "/v1/quarantine", token=tenant.api_key)
    assert [m["id"] for m in q.body["messages"]] == [r.body["id"]], q
    rel = server.api("POST", f"/v1/messages/{r.body['id']}/release", {}, token=tenant.api_key)
    assert rel.status == 200 and rel.body["released"] == 1, rel
    sink.wait_for_rcpt(to, timeout=WAIT)
    kinds = [e["type"] for e in server.api(
        "GET", f"/v1/events?message_id={r.body['id']}", token=tenant.api_key).body["events"]]
    assert kinds[:3] == ["accepted", "filtered", "released"], kinds
