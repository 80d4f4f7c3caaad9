"""Disk full: the data directory on a small tmpfs that the test fills up.

Promises checked: once the disk is full, SMTP submissions get `452 4.3.1` and
`POST /v1/messages` gets HTTP 507; nothing is half-written (every message that got 250
or 202 is complete through the API, and the queue counts match exactly the accepted
recipients); after space is freed, submissions are accepted again without a restart.

Needs root (to mount the tmpfs) and the `mount` command; skipped otherwise. CI runs as
root. Bounded: at most MAX_FILL_ATTEMPTS submissions while the disk fills.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import subprocess
import uuid

import pytest

from mailroom_harness import (
    MailroomServer,
    assert_message_queued,
    assert_queued,
    binary_missing_reason,
    make_message,
    submit,
)

TMPFS_SIZE = "24m"
# Space left free before the submissions that are expected to run out of it.
HEADROOM = 192 * 1024
BODY_SIZE = 24 * 1024
MAX_FILL_ATTEMPTS = 80


def _mount_tmpfs(path):
    if os.geteuid() != 0:
        pytest.skip("disk-full test needs root to mount a tmpfs (CI runs as root)")
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700",
                           "tmpfs", str(path)], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    # Never fill a real disk: the data directory must now be the small tmpfs.
    total = shutil.disk_usage(path).total
    if total > 64 * 1024 * 1024:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
        pytest.fail(f"{path} is {total} bytes after mounting a {TMPFS_SIZE} tmpfs")


def _fill(path, leave: int) -> int:
    """Writes filler files until only about `leave` bytes are free; returns bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    n = 0
    while True:
        free = shutil.disk_usage(path).free
        if free <= leave:
            return written
        n += 1
        with open(path / f"filler-{n}", "wb") as f:
            try:
                while shutil.disk_usage(path).free > leave:
                    size = min(len(chunk), max(4096, shutil.disk_usage(path).free - leave))
                    f.write(chunk[:size])
                    f.flush()
                    written += size
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return written


def _fill_completely(path):
    try:
        _fill(path, 0)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    # Whatever a partial page left: a last file of single bytes.
    try:
        with open(path / "filler-last", "wb", buffering=0) as f:
            for _ in range(1 << 16):
                f.write(b"\0")
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise


def _free(path):
    for p in path.glob("filler-*"):
        p.unlink()


def _send_smtp(server, tenant, client, rcpt):
    # Random text: the store deflates bodies and checkpoints its WAL as it goes, so a
    # repetitive body would take almost no room and the disk would never fill.
    lines = [base64.b64encode(os.urandom(57)).decode() for _ in range(BODY_SIZE // 78)]
    msg = make_message(tenant.sender, [rcpt], subject="disk full",
                       body="\r\n".join(lines) + "\r\n")
    return submit(client, tenant.sender, [rcpt], msg)


def _send_http(server, tenant, rcpt):
    return server.api("POST", "/v1/messages",
                      {"from": tenant.sender, "to": [rcpt], "subject": "s", "text": "t"},
                      token=tenant.api_key)


def _total_recipients(server) -> int:
    """Recipients in the store, whatever their state (GET /v1/queue `by_state`)."""
    r = server.api("GET", "/v1/queue")
    assert r.status == 200, r
    return sum(r.body["by_state"].values())


@pytest.fixture
def full_server(tmp_path):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    srv = MailroomServer(tmp_path / "srv", extra_config="[delivery]\nenabled = false\n"
                         "[webhooks]\nenabled = false\n")
    _mount_tmpfs(srv.data_dir)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        subprocess.run(["umount", "-l", str(srv.data_dir)], capture_output=True, timeout=30)


def test_disk_full_refuses_cleanly_and_recovers(full_server):
    srv = full_server
    data = srv.data_dir
    tenant = srv.create_tenant("disk", domain="acme.test")
    accepted: dict[str, str] = {}  # message id -> recipient

    client = srv.smtp_starttls()
    assert tenant.login(client)[0] == 235
    for i in range(3):
        rcpt = f"before-{i}@example.net"
        accepted[assert_queued(_send_smtp(srv, tenant, client, rcpt))] = rcpt
    before_total = _total_recipients(srv)
    assert before_total == 3, srv.api("GET", "/v1/queue")

    # Leave a little room, then submit until the store says it is full: each answer
    # must be 250 (and then complete) or 452 4.3.1, nothing else.
    _fill(data, HEADROOM)
    refused = None
    for i in range(MAX_FILL_ATTEMPTS):
        rcpt = f"filling-{i}@example.net"
        code, text = _send_smtp(srv, tenant, client, rcpt)
        if code == 250:
            accepted[assert_queued((code, text))] = rcpt
            continue
        refused = (code, text)
        break
    assert refused is not None, f"{MAX_FILL_ATTEMPTS} x {BODY_SIZE} bytes fit into {HEADROOM}?"
    print(f"disk-full: {len(accepted)} accepted, then {refused!r}")
    assert refused[0] == 452 and refused[1].startswith(b"4.3.1"), refused
    # The session is still usable after the refusal.
    assert client.rset()[0] == 250

    # Completely full now: SMTP 452 4.3.1 again, HTTP 507. A WAL that was checkpointed
    # is written again from its start, so the room it already holds may still take a
    # message or two (durably: they are checked below with the others) before the
    # refusals; a bounded number of tries.
    _fill_completely(data)
    for i in range(MAX_FILL_ATTEMPTS):
        code, text = _send_smtp(srv, tenant, client, f"full-smtp-{i}@example.net")
        if code != 250:
            break
        accepted[assert_queued((code, text))] = f"full-smtp-{i}@example.net"
    assert (code, text[:5]) == (452, b"4.3.1"), (code, text)
    assert client.rset()[0] == 250
    for i in range(MAX_FILL_ATTEMPTS):
        r = _send_http(srv, tenant, f"full-http-{i}@example.net")
        if r.status != 202:
            break
        accepted[str(r.body["id"])] = f"full-http-{i}@example.net"
    assert r.status == 507, r
    assert r.headers.get("content-type", "").startswith("application/problem+json"), r

    # Nothing half-written: every accepted message is complete, and the queue holds
    # exactly their recipients.
    for msg_id, rcpt in accepted.items():
        assert_message_queued(srv, msg_id, tenant=tenant, mail_from=tenant.sender, rcpts=[rcpt])
    assert _total_recipients(srv) == len(accepted), (len(accepted), srv.api("GET", "/v1/queue"))

    # Space returns: service resumes on the same process and the same session.
    _free(data)
    code, text = _send_smtp(srv, tenant, client, "after-smtp@example.net")
    accepted[assert_queued((code, text), what="SMTP after freeing space")] = "after-smtp@example.net"
    client.quit()
    r = _send_http(srv, tenant, "after-http@example.net")
    assert r.status == 202, r
    accepted[str(r.body["id"])] = "after-http@example.net"
    for msg_id, rcpt in accepted.items():
        assert_message_queued(srv, msg_id, tenant=tenant, rcpts=[rcpt])
    assert _total_recipients(srv) == len(accepted), srv.api("GET", "/v1/queue")
    assert srv.alive()
    # A fresh session works too.
    client = srv.smtp_starttls()
    assert tenant.login(client)[0] == 235
    rcpt = f"fresh-{uuid.uuid4().hex[:6]}@example.net"
    assert_queued(_send_smtp(srv, tenant, client, rcpt))
    client.quit()
