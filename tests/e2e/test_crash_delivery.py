"""Crash safety with delivery running: 20 rounds of kill -9 under load from concurrent
SMTP and HTTP senders, the kills landing while messages are being accepted *and*
delivered to the sink. After the last restart, every message that got a 250 (SMTP) or a
202 (HTTP) must reach the sink. Duplicates are counted and reported: they are only
possible for deliveries in flight at a kill (delivered, but the outcome not yet
committed): every duplicate's first copy must have reached the sink at most
OUTCOME_WINDOW_S before the kill that ended its server (an outcome left uncommitted
longer than that fails), the server's log must show no outcome it failed to record, and
their number is reported per kill for SECURITY.md.
Each round the kill lands 0.1-0.9 s after both front doors have accepted their floor
of messages (MIN_SMTP_PER_ROUND, MIN_HTTP_PER_ROUND; a server that cannot reach it
within LOAD_TIMEOUT_S fails); every sender outcome is counted (temporary refusals, connection
errors while the server was up, anything unexpected, a sender thread that died).

Every message carries a unique token in its Subject; the sink (in this process, so it
survives the kills) records what it received. Bounded: ROUNDS rounds, a per-round
sender cap, and a total time budget.
"""

from __future__ import annotations

import json
import os
import random
import re
import smtplib
import threading
import time
import urllib.error
import urllib.request
import uuid

from mailroom_harness import make_message, poll_until, start_server
from test_delivery import delivery_config

ROUNDS = 20
SMTP_THREADS = 4
HTTP_THREADS = 2
MAX_PER_THREAD_PER_ROUND = 200
# Per round: see the measured figures below and in the module docstring.
# The kill waits (at most LOAD_TIMEOUT_S) until both front doors have accepted their
# floor in the round. Measured (debug build, this 2-core machine, two runs of 20
# kills, kill 0.3-1.2 s after the first 250): 21-107 SMTP and 13-69 HTTP messages per
# round, no temporary refusal; the floors are half the smallest round.
LOAD_TIMEOUT_S = 15.0
MIN_SMTP_PER_ROUND = 10
MIN_HTTP_PER_ROUND = 5
# Duplicates are the deliveries in flight at a kill (on the open connections, or done
# with their outcome not yet committed), so their number grows with the delivery rate
# and the machine's load: five runs of 20 kills on a loaded 2-core machine (debug build,
# 1,579-1,792 accepted each) gave 13.3-17.4 per kill, 15-19 % of those accepted; a quiet
# one (5,000-5,800 accepted) 23-62 per kill, 8-25 %; a CI-like run with both e2e passes,
# three builds and two fuzzers beside it 42.5 per kill, 36 %. A count or a share is
# therefore no bound. What the design promises is a window: an outcome is committed soon
# after the peer's 250 (the recorder writes whatever has queued while the previous batch
# was committing). So each duplicate's first copy must have arrived at most
# OUTCOME_WINDOW_S before the kill that ended the server that sent it. A regression that
# lets outcomes sit uncommitted fails here, one that fails to write them fails on the
# server's log; the largest window seen is printed.
OUTCOME_WINDOW_S = 5.0
# The sink stamps a message (and answers 250) after it has read the whole DATA, in a
# Python thread that shares the GIL with six senders: a message whose final dot left the
# server before a kill can be stamped just after it, its 250 never read, and so be sent
# again. It belongs to that kill, not to the next one a whole round later (CI on
# PostgreSQL: two such copies stamped at a kill were counted against the next kill,
# 6.3 s on). A first copy stamped up to SINK_LAG_S after a kill counts as in flight at it.
SINK_LAG_S = 1.0
MAX_TEMPORARY_PER_ROUND = 5
# A guard against a hang, not a speed check: every round may take its LOAD_TIMEOUT_S
# plus a restart. (150 s failed in CI on PostgreSQL with both e2e passes side by side:
# round 19 began at 154 s on the loaded machine.)
TOTAL_BUDGET_S = ROUNDS * (LOAD_TIMEOUT_S + 5.0)
SUBJECT_RE = re.compile(rb"^Subject: crash-([0-9a-f]{32})\r?$", re.M)


