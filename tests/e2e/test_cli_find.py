"""The CLI finds its server (issue 18 item 6): `--url`/`MAILROOM_URL`, then `--config
FILE` (its data_dir's listeners.json and operator-token, else its http.listen), then
`./mailroom-data`, else http://127.0.0.1:8080 - said on stderr. `mailroom status`
prints the server, where that came from, the identity, the server's version and
`/readyz`, and exits non-zero when the server is not ready or not there.

Each command runs in a directory of its own with every MAILROOM_* variable removed, so
only what the test names can lead the CLI to a server."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import pytest

from mailroom_harness import REPO_ROOT, binary_missing_reason, mailroom_bin, start_server


def _version() -> str:
    text = (REPO_ROOT / "Cargo.toml").read_text()
    m = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)
    assert m, "no [workspace.package] version in Cargo.toml"
    return m.group(1)


def _cli(args: list[str], cwd, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(env_extra or {})
    return subprocess.run([str(mailroom_bin()), *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_through_config_file(tmp_path):
    srv = start_server(tmp_path / "srv")
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        host, port = srv.http_addr
        r = _cli(["status", "--config", str(srv.config_path)], elsewhere)
        assert r.returncode == 0, r
        out = r.stdout
        assert f"server:   http://{host}:{port} (from " in out, out
        assert "listeners.json" in out, out
        assert "identity: operator" in out and "operator-token" in out, out
        assert f"version:  {_version()}" in out, out
        assert "health:   ready" in out, out
        assert "127.0.0.1:8080" not in r.stderr, r.stderr

        # An API command finds the server and the token the same way.
        r = _cli(["tenant", "list", "--config", str(srv.config_path)], elsewhere)
        assert r.returncode == 0 and '"tenants"' in r.stdout, r

        # Without listeners.json (a copied configuration), http.listen is used.
        listen_conf = tmp_path / "listen.toml"
        data = tmp_path / "other-data"
        data.mkdir()
        (data / "operator-token").write_text(srv.operator_token + "\n")
        listen_conf.write_text(f'data_dir = "{data}"\n[http]\nlisten = "0.0.0.0:{port}"\n')
        r = _cli(["status", "--config", str(listen_conf)], elsewhere)
        assert r.returncode == 0, r
        assert f"server:   http://127.0.0.1:{port} (from http.listen in {listen_conf})" in r.stdout
        assert f"version:  {_version()}" in r.stdout

        # --url / MAILROOM_URL win over --config.
        dead = _free_port()
        r = _cli(["status", "--config", str(srv.config_path)], elsewhere,
                 {"MAILROOM_URL": f"http://127.0.0.1:{dead}"})
        assert r.returncode != 0, r
        assert f"server:   http://127.0.0.1:{dead} (from --url / MAILROOM_URL)" in r.stdout
        assert "health:   not ready" in r.stdout

        # ./mailroom-data is the last place looked at.
        (elsewhere / "mailroom-data").symlink_to(srv.data_dir)
        r = _cli(["status"], elsewhere)
        assert r.returncode == 0 and f"http://{host}:{port}" in r.stdout, r

        # A stopped server: status says so and fails.
        srv.stop()
        r = _cli(["status", "--config", str(srv.config_path)], elsewhere)
        assert r.returncode != 0 and "health:   not ready" in r.stdout, r
    finally:
        srv.kill()


def test_fallback_to_default_address_is_said(tmp_path):
    r = _cli(["status"], tmp_path)
    assert "127.0.0.1:8080" in r.stderr, r
    assert "server:   http://127.0.0.1:8080 (from the default)" in r.stdout, r
    # No token anywhere: status still reports, and says there is none.
    assert "identity: none" in r.stdout, r
    r = _cli(["tenant", "list"], tmp_path)
    assert r.returncode != 0 and "127.0.0.1:8080" in r.stderr, r


def test_bad_config_file_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nlisten = 8080\n")
    r = _cli(["status", "--config", str(bad)], tmp_path)
    assert r.returncode != 0 and str(bad) in r.stderr, r
