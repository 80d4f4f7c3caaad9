"""A scripted SMTP sink for the delivery tests: pure stdlib (threads and sockets, no smtpd).

It listens on 127.0.0.1 (port 0: the OS picks one, kept across `refuse()`/`accept()`),
speaks enough ESMTP for an outbound relay (EHLO with PIPELINING, 8BITMIME, SMTPUTF8, DSN,
ENHANCEDSTATUSCODES and SIZE; HELO; MAIL/RCPT/DATA/RSET/NOOP/VRFY/QUIT), undoes dot-stuffing,
and records every message it accepts: `SinkMessage(mail_from, rcpts, data, ...)` where
`rcpts` holds only the recipients it said 250 to, and `data` is the message as the client
meant it (the body with the stuffed dots removed, CRLF line endings, no final `.` line).

RCPT replies are chosen by the local part of the address (case-insensitive prefix):

| local part | reply |
|---|---|
| `ok…` | `250 2.1.5` |
| `bad…` | `550 5.1.1` (no such user) |
| `later…` | `451 4.2.0` the first time this address is seen, then `250 2.1.5` |
| `full…` | `452 4.2.2` (mailbox full) every time |
| `datalater…` | `250 2.1.5`, but the data is answered `451 4.3.0` (not recorded) the first time |
| anything else | `250 2.1.5` (bounce reports to the sender land here) |

Switches, each taking effect for the next connection / transaction:

- `refuse()`: close the listening socket (connections are refused) and, by default, every
  open connection; `accept()` listens again on the same port.
- `greet_421 = True`: answer `421 4.3.2` at the greeting and close.
- `drop_in_data = True`: after the 354, read part of the data, then close the connection
  without a reply (the transaction is not recorded).
- `tls_context = ssl.SSLContext(...)` (server side): STARTTLS is offered and taken
  (RFC 3207); each message records the TLS version it came over (`tls`, `None` in clear).
  `requiretls = True` also advertises REQUIRETLS (RFC 8689) and records the MAIL
  parameters (`mail_params`).
- `size_limit = N`: announce `SIZE N` (None: announce no SIZE); a MAIL whose `SIZE=`
  is larger gets `552 5.3.4`, and so does a body that turns out larger.
- `offer_dsn = False`: leave DSN out of the EHLO reply. The MAIL and RCPT parameters the
  client sent are recorded either way (`SinkMessage.mail_params`, `.rcpt_params`).
- `hold()`: accept connections but say nothing (no greeting) until `release()`; the
  client sits in its greeting wait, i.e. a delivery attempt is in flight.

Commands pipelined in one packet are answered in order, and replies are written when the
sink has no more complete command line to process (RFC 2920: one write per batch).
Every socket has a timeout, so no thread waits forever; `stop()` ends them all.
"""

from __future__ import annotations

import itertools
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

MAX_LINE = 4096
MAX_DATA = 32 * 1024 * 1024
CONN_TIMEOUT = 30.0

_MAIL_RE = re.compile(rb"^MAIL FROM:\s*<([^<>]*)>(.*)$", re.I)
_RCPT_RE = re.compile(rb"^RCPT TO:\s*<([^<>]+)>(.*)$", re.I)


@dataclass
class SinkMessage:
    mail_from: str
    rcpts: list[str]
    data: bytes
    peer: tuple
    helo: str
    conn_id: int
    queue_id: str
    at: float = field(default_factory=time.time)
    tls: str | None = None  # TLS version the message came over; None in clear
    mail_params: str = ""  # what followed MAIL FROM:<...>, e.g. "SIZE=123 RET=HDRS"
    rcpt_params: dict[str, str] = field(default_factory=dict)  # address -> "NOTIFY=..."

    def __repr__(self):
        return (f"SinkMessage(from={self.mail_from!r}, rcpts={self.rcpts!r}, "
                f"queue_id={self.queue_id}, size={len(self.data)}, conn={self.conn_id})")


def rcpt_reply(address: str, seen: dict[str, int]) -> tuple[int, str]:
    """The scripted reply for one recipient; `seen` counts earlier RCPTs per address."""
    local = address.rsplit("@", 1)[0].lower()
    key = address.lower()
    seen[key] = seen.get(key, 0) + 1
    if local.startswith("ok"):
        return 250, "2.1.5 Ok"
    if local.startswith("bad"):
        return 550, "5.1.1 <%s>: Recipient address rejected: no such user" % address
    if local.startswith("later"):
        if seen[key] == 1:
            return 451, "4.2.0 <%s>: try again later" % address
        return 250, "2.1.5 Ok"
    if local.startswith("full"):
        return 452, "4.2.2 <%s>: mailbox full" % address
    return 250, "2.1.5 Ok"


