"""End-to-end harness: run the real `mailroom` binary and talk to it with real clients.

The binary is `$MAILROOM_BIN` (scripts/test sets it from cargo's own build output), or
`$CARGO_TARGET_DIR/debug/mailroom`, or `<repo>/target/debug/mailroom`. When it is missing
the whole suite is skipped with a clear reason (build it first: `cargo build -p mailroom`),
and under CI=true each of those skips is a failure (tests/conftest.py).

Everything here uses loopback addresses only, and every wait is bounded in time.

Storage backend: SQLite in the server's data directory by default. With
`MAILROOM_TEST_BACKEND=postgres` every server the suite starts gets a fresh PostgreSQL
database of its own on the server of `$MAILROOM_TEST_PG_URL` (default
postgres://postgres@127.0.0.1:5432/postgres, trust auth; the URL's database is where
databases are created from), made with a unique name and dropped at the end of the run (`PgDatabase`, `create_database`). A test can also ask for PostgreSQL
itself: `MailroomServer(..., backend="postgres", database=db, node_id=...)`. When
PostgreSQL is unreachable such a test is skipped with the reason, which under CI=true is
a failure (tests/conftest.py).
"""

from __future__ import annotations

import atexit
import base64
import itertools
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path


TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent.parent
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "mailroom"

HOSTNAME = "mailroom.test"
MAX_MESSAGE_SIZE = 1048576
MAX_RECIPIENTS = 5
STARTUP_TIMEOUT = 30.0
SOCKET_TIMEOUT = 20.0

# `250 2.0.0 Ok: queued as <ID>` - ID is a 26-character message id (ULID).
QUEUED_RE = re.compile(rb"queued as ([0-9A-Za-z]{26})(?![0-9A-Za-z])")

_OPERATOR = object()  # sentinel: "use the operator token"


def mailroom_bin() -> Path:
    """`$MAILROOM_BIN` (scripts/test sets it from cargo's JSON build output), else the
    debug binary under `$CARGO_TARGET_DIR` when that is set, else `<repo>/target`."""
    env = os.environ.get("MAILROOM_BIN")
    if env:
        return Path(env)
    target_dir = os.environ.get("CARGO_TARGET_DIR")
    if target_dir:
        return (REPO_ROOT / target_dir / "debug" / "mailroom").resolve()
    return DEFAULT_BIN


def binary_missing_reason() -> str | None:
    path = mailroom_bin()
    if not path.is_file():
        return (
            f"mailroom binary not found at {path} "
            "(build it with `cargo build -p mailroom`, or set MAILROOM_BIN)"
        )
    if not os.access(path, os.X_OK):
        return f"mailroom binary at {path} is not executable"
    return None


# --------------------------------------------------------------------------------------
# PostgreSQL: the backend switch and fresh databases
# --------------------------------------------------------------------------------------

# The server the PostgreSQL tests use, as scripts/install-test-deps.sh and the store's
# conformance suite read it.
PG_ADMIN_URL = (os.environ.get("MAILROOM_TEST_PG_URL", "").strip()
                or "postgres://postgres@127.0.0.1:5432/postgres")
_PG = urllib.parse.urlsplit(PG_ADMIN_URL)
PG_HOST = _PG.hostname or "127.0.0.1"
PG_PORT = _PG.port or 5432
PG_USER = urllib.parse.unquote(_PG.username or "postgres")
_PG_PASSWORD = urllib.parse.unquote(_PG.password) if _PG.password else None
PG_ADMIN_DB = _PG.path.lstrip("/") or "postgres"
BACKENDS = ("sqlite", "postgres")

_db_counter = itertools.count(1)
_db_lock = threading.Lock()
_live_databases: dict[str, "PgDatabase"] = {}


def default_backend() -> str:
    """`$MAILROOM_TEST_BACKEND` (sqlite or postgres); sqlite when unset."""
    value = os.environ.get("MAILROOM_TEST_BACKEND", "").strip().lower() or "sqlite"
    if value not in BACKENDS:
        raise ValueError(f"MAILROOM_TEST_BACKEND={value!r}: one of {', '.join(BACKENDS)}")
    return value


