"""The node runtime from the outside (issue 13), on the real binary: store configuration
errors name the key, exit non-zero and never show the database password (a missing
`storage.url`, a URL that is not PostgreSQL's, a server that does not answer);
`mailroom migrate` exits 0; a node keeps its generated id in `data_dir/node-id` (0600)
across restarts, `mailroom nodes` lists it alive with the recipients it leases, and a
clean stop marks its row stopped. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import time

import pytest

from mailroom_harness import binary_missing_reason, mailroom_bin, start_server

PASSWORD = "hunter2-not-shown"


@pytest.fixture(autouse=True)
def _binary():
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)


def run(args, cwd, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(env_extra or {})
    start = time.monotonic()
    proc = subprocess.run([str(mailroom_bin()), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc, time.monotonic() - start


def closed_port() -> int:
    """A loopback port nothing listens on (bound a moment ago, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path, body: str):
    (tmp_path / "m.toml").write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        '[smtp]\nsubmission_listen = ["127.0.0.1:0"]\nimplicit_tls_listen = ["127.0.0.1:0"]\n'
        '[http]\nlisten = "127.0.0.1:0"\n' + body)
    return str(tmp_path / "m.toml")


def test_store_errors_name_the_key_exit_1_and_hide_the_password(tmp_path):
    cfg = write_config(tmp_path, '[storage]\nbackend = "postgres"\n')
    proc, _ = run(["check-config", cfg], tmp_path)
    assert proc.returncode == 1 and "storage.url" in proc.stderr, proc

    bad = {"MAILROOM_STORAGE__URL": f"mysql://mr:{PASSWORD}@127.0.0.1/mail"}
    proc, _ = run(["check-config", cfg], tmp_path, bad)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "storage.url" in out and PASSWORD not in out, proc

    url = f"postgres://mr:{PASSWORD}@127.0.0.1:{closed_port()}/mail"
    for args in (["serve", "--config", cfg], ["migrate", "--config", cfg]):
        proc, took = run(args, tmp_path, {"MAILROOM_STORAGE__URL": url})
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, (args, proc)
        assert "storage.url" in out and "mr:***@127.0.0.1" in out, out
        assert PASSWORD not in out, out
        assert took < 30, f"{args[0]} took {took:.1f}s to give up"
    print(f"\nunreachable PostgreSQL: `mailroom migrate` exited 1 after {took:.1f}s")


def test_migrate_exits_0_on_sqlite(tmp_path):
    cfg = write_config(tmp_path, "")
    proc, _ = run(["migrate", "--config", cfg], tmp_path)
    assert proc.returncode == 0, proc
    assert "migrations applied" in proc.stdout, proc
    assert (tmp_path / "data" / "mailroom.db").is_file()


def test_node_id_is_kept_listed_alive_and_stopped_cleanly(tmp_path):
    srv = start_server(tmp_path, extra_config="[node]\nheartbeat_secs = 1\n")
    try:
        id_file = srv.data_dir / "node-id"
        node_id = id_file.read_text().strip()
        assert node_id, "empty node-id"
        assert stat.S_IMODE(id_file.stat().st_mode) == 0o600
        proc, _ = run(["nodes", "--json", "--data-dir", str(srv.data_dir)], tmp_path)
        assert proc.returncode == 0, proc
        nodes = json.loads(proc.stdout)["nodes"]
        assert [(n["id"], n["alive"], n["leased_recipients"]) for n in nodes] == \
            [(node_id, True, 0)], nodes
        assert nodes[0]["detail"]["backend"] == srv.backend
        assert nodes[0]["detail"]["http"] == srv.listeners["http"]
        proc, _ = run(["nodes", "--data-dir", str(srv.data_dir)], tmp_path)
        assert proc.returncode == 0 and node_id in proc.stdout and "alive" in proc.stdout, proc
        srv.stop()
        assert srv.proc.returncode == 0, srv.log_tail()
        srv.start()
        assert id_file.read_text().strip() == node_id, "the id changed across a restart"
        assert f"node_id={node_id} backend={srv.backend}" in srv.log_path.read_text(), srv.log_tail()
        srv.stop()
    finally:
        srv.kill()
    if srv.database is not None:
        rows = srv.database.query("SELECT id, detail FROM nodes")
    else:
        with sqlite3.connect(srv.data_dir / "mailroom.db") as db:
            rows = db.execute("SELECT id, detail FROM nodes").fetchall()
    assert [r[0] for r in rows] == [node_id], rows
    assert json.loads(rows[0][1]).get("stopped") is True, rows
