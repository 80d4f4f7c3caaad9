"""Connection floods against a real listener (bounded in count and time): the per-address
and total connection limits answer `421 4.7.0` and close, the server survives a burst of
connect/close cycles, and service is normal afterwards. Slow-loris (a command dribbled
byte by byte) is covered in memory: crates/smtpd/tests/transcripts.rs
`slow_loris_command_is_cut_off_at_the_command_timeout`.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from mailroom_harness import (
    MailroomServer,
    RawSMTP,
    assert_queued,
    binary_missing_reason,
    make_message,
    poll_until,
    submit,
)

PER_IP = 4
TOTAL = 6
BURST = 200
BURST_SECS = 20.0


@pytest.fixture(scope="module")
def flood_server(tmp_path_factory):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    mp = pytest.MonkeyPatch()
    # The harness writes [smtp]; the limits come in as environment overrides.
    mp.setenv("MAILROOM_SMTP__MAX_CONNECTIONS_PER_IP", str(PER_IP))
    mp.setenv("MAILROOM_SMTP__MAX_CONNECTIONS", str(TOTAL))
    srv = MailroomServer(tmp_path_factory.mktemp("mailroom-flood"),
                         extra_config="[delivery]\nenabled = false")
    try:
        srv.start()
    finally:
        mp.undo()
    yield srv
    srv.stop()


def _open(srv, source="127.0.0.1"):
    host, port = srv.submission_addr
    return RawSMTP(host, port, source=source)


def _refused(srv, source="127.0.0.1") -> bool:
    c = _open(srv, source)
    try:
        code, text = c.greeting
        assert (code, text[:5]) == (421, b"4.7.0"), c.greeting
        assert c.read_all_replies(time.monotonic() + 2) == [], "spoke after the 421"
        return True
    finally:
        c.close()


def _greeted(srv, source="127.0.0.1") -> bool:
    try:
        c = _open(srv, source)
    except (OSError, AssertionError):
        return False
    try:
        return c.greeting[0] == 220
    finally:
        c.close()


def test_per_address_and_total_limits(flood_server):
    srv = flood_server
    held = []
    try:
        for _ in range(PER_IP):
            c = _open(srv)
            assert c.greeting[0] == 220, c.greeting
            held.append(c)
        assert _refused(srv)
        # Another address may still connect, up to the total.
        for _ in range(TOTAL - PER_IP):
            c = _open(srv, "127.0.0.2")
            assert c.greeting[0] == 220, c.greeting
            held.append(c)
        assert _refused(srv, "127.0.0.3")
        # The held sessions still work.
        assert held[0].cmd("NOOP")[0] == 250
    finally:
        for c in held:
            c.close()
    poll_until(lambda: _greeted(srv), timeout=10, what="a connection after the flood")


def test_connect_close_burst_is_survived(flood_server, tenant_on):
    srv = flood_server
    deadline = time.monotonic() + BURST_SECS
    done = [0]
    lock = threading.Lock()

    def worker(source):
        host, port = srv.submission_addr
        while time.monotonic() < deadline:
            with lock:
                if done[0] >= BURST:
                    return
                done[0] += 1
            try:
                s = socket.create_connection((host, port), timeout=5,
                                             source_address=(source, 0))
                s.close()
            except OSError:
                pass

    threads = [threading.Thread(target=worker, args=(f"127.0.0.{10 + i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BURST_SECS + 10)
    assert srv.alive(), srv.log_tail()
    poll_until(lambda: _greeted(srv), timeout=10, what="a greeting after the burst")
    # And a real submission goes through.
    tenant = tenant_on(srv)
    client = srv.smtp_starttls()
    try:
        assert tenant.login(client)[0] == 235
        assert_queued(submit(client, tenant.sender, ["after-flood@example.net"],
                             make_message(tenant.sender, ["after-flood@example.net"])))
    finally:
        client.close()


@pytest.fixture(scope="module")
def tenant_on():
    made = {}

    def get(srv):
        if srv not in made:
            made[srv] = srv.create_tenant("flood", domain="acme.test")
        return made[srv]

    return get