def pg_url(database: str, host: str = PG_HOST, port: int = PG_PORT) -> str:
    """The URL of `database` on the test server (or through host:port in front of it)."""
    auth = urllib.parse.quote(PG_USER, safe="")
    if _PG_PASSWORD is not None:
        auth += ":" + urllib.parse.quote(_PG_PASSWORD, safe="")
    query = f"?{_PG.query}" if _PG.query else ""
    return f"postgres://{auth}@{host}:{port}/{database}{query}"


def pg_query(sql: str, database: str = PG_ADMIN_DB, timeout: float = 30.0) -> list[tuple]:
    """Runs one statement outside a transaction (CREATE/DROP DATABASE need that) and
    returns its rows. psycopg when it is installed (requirements-dev.txt), else `psql`."""
    try:
        import psycopg
    except ImportError:
        psycopg = None
    if psycopg is not None:
        with psycopg.connect(pg_url(database), autocommit=True,
                             connect_timeout=max(1, int(timeout))) as conn:
            cur = conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []
    proc = subprocess.run(
        ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql,
         pg_url(database)],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PGCONNECT_TIMEOUT": str(max(1, int(timeout)))},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {proc.stderr.strip()}")
    return [tuple(line.split("\t")) for line in proc.stdout.splitlines() if line]


def postgres_unreachable_reason() -> str | None:
    """None when the test server answers `select 1`, else why not."""
    try:
        rows = pg_query("select 1", timeout=5)
    except FileNotFoundError:
        return "neither psycopg nor psql is installed (scripts/install-test-deps.sh)"
    except Exception as err:  # noqa: BLE001 - the reason is reported
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} (user {PG_USER}) is unreachable: {err}"
    if not rows or str(rows[0][0]) != "1":
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} answered {rows!r} to select 1"
    return None


