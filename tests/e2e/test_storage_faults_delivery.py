"""The storage refusing writes while deliveries are being recorded (issue 19, item 2).

Every message carries a token in its Subject; the sink (sink.py, in this process)
records what arrives. In each test, messages are accepted while the sink holds its
connections (no greeting), so their deliveries are under way; then the fault lands and
the sink lets them through: the outcomes of those deliveries have to be recorded while
the storage refuses writes.

- `test_disk_full_while_recording_outcomes` (SQLite): the data directory is a small
  tmpfs (as in test_disk_full.py) filled to the last byte, right after the WAL was
  checkpointed and truncated (`_truncate_wal`: otherwise the space the WAL file already
  holds takes the few outcomes of the test, and SQLite refuses nothing). Shown: the server logs the
  refused outcome writes, `/readyz` is 503 naming the refusal, submissions get
  `452 4.3.1` / 507, the process neither dies nor spins (CPU time measured over a window
  of the fault); after the filler is deleted, the same process (no restart) records the
  held outcomes, `/readyz` is 200 again, every accepted message reached the sink and
  ends `delivered`; duplicates are counted and at most the one batch the log says was
  given up.
- `test_postgres_read_only_while_recording_outcomes` (PostgreSQL): the database is
  made read-only (`ALTER DATABASE … SET default_transaction_read_only = on`) and the
  node's sessions are terminated, as a failover to a standby would; every write then
  fails with `25006`. Same guarantees as the disk-full test, and recovery (the setting
  reset, the sessions terminated again, as a failover back would) without a restart.
- `test_read_only_filesystem_while_recording_outcomes` (SQLite): the data directory is
  an ext4 image on a loop device, turned read-only under the running server the way a
  kernel does after a file-system error (`/sys/fs/ext4/<dev>/trigger_fs_error` with
  `errors=remount-ro`). Such a file system stays read-only until it is unmounted, which
  needs every file on it closed: recovery is a stop, `e2fsck`, mount and start. Shown:
  no crash and no spin while read-only, `/readyz` 503 naming it, submissions refused
  `451 4.3.0` / 503, the stop finishes within its grace time although outcomes cannot
  be written, and after the restart every accepted message is delivered, with at most
  one duplicate per delivery that was under way (counted).

`chmod` cannot make the file read-only for a process that has it open (and root ignores
modes), and `mount -o remount,ro` is refused (EBUSY) while a file on the mount is open
for writing, so neither is used. Both tests need root, `mount`; the second also
`losetup`, `mkfs.ext4`, `e2fsck` and ext4's `trigger_fs_error` (skipped without them,
which fails under CI=true).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from mailroom_harness import (
    MailroomServer,
    binary_missing_reason,
    make_message,
    pg_query,
    poll_until,
)
from test_delivery import delivery_config
from test_disk_full import _fill_completely, _free, _mount_tmpfs

SUBJECT_RE = re.compile(rb"^Subject: fault-([0-9a-f]{32})\r?$", re.M)
IN_FLIGHT = 40  # messages whose delivery is under way when the fault lands
LEASE_SECS = 10  # short, so a given-up recipient is claimed again within the test
# While the fault lasts the process may poll, but not spin: at most this share of one
# core (measured about 0.02 on the debug build).
MAX_CPU_SHARE = 0.5
CPU_WINDOW_S = 5.0
READY_BOUND_S = 15.0  # fault -> /readyz 503, and recovery -> /readyz 200
DELIVERY_BOUND_S = 60.0
REFUSED_LINE = "the storage refuses outcome writes"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _config(sink_port: int) -> str:
    return (delivery_config(sink_port, retry_secs=(1,))
            .replace("[delivery]\n", f"[delivery]\nlease_secs = {LEASE_SECS}\n", 1)
            + "\n[webhooks]\nenabled = false\n")


def _server(tmp_path, sink, **kw) -> MailroomServer:
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    return MailroomServer(tmp_path / "srv", extra_config=_config(sink.port), **kw)


def _tenant(srv):
    domain = f"f{uuid.uuid4().hex[:6]}.test"
    tenant = srv.create_tenant("fault", domain=domain, credential=False)
    r = srv.api("PUT", f"/v1/tenants/{tenant.id}/allowed-ips",
                {"cidrs": ["127.0.0.1/32"], "require_tls": False})
    assert r.status == 200, r
    return tenant, f"app@{domain}"


def _send_http(srv, tenant, sender) -> tuple[str, object]:
    token = uuid.uuid4().hex
    r = srv.api("POST", "/v1/messages",
                {"from": sender, "to": [f"ok-{token[:8]}@example.net"],
                 "subject": f"fault-{token}", "text": "fault\n"}, token=tenant.api_key)
    return token, r


def _send_smtp(srv, sender) -> tuple[int, bytes]:
    client = srv.smtp()
    try:
        client.ehlo("client.test")
        rcpt = f"ok-{uuid.uuid4().hex[:8]}@example.net"
        code, text = client.mail(sender)
        if code != 250:
            return code, text
        code, text = client.rcpt(rcpt)
        if code != 250:
            return code, text
        return client.data(make_message(mail_from=sender, to=[rcpt], subject="refused?"))
    finally:
        try:
            client.quit()
        except Exception:  # noqa: BLE001 - the server may have closed it
            pass


def _accept(srv, tenant, sender, n: int) -> dict[str, str]:
    """n HTTP submissions, each must get 202; token -> message id."""
    out = {}
    for _ in range(n):
        token, r = _send_http(srv, tenant, sender)
        assert r.status == 202, r
        out[token] = str(r.body["id"])
    return out


def _sink_counts(sink) -> Counter:
    got: Counter = Counter()
    for m in sink.snapshot():
        for tok in SUBJECT_RE.findall(m.data):
            got[tok.decode()] += 1
    return got


def _truncate_wal(db: Path):
    """Checkpoints the server's WAL into the database file and truncates it to zero
    bytes (another connection to the same file, as SQLite allows). Without this, the
    space the WAL file already holds (it is reused after each checkpoint, up to
    `journal_size_limit`) would take the outcomes of the test's few deliveries on a full
    disk, and nothing would be refused."""
    deadline = time.monotonic() + 10
    while True:
        conn = sqlite3.connect(db, timeout=5)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        if busy == 0:
            return
        assert time.monotonic() < deadline, "the WAL could not be checkpointed"
        time.sleep(0.1)


def _readyz(srv) -> tuple[int, dict]:
    r = srv.api("GET", "/readyz", token=None)
    return r.status, (r.body if isinstance(r.body, dict) else {})


def _all_delivered(srv, tenant, ids) -> list[str]:
    """The message ids whose recipient is not `delivered` (yet)."""
    pending = []
    for msg_id in ids:
        r = srv.api("GET", f"/v1/messages/{msg_id}", token=tenant.api_key)
        assert r.status == 200, r
        states = [rc["state"] for rc in r.body["recipients"]]
        if states != ["delivered"]:
            pending.append(f"{msg_id}: {states}")
    return pending


def _put_in_flight(srv, sink, tenant, sender) -> dict[str, str]:
    """Accepts IN_FLIGHT messages while the sink holds its connections: their deliveries
    wait for the greeting, i.e. are under way."""
    held = sink.held
    sink.hold()
    sink.close_connections()  # a reused connection would not wait for the greeting
    in_flight = _accept(srv, tenant, sender, IN_FLIGHT)
    poll_until(lambda: sink.held > held, timeout=10, interval=0.05,
               what="a delivery waiting at the sink's greeting")
    return in_flight


def _fault_window(srv, tenant, sender, *, smtp_code: tuple[int, bytes], http_status: int):
    """While the fault lasts: /readyz 503 naming it, submissions refused with the given
    codes, the process alive and not spinning. Returns what /readyz said."""
    poll_until(lambda: _readyz(srv)[0] == 503, timeout=READY_BOUND_S, interval=0.2,
               what="/readyz 503 while the storage refuses writes")
    status, body = _readyz(srv)
    detail = body.get("detail", "")
    code, text = _send_smtp(srv, sender)
    assert (code, text[:5]) == (smtp_code[0], smtp_code[1]), (code, text)
    _, r = _send_http(srv, tenant, sender)
    assert r.status == http_status, r
    cpu0, t0 = _cpu_seconds(srv.pid), time.monotonic()
    time.sleep(CPU_WINDOW_S)
    share = (_cpu_seconds(srv.pid) - cpu0) / (time.monotonic() - t0)
    assert srv.alive(), f"the server died during the fault:\n{srv.log_tail()}"
    assert share < MAX_CPU_SHARE, f"{share:.2f} of a core while the storage refuses writes"
    return status, detail, share


def test_disk_full_while_recording_outcomes(tmp_path, sink):
    srv = _server(tmp_path, sink)
    _mount_tmpfs(srv.data_dir)
    data = srv.data_dir
    try:
        srv.start()
        pid = srv.pid
        tenant, sender = _tenant(srv)
        accepted = _accept(srv, tenant, sender, 5)
        poll_until(lambda: set(accepted) <= set(_sink_counts(sink)), timeout=DELIVERY_BOUND_S,
                   what="the first messages at the sink")
        assert _readyz(srv)[0] == 200

        in_flight = _put_in_flight(srv, sink, tenant, sender)
        accepted |= in_flight
        _truncate_wal(data / "mailroom.db")
        _fill_completely(data)
        filled_at = time.monotonic()
        sink.release()
        poll_until(lambda: REFUSED_LINE in srv.log_tail(400), timeout=READY_BOUND_S,
                   interval=0.2, what="the server logging refused outcome writes")
        status, detail, share = _fault_window(srv, tenant, sender, smtp_code=(452, b"4.3.1"),
                                              http_status=507)
        assert "refuses writes" in detail and "full" in detail, detail
        at_sink = set(_sink_counts(sink)) & set(in_flight)

        _free(data)
        freed_at = time.monotonic()
        poll_until(lambda: _readyz(srv)[0] == 200, timeout=READY_BOUND_S, interval=0.2,
                   what="/readyz 200 after space returns")
        ready_s = time.monotonic() - freed_at
        accepted |= _accept(srv, tenant, sender, 3)
        poll_until(lambda: set(accepted) <= set(_sink_counts(sink)), timeout=DELIVERY_BOUND_S,
                   interval=0.2, what="every accepted message at the sink")
        poll_until(lambda: not _all_delivered(srv, tenant, accepted.values()),
                   timeout=DELIVERY_BOUND_S, interval=0.5, what="every message `delivered`")
        assert srv.alive() and srv.pid == pid, "the server was restarted"

        got = _sink_counts(sink)
        duplicates = sum(n - 1 for tok, n in got.items() if tok in accepted and n > 1)
        log = srv.log_tail(100000)
        given_up = [int(m) for m in re.findall(re.escape(REFUSED_LINE) + r".*?count=(\d+)", log)]
        held = "storage takes outcome writes again" in log
        print(f"\ndisk full while recording: {len(in_flight)} in flight, {len(at_sink)} reached "
              f"the sink during the fault; /readyz {status} ({detail!r}); {share:.3f} of a core "
              f"during the fault; /readyz 200 {ready_s:.1f}s after freeing space "
              f"({time.monotonic() - filled_at:.1f}s after filling); batches given up "
              f"{given_up}; held outcomes written later: {held}; {len(accepted)} accepted, all "
              f"delivered; {duplicates} duplicates")
        assert given_up, "no refused outcome write was logged"
        assert held, "no outcome was held and written later (all given up?)"
        assert duplicates <= sum(given_up), (duplicates, given_up)
    finally:
        sink.release()
        srv.stop()
        subprocess.run(["umount", "-l", str(data)], capture_output=True, timeout=30)


def _tools_or_skip(*tools):
    if os.geteuid() != 0:
        pytest.skip("needs root to attach a loop device and mount it")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def _run(*cmd, ok=(0,)):
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    assert proc.returncode in ok, f"{' '.join(cmd)}: {proc.returncode} {proc.stderr.strip()}"
    return proc.stdout


def _mount_ext4(image: Path, path: Path) -> str:
    """Mounts `image` (ext4, `errors=remount-ro`) on `path`; returns the loop device's
    name (`loopN`)."""
    _run("mount", "-o", "loop,errors=remount-ro", str(image), str(path))
    dev = _run("findmnt", "-n", "-o", "SOURCE", str(path)).strip()
    return os.path.basename(dev)


def _turn_read_only(dev: str, path: Path):
    """An ext4 error, as the kernel raises it when it finds the file system damaged:
    with errors=remount-ro every write on it fails with EROFS from then on."""
    Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").write_text("mailroom e2e: injected fault\n")
    probe = path / "probe-after-error"
    try:
        probe.write_text("x")
    except OSError as e:
        assert e.errno == 30, e
    else:
        pytest.fail(f"{path} still takes writes after the ext4 error")


def test_read_only_filesystem_while_recording_outcomes(tmp_path, sink):
    _tools_or_skip("mount", "umount", "findmnt", "mkfs.ext4", "e2fsck")
    if not Path("/sys/fs/ext4").is_dir():
        pytest.skip("no ext4 in this kernel")
    srv = _server(tmp_path, sink)
    image = tmp_path / "data.ext4"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    _run("mkfs.ext4", "-q", "-F", str(image))
    data = srv.data_dir
    dev = _mount_ext4(image, data)
    if not Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").exists():
        _run("umount", str(data))
        pytest.skip("this kernel's ext4 has no trigger_fs_error")
    mounted = True
    try:
        srv.start()
        tenant, sender = _tenant(srv)
        accepted = _accept(srv, tenant, sender, 5)
        poll_until(lambda: set(accepted) <= set(_sink_counts(sink)), timeout=DELIVERY_BOUND_S,
                   what="the first messages at the sink")
        assert _readyz(srv)[0] == 200

        in_flight = _put_in_flight(srv, sink, tenant, sender)
        accepted |= in_flight
        _turn_read_only(dev, data)
        sink.release()
        poll_until(lambda: REFUSED_LINE in srv.log_tail(400), timeout=READY_BOUND_S,
                   interval=0.2, what="the server logging refused outcome writes")
        status, detail, share = _fault_window(srv, tenant, sender, smtp_code=(451, b"4.3.0"),
                                              http_status=503)
        assert "refuses writes" in detail, detail
        at_sink = set(_sink_counts(sink)) & set(in_flight)

        # Only an unmount clears it: stop (within the grace time, though the outcomes
        # cannot be written), check, mount, start.
        t0 = time.monotonic()
        srv.proc.terminate()
        code = srv.proc.wait(timeout=30)
        stop_s = time.monotonic() - t0
        assert code == 0, f"exit status {code} after SIGTERM\n{srv.log_tail()}"
        _run("umount", str(data))
        mounted = False
        _run("e2fsck", "-f", "-y", str(image), ok=(0, 1))
        dev = _mount_ext4(image, data)
        mounted = True
        srv.start()
        poll_until(lambda: _readyz(srv)[0] == 200, timeout=READY_BOUND_S, interval=0.2,
                   what="/readyz 200 after the restart")
        accepted |= _accept(srv, tenant, sender, 3)
        poll_until(lambda: set(accepted) <= set(_sink_counts(sink)), timeout=DELIVERY_BOUND_S,
                   interval=0.2, what="every accepted message at the sink")
        poll_until(lambda: not _all_delivered(srv, tenant, accepted.values()),
                   timeout=DELIVERY_BOUND_S, interval=0.5, what="every message `delivered`")
        got = _sink_counts(sink)
        duplicates = sum(n - 1 for tok, n in got.items() if tok in accepted and n > 1)
        print(f"\nread-only file system while recording: {len(in_flight)} in flight, "
              f"{len(at_sink)} reached the sink during the fault; /readyz {status} "
              f"({detail!r}); {share:.3f} of a core during the fault; stopped in "
              f"{stop_s:.1f}s; {len(accepted)} accepted, all delivered after the restart; "
              f"{duplicates} duplicates")
        assert duplicates <= len(at_sink), (duplicates, len(at_sink))
    finally:
        sink.release()
        srv.stop()
        if mounted:
            subprocess.run(["umount", str(data)], capture_output=True, timeout=30)


def _pg_sessions_terminate(db):
    # From the administrative database: a session of db itself would be read-only.
    pg_query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             f"WHERE datname = '{db.name}'")


def test_postgres_read_only_while_recording_outcomes(tmp_path, sink, pg_database):
    db = pg_database
    srv = _server(tmp_path, sink, backend="postgres", database=db)
    try:
        srv.start()
        pid = srv.pid
        tenant, sender = _tenant(srv)
        accepted = _accept(srv, tenant, sender, 5)
        poll_until(lambda: set(accepted) <= set(_sink_counts(sink)), timeout=DELIVERY_BOUND_S,
                   what="the first messages at the sink")
        assert _readyz(srv)[0] == 200

        in_flight = _put_in_flight(srv, sink, tenant, sender)
        accepted |= in_flight
        pg_query(f'ALTER DATABASE "{db.name}" SET default_transaction_read_only = on')
        _pg_sessions_terminate(db)
        sink.release()
        poll_until(lambda: REFUSED_LINE in srv.log_tail(400), timeout=READY_BOUND_S,
                   interval=0.2, what="the server logging refused outcome writes")
        status, detail, share = _fault_window(srv, tenant, sender, smtp_code=(451, b"4.3.0"),
                                              http_status=503)
        assert "refuses writes" in detail and "read-only" in detail, detail
        at_sink = set(_sink_counts(sink)) & set(in_flight)

        pg_query(f'ALTER DATABASE "{db.name}" RESET default_transaction_read_only')
        _pg_sessions_terminate(db)
        back_at = time.monotonic()
        poll_until(lambda: _readyz(srv)[0] == 200, timeout=READY_BOUND_S, interval=0.2,
                   what="/readyz 200 after the database takes writes again")
        ready_s = time.monotonic() - back_at
        accepted |= _accept(srv, tenant, sender, 3)
        poll_until(lambda: set(accepted) <= set(_sink_counts(sink)), timeout=DELIVERY_BOUND_S,
                   interval=0.2, what="every accepted message at the sink")
        poll_until(lambda: not _all_delivered(srv, tenant, accepted.values()),
                   timeout=DELIVERY_BOUND_S, interval=0.5, what="every message `delivered`")
        assert srv.alive() and srv.pid == pid, "the server was restarted"
        got = _sink_counts(sink)
        duplicates = sum(n - 1 for tok, n in got.items() if tok in accepted and n > 1)
        log = srv.log_tail(100000)
        given_up = [int(m) for m in re.findall(re.escape(REFUSED_LINE) + r".*?count=(\d+)", log)]
        held = "storage takes outcome writes again" in log
        print(f"\nPostgreSQL read-only while recording: {len(in_flight)} in flight, "
              f"{len(at_sink)} reached the sink during the fault; /readyz {status} "
              f"({detail!r}); {share:.3f} of a core during the fault; /readyz 200 "
              f"{ready_s:.1f}s after the database took writes again; batches given up "
              f"{given_up}; {len(accepted)} accepted, all delivered; {duplicates} duplicates")
        assert given_up, "no refused outcome write was logged"
        assert held, "no outcome was held and written later (all given up?)"
        assert duplicates <= sum(given_up), (duplicates, given_up)
    finally:
        sink.release()
        srv.stop()
        try:
            pg_query(f'ALTER DATABASE "{db.name}" RESET default_transaction_read_only')
        except Exception:  # noqa: BLE001 - dropped right after anyway
            pass