class _Closed(Exception):
    """The peer went away, or the sink chose to drop the connection."""


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, hostname: str = "sink.test"):
        assert host.startswith("127.") or host == "::1", "loopback only"
        self.host, self.port, self.hostname = host, port, hostname
        self.greet_421 = False
        self.tls_context: ssl.SSLContext | None = None
        self.requiretls = False
        self.drop_in_data = False
        self.size_limit: int | None = MAX_DATA
        self.offer_dsn = True
        self.data_started = 0  # DATA commands answered with 354
        self._greet_gate = threading.Event()
        self._greet_gate.set()
        self.held = 0  # connections that waited at a hold()
        self._lock = threading.RLock()  # re-entrant: wait_for predicates may query
        self._cond = threading.Condition(self._lock)
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self._stopped = False
        self.messages: list[SinkMessage] = []
        self.rcpt_log: list[tuple[str, int]] = []  # (address, reply code), every RCPT
        self.rcpt_seen: dict[str, int] = {}
        self.mail_log: list[tuple[int, str]] = []  # (connection id, reverse path), every MAIL
        self.rset_log: list[int] = []  # connection id of every RSET
        self.data_seen: dict[str, int] = {}  # DATA ends per `datalater…` address
        self.connections = 0  # accepted TCP connections
        self.dropped = 0  # transactions dropped mid-DATA
        self.drop_times: list[float] = []  # time.time() of each drop
        self.greeted_421 = 0
        self.errors: list[str] = []  # protocol errors the sink saw (bad commands, ...)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "SmtpSink":
        self._stopped = False
        self.accept()
        return self

    def accept(self):
        """(Re)open the listener on the same port."""
        with self._lock:
            if self._listener is not None:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 10
            while True:
                try:
                    sock.bind((self.host, self.port))
                    break
                except OSError:
                    if self.port == 0 or time.monotonic() > deadline:
                        sock.close()
                        raise
                    time.sleep(0.1)
            sock.listen(128)
            sock.settimeout(0.2)
            self.port = sock.getsockname()[1]
            self._listener = sock
            t = threading.Thread(target=self._accept_loop, args=(sock,), daemon=True,
                                 name=f"sink-accept-{self.port}")
            self._accept_thread = t
        t.start()

    def refuse(self, close_open: bool = True):
        """Stop listening (connections are refused); optionally drop open connections too."""
        with self._lock:
            sock, self._listener = self._listener, None
            t, self._accept_thread = self._accept_thread, None
        if sock is not None:
            sock.close()
        if t is not None:
            t.join(timeout=5)
        if close_open:
            self.close_connections()

    def hold(self):
        """New connections get no greeting until release()."""
        self._greet_gate.clear()

    def release(self):
        self._greet_gate.set()

    def close_connections(self):
        """Drop every open connection (a client's idle, reusable one included)."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            _hard_close(c)

    def stop(self):
        self._stopped = True
        self._greet_gate.set()
        self.refuse(close_open=True)
        for t in list(self._threads):
            t.join(timeout=5)

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- queries -------------------------------------------------------------------------

    def failure_report(self) -> str:
        with self._lock:
            lines = [
                f"sink 127.0.0.1:{self.port} listening={self.listening} "
                f"greet_421={self.greet_421} drop_in_data={self.drop_in_data} "
                f"connections={self.connections} dropped={self.dropped} "
                f"greeted_421={self.greeted_421}",
                f"messages ({len(self.messages)}, last 20):",
                *(f"  {m!r}" for m in self.messages[-20:]),
                f"RCPT replies (last 40): {self.rcpt_log[-40:]}",
                f"errors: {self.errors[-20:]}",
            ]
        return "\n".join(lines)

    def snapshot(self) -> list[SinkMessage]:
        with self._lock:
            return list(self.messages)

    def messages_for(self, address: str) -> list[SinkMessage]:
        a = address.lower()
        return [m for m in self.snapshot() if a in (r.lower() for r in m.rcpts)]

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "sink condition"):
        """Waits until predicate(messages) is truthy; returns its value or raises."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(list(self.messages))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; sink has "
                        f"{len(self.messages)} messages: {self.messages[-10:]!r}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_for_rcpt(self, address: str, timeout: float = 20.0) -> SinkMessage:
        return self.wait_for(lambda ms: next((m for m in ms if address.lower()
                                              in (r.lower() for r in m.rcpts)), None),
                             timeout, what=f"a message for {address}")

    # -- server side ---------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket):
        while True:
            try:
                conn, peer = listener.accept()
            except socket.timeout:
                if self._listener is not listener:
                    return
                continue
            except OSError:
                return  # listener closed
            if self._listener is not listener:
                _hard_close(conn)
                return
            cid = next(self._ids)
            with self._lock:
                self._conns[cid] = conn
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn, peer, cid), daemon=True,
                                 name=f"sink-conn-{cid}")
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _serve(self, conn: socket.socket, peer, cid: int):
        try:
            conn.settimeout(CONN_TIMEOUT)
            _Session(self, conn, peer, cid).run()
        except _Closed:
            pass
        except (OSError, socket.timeout) as err:
            with self._lock:
                if cid in self._conns:  # not one the sink closed itself (refuse/stop)
                    self.errors.append(f"conn {cid}: {err!r}")
        finally:
            with self._lock:
                self._conns.pop(cid, None)
            _hard_close(conn)

    def _record(self, msg: SinkMessage):
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()