class Senders:
    """SMTP (allowlisted, plain) and HTTP senders against one server incarnation. Every
    outcome is counted per protocol: accepted, temporary refusals (SMTP 4xx, HTTP 503
    backpressure), connection errors while the server was up (a failure), and anything
    else (unexpected)."""

    def __init__(self, server, tenant_key: str):
        self.server, self.key = server, tenant_key
        self.stop = threading.Event()
        self.killed = threading.Event()
        self.lock = threading.Lock()
        self.accepted: list[str] = []
        self.smtp_accepted = 0
        self.http_accepted = 0
        self.temporary: list[str] = []
        self.early_errors: list[str] = []
        self.unexpected: list[str] = []
        self.crashes: list[str] = []
        self.threads = [threading.Thread(target=self._guard, args=(self._smtp,), daemon=True)
                        for _ in range(SMTP_THREADS)]
        self.threads += [threading.Thread(target=self._guard, args=(self._http,), daemon=True)
                         for _ in range(HTTP_THREADS)]

    def start(self):
        for t in self.threads:
            t.start()

    def kill(self):
        self.killed.set()
        self.killed_at = time.monotonic()
        self.killed_wall = time.time()  # the sink stamps arrivals with time.time()
        self.server.kill()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)
            assert not t.is_alive(), "a sender did not stop"

    def _guard(self, fn):
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - recorded and asserted on
            self.crashes.append(f"{fn.__name__}: {type(err).__name__}: {err}")

    def _ok(self, token: str, http: bool):
        with self.lock:
            self.accepted.append(token)
            if http:
                self.http_accepted += 1
            else:
                self.smtp_accepted += 1

    def _conn_error(self, what: str):
        if not self.killed.is_set():
            alive = self.server.alive()
            self.early_errors.append(f"{what} (at {time.monotonic():.3f}, server "
                                     f"{'alive' if alive else 'dead'})")

    def _smtp(self):
        host, port = self.server.submission_addr
        sent = 0
        while not self.stop.is_set() and sent < MAX_PER_THREAD_PER_ROUND:
            try:
                client = smtplib.SMTP(host, port, local_hostname="client.test", timeout=5)
                client.ehlo()
            except (OSError, smtplib.SMTPException) as err:
                self._conn_error(f"SMTP connect: {err}")
                time.sleep(0.05)
                continue
            try:
                while not self.stop.is_set() and sent < MAX_PER_THREAD_PER_ROUND:
                    token = uuid.uuid4().hex
                    rcpt = f"ok-{token[:8]}@example.net"
                    msg = make_message(mail_from="app@acme.test", to=[rcpt], subject=f"crash-{token}")
                    code, text = client.mail("app@acme.test")
                    if code != 250:
                        self.unexpected.append(f"MAIL {code} {text!r}")
                        break
                    code, text = client.rcpt(rcpt)
                    if code != 250:
                        self.unexpected.append(f"RCPT {code} {text!r}")
                        break
                    code, reply = client.data(msg)
                    sent += 1
                    if code == 250:
                        self._ok(token, http=False)
                    elif code // 100 == 4:
                        self.temporary.append(f"DATA {code} {reply!r}")
                    else:
                        self.unexpected.append(f"DATA {code} {reply!r}")
            except (OSError, smtplib.SMTPException) as err:
                # After the kill: not accepted, expected. Before it: counted.
                self._conn_error(f"SMTP: {type(err).__name__}: {err}")
            finally:
                try:
                    client.close()
                except Exception:
                    pass

    def _http(self):
        host, port = self.server.http_addr
        sent = 0
        while not self.stop.is_set() and sent < MAX_PER_THREAD_PER_ROUND:
            token = uuid.uuid4().hex
            body = json.dumps({"from": "app@acme.test", "to": [f"ok-{token[:8]}@example.net"],
                               "subject": f"crash-{token}", "text": "crash round"}).encode()
            req = urllib.request.Request(f"http://{host}:{port}/v1/messages", data=body,
                                         method="POST", headers={
                                             "Authorization": f"Bearer {self.key}",
                                             "Content-Type": "application/json"})
            sent += 1
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 202:
                        self._ok(token, http=True)
                    else:
                        self.unexpected.append(f"HTTP {resp.status}")
            except urllib.error.HTTPError as err:
                detail = err.read()[:300]
                if err.code == 503:
                    self.temporary.append(f"HTTP 503 {detail!r}")
                else:
                    self.unexpected.append(f"HTTP {err.code} {detail!r}")
            except OSError as err:
                self._conn_error(f"HTTP: {type(err).__name__}: {err}")
                time.sleep(0.02)


