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

The steps the three share (start, fault, recover and, where the process survives,
the checks on held and given-up outcomes) are one fixture, `fault_run` (`FaultRun`);
each test says only how its fault is made and undone.

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


class FaultRun:
    """One server through one storage fault while deliveries are being recorded, in
    the steps every test here takes: `start` (5 messages delivered, /readyz 200),
    `fault` (IN_FLIGHT deliveries held at the sink, the fault injected, the sink let go,
    then `_fault_window`), `recover` (the fault undone, /readyz 200, 3 more accepted,
    everything at the sink and `delivered`) and, where the same process survives it,
    `held_outcomes_written` (no restart, refused batches logged, held outcomes written
    later, duplicates bounded by what was given up)."""

    def __init__(self, tmp_path, sink):
        self.tmp_path, self.sink = tmp_path, sink
        self.srv: MailroomServer | None = None
        self._cleanups = []

    def server(self, **kw) -> MailroomServer:
        self.srv = _server(self.tmp_path, self.sink, **kw)
        return self.srv

    def on_teardown(self, fn):
        """Runs `fn` after the server stopped (newest first): unmounting, resetting."""
        self._cleanups.append(fn)

    def start(self):
        srv, sink = self.srv, self.sink
        srv.start()
        self.pid = srv.pid
        self.tenant, self.sender = _tenant(srv)
        self.accepted = _accept(srv, self.tenant, self.sender, 5)
        poll_until(lambda: set(self.accepted) <= set(_sink_counts(sink)),
                   timeout=DELIVERY_BOUND_S, what="the first messages at the sink")
        assert _readyz(srv)[0] == 200

    def fault(self, inject, *, smtp_code: tuple[int, bytes], http_status: int,
              detail_word: str | None):
        srv, sink = self.srv, self.sink
        self.in_flight = _put_in_flight(srv, sink, self.tenant, self.sender)
        self.accepted |= self.in_flight
        inject()
        self.fault_at = time.monotonic()
        sink.release()
        poll_until(lambda: REFUSED_LINE in srv.log_tail(400), timeout=READY_BOUND_S,
                   interval=0.2, what="the server logging refused outcome writes")
        self.status, self.detail, self.share = _fault_window(
            srv, self.tenant, self.sender, smtp_code=smtp_code, http_status=http_status)
        assert "refuses writes" in self.detail, self.detail
        assert detail_word is None or detail_word in self.detail, self.detail
        self.at_sink = set(_sink_counts(sink)) & set(self.in_flight)

    def recover(self, undo, what: str):
        srv, sink = self.srv, self.sink
        undo()
        back_at = time.monotonic()
        poll_until(lambda: _readyz(srv)[0] == 200, timeout=READY_BOUND_S, interval=0.2,
                   what=f"/readyz 200 {what}")
        self.ready_s = time.monotonic() - back_at
        self.accepted |= _accept(srv, self.tenant, self.sender, 3)
        poll_until(lambda: set(self.accepted) <= set(_sink_counts(sink)),
                   timeout=DELIVERY_BOUND_S, interval=0.2,
                   what="every accepted message at the sink")
        poll_until(lambda: not _all_delivered(srv, self.tenant, self.accepted.values()),
                   timeout=DELIVERY_BOUND_S, interval=0.5, what="every message `delivered`")
        got = _sink_counts(sink)
        self.duplicates = sum(n - 1 for tok, n in got.items() if tok in self.accepted and n > 1)

    def summary(self) -> str:
        return (f"{len(self.in_flight)} in flight, {len(self.at_sink)} reached the sink "
                f"during the fault; /readyz {self.status} ({self.detail!r}); "
                f"{self.share:.3f} of a core during the fault")

    def held_outcomes_written(self, label: str, what: str):
        srv = self.srv
        assert srv.alive() and srv.pid == self.pid, "the server was restarted"
        log = srv.log_tail(100000)
        given_up = [int(m) for m in re.findall(re.escape(REFUSED_LINE) + r".*?count=(\d+)", log)]
        held = "storage takes outcome writes again" in log
        print(f"\n{label}: {self.summary()}; /readyz 200 {self.ready_s:.1f}s after {what} "
              f"({time.monotonic() - self.fault_at:.1f}s after the fault); batches given up "
              f"{given_up}; held outcomes written later: {held}; {len(self.accepted)} "
              f"accepted, all delivered; {self.duplicates} duplicates")
        assert given_up, "no refused outcome write was logged"
        assert held, "no outcome was held and written later (all given up?)"
        assert self.duplicates <= sum(given_up), (self.duplicates, given_up)

    def close(self):
        self.sink.release()
        if self.srv is not None:
            self.srv.stop()
        for fn in reversed(self._cleanups):
            fn()