class PgDatabase:
    """A fresh database with a unique name (`mr_e2e_<pid>_<counter>_<random>`) on the test
    server. `drop()` terminates its backends and drops it; every database still alive is
    dropped when the test run ends (conftest.py, and atexit as a fallback)."""

    def __init__(self, prefix: str = "mr_e2e"):
        self.name = f"{prefix}_{os.getpid()}_{next(_db_counter)}_{uuid.uuid4().hex[:6]}"
        self.created = False

    def create(self) -> "PgDatabase":
        pg_query(f'CREATE DATABASE "{self.name}"')
        self.created = True
        with _db_lock:
            _live_databases[self.name] = self
        return self

    @property
    def url(self) -> str:
        return pg_url(self.name)

    def url_via(self, host: str, port: int) -> str:
        """The URL of this database through another address (a proxy in front of it)."""
        return pg_url(self.name, host, port)

    def query(self, sql: str) -> list[tuple]:
        return pg_query(sql, database=self.name)

    def drop(self):
        if not self.created:
            return
        pg_query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()")
        pg_query(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.created = False
        with _db_lock:
            _live_databases.pop(self.name, None)

    def __repr__(self):
        return f"PgDatabase({self.name})"


def create_database(prefix: str = "mr_e2e") -> PgDatabase:
    """A fresh database; skips the test (a failure under CI=true) when PostgreSQL is
    unreachable."""
    import pytest

    reason = postgres_unreachable_reason()
    if reason:
        pytest.skip(reason)
    return PgDatabase(prefix).create()


def drop_all_databases():
    """Drops every database this process created and has not dropped yet."""
    with _db_lock:
        dbs = list(_live_databases.values())
    errors = []
    for db in dbs:
        try:
            db.drop()
        except Exception as err:  # noqa: BLE001 - collected, reported once
            errors.append(f"{db.name}: {err}")
    return errors


atexit.register(drop_all_databases)


def shared_node_secrets() -> tuple[str, str]:
    """An operator token and a secrets key (base64 of 32 bytes) to give every node of one
    cluster: the token digest and the sealed secrets (DKIM keys, webhook secrets) live in
    the shared database, so the nodes must agree on both."""
    import secrets

    token = "mro_" + secrets.token_urlsafe(24)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return token, key


# --------------------------------------------------------------------------------------
# TLS / SMTP helpers
# --------------------------------------------------------------------------------------


def insecure_tls_context() -> ssl.SSLContext:
    """The server's certificate is self-signed: do not verify it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def queue_id(reply: bytes | str) -> str:
    """Extract the message id from a `250 2.0.0 Ok: queued as <ID>` reply text."""
    if isinstance(reply, str):
        reply = reply.encode()
    m = QUEUED_RE.search(reply)
    assert m, f"no 'queued as <26-char id>' in reply: {reply!r}"
    return m.group(1).decode()


def assert_reply(reply, code: int, enhanced: str | None = None, what: str = ""):
    """reply is (code, text-bytes) as smtplib / RawSMTP return it."""
    got_code, text = reply
    if isinstance(text, str):
        text = text.encode()
    label = f"{what}: " if what else ""
    assert got_code == code, f"{label}expected {code} {enhanced or ''}, got {got_code} {text!r}"
    if enhanced is not None:
        assert text.startswith(enhanced.encode()), (
            f"{label}expected enhanced status {enhanced}, got {got_code} {text!r}"
        )


def make_message(
    mail_from: str = "sender@acme.test",
    to: list[str] | tuple[str, ...] = ("rcpt@example.net",),
    subject: str = "mailroom e2e",
    body: str = "Hello from the mailroom end-to-end suite.\r\n",
    header_from: str | None = None,
) -> bytes:
    import email.utils

    hdr_from = header_from or mail_from
    domain = hdr_from.rsplit("@", 1)[-1]
    lines = [
        f"From: <{hdr_from}>",
        f"To: {', '.join('<%s>' % t for t in to)}",
        f"Subject: {subject}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        f"Message-ID: <{uuid.uuid4().hex}@{domain}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class RawSMTP:
    """A minimal SMTP client over a raw socket, for things smtplib hides or 'fixes'."""

    def __init__(self, host: str, port: int, *, implicit_tls: bool = False,
                 source: str | None = None, timeout: float = SOCKET_TIMEOUT):
        self.sock = socket.create_connection(
            (host, port), timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        if implicit_tls:
            self.sock = insecure_tls_context().wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.buf = b""
        self.greeting = self.read_reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed by server (pending {self.buf!r})")
            self.buf += chunk
            if len(self.buf) > 1 << 20:
                raise AssertionError("server reply line too long")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_reply(self) -> tuple[int, bytes]:
        """Returns (code, text) where text joins the lines' texts with b'\\n' like smtplib."""
        texts = []
        for _ in range(1000):
            line = self._readline()
            assert len(line) >= 3 and line[:3].isdigit(), f"malformed reply line {line!r}"
            code = int(line[:3])
            texts.append(line[4:])
            if len(line) == 3 or line[3:4] == b" ":
                return code, b"\n".join(texts)
            assert line[3:4] == b"-", f"malformed reply line {line!r}"
        raise AssertionError("reply has too many lines")

    def read_all_replies(self, deadline: float) -> list[tuple[int, bytes]]:
        """Read replies until the server closes the connection or the deadline passes."""
        replies = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                replies.append(self.read_reply())
            except (ConnectionError, socket.timeout, ssl.SSLError, OSError):
                break
        return replies

    def send(self, data: bytes):
        self.sock.sendall(data)

    def cmd(self, line: str | bytes) -> tuple[int, bytes]:
        if isinstance(line, str):
            line = line.encode()
        self.sock.sendall(line + b"\r\n")
        return self.read_reply()

    def ehlo(self, name: str = "client.test") -> tuple[int, bytes]:
        return self.cmd(f"EHLO {name}")

    def starttls(self):
        reply = self.cmd("STARTTLS")
        assert_reply(reply, 220, what="STARTTLS")
        assert self.buf == b"", "server sent data after 220 to STARTTLS"
        self.sock = insecure_tls_context().wrap_socket(self.sock, server_hostname=HOSTNAME)
        return reply

    def auth_plain(self, username: str, password: str) -> tuple[int, bytes]:
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")


# --------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------


def _write_private(path: Path, text: str):
    """Writes a secret file with mode 0600 (the server warns about, or refuses, others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@dataclass
class ApiResponse:
    status: int
    body: object
    headers: dict
    raw: bytes

    def __repr__(self):
        return f"ApiResponse(status={self.status}, body={self.raw[:2000]!r})"


class MailroomServer:
    def __init__(self, workdir: Path, *, max_message_size: int = MAX_MESSAGE_SIZE,
                 max_recipients: int = MAX_RECIPIENTS, extra_config: str = "",
                 backend: str | None = None, database: "PgDatabase | str | None" = None,
                 node_id: str | None = None, heartbeat_secs: float | None = None,
                 pool_size: int | None = None, statement_timeout_secs: int | None = None,
                 operator_token: str | None = None, secrets_key: str | None = None):
        """`extra_config` is TOML appended to the generated file (e.g. a `[delivery]`
        section with its `[[delivery.routes]]`); it must not repeat the sections above.

        `backend` is sqlite or postgres (default: `$MAILROOM_TEST_BACKEND`, else sqlite).
        On postgres the store is `database` (a `PgDatabase` or a URL), or a fresh database
        made for this server. `node_id`/`heartbeat_secs` fill `[node]`. Several nodes of
        one database share `operator_token` and `secrets_key` (see
        `shared_node_secrets`): written into the data directory before the first start."""
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "mailroom.toml"
        self.log_path = self.workdir / "mailroom.log"
        self.proc: subprocess.Popen | None = None
        self.listeners: dict = {}
        self.operator_token: str = ""
        self.starts = 0
        self.backend = backend or default_backend()
        assert self.backend in BACKENDS, f"backend {self.backend!r}: one of {BACKENDS}"
        self.database: PgDatabase | None = None
        self.node_id = node_id
        storage = ""
        if self.backend == "postgres":
            if database is None:
                database = create_database()
            if isinstance(database, PgDatabase):
                self.database, url = database, database.url
            else:
                url = str(database)
            storage = f'\n[storage]\nbackend = "postgres"\nurl = "{url}"\n'
            if pool_size is not None:
                storage += f"pool_size = {pool_size}\n"
            if statement_timeout_secs is not None:
                storage += f"statement_timeout_secs = {statement_timeout_secs}\n"
        node = ""
        if node_id is not None or heartbeat_secs is not None:
            node = "\n[node]\n"
            if node_id is not None:
                node += f'id = "{node_id}"\n'
            if heartbeat_secs is not None:
                node += f"heartbeat_secs = {heartbeat_secs}\n"
        if operator_token is not None:
            _write_private(self.data_dir / "operator-token", operator_token + "\n")
        if secrets_key is not None:
            _write_private(self.data_dir / "secrets.key", secrets_key + "\n")
        self.config_path.write_text(
            f'data_dir = "{self.data_dir}"\n'
            f'hostname = "{HOSTNAME}"\n'
            "\n"
            "[smtp]\n"
            'submission_listen = ["127.0.0.1:0"]\n'
            'implicit_tls_listen = ["127.0.0.1:0"]\n'
            f"max_message_size = {max_message_size}\n"
            f"max_recipients = {max_recipients}\n"
            "\n"
            "[http]\n"
            'listen = "127.0.0.1:0"\n'
            + storage
            + node
            + (f"\n{extra_config.strip()}\n" if extra_config.strip() else "")
        )

    # -- process lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = STARTUP_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        listeners_file = self.data_dir / "listeners.json"
        listeners_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== e2e: start #{self.starts} at {time.ctime()} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(mailroom_bin()), "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(self.workdir), env=env, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mailroom exited with status {self.proc.returncode} before writing "
                    f"listeners.json\n--- log tail ---\n{self.log_tail()}"
                )
            if listeners_file.exists():
                try:
                    self.listeners = json.loads(listeners_file.read_text())
                    if self.listeners.get("http") and self.listeners.get("submission") \
                            and self.listeners.get("implicit_tls"):
                        break
                except (json.JSONDecodeError, OSError):
                    pass  # partially written: retry
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"mailroom did not write {listeners_file} within {timeout}s"
                    f"\n--- log tail ---\n{self.log_tail()}"
                )
            time.sleep(0.05)
        token_file = self.data_dir / "operator-token"
        while True:
            if token_file.exists():
                lines = token_file.read_text().strip().splitlines()
                if lines and lines[0].strip():
                    self.operator_token = lines[0].strip()
                    break
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"no operator token in {token_file}\n{self.log_tail()}")
            time.sleep(0.05)
        self._wait_http(deadline)
        return self

    def _wait_http(self, deadline: float):
        host, port = self.http_addr
        while True:
            try:
                with socket.create_connection((host, port), timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"HTTP listener {host}:{port} not reachable\n{self.log_tail()}")
                time.sleep(0.05)

    def kill(self):
        """SIGKILL the server (simulated crash) and reap it."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, timeout: float = 10.0):
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit in time."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def readyz(self, timeout: float = 10.0) -> int:
        """Status of `GET /readyz` (0 when the HTTP listener does not answer in time)."""
        try:
            return self.api("GET", "/readyz", token=None, timeout=timeout).status
        except OSError:
            return 0

    def nodes(self) -> dict:
        """`GET /v1/nodes` as {node id: node}; asserts a 200."""
        r = self.api("GET", "/v1/nodes")
        assert r.status == 200, f"GET /v1/nodes: {r}"
        return {str(n["id"]): n for n in r.body["nodes"]}

    def log_tail(self, n: int = 80) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # -- addresses -----------------------------------------------------------------------

    @staticmethod
    def _split(addr: str) -> tuple[str, int]:
        host, _, port = addr.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def submission_addr(self) -> tuple[str, int]:
        return self._split(self.listeners["submission"][0])

    @property
    def implicit_tls_addr(self) -> tuple[str, int]:
        return self._split(self.listeners["implicit_tls"][0])

    @property
    def http_addr(self) -> tuple[str, int]:
        http = self.listeners["http"]
        if isinstance(http, list):
            http = http[0]
        return self._split(http)

    @property
    def submission_port(self) -> int:
        return self.submission_addr[1]

    @property
    def implicit_tls_port(self) -> int:
        return self.implicit_tls_addr[1]

    # -- HTTP API ------------------------------------------------------------------------

    def api(self, method: str, path: str, body=None, token=_OPERATOR, *,
            raw_body: bytes | None = None, timeout: float = 20.0,
            headers: dict | None = None) -> ApiResponse:
        host, port = self.http_addr
        url = f"http://{host}:{port}{path}"
        extra = headers or {}
        headers = {"Accept": "application/json", **extra}
        data = None
        if raw_body is not None:
            data = raw_body
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token is _OPERATOR:
            token = self.operator_token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, raw, hdrs = err.code, err.read(), dict(err.headers)
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        return ApiResponse(status, parsed, {k.lower(): v for k, v in hdrs.items()}, raw)

    # -- SMTP clients --------------------------------------------------------------------

    def smtp(self, *, source: str | None = None, timeout: float = SOCKET_TIMEOUT):
        """smtplib client on the submission port, plain (call .starttls() yourself)."""
        import smtplib

        host, port = self.submission_addr
        client = smtplib.SMTP(host, port, local_hostname="client.test", timeout=timeout,
                              source_address=(source, 0) if source else None)
        return client

    def smtp_starttls(self, *, source: str | None = None, timeout: float = SOCKET_TIMEOUT):
        client = self.smtp(source=source, timeout=timeout)
        client.ehlo()
        code, msg = client.starttls(context=insecure_tls_context())
        assert code == 220, f"STARTTLS refused: {code} {msg!r}"
        client.ehlo()
        return client

    def smtp_ssl(self, *, timeout: float = SOCKET_TIMEOUT):
        import smtplib

        host, port = self.implicit_tls_addr
        client = smtplib.SMTP_SSL(host, port, local_hostname="client.test", timeout=timeout,
                                  context=insecure_tls_context())
        client.ehlo()
        return client

    def raw(self, *, implicit_tls: bool = False, source: str | None = None) -> RawSMTP:
        host, port = self.implicit_tls_addr if implicit_tls else self.submission_addr
        return RawSMTP(host, port, implicit_tls=implicit_tls, source=source)

    # -- provisioning helpers ------------------------------------------------------------

    def create_tenant(self, prefix: str, domain: str | None = None, credential: bool = True):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        r = self.api("POST", "/v1/tenants", {"name": name})
        assert r.status == 201, f"POST /v1/tenants: {r}"
        t = Tenant(server=self, id=str(r.body["id"]), name=name, api_key=r.body["api_key"])
        if domain:
            r = self.api("POST", f"/v1/tenants/{t.id}/domains", {"name": domain, "verified": True})
            assert r.status == 201, f"POST /v1/tenants/{t.id}/domains {domain}: {r}"
            t.domain = domain
        if credential:
            cred = t.new_credential()
            t.cred_id, t.username, t.password = cred["id"], cred["username"], cred["password"]
        return t


@dataclass
class Tenant:
    server: MailroomServer
    id: str
    name: str
    api_key: str
    domain: str = ""
    cred_id: str = ""
    username: str = ""
    password: str = ""
    extra: dict = field(default_factory=dict)

    def new_credential(self) -> dict:
        r = self.server.api("POST", f"/v1/tenants/{self.id}/smtp-credentials", {})
        assert r.status == 201, f"POST smtp-credentials: {r}"
        for key in ("id", "username", "password"):
            assert r.body.get(key), f"smtp-credentials response lacks {key!r}: {r}"
        return {"id": str(r.body["id"]), "username": r.body["username"],
                "password": r.body["password"]}

    @property
    def sender(self) -> str:
        return f"sender@{self.domain}"

    def login(self, client, mechanism: str = "PLAIN", initial_response_ok: bool = True):
        """Authenticate an smtplib client with the given mechanism; returns (code, msg)."""
        client.user, client.password = self.username, self.password
        method = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}[mechanism]
        return client.auth(mechanism, method, initial_response_ok=initial_response_ok)


