"""Shared test fakes for the e2e suite. `WebhookReceiver`: one HTTP receiver on
127.0.0.1:0 (a thread per request, stdlib only) that records every request it gets and
answers what the test's `respond` function says. The five test files that each had their
own near-copy (test_cli, test_event_order, test_openapi_contract, test_secrets_at_rest,
test_webhooks) use this one. `DnsServer`: one DNS responder on 127.0.0.1:0 (dnspython)
for every test that publishes records (domains, DKIM/ARC, MTA-STS, DANE, shaping); the
domain tests' `TxtServer` and the transport-security tests' server were two copies of
it. The SMTP sink is `sink.py`.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class WebhookReceiver:
    """Records each request as a dict: `method`, `path`, `headers` (dict), `body` (bytes),
    `payload` (the body as JSON, or None), and the webhook headers `signature`
    (Mailroom-Signature, "" when absent), `event_id` (Mailroom-Event-Id) and
    `content_type`. `respond(request) -> status` picks the status (default 200); it runs
    after the request is recorded and outside the receiver's lock, so it may sleep.
    Every response has an empty JSON object as its body (`{}`), or none for 204."""

    def __init__(self, respond: Callable[[dict], int] | None = None, path: str = "/hook"):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._respond = respond or (lambda _request: 200)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                try:
                    payload = json.loads(body) if body else None
                except ValueError:
                    payload = None
                request = {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                    "payload": payload,
                    "signature": self.headers.get("Mailroom-Signature", ""),
                    "event_id": self.headers.get("Mailroom-Event-Id"),
                    "content_type": self.headers.get("Content-Type"),
                }
                with outer.lock:
                    outer.requests.append(request)
                status = outer._respond(request)
                self.send_response(status)
                if status == 204:
                    self.end_headers()
                    return
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def seen(self) -> list[dict]:
        """A copy of the requests so far."""
        with self.lock:
            return list(self.requests)

    def posts(self) -> int:
        with self.lock:
            return sum(r["method"] == "POST" for r in self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    stop = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- a strict mailbox provider ---------------------------------------------------------

import socket as _socket
import time as _time

# The deferral texts real providers send when a sender goes too fast (the shipped
# response rules recognise them).
RATE_TEXTS = {
    "google": "421 4.7.28 [{ip}] Our system has detected an unusual rate of unsolicited "
              "mail originating from your IP address. To protect our users from spam, mail "
              "sent from your IP address has been temporarily rate limited.",
    "yahoo": "421 4.7.0 [TS01] Messages from {ip} temporarily deferred due to unexpected "
             "volume or user complaints",
    "outlook": "451 4.7.650 The mail server [{ip}] has been temporarily rate limited due "
               "to IP reputation.",
}
CONN_TEXT = "421 4.7.0 [{ip}] too many connections from your IP address, try again later"


class ProviderSink:
    """A fake mailbox provider on `host:port` (loopback only) that is strict the way
    large providers are: per source address it allows `max_connections` connections at
    once (more: `421 … too many connections` at the greeting, then close) and
    `per_minute` messages a minute, in bursts of at most two seconds' worth (more: the
    provider's rate text at MAIL FROM, `RATE_TEXTS[flavor]`, then close). `block` maps a sender domain to a reply given at
    MAIL FROM to that sender only (a policy block aimed at one tenant); `block_all`, if
    set, is given to every MAIL FROM (a site-wide block). It reports what it saw per
    source address: connections, most at once, messages accepted, deferrals, EHLO names,
    and every accepted message's (source, sender, recipients, time)."""

    def __init__(self, flavor: str, host: str = "127.0.0.1", port: int = 0,
                 max_connections: int = 2, per_minute: int = 60):
        assert host.startswith("127."), "loopback only"
        self.flavor, self.host = flavor, host
        self.max_connections, self.per_minute = max_connections, per_minute
        self.rate_text = RATE_TEXTS.get(flavor, RATE_TEXTS["google"])
        self.block: dict[str, str] = {}
        self.block_all: str | None = None
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.connections: dict[str, int] = {}
        self.recent: dict[str, tuple[float, float]] = {}  # ip -> (tokens, at)
        self.accepted: list[tuple[str, str, list[str], float]] = []
        self.deferred: dict[str, int] = {}
        self.deferral_texts: list[str] = []
        self.ehlo: dict[str, set[str]] = {}
        self.sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    # -- what it saw ---------------------------------------------------------------------

    def report(self) -> dict:
        with self.lock:
            by_ip: dict[str, dict] = {}
            for ip in set(self.connections) | set(self.deferred):
                by_ip[ip] = {
                    "connections": self.connections.get(ip, 0),
                    "peak_connections": self.peak.get(ip, 0),
                    "accepted": sum(1 for a in self.accepted if a[0] == ip),
                    "deferred": self.deferred.get(ip, 0),
                    "ehlo": sorted(self.ehlo.get(ip, set())),
                }
            return {"flavor": self.flavor, "accepted": len(self.accepted),
                    "deferred": sum(self.deferred.values()), "by_source": by_ip}

    def accepted_for(self, rcpt: str) -> list[tuple[str, str, list[str], float]]:
        with self.lock:
            return [a for a in self.accepted if rcpt in a[2]]

    def stop(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()

    # -- the server ----------------------------------------------------------------------

    def _accept(self):
        while self.running:
            try:
                conn, peer = self.sock.accept()
            except (_socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn, peer[0]), daemon=True).start()

    def _defer(self, ip: str, text: str):
        with self.lock:
            self.deferred[ip] = self.deferred.get(ip, 0) + 1
            self.deferral_texts.append(text)

    def _serve(self, conn: _socket.socket, ip: str):
        conn.settimeout(30)
        f = conn.makefile("rb")

        def send(line: str):
            conn.sendall(line.encode() + b"\r\n")

        with self.lock:
            self.connections[ip] = self.connections.get(ip, 0) + 1
            n = self.active[ip] = self.active.get(ip, 0) + 1
            self.peak[ip] = max(self.peak.get(ip, 0), n)
        try:
            if n > self.max_connections:
                text = CONN_TEXT.format(ip=ip)
                self._defer(ip, text)
                send(text)
                return
            send(f"220 mx.{self.flavor}.test ESMTP")
            sender, rcpts = None, []
            while True:
                raw = f.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    with self.lock:
                        self.ehlo.setdefault(ip, set()).add(line[5:].strip())
                    send(f"250-mx.{self.flavor}.test\r\n250-8BITMIME\r\n250 SIZE 52428800")
                elif verb == "MAIL":
                    addr = line[10:].split(">")[0].lstrip("<")
                    domain = addr.rsplit("@", 1)[-1].lower()
                    # A VERP return path (b+…@bounces.<domain>) is the tenant's too.
                    blocked = self.block_all or next(
                        (v for k, v in self.block.items()
                         if domain == k or domain.endswith("." + k)), None)
                    if blocked:
                        self._defer(ip, blocked)
                        send(blocked)
                        if blocked.startswith("421"):
                            return
                        continue
                    now = _time.monotonic()
                    with self.lock:
                        # A token bucket per source: per_minute / 60 a second, holding
                        # two seconds' worth (at least one message).
                        rate = self.per_minute / 60.0
                        cap = max(1.0, 2 * rate)
                        tokens, last = self.recent.get(ip, (cap, now))
                        tokens = min(cap, tokens + (now - last) * rate)
                        over = tokens < 1.0
                        self.recent[ip] = (tokens if over else tokens - 1.0, now)
                    if over:
                        text = self.rate_text.format(ip=ip)
                        self._defer(ip, text)
                        send(text)
                        if text.startswith("421"):
                            return
                        continue
                    sender, rcpts = addr, []
                    send("250 2.1.0 OK")
                elif verb == "RCPT":
                    rcpts.append(line[8:].split(">")[0].lstrip("<"))
                    send("250 2.1.5 OK")
                elif verb == "DATA":
                    send("354 go ahead")
                    while True:
                        d = f.readline()
                        if not d or d in (b".\r\n", b".\n"):
                            break
                    with self.lock:
                        self.accepted.append((ip, sender or "", rcpts, _time.time()))
                    send("250 2.0.0 OK queued")
                    sender, rcpts = None, []
                elif verb == "RSET":
                    sender, rcpts = None, []
                    send("250 2.0.0 OK")
                elif verb == "NOOP":
                    send("250 2.0.0 OK")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("502 5.5.2 command not recognised")
        except OSError:
            pass
        finally:
            with self.lock:
                self.active[ip] -= 1
            try:
                conn.close()
            except OSError:
                pass