@pytest.fixture
def fault_run(tmp_path, sink):
    run = FaultRun(tmp_path, sink)
    yield run
    run.close()


def test_disk_full_while_recording_outcomes(fault_run):
    srv = fault_run.server()
    data = srv.data_dir
    _mount_tmpfs(data)
    fault_run.on_teardown(lambda: subprocess.run(["umount", "-l", str(data)],
                                                 capture_output=True, timeout=30))

    def fill():
        _truncate_wal(data / "mailroom.db")
        _fill_completely(data)

    fault_run.start()
    fault_run.fault(fill, smtp_code=(452, b"4.3.1"), http_status=507, detail_word="full")
    fault_run.recover(lambda: _free(data), "space returns")
    fault_run.held_outcomes_written("disk full while recording", "freeing space")


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


def test_read_only_filesystem_while_recording_outcomes(tmp_path, fault_run):
    _tools_or_skip("mount", "umount", "findmnt", "mkfs.ext4", "e2fsck")
    if not Path("/sys/fs/ext4").is_dir():
        pytest.skip("no ext4 in this kernel")
    srv = fault_run.server()
    image = tmp_path / "data.ext4"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    _run("mkfs.ext4", "-q", "-F", str(image))
    data = srv.data_dir
    dev = _mount_ext4(image, data)
    if not Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").exists():
        _run("umount", str(data))
        pytest.skip("this kernel's ext4 has no trigger_fs_error")
    mounted = [True]
    fault_run.on_teardown(lambda: mounted[0] and subprocess.run(
        ["umount", str(data)], capture_output=True, timeout=30))

    fault_run.start()
    fault_run.fault(lambda: _turn_read_only(dev, data), smtp_code=(451, b"4.3.0"),
                    http_status=503, detail_word=None)

    def restart():
        # Only an unmount clears it: stop (within the grace time, though the outcomes
        # cannot be written), check, mount, start.
        t0 = time.monotonic()
        srv.proc.terminate()
        code = srv.proc.wait(timeout=30)
        restart.stop_s = time.monotonic() - t0
        assert code == 0, f"exit status {code} after SIGTERM\n{srv.log_tail()}"
        _run("umount", str(data))
        mounted[0] = False
        _run("e2fsck", "-f", "-y", str(image), ok=(0, 1))
        _mount_ext4(image, data)
        mounted[0] = True
        srv.start()

    fault_run.recover(restart, "after the restart")
    print(f"\nread-only file system while recording: {fault_run.summary()}; stopped in "
          f"{restart.stop_s:.1f}s; {len(fault_run.accepted)} accepted, all delivered after "
          f"the restart; {fault_run.duplicates} duplicates")
    assert fault_run.duplicates <= len(fault_run.at_sink), (fault_run.duplicates,
                                                            len(fault_run.at_sink))


def _pg_sessions_terminate(db):
    # From the administrative database: a session of db itself would be read-only.
    pg_query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             f"WHERE datname = '{db.name}'")


def test_postgres_read_only_while_recording_outcomes(pg_database, fault_run):
    # pg_database first: set up before, torn down after the server (fault_run) stops.
    db = pg_database
    fault_run.server(backend="postgres", database=db)

    def reset():
        try:
            pg_query(f'ALTER DATABASE "{db.name}" RESET default_transaction_read_only')
        except Exception:  # noqa: BLE001 - dropped right after anyway
            pass

    fault_run.on_teardown(reset)

    def read_only():
        pg_query(f'ALTER DATABASE "{db.name}" SET default_transaction_read_only = on')
        _pg_sessions_terminate(db)

    def writable():
        pg_query(f'ALTER DATABASE "{db.name}" RESET default_transaction_read_only')
        _pg_sessions_terminate(db)

    fault_run.start()
    fault_run.fault(read_only, smtp_code=(451, b"4.3.0"), http_status=503,
                    detail_word="read-only")
    fault_run.recover(writable, "after the database takes writes again")
    fault_run.held_outcomes_written("PostgreSQL read-only while recording",
                                    "the database took writes again")
