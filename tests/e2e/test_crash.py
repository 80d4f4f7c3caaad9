"""Accepted means durable: kill -9 under concurrent load loses no message that got a 250.

Rounds: start (or restart) the server on the same data dir, run N sender threads over
STARTTLS+AUTH, SIGKILL the server once the round has its floor of 250s plus a random
0.5-2 s, restart it, and check that every
queue id that was answered with 250 is there with all its recipients.

Every sender's outcome is counted (250s, 4xx, connection errors before and after the
kill, a thread that died), and each round must carry load: at least
MIN_ACCEPTED_PER_ROUND acknowledged messages and a 250 for every sender. Measured here
(debug build, 2 shared cores, kill 1-3 s after the first 250): 220-384 accepted per
round in 2.3-3.0 s of load, about 95-130 per second, no temporary refusal. The kill
waits (at most LOAD_TIMEOUT_S) until the round has MIN_ACCEPTED_PER_ROUND (40, well
under half a second's worth here) and every sender has had a 250, then lands 0.5-2 s
later, so on a slower machine the floor costs time rather than flaking.
"""

from __future__ import annotations

import os
import random
import smtplib
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailroom_harness import (
    MailroomServer,
    binary_missing_reason,
    insecure_tls_context,
    QUEUED_RE,
    make_message,
)

ROUNDS = 3
THREADS = 8
RECIPIENTS_PER_MESSAGE = 2
MAX_MESSAGES_PER_THREAD_PER_ROUND = 500
MAX_RATE_PER_THREAD = 50.0  # messages/s: keeps the kill under load and the check bounded
TOTAL_BUDGET_S = 60.0
FIRST_ACCEPT_TIMEOUT_S = 15.0
# Floors and ceilings per round (measured: see the module docstring).
MIN_ACCEPTED_PER_ROUND = 40
LOAD_TIMEOUT_S = 15.0
MAX_TEMPORARY_PER_ROUND = 8


class Sender(threading.Thread):
    """One submission client for one round. Everything it sees is counted: 250s (with
    their ids), temporary refusals (4xx), connection errors before and after the kill,
    anything else (unexpected), and an exception that would end the thread (crash) -
    the test asserts on each, so a sender that dies or is refused cannot go unnoticed."""

    def __init__(self, server: MailroomServer, tenant, idx: int, rnd: int, stop: threading.Event,
                 deadline: float, first_accept: threading.Event, killed: threading.Event):
        super().__init__(daemon=True, name=f"sender-{rnd}-{idx}")
        self.server, self.tenant, self.idx, self.rnd = server, tenant, idx, rnd
        self.stop_event, self.deadline = stop, deadline
        self.first_accept = first_accept
        self.killed = killed
        self.accepted: dict[str, list[str]] = {}
        self.errors: list[str] = []  # connection errors after the kill: expected
        self.early_errors: list[str] = []  # connection errors before it: a failure
        self.temporary: list[str] = []  # 4xx replies
        self.unexpected: list[str] = []
        self.crash: str | None = None
        self.attempts = 0
        self.next_at = 0.0

    def _conn_error(self, what: str):
        (self.errors if self.killed.is_set() else self.early_errors).append(what)

    def run(self):
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - recorded and asserted on
            self.crash = f"{type(err).__name__}: {err}"

    def _run(self):
        host, port = self.server.submission_addr
        seq = 0
        while not self.stop_event.is_set() and time.monotonic() < self.deadline \
                and seq < MAX_MESSAGES_PER_THREAD_PER_ROUND:
            try:
                client = smtplib.SMTP(host, port, local_hostname="client.test", timeout=5)
            except OSError as err:
                self._conn_error(f"connect: {err}")
                time.sleep(0.05)
                continue
            try:
                client.ehlo()
                client.starttls(context=insecure_tls_context())
                client.ehlo()
                client.user, client.password = self.tenant.username, self.tenant.password
                code, text = client.auth("PLAIN", client.auth_plain)
                if code != 235:
                    self.unexpected.append(f"AUTH: {code} {text!r}")
                    break
                while not self.stop_event.is_set() and time.monotonic() < self.deadline \
                        and seq < MAX_MESSAGES_PER_THREAD_PER_ROUND:
                    seq += 1
                    pause = self.next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    self.next_at = max(self.next_at, time.monotonic()) + 1 / MAX_RATE_PER_THREAD
                    rcpts = [f"r{self.rnd}-{self.idx}-{seq}-{k}@example.net"
                             for k in range(RECIPIENTS_PER_MESSAGE)]
                    self.attempts += 1
                    code, text = client.mail(self.tenant.sender)
                    if code != 250:
                        (self.temporary if code // 100 == 4 else self.unexpected).append(
                            f"MAIL: {code} {text!r}")
                        client.rset()
                        continue
                    ok = True
                    for r in rcpts:
                        code, text = client.rcpt(r)
                        if code != 250:
                            (self.temporary if code // 100 == 4 else self.unexpected).append(
                                f"RCPT: {code} {text!r}")
                            ok = False
                    if not ok:
                        client.rset()
                        continue
                    code, text = client.data(make_message(self.tenant.sender, rcpts,
                                                          subject=f"crash {self.rnd}/{seq}"))
                    if code == 250:
                        m = QUEUED_RE.search(text)
                        if m is None:
                            self.unexpected.append(f"DATA: 250 without a queue id: {text!r}")
                            continue
                        self.accepted[m.group(1).decode()] = rcpts
                        self.first_accept.set()
                    elif code // 100 == 4:
                        # A temporary refusal (backpressure) is allowed, not accepted;
                        # counted, and bounded by the test.
                        self.temporary.append(f"DATA: {code} {text!r}")
                    else:
                        self.unexpected.append(f"DATA: {code} {text!r}")
            except (smtplib.SMTPException, OSError, ssl.SSLError, socket.timeout, EOFError) as err:
                # After the kill: the server died mid-conversation, expected. Before
                # it: a failure (counted in early_errors).
                self._conn_error(f"{type(err).__name__}: {err}")
                time.sleep(0.02)
            finally:
                try:
                    client.close()
                except Exception:
                    pass