def _hard_close(sock: socket.socket):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Session:
    def __init__(self, sink: SmtpSink, conn: socket.socket, peer, cid: int):
        self.sink, self.conn, self.peer, self.cid = sink, conn, peer, cid
        self.buf = b""
        self.out: list[bytes] = []
        self.helo = ""
        self.tls: str | None = None
        self.reset()

    def reset(self):
        self.mail_from: str | None = None
        self.mail_params = ""
        self.rcpts: list[str] = []
        self.rcpt_params: dict[str, str] = {}

    # -- I/O: replies are queued and written before the next blocking read -----------------

    def reply(self, code: int, text: str, more: list[str] | None = None):
        lines = [text] + list(more or [])
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            self.out.append(f"{code}{sep}{line}\r\n".encode())

    def flush(self):
        if self.out:
            data, self.out = b"".join(self.out), []
            self.conn.sendall(data)

    def _fill(self):
        self.flush()
        chunk = self.conn.recv(65536)
        if not chunk:
            raise _Closed()
        self.buf += chunk

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[: i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) > MAX_LINE:
                raise _Closed()
            self._fill()

    # -- protocol ------------------------------------------------------------------------

    def run(self):
        sink = self.sink
        if not sink._greet_gate.is_set():
            with sink._lock:
                sink.held += 1
            while not sink._greet_gate.wait(0.2):
                if sink._stopped:
                    raise _Closed()
        if sink.greet_421:
            with sink._lock:
                sink.greeted_421 += 1
            self.reply(421, f"4.3.2 {sink.hostname} service not available, closing")
            self.flush()
            raise _Closed()
        self.reply(220, f"{sink.hostname} ESMTP scripted sink")
        while True:
            line = self.readline().rstrip(b"\r\n")
            verb = line.split(b" ", 1)[0].upper()
            handler = getattr(self, "do_" + verb.decode("ascii", "replace"), None)
            if handler is None or not verb.isalpha():
                with sink._lock:
                    sink.errors.append(f"conn {self.cid}: unknown command {line!r}")
                self.reply(500, "5.5.2 command not recognised")
                continue
            if handler(line) == "quit":
                self.flush()
                return

    def do_EHLO(self, line: bytes):
        self.helo = line[5:].decode(errors="replace").strip()
        self.reset()
        keywords = ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        if self.sink.offer_dsn:
            keywords.append("DSN")
        if self.sink.tls_context is not None and self.tls is None:
            keywords.append("STARTTLS")
        if self.sink.requiretls and self.tls is not None:
            keywords.append("REQUIRETLS")
        if self.sink.size_limit is not None:
            keywords.append(f"SIZE {self.sink.size_limit}")
        self.reply(250, self.sink.hostname, keywords)

    def do_STARTTLS(self, line: bytes):
        ctx = self.sink.tls_context
        if ctx is None or self.tls is not None:
            self.reply(502, "5.5.1 STARTTLS not available")
            return
        if self.buf:
            self.reply(501, "5.5.1 data after STARTTLS")
            return
        self.reply(220, "2.0.0 Ready to start TLS")
        self.flush()
        try:
            self.conn = ctx.wrap_socket(self.conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.sink._lock:
                self.sink.errors.append(f"conn {self.cid}: TLS handshake failed: {e}")
            raise _Closed()
        self.tls = self.conn.version()
        self.helo = ""
        self.reset()

    def do_HELO(self, line: bytes):
        self.helo = line[5:].decode(errors="replace").strip()
        self.reset()
        self.reply(250, self.sink.hostname)

    def do_NOOP(self, line: bytes):
        self.reply(250, "2.0.0 Ok")

    def do_RSET(self, line: bytes):
        with self.sink._lock:
            self.sink.rset_log.append(self.cid)
        self.reset()
        self.reply(250, "2.0.0 Ok")

    def do_VRFY(self, line: bytes):
        self.reply(252, "2.5.0 Cannot VRFY user")

    def do_QUIT(self, line: bytes):
        self.reply(221, "2.0.0 Bye")
        return "quit"

    def do_MAIL(self, line: bytes):
        if not self.helo:
            self.reply(503, "5.5.1 EHLO/HELO first")
            return
        if self.mail_from is not None:
            self.reply(503, "5.5.1 nested MAIL command")
            return
        m = _MAIL_RE.match(line)
        if not m:
            self.reply(501, "5.5.4 syntax: MAIL FROM:<address>")
            return
        params = m.group(2).decode("utf-8", "replace").strip()
        size = re.search(r"(?i)\bSIZE=(\d+)", params)
        limit = self.sink.size_limit
        if size and limit and int(size.group(1)) > limit:
            self.reply(552, f"5.3.4 message size exceeds fixed limit of {limit} bytes")
            return
        self.mail_from = m.group(1).decode("utf-8", "replace")
        with self.sink._lock:
            self.sink.mail_log.append((self.cid, self.mail_from))
        self.mail_params = params
        self.reply(250, "2.1.0 Ok")

    def do_RCPT(self, line: bytes):
        if self.mail_from is None:
            self.reply(503, "5.5.1 need MAIL before RCPT")
            return
        m = _RCPT_RE.match(line)
        if not m:
            self.reply(501, "5.5.4 syntax: RCPT TO:<address>")
            return
        address = m.group(1).decode("utf-8", "replace")
        with self.sink._lock:
            code, text = rcpt_reply(address, self.sink.rcpt_seen)
            self.sink.rcpt_log.append((address, code))
        if code == 250:
            self.rcpts.append(address)
            self.rcpt_params[address] = m.group(2).decode("utf-8", "replace").strip()
        self.reply(code, text)

    def do_DATA(self, line: bytes):
        if self.mail_from is None:
            self.reply(503, "5.5.1 need MAIL before DATA")
            return
        if not self.rcpts:
            self.reply(554, "5.5.1 no valid recipients")
            return
        self.reply(354, "End data with <CR><LF>.<CR><LF>")
        with self.sink._lock:
            self.sink.data_started += 1
        drop = self.sink.drop_in_data
        lines: list[bytes] = []
        size = 0
        while True:
            if drop and (lines or self.buf):
                # Part of the data has arrived: vanish without a reply.
                with self.sink._lock:
                    self.sink.dropped += 1
                    self.sink.drop_times.append(time.time())
                raise _Closed()
            raw = self.readline()
            if raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b"."):
                raw = raw[1:]  # dot-unstuffing (RFC 5321 4.5.2)
            size += len(raw)
            if size > MAX_DATA:
                raise _Closed()
            lines.append(raw)
        data = b"".join(lines)
        if self.sink.size_limit and len(data) > self.sink.size_limit:
            self.reply(552, f"5.3.4 message size exceeds fixed limit of {self.sink.size_limit} bytes")
            self.reset()
            return
        with self.sink._lock:
            later = [r for r in self.rcpts if r.lower().startswith("datalater")]
            first = False
            for r in later:
                self.sink.data_seen[r.lower()] = self.sink.data_seen.get(r.lower(), 0) + 1
                first = first or self.sink.data_seen[r.lower()] == 1
        if first:
            self.reply(451, "4.3.0 data refused for now, try again later")
            self.reset()
            return
        with self.sink._lock:
            qid = f"S{self.cid}-{len(self.sink.messages) + 1}"
        self.sink._record(SinkMessage(self.mail_from, list(self.rcpts), data, self.peer,
                                      self.helo, self.cid, qid, tls=self.tls,
                                      mail_params=self.mail_params,
                                      rcpt_params=dict(self.rcpt_params)))
        self.reply(250, f"2.0.0 Ok: queued as {qid}")
        self.reset()