def start_server(workdir, extra_config: str = "", **kw) -> "MailroomServer":
    """Starts a MailroomServer in `workdir`; skips when the binary is missing and fails
    the test (not the run) when it does not come up."""
    import pytest

    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    srv = MailroomServer(workdir, extra_config=extra_config, **kw)
    try:
        srv.start()
    except RuntimeError as err:
        srv.kill()
        pytest.fail(str(err), pytrace=False)
    return srv


def poll_until(fn, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    """Calls fn() until it returns something truthy (returned) or the deadline passes
    (AssertionError naming `what` and fn's last value). Bounded: timeout <= 20 s here."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def submit(client, mail_from: str, rcpts: list[str], msg: bytes) -> tuple[int, bytes]:
    """MAIL/RCPT/DATA with smtplib, asserting each envelope step is accepted;
    returns the DATA (end-of-data) reply."""
    assert_reply(client.mail(mail_from), 250, "2.1.0", what=f"MAIL FROM:<{mail_from}>")
    for rcpt in rcpts:
        assert_reply(client.rcpt(rcpt), 250, "2.1.5", what=f"RCPT TO:<{rcpt}>")
    return client.data(msg)


def assert_queued(reply, what: str = "DATA") -> str:
    assert_reply(reply, 250, "2.0.0", what=what)
    return queue_id(reply[1])


def assert_message_queued(server: MailroomServer, msg_id: str, *, tenant: Tenant | None = None,
                          mail_from: str | None = None, rcpts: list[str] | None = None,
                          token=_OPERATOR) -> dict:
    """GET /v1/messages/{id} and check the recipients are there with an `accepted` event."""
    r = server.api("GET", f"/v1/messages/{msg_id}", token=token)
    assert r.status == 200, f"GET /v1/messages/{msg_id}: {r}"
    m = r.body
    assert str(m["id"]) == msg_id, m
    if tenant is not None:
        assert str(m["tenant_id"]) == tenant.id, m
    if mail_from is not None:
        assert m["mail_from"] == mail_from, m
    got = m["recipients"]
    if rcpts is not None:
        assert sorted(x["address"].lower() for x in got) == sorted(a.lower() for a in rcpts), m
    for rec in got:
        events = rec.get("events") or []
        assert events and events[0]["type"] == "accepted", f"first event is not 'accepted': {rec}"
        # Queued right after acceptance; a delivery attempt may already have changed the
        # state, but then it must be explained by a later event (state and event together).
        if rec["state"] != "queued":
            assert len(events) > 1, f"state {rec['state']!r} without an event after 'accepted': {rec}"
            assert rec["state"] != "delivered", f"delivered to an unreachable test domain? {rec}"
    return m