def verify(server: MailroomServer, accepted: dict[str, list[str]]):
    """GET every accepted id; returns (missing, wrong) lists."""

    def check(item):
        msg_id, rcpts = item
        r = server.api("GET", f"/v1/messages/{msg_id}")
        if r.status != 200:
            return ("missing", (msg_id, r.status))
        got = sorted(x["address"].lower() for x in r.body.get("recipients", []))
        if got != sorted(rcpts):
            return ("wrong", (msg_id, rcpts, got))
        for rec in r.body["recipients"]:
            events = rec.get("events") or []
            if not events or events[0].get("type") != "accepted":
                return ("wrong", (msg_id, "no accepted event", rec))
        return None

    missing, wrong = [], []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for res in pool.map(check, accepted.items()):
            if res is not None:
                (missing if res[0] == "missing" else wrong).append(res[1])
    return missing, wrong


def test_kill9_loses_no_accepted_message(tmp_path, request):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    seed = int(os.environ.get("MAILROOM_E2E_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    started = time.monotonic()
    budget_end = started + TOTAL_BUDGET_S

    server = MailroomServer(tmp_path, extra_config="[delivery]\nenabled = false")
    request.node._mailroom_servers = [server]  # log tail on failure
    try:
        server.start()
        tenant = server.create_tenant("crash", domain="acme.test")
        all_accepted: dict[str, list[str]] = {}
        report = []
        for rnd in range(1, ROUNDS + 1):
            stop = threading.Event()
            remaining = budget_end - time.monotonic()
            assert remaining > 5, f"crash test over its time budget before round {rnd} (seed {seed})"
            first_accept = threading.Event()
            killed = threading.Event()
            senders = [Sender(server, tenant, i, rnd, stop, time.monotonic() + 30, first_accept,
                              killed)
                       for i in range(THREADS)]
            t0 = time.monotonic()
            for s in senders:
                s.start()
            # The kill lands 1-3 s into steady load: wait for the first 250 of the round
            # (after a restart, 8 cold AUTHs can take seconds in a debug build).
            if not first_accept.wait(timeout=FIRST_ACCEPT_TIMEOUT_S):
                stop.set()
                errors = [e for s in senders for e in s.errors + s.unexpected][:10]
                pytest.fail(f"round {rnd}: no message accepted within {FIRST_ACCEPT_TIMEOUT_S}s "
                            f"of starting {THREADS} senders (seed {seed}); errors: {errors}")
            warmup = time.monotonic() - t0
            # The kill lands on load: only once the round has its floor of acknowledged
            # messages and every sender has had a 250 (bounded wait: a server that
            # cannot carry that load fails here), then 0.5-2 s later.
            t1 = time.monotonic()
            while sum(len(s.accepted) for s in senders) < MIN_ACCEPTED_PER_ROUND \
                    or any(not s.accepted for s in senders):
                if time.monotonic() - t1 > LOAD_TIMEOUT_S or any(
                        s.crash or s.unexpected or s.early_errors for s in senders):
                    stop.set()
                    raise AssertionError(
                        f"round {rnd} (seed {seed}): accepted per sender "
                        f"{[len(s.accepted) for s in senders]} after {time.monotonic() - t1:.1f}s "
                        f"(floor {MIN_ACCEPTED_PER_ROUND} in all, 1 each); crashes "
                        f"{[s.crash for s in senders if s.crash]}, unexpected "
                        f"{[e for s in senders for e in s.unexpected][:5]}, early errors "
                        f"{[e for s in senders for e in s.early_errors][:5]}")
                time.sleep(0.01)
            load_secs = time.monotonic() - t1 + rng.uniform(0.5, 2.0)
            time.sleep(load_secs - (time.monotonic() - t1))
            assert server.alive(), f"server died on its own in round {rnd}:\n{server.log_tail()}"
            killed.set()
            server.kill()
            stop.set()
            for s in senders:
                s.join(timeout=15)
                assert not s.is_alive(), f"{s.name} did not stop"
            round_accepted = {}
            for s in senders:
                round_accepted.update(s.accepted)
            crashes = [f"{s.name}: {s.crash}" for s in senders if s.crash]
            unexpected = [e for s in senders for e in s.unexpected]
            early = [e for s in senders for e in s.early_errors]
            temporary = [e for s in senders for e in s.temporary]
            attempts = sum(s.attempts for s in senders)
            per_thread = sorted(len(s.accepted) for s in senders)
            report.append(f"round {rnd}: first 250 after {warmup:.2f}s, "
                          f"{len(round_accepted)} accepted of {attempts} attempts in "
                          f"{load_secs:.1f}s (per sender {per_thread[0]}-{per_thread[-1]}), "
                          f"{len(temporary)} temporary refusals")
            assert not crashes, f"round {rnd}: sender threads died (seed {seed}): {crashes}"
            assert not unexpected, f"unexpected replies under load (seed {seed}): {unexpected[:10]}"
            assert not early, (
                f"round {rnd}: connection errors while the server was up (seed {seed}): "
                f"{early[:10]}")
            # Every attempt before the kill is answered 250 - a 4xx (backpressure) is
            # legal but at this load none is expected; a few may coincide with the kill.
            assert len(temporary) <= MAX_TEMPORARY_PER_ROUND, (
                f"round {rnd}: {len(temporary)} temporary refusals (seed {seed}): {temporary[:10]}")
            # Load in every round, from every sender: the kill lands on a busy server.
            assert len(round_accepted) >= MIN_ACCEPTED_PER_ROUND, (
                f"round {rnd}: only {len(round_accepted)} messages accepted before the kill "
                f"(floor {MIN_ACCEPTED_PER_ROUND}; seed {seed}) - {report[-1]}")
            assert per_thread[0] >= 1, f"round {rnd}: a sender got no 250 (seed {seed}): {report[-1]}"
            all_accepted.update(round_accepted)

            server.start()  # same config and data dir; re-reads listeners.json
            missing, wrong = verify(server, round_accepted)
            assert not missing, (
                f"after kill -9 #{rnd}: {len(missing)} of {len(round_accepted)} accepted messages "
                f"are gone (seed {seed}), e.g. {missing[:5]}")
            assert not wrong, (
                f"after kill -9 #{rnd}: {len(wrong)} messages lost recipients/events "
                f"(seed {seed}), e.g. {wrong[:3]}")
        # Earlier rounds' messages survived the later crashes too.
        missing, wrong = verify(server, all_accepted)
        assert not missing and not wrong, (
            f"after {ROUNDS} crashes (seed {seed}): missing {missing[:5]}, wrong {wrong[:3]}")
        print(f"crash test seed {seed}: " + "; ".join(report))
        assert time.monotonic() - started < TOTAL_BUDGET_S + 30
    finally:
        server.kill()