def test_kill9_in_mid_delivery_loses_nothing_accepted(tmp_path, request, sink):
    seed = int(os.environ.get("MAILROOM_E2E_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    started = time.monotonic()
    server = start_server(tmp_path, extra_config=delivery_config(sink.port, retry_secs=(1,)))
    request.node._mailroom_servers = [server]
    try:
        tenant = server.create_tenant("crashd", domain="acme.test", credential=False)
        r = server.api("PUT", f"/v1/tenants/{tenant.id}/allowed-ips",
                       {"cidrs": ["127.0.0.1/32"], "require_tls": False})
        assert r.status == 200, r
        accepted: list[str] = []
        rounds = []
        kills: list[float] = []  # wall-clock time of each kill, ascending
        for rnd in range(1, ROUNDS + 1):
            assert time.monotonic() - started < TOTAL_BUDGET_S, \
                f"over the time budget in round {rnd} (seed {seed})"
            senders = Senders(server, tenant.api_key)
            senders.start()
            # The kill lands on load from both front doors: only once each has accepted
            # its floor of messages in this incarnation (bounded wait: a server that
            # cannot carry that load fails here), then 0.1-0.9 s later.
            t0 = time.monotonic()
            while senders.smtp_accepted < MIN_SMTP_PER_ROUND \
                    or senders.http_accepted < MIN_HTTP_PER_ROUND:
                if time.monotonic() - t0 > LOAD_TIMEOUT_S or senders.crashes or senders.unexpected:
                    senders.finish()
                    raise AssertionError(
                        f"round {rnd} (seed {seed}): {senders.smtp_accepted} SMTP and "
                        f"{senders.http_accepted} HTTP messages accepted after "
                        f"{time.monotonic() - t0:.1f}s (floors {MIN_SMTP_PER_ROUND}, "
                        f"{MIN_HTTP_PER_ROUND}); errors {senders.early_errors[:5]}, "
                        f"unexpected {senders.unexpected[:5]}, crashes {senders.crashes}")
                time.sleep(0.01)
            warmup = time.monotonic() - t0
            time.sleep(rng.uniform(0.1, 0.9))
            assert server.alive(), f"server died on its own in round {rnd}:\n{server.log_tail()}"
            senders.kill()
            kills.append(senders.killed_wall)
            senders.finish()
            rounds.append((round(warmup, 2), senders.smtp_accepted, senders.http_accepted,
                           len(senders.temporary)))
            where = f"round {rnd} (seed {seed})"
            assert not senders.crashes, f"{where}: sender threads died: {senders.crashes}"
            assert not senders.unexpected, f"{where}: {senders.unexpected[:5]}"
            assert not senders.early_errors, (
                f"{where}: errors while the server was up (kill at {senders.killed_at:.3f}): "
                f"{senders.early_errors[:5]}")
            assert len(senders.temporary) <= MAX_TEMPORARY_PER_ROUND, \
                f"{where}: {len(senders.temporary)} temporary refusals: {senders.temporary[:5]}"
            # Both front doors carry load in every round, so every kill lands on both.
            assert senders.smtp_accepted >= MIN_SMTP_PER_ROUND, \
                f"{where}: only {senders.smtp_accepted} SMTP messages accepted"
            assert senders.http_accepted >= MIN_HTTP_PER_ROUND, \
                f"{where}: only {senders.http_accepted} HTTP messages accepted"
            accepted.extend(senders.accepted)
            server.start()
        print(f"\ncrash+delivery seed {seed}: per round (warmup s, smtp, http, temporary): {rounds}")

        def received() -> dict[str, list[float]]:
            """Token -> the arrival times of its copies at the sink, ascending."""
            got: dict[str, list[float]] = {}
            for m in sink.snapshot():
                for token in SUBJECT_RE.findall(m.data):
                    got.setdefault(token.decode(), []).append(m.at)
            return {t: sorted(ats) for t, ats in got.items()}

        want = set(accepted)
        poll_until(lambda: want <= set(received()), timeout=60,
                   what=f"every accepted message at the sink (seed {seed})")
        got = received()
        duplicates = sum(len(ats) - 1 for t, ats in got.items() if t in want and len(ats) > 1)
        # For each duplicate: how long before the kill that ended its sender did the first
        # copy arrive? (A first copy after the last kill cannot have a duplicate.)
        windows = []
        for t, ats in got.items():
            if t in want and len(ats) > 1:
                first = ats[0]
                after = [k for k in kills if k >= first - SINK_LAG_S]
                windows.append((max(0.0, after[0] - first), t, ats) if after
                               else (float("inf"), t, ats))
        windows.sort(key=lambda w: w[0])
        widest = windows[-1][0] if windows else 0.0
        print(f"crash+delivery seed {seed}: {ROUNDS} kills, {len(want)} accepted, "
              f"all delivered, {duplicates} duplicate deliveries "
              f"({duplicates / ROUNDS:.1f} per kill, {duplicates / len(want):.1%} of accepted); "
              f"widest window from first copy to kill {widest:.2f}s")
        # In flight at a kill: the messages on the open delivery connections plus the
        # outcomes the recorder had not committed yet (it batches them, so connections
        # never wait for the disk; crates/delivery/src/recorder.rs).
        # An outcome the server failed to write (not one cut off by a kill) is logged,
        # and its recipient would be delivered again without any kill: there is none.
        log = server.log_path.read_text(errors="replace")
        unrecorded = [line for line in log.splitlines()
                      if "recording outcomes failed" in line or "outcomes not recorded" in line]
        assert not unrecorded, f"outcomes were not recorded (seed {seed}): {unrecorded[:3]}"
        late = [w for w in windows if w[0] > OUTCOME_WINDOW_S]

        def timeline(ats: list[float]) -> str:
            """Each copy's arrival relative to the kills around it."""
            out = []
            for at in ats:
                before = [k for k in kills if k <= at]
                after = [k for k in kills if k > at]
                out.append(f"{at - before[-1]:+.2f}s after kill {len(before)}" if before
                           else f"{at - after[0]:+.2f}s before kill 1")
            return "; ".join(out)

        assert not late, (
            f"{len(late)} of {duplicates} duplicates were first delivered more than "
            f"{OUTCOME_WINDOW_S}s before the kill that ended their server (widest "
            f"{late[-1][0]:.2f}s): their outcomes were lost or recorded late (seed {seed}); "
            f"copies: " + " | ".join(f"{t}: {timeline(ats)}" for _, t, ats in late[-5:]))
    finally:
        server.kill()