class DnsServer:
    """UDP DNS on 127.0.0.1: `a` (name -> [ip]), `mx` (name -> ["pref host"]), `txt`
    (name -> [text]), `tlsa` (name -> ["3 1 1 hex"]); names in `servfail` answer SERVFAIL;
    names in `secure` are answered with the AD bit and names in `bogus` with SERVFAIL and
    EDE 6 (DNSSEC Bogus), as a validating resolver answers; unknown names NXDOMAIN. TTL 0
    by default, so every lookup comes here (`ttl` lets a benchmark have answers cached
    as in real life)."""

    def __init__(self, ttl: int = 0):
        self.ttl = ttl
        self.a: dict[str, list[str]] = {}
        self.mx: dict[str, list[str]] = {}
        self.txt: dict[str, list[str]] = {}
        self.tlsa: dict[str, list[str]] = {}
        self.servfail: set[str] = set()
        self.secure: set[str] = set()
        self.bogus: set[str] = set()
        self.asked: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                q = dns.message.from_wire(wire)
            except Exception:
                continue
            r = dns.message.make_response(q)
            r.flags |= dns.flags.AA
            question = q.question[0]
            name = question.name.to_text().rstrip(".").lower()
            rdtype = question.rdtype
            self.asked.append((name, dns.rdatatype.to_text(rdtype)))
            known = name in self.a or name in self.mx or name in self.txt or name in self.tlsa
            if name in self.secure and name not in self.bogus:
                r.flags |= dns.flags.AD
            if name in self.bogus:
                r.set_rcode(dns.rcode.SERVFAIL)
                r.use_edns(0, options=[dns.edns.EDEOption(dns.edns.EDECode.DNSSEC_BOGUS)])
            elif name in self.servfail:
                r.set_rcode(dns.rcode.SERVFAIL)
            elif not known:
                r.set_rcode(dns.rcode.NXDOMAIN)
            elif rdtype == dns.rdatatype.A and self.a.get(name):
                r.answer.append(dns.rrset.from_text(question.name, self.ttl, "IN", "A", *self.a[name]))
            elif rdtype == dns.rdatatype.MX and self.mx.get(name):
                r.answer.append(dns.rrset.from_text(question.name, self.ttl, "IN", "MX",
                                                    *[f"{v}." for v in self.mx[name]]))
            elif rdtype == dns.rdatatype.TLSA and self.tlsa.get(name):
                r.answer.append(dns.rrset.from_text(question.name, self.ttl, "IN", "TLSA", *self.tlsa[name]))
            elif rdtype == dns.rdatatype.TXT and self.txt.get(name):
                # Longer texts (DKIM keys) go as several strings of at most 255.
                quoted = [" ".join('"%s"' % t[i:i + 255].replace('"', '\\"')
                                   for i in range(0, len(t), 255)) for t in self.txt[name]]
                r.answer.append(dns.rrset.from_text(question.name, self.ttl, "IN", "TXT", *quoted))
            self.sock.sendto(r.to_wire(), peer)

    def config(self, dnssec: bool = False) -> str:
        """The `[dns]` section that points a Mailroom server here (2 s timeout; with
        `dnssec`, TLSA answers are trusted by their AD bit, as DANE needs)."""
        section = f'\n[dns]\nnameservers = ["127.0.0.1:{self.port}"]\ntimeout_secs = 2\n'
        return section + ("dnssec = true\n" if dnssec else "")

    def stop(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()
