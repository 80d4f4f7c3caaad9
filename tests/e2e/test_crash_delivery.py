"""Crash safety with delivery running: 20 rounds of kill -9 under load from concurrent
SMTP and HTTP senders, the kills landing while messages are being accepted *and*
delivered to the sink. After the last restart, every message that got a 250 (SMTP) or a
202 (HTTP) must reach the sink. Duplicates are counted and reported: they are only
possible for deliveries in flight at a kill (delivered, but the outcome not yet
committed), so they are bounded by what can be in flight.

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
from collections import Counter

from mailroom_harness import make_message, poll_until, start_server
from test_delivery import delivery_config

ROUNDS = 20
SMTP_THREADS = 4
HTTP_THREADS = 2
MAX_PER_THREAD_PER_ROUND = 200
TOTAL_BUDGET_S = 150.0
SUBJECT_RE = re.compile(rb"^Subject: crash-([0-9a-f]{32})\r?$", re.M)


class Senders:
    """SMTP (allowlisted, plain) and HTTP senders against one server incarnation."""

    def __init__(self, server, tenant_key: str):
        self.server, self.key = server, tenant_key
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.accepted: list[str] = []
        self.unexpected: list[str] = []
        self.threads = [threading.Thread(target=self._smtp, daemon=True) for _ in range(SMTP_THREADS)]
        self.threads += [threading.Thread(target=self._http, daemon=True) for _ in range(HTTP_THREADS)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)
            assert not t.is_alive(), "a sender did not stop"

    def _ok(self, token: str):
        with self.lock:
            self.accepted.append(token)

    def _smtp(self):
        host, port = self.server.submission_addr
        sent = 0
        while not self.stop.is_set() and sent < MAX_PER_THREAD_PER_ROUND:
            try:
                client = smtplib.SMTP(host, port, local_hostname="client.test", timeout=5)
                client.ehlo()
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)
                continue
            try:
                while not self.stop.is_set() and sent < MAX_PER_THREAD_PER_ROUND:
                    token = uuid.uuid4().hex
                    rcpt = f"ok-{token[:8]}@example.net"
                    msg = make_message(mail_from="app@acme.test", to=[rcpt], subject=f"crash-{token}")
                    code, _ = client.mail("app@acme.test")
                    if code != 250:
                        self.unexpected.append(f"MAIL {code}")
                        break
                    client.rcpt(rcpt)
                    code, reply = client.data(msg)
                    sent += 1
                    if code == 250:
                        self._ok(token)
                    elif code // 100 != 4:
                        self.unexpected.append(f"DATA {code} {reply!r}")
            except (OSError, smtplib.SMTPException):
                pass  # the server was killed mid-transaction: not accepted
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
                        self._ok(token)
            except urllib.error.HTTPError as err:
                if err.code // 100 != 5:
                    self.unexpected.append(f"HTTP {err.code}")
            except OSError:
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
        for rnd in range(1, ROUNDS + 1):
            assert time.monotonic() - started < TOTAL_BUDGET_S, \
                f"over the time budget in round {rnd} (seed {seed})"
            senders = Senders(server, tenant.api_key)
            senders.start()
            time.sleep(rng.uniform(0.3, 1.2))
            assert server.alive(), f"server died on its own in round {rnd}:\n{server.log_tail()}"
            server.kill()
            senders.finish()
            assert not senders.unexpected, f"round {rnd} (seed {seed}): {senders.unexpected[:5]}"
            accepted.extend(senders.accepted)
            server.start()
        assert len(accepted) >= ROUNDS, f"too little load to mean anything: {len(accepted)}"

        def received() -> Counter:
            got = Counter()
            for m in sink.snapshot():
                for token in SUBJECT_RE.findall(m.data):
                    got[token.decode()] += 1
            return got

        want = set(accepted)
        poll_until(lambda: want <= set(received()), timeout=60,
                   what=f"every accepted message at the sink (seed {seed})")
        got = received()
        duplicates = sum(n - 1 for t, n in got.items() if t in want and n > 1)
        print(f"crash+delivery seed {seed}: {ROUNDS} kills, {len(want)} accepted, "
              f"all delivered, {duplicates} duplicate deliveries")
        # In flight at a kill: the messages on the open delivery connections plus the
        # outcomes the recorder had not committed yet (it batches them, so connections
        # never wait for the disk; crates/delivery/src/outcome.rs). Seen here: about 18
        # per kill at ~1,000 deliveries/s. A bound of 50 per kill catches a regression
        # (e.g. outcomes never committed) without flaking on the machine's noise.
        assert duplicates <= ROUNDS * 50, f"{duplicates} duplicates for {ROUNDS} kills"
    finally:
        server.kill()
