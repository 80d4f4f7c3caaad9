"""Secrets at rest, against the real binary (issue 12 item 2).

- The data directory is 0700 and every file in it 0600: on a fresh directory, and on an
  existing one left 0755/0644 (corrected at start, and logged).
- DKIM private keys and webhook secrets are sealed in mailroom.db under the key file
  (`secrets.key`): the test opens the envelopes itself with `cryptography`'s AES-GCM and
  the key file (an independent reader of the documented format), then checks that
  neither the PEM text, nor its base64 body, nor the webhook secret appears in
  mailroom.db or mailroom.db-wal, before and after a WAL checkpoint.
- After a restart the keys still open: mail delivered to the sink passes dkimpy against
  the published records, and a webhook test ping carries a valid signature.
- A database from before encryption (plaintext rows, no key file) is sealed at start.
- A wrong or missing key stops the start with an error naming `secrets.key_file`;
  `MAILROOM_SECRETS__KEY` supplies the key instead of the file.
- `mailroom secrets rotate-key` re-seals everything under a new key, keeps the old one
  readable as `secrets.key.old`, and the service signs and pings after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sqlite3
import stat
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fakes import WebhookReceiver as Receiver
from mailroom_harness import (
    MailroomServer,
    assert_queued,
    make_message,
    mailroom_bin,
    start_server,
    submit,
)
from test_delivery import delivery_config


# -- helpers -------------------------------------------------------------------------------


@contextmanager
def db_conn(path: Path):
    """The test's own connection to the SQLite file, committed and *closed* on leaving.
    (`with db_conn(...)` only commits: the connection closed whenever the garbage
    collector got to it, and its close, the last one, deletes `mailroom.db-wal`; once
    that happened in the middle of `modes()`, between listing the file and reading its
    mode.)"""
    c = sqlite3.connect(path)
    try:
        with c:
            yield c
    finally:
        c.close()


def modes(data_dir: Path) -> dict[str, int]:
    """Permission bits of the directory and of everything below it."""
    out = {".": stat.S_IMODE(data_dir.stat().st_mode)}
    for p in data_dir.rglob("*"):
        out[str(p.relative_to(data_dir))] = stat.S_IMODE(p.lstat().st_mode)
    return out


def assert_private(data_dir: Path, running: bool = True):
    """Everything under the data directory is the owner's alone. The WAL and its index
    are only required while a server runs: the last connection to close (a clean stop,
    or an offline command such as `secrets rotate-key`) checkpoints and may delete them,
    depending on whether that process closed its pool before exiting."""
    m = modes(data_dir)
    wrong = {
        k: oct(v) for k, v in m.items()
        if v != (0o700 if (data_dir / k).is_dir() else 0o600)
    }
    assert not wrong, f"not private: {wrong} (all: { {k: oct(v) for k, v in m.items()} })"
    required = ["mailroom.db", "secrets.key", "operator-token", "tls/key.pem"]
    if running:
        required += ["mailroom.db-wal", "mailroom.db-shm"]
    for name in required:
        assert name in m, f"{name} missing from {sorted(m)}"


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def read_key(path: Path) -> bytes:
    key = base64.b64decode(path.read_text().strip())
    assert len(key) == 32
    return key


def open_envelope(text: str, key: bytes, context: str) -> bytes:
    """The documented envelope: mrsec1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>."""
    version, kid, body = text.split(":", 2)
    assert version == "mrsec1" and kid == key_id(key), text[:40]
    packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return AESGCM(key).decrypt(packed[:12], packed[12:], context.encode())


def stored_rows(db: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    with db_conn(db) as c:
        keys = c.execute("SELECT domain, selector, private_key_pem FROM dkim_keys").fetchall()
        hooks = c.execute("SELECT id, secret FROM webhooks").fetchall()
    return keys, hooks


def pem_body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


def assert_no_secret_text(data_dir: Path, needles: list[bytes], what: str):
    for name in ("mailroom.db", "mailroom.db-wal"):
        path = data_dir / name
        blob = path.read_bytes() if path.exists() else b""
        for n in needles + [b"PRIVATE KEY"]:
            assert n not in blob, f"{what}: {n[:30]!r}… found in {name}"


def signature_ok(secret: str, header: str, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    expected = hmac.new(secret.encode(), f"{parts.get('t')}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def config(sink_port: int) -> str:
    return delivery_config(sink_port) + "\n[webhooks]\nallow_private = true\ntimeout_secs = 5\n"


def provision(srv: MailroomServer, receiver: Receiver):
    domain = f"s{uuid.uuid4().hex[:8]}.test"
    tenant = srv.create_tenant("secrets", domain=domain)
    r = srv.api("POST", "/v1/webhooks", {"url": receiver.url}, token=tenant.api_key)
    assert r.status == 201, r
    return tenant, domain, str(r.body["id"]), r.body["secret"]


def dkim_records(srv: MailroomServer, domain: str) -> dict[str, str]:
    r = srv.api("GET", f"/v1/domains/{domain}")
    assert r.status == 200, r
    return {rec["name"].lower(): rec["value"] for rec in r.body["records"]
            if rec["kind"] == "dkim"}


def send_and_verify(srv: MailroomServer, sink, tenant, domain: str, records: dict[str, str]):
    rcpt = f"r-{uuid.uuid4().hex[:8]}@example.net"
    sender = f"app@{domain}"
    with srv.smtp_starttls() as client:
        client.login(tenant.username, tenant.password)
        assert_queued(submit(client, sender, [rcpt], make_message(
            mail_from=sender, to=[rcpt], subject="sealed keys still sign")))
    got = sink.wait_for_rcpt(rcpt)
    data = got.data if isinstance(got.data, bytes) else got.data.encode()
    assert data.count(b"DKIM-Signature:") == 2, data[:1500]

    def lookup(name, timeout=5):
        key = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        value = records.get(key)
        return value.encode() if value else None

    d = dkim.DKIM(data)
    for idx in range(2):
        assert d.verify(idx=idx, dnsfunc=lookup), f"DKIM signature {idx} does not verify"


def ping_verifies(srv: MailroomServer, tenant, hook_id: str, secret: str, receiver: Receiver):
    before = len(receiver.requests)
    r = srv.api("POST", f"/v1/webhooks/{hook_id}/test", token=tenant.api_key)
    assert r.status == 200 and r.body["delivered"], r
    request = receiver.seen()[before]
    body, sig = request["body"], request["signature"]
    assert signature_ok(secret, sig, body), "ping signature does not verify with the secret"


def serve_fails(srv: MailroomServer, env_extra: dict | None = None) -> str:
    env = dict(os.environ, **(env_extra or {}))
    p = subprocess.run([str(mailroom_bin()), "serve", "--config", str(srv.config_path)],
                       capture_output=True, text=True, timeout=60, env=env,
                       stdin=subprocess.DEVNULL)
    assert p.returncode != 0, f"started although it should not:\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


# -- tests ---------------------------------------------------------------------------------


def test_fresh_dir_is_private_secrets_are_sealed_and_open_after_restart(tmp_path, sink, receiver):
    srv = MailroomServer(tmp_path, extra_config=config(sink.port))
    srv.data_dir.rmdir()  # Mailroom creates it.
    try:
        srv.start()
        tenant, domain, hook_id, secret = provision(srv, receiver)
        assert_private(srv.data_dir)
        records = dkim_records(srv, domain)
        assert len(records) == 2, records

        key = read_key(srv.data_dir / "secrets.key")
        keys, hooks = stored_rows(srv.data_dir / "mailroom.db")
        mine = [k for k in keys if k[0] == domain]
        assert len(mine) == 2
        needles = [secret.encode()]
        for d, selector, stored in mine:
            pem = open_envelope(stored, key, f"dkim:{d}:{selector}").decode()
            assert pem.startswith("-----BEGIN"), pem[:30]
            needles += [pem.encode(), pem_body(pem).encode(), pem_body(pem)[:40].encode()]
        (hid, stored_secret), = [h for h in hooks if h[0] == hook_id]
        assert open_envelope(stored_secret, key, f"webhook:{hid}").decode() == secret

        # Before a checkpoint the rows are (also) in the WAL; after it, in the main file.
        assert (srv.data_dir / "mailroom.db-wal").stat().st_size > 0
        assert_no_secret_text(srv.data_dir, needles, "before checkpoint")
        with db_conn(srv.data_dir / "mailroom.db") as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert_no_secret_text(srv.data_dir, needles, "after checkpoint")
        assert_private(srv.data_dir)

        srv.stop()
        srv.start()
        send_and_verify(srv, sink, tenant, domain, records)
        ping_verifies(srv, tenant, hook_id, secret, receiver)
        assert_private(srv.data_dir)
    finally:
        srv.stop()


def test_open_dir_is_tightened_plaintext_is_sealed_and_a_wrong_key_stops_the_start(
        tmp_path, sink, receiver):
    srv = start_server(tmp_path, extra_config=config(sink.port))
    try:
        tenant, domain, hook_id, secret = provision(srv, receiver)
        records = dkim_records(srv, domain)
        srv.stop()
        db = srv.data_dir / "mailroom.db"
        key = read_key(srv.data_dir / "secrets.key")

        # An older version's database: plaintext rows, no key file, everything 0755/0644.
        keys, hooks = stored_rows(db)
        pems = {}
        with db_conn(db) as c:
            for d, selector, stored in keys:
                pem = open_envelope(stored, key, f"dkim:{d}:{selector}").decode()
                pems[(d, selector)] = pem
                c.execute("UPDATE dkim_keys SET private_key_pem = ? WHERE domain = ? AND selector = ?",
                          (pem, d, selector))
            c.execute("UPDATE webhooks SET secret = ? WHERE id = ?", (secret, hook_id))
        (srv.data_dir / "secrets.key").unlink()
        for p in [srv.data_dir, *srv.data_dir.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)

        srv.start()
        log = srv.log_tail(200)
        assert "mode corrected" in log and "sealed plaintext secrets" in log, log
        assert_private(srv.data_dir)
        new_key = read_key(srv.data_dir / "secrets.key")
        keys, hooks = stored_rows(db)
        for d, selector, stored in keys:
            assert stored.startswith(f"mrsec1:{key_id(new_key)}:"), stored[:40]
            assert open_envelope(stored, new_key, f"dkim:{d}:{selector}").decode() == pems[(d, selector)]
        (_, stored_secret), = [h for h in hooks if h[0] == hook_id]
        assert open_envelope(stored_secret, new_key, f"webhook:{hook_id}").decode() == secret
        send_and_verify(srv, sink, tenant, domain, records)
        ping_verifies(srv, tenant, hook_id, secret, receiver)
        srv.stop()

        # A wrong key: refused, naming the setting; the file is left as it is.
        key_file = srv.data_dir / "secrets.key"
        right = key_file.read_text()
        key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        out = serve_fails(srv)
        assert "wrong key" in out and "secrets.key_file" in out, out
        # No key at all: refused too, and no new key generated over sealed data.
        key_file.unlink()
        out = serve_fails(srv)
        assert "secrets.key_file" in out and "not generated" in out, out
        assert not key_file.exists()
        # A malformed key in the environment names its key.
        out = serve_fails(srv, {"MAILROOM_SECRETS__KEY": "c2hvcnQ="})
        assert "secrets.key" in out and "32 bytes" in out, out
        # The right key from the environment: starts without any key file.
        os.environ["MAILROOM_SECRETS__KEY"] = right.strip()
        try:
            srv.start()
            ping_verifies(srv, tenant, hook_id, secret, receiver)
        finally:
            srv.stop()
            del os.environ["MAILROOM_SECRETS__KEY"]
        assert not key_file.exists()
    finally:
        srv.stop()


def test_rotate_key_reseals_everything_and_keeps_the_old_key_readable(tmp_path, sink, receiver):
    srv = start_server(tmp_path, extra_config=config(sink.port))
    try:
        tenant, domain, hook_id, secret = provision(srv, receiver)
        records = dkim_records(srv, domain)
        key_file = srv.data_dir / "secrets.key"
        old = read_key(key_file)
        rotate = [str(mailroom_bin()), "secrets", "rotate-key", "--config", str(srv.config_path)]

        # Not while the service runs: it would keep signing with keys it can no longer open.
        p = subprocess.run(rotate, capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "stop it" in p.stderr, p.stdout + p.stderr
        assert read_key(key_file) == old
        srv.stop()

        p = subprocess.run(rotate, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "re-sealed" in p.stdout, p.stdout
        new = read_key(key_file)
        assert new != old
        assert read_key(srv.data_dir / "secrets.key.old") == old
        assert not (srv.data_dir / "secrets.key.next").exists()
        keys, hooks = stored_rows(srv.data_dir / "mailroom.db")
        assert keys and hooks
        for owner, stored in [((d, s), v) for d, s, v in keys] + [((h,), v) for h, v in hooks]:
            assert stored.startswith(f"mrsec1:{key_id(new)}:"), (owner, stored[:40])
        assert_private(srv.data_dir, running=False)

        srv.start()
        assert "no longer needed" in srv.log_tail(80)
        send_and_verify(srv, sink, tenant, domain, records)
        ping_verifies(srv, tenant, hook_id, secret, receiver)
        srv.stop()

        # Once the old key is deleted, the service still starts: nothing needs it.
        (srv.data_dir / "secrets.key.old").unlink()
        srv.start()
        ping_verifies(srv, tenant, hook_id, secret, receiver)
    finally:
        srv.stop()
