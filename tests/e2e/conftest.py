"""Pytest fixtures and hooks for the end-to-end suite; helpers live in mailroom_harness.py.

The binary is `$MAILROOM_BIN` (scripts/test sets it from cargo's own build output), or
`<repo>/target/debug/mailroom`. When it is missing the whole suite is skipped with a clear
reason - and under CI=true every one of those skips is a failure (tests/conftest.py).

`MAILROOM_TEST_BACKEND=postgres` runs every server on a fresh PostgreSQL database
(mailroom_harness.PgDatabase); the databases the run created are dropped at its end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom_harness import (
    PG_HOST,
    PG_PORT,
    TESTS_DIR,
    MailroomServer,
    Tenant,
    binary_missing_reason,
    create_database,
    default_backend,
    drop_all_databases,
)


def pytest_report_header(config):
    backend = default_backend()
    where = f" at {PG_HOST}:{PG_PORT}, a fresh database per server" if backend == "postgres" else ""
    return f"mailroom e2e storage backend: {backend}{where} (MAILROOM_TEST_BACKEND)"


# Tests that look inside the SQLite file or the data directory's filesystem, where only
# the SQLite backend keeps the queue: under MAILROOM_TEST_BACKEND=postgres they are
# deselected (listed in the summary with the reason), not skipped.
SQLITE_ONLY = {
    "test_api_keys.py::test_key_lifecycle_scopes_and_operator_token":
        "reads the stored key digests from data/mailroom.db",
    "test_secrets_at_rest.py": "opens data/mailroom.db to check the sealed secrets",
    "test_disk_full.py": "fills the data directory's filesystem, which holds the SQLite queue",
    "test_storage_faults_delivery.py::test_disk_full_while_recording_outcomes":
        "fills the data directory's filesystem, which holds the SQLite queue",
    "test_storage_faults_delivery.py::test_read_only_filesystem_while_recording_outcomes":
        "turns the data directory's filesystem read-only, which holds the SQLite queue",
}
_deselected_sqlite_only: list[str] = []


def _sqlite_only_reason(item) -> str | None:
    path = Path(str(item.fspath)).name
    return SQLITE_ONLY.get(f"{path}::{item.originalname}") or SQLITE_ONLY.get(path)


def pytest_collection_modifyitems(config, items):
    if default_backend() == "postgres":
        keep, drop = [], []
        for item in items:
            reason = _sqlite_only_reason(item)
            (drop if reason else keep).append(item)
            if reason:
                _deselected_sqlite_only.append(f"{item.nodeid}: {reason}")
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    reason = binary_missing_reason()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if TESTS_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter):
    if _deselected_sqlite_only:
        terminalreporter.section("SQLite only, deselected under MAILROOM_TEST_BACKEND=postgres")
        for line in _deselected_sqlite_only:
            terminalreporter.line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing test, attach the tail of every server log it used to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when not in ("setup", "call") or not report.failed:
        return
    servers = getattr(item, "_mailroom_servers", None) or []
    funcargs = getattr(item, "funcargs", {}) or {}
    for value in funcargs.values():
        if isinstance(value, MailroomServer) and value not in servers:
            servers.append(value)
        srv = getattr(value, "server", None)
        if isinstance(srv, MailroomServer) and srv not in servers:
            servers.append(srv)
    for srv in servers:
        report.sections.append((f"mailroom log tail ({srv.log_path})", srv.log_tail()))
    # SMTP sinks (tests/e2e/sink.py) the test used: what they received and answered.
    sinks = list(getattr(item, "_mailroom_sinks", None) or [])
    sinks += [v for v in funcargs.values() if hasattr(v, "failure_report") and v not in sinks]
    for sink in sinks:
        report.sections.append((f"sink state (port {sink.port})", sink.failure_report()))


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases():
    """Set up first, torn down last: drops every PostgreSQL database the run created
    (their backends terminated first), after the servers using them have stopped."""
    yield
    errors = drop_all_databases()
    assert not errors, f"could not drop test databases: {errors}"


@pytest.fixture
def pg_database():
    """A fresh PostgreSQL database for one test (skipped - a failure under CI=true - when
    the server is unreachable); dropped after the test."""
    db = create_database()
    yield db
    db.drop()


@pytest.fixture(scope="module")
def sink():
    """A scripted SMTP sink (sink.py) on 127.0.0.1 for the module's delivery tests."""
    from sink import SmtpSink

    s = SmtpSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    # Submission only: no delivery, so no real DNS lookups from the test machine.
    srv = MailroomServer(tmp_path_factory.mktemp("mailroom"), extra_config="[delivery]\nenabled = false")
    try:
        srv.start()
    except RuntimeError as err:
        srv.kill()
        pytest.fail(str(err), pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _server_logs_on_failure(request):
    """Remember the session server for the failure-report hook."""
    request.node._mailroom_servers = []
    if "server" in request.fixturenames:
        request.node._mailroom_servers.append(request.getfixturevalue("server"))
    yield


@pytest.fixture(scope="session")
def tenant(server) -> Tenant:
    """Tenant 'acme-…' with the verified domain acme.test and one SMTP credential."""
    return server.create_tenant("acme", domain="acme.test")


@pytest.fixture(scope="session")
def other_tenant(server) -> Tenant:
    """A second tenant with its own verified domain and credential."""
    return server.create_tenant("beta", domain="beta.test")
