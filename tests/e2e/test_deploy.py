"""The deployment files in deploy/, each checked as far as this machine allows.

- `deploy/mailroom.service`: `systemd-analyze verify` (with ExecStart pointed at the
  built binary, which verify requires to exist) must print nothing, and the unit's
  hardening keys are checked by parsing it.
- `deploy/mailroom.toml`: `mailroom check-config` passes with no warning, and every
  section the configuration knows has a commented block.
- `deploy/Dockerfile`: docker cannot build or run here (no daemon in CI), so its
  structure is checked: multi-stage, a non-root USER, a VOLUME on the data directory,
  and the environment it sets accepted by `mailroom check-config`.
- `deploy/compose.yaml` / `deploy/compose-3-nodes.yaml`: parsed as YAML (PyPI `yaml`)
  and checked: one node on SQLite; three nodes on one PostgreSQL with distinct node ids,
  data volumes and published ports, the shared secrets key, waiting for the database.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mailroom_harness import REPO_ROOT, binary_missing_reason, mailroom_bin

DEPLOY = REPO_ROOT / "deploy"


def _bin() -> Path:
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    return mailroom_bin()


def _unit() -> dict[str, list[tuple[str, str]]]:
    """The unit as section -> [(key, value)], repeated keys kept in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in (DEPLOY / "mailroom.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        assert current is not None, f"key outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def _last(section: list[tuple[str, str]], key: str) -> str | None:
    values = [v for k, v in section if k == key]
    return values[-1] if values else None


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (the unit's keys are still checked "
                    "by test_unit_is_hardened)")
    binary = _bin()
    text = (DEPLOY / "mailroom.service").read_text()
    assert "/usr/local/bin/mailroom" in text
    unit = tmp_path / "mailroom.service"
    unit.write_text(text.replace("/usr/local/bin/mailroom", str(binary.resolve())))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    out = (r.stdout + r.stderr).strip()
    # verify exits 0 on unknown keys and bad values too: only silence is a pass.
    assert r.returncode == 0 and not out, f"systemd-analyze verify: {r.returncode}\n{out}"


def test_systemd_analyze_verify_catches_a_bad_key(tmp_path):
    """The check above can fail: a misspelt hardening key is reported."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    binary = _bin()
    text = (DEPLOY / "mailroom.service").read_text()
    text = text.replace("/usr/local/bin/mailroom", str(binary.resolve()))
    text = text.replace("ProtectSystem=strict", "ProtectSystem=strikt")
    unit = tmp_path / "mailroom.service"
    unit.write_text(text)
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert "strikt" in r.stdout + r.stderr


def test_unit_is_hardened():
    u = _unit()
    assert set(u) == {"Unit", "Service", "Install"}, list(u)
    s = u["Service"]
    want = {
        "DynamicUser": "yes",
        "User": "mailroom",
        "StateDirectory": "mailroom",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "Restart": "on-failure",
    }
    got = {k: _last(s, k) for k in want}
    assert got == want
    # No other capability anywhere, and the process never runs as root.
    caps = {c for k, v in s if "Capabilit" in k for c in v.split()}
    assert caps == {"CAP_NET_BIND_SERVICE"}, caps
    assert _last(s, "User") != "root"
    assert set(_last(s, "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in [v for k, v in s if k == "SystemCallFilter"]
    # It runs the binary on the config the unit names, checked first.
    assert _last(s, "ExecStart") == "/usr/local/bin/mailroom serve --config /etc/mailroom/mailroom.toml"
    assert _last(s, "ExecStartPre") == "/usr/local/bin/mailroom check-config /etc/mailroom/mailroom.toml"
    assert _last(u["Install"], "WantedBy") == "multi-user.target"


def test_unit_data_dir_is_the_state_directory():
    """The example configuration's data_dir is where StateDirectory= puts the state."""
    import tomllib

    conf = tomllib.loads((DEPLOY / "mailroom.toml").read_text())
    assert conf["data_dir"] == "/var/lib/" + _last(_unit()["Service"], "StateDirectory")


def _check_config(env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(env_extra or {})
    return subprocess.run([str(_bin()), "check-config", str(DEPLOY / "mailroom.toml")],
                          capture_output=True, text=True, timeout=60, env=env)


def test_example_config_passes_check_config_without_warnings():
    r = _check_config()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("mailroom.toml: ok"), r.stdout
    assert r.stderr.strip() == "", f"warnings: {r.stderr}"


def test_example_config_check_can_fail(tmp_path):
    """check-config really reads the file: a misspelt key in a copy is named."""
    bad = tmp_path / "mailroom.toml"
    bad.write_text((DEPLOY / "mailroom.toml").read_text().replace(
        "heartbeat_secs = 5", "heartbeat_second = 5"))
    r = subprocess.run([str(_bin()), "check-config", str(bad)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "heartbeat_second" in r.stderr, r


# Every section `Config` knows (crates/mailroom/src/config.rs TOP_LEVEL, minus the two
# top-level keys).
SECTIONS = ["smtp", "http", "tls", "storage", "node", "log", "delivery", "dns", "limits",
            "events", "webhooks", "domains", "arc", "managed_domain", "tracking", "content",
            "intake", "health", "secrets", "console", "shaping", "egress"]


def test_example_config_has_every_section_commented():
    source = (REPO_ROOT / "crates/mailroom/src/config.rs").read_text()
    top = re.search(r"const TOP_LEVEL: (?:\[&str; \d+\]|&\[&str\]) = &?\[(.*?)\];", source, re.S)
    assert top, "TOP_LEVEL not found in config.rs"
    known = re.findall(r'"([a-z_]+)"', top.group(1))
    assert sorted(known) == sorted(SECTIONS + ["data_dir", "hostname"])
    lines = (DEPLOY / "mailroom.toml").read_text().splitlines()
    for name in SECTIONS:
        idx = lines.index(f"[{name}]") if f"[{name}]" in lines else None
        assert idx is not None, f"deploy/mailroom.toml has no [{name}] section"
        assert lines[idx - 1].startswith("# "), f"[{name}] has no comment above it"


def _dockerfile() -> list[tuple[str, str]]:
    """Instructions as (KEYWORD, arguments), continuation lines joined."""
    out, buf = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def test_dockerfile_structure():
    """Structure only: docker cannot build or run in this CI."""
    ins = _dockerfile()
    froms = [a for k, a in ins if k == "FROM"]
    assert len(froms) >= 2 and " AS build" in froms[0], froms
    last_stage = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    final = ins[last_stage:]
    copies = [a for k, a in final if k == "COPY"]
    assert any(a.startswith("--from=build ") and "mailroom" in a for a in copies), copies
    users = [a for k, a in final if k == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
    volumes = " ".join(a for k, a in final if k == "VOLUME")
    assert "/var/lib/mailroom" in volumes
    entry = [a for k, a in final if k == "ENTRYPOINT"]
    assert entry and "mailroom" in entry[-1]
    assert [a for k, a in final if k == "CMD"][-1] == '["serve"]'
    # The runtime stage has no compiler: only the build stage runs cargo.
    assert all("cargo" not in a for k, a in final if k == "RUN")
    assert any("cargo build --release" in a for k, a in ins[:last_stage] if k == "RUN")
    exposed = {int(p) for k, a in final if k == "EXPOSE" for p in a.split()}
    assert exposed and all(p >= 1024 for p in exposed), exposed


def test_dockerfile_environment_is_a_valid_configuration():
    """The image's ENV (listeners on 0.0.0.0 at unprivileged ports, the volume as
    data_dir) on top of the example file still passes check-config."""
    env_text = " ".join(a for k, a in _dockerfile() if k == "ENV")
    pairs = dict(re.findall(r"""(MAILROOM_[A-Z_]+)=('[^']*'|"[^"]*"|\S+)""", env_text))
    pairs = {k: v.strip("'\"") if v[0] in "'\"" and v[-1] == v[0] else v for k, v in pairs.items()}
    assert pairs["MAILROOM_DATA_DIR"] == "/var/lib/mailroom"
    assert pairs["MAILROOM_HTTP__LISTEN"].startswith("0.0.0.0:")
    pairs.pop("MAILROOM_CONFIG")
    r = _check_config(pairs)
    assert r.returncode == 0 and r.stderr.strip() == "", (pairs, r.stderr)


def _compose(name: str) -> dict:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), name
    return doc


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def _builds_this_image(service: dict):
    b = service["build"]
    assert (DEPLOY / b["context"] / b["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()


def test_compose_one_node():
    doc = _compose("compose.yaml")
    assert list(doc["services"]) == ["mailroom"]
    node = doc["services"]["mailroom"]
    _builds_this_image(node)
    assert _env(node).get("MAILROOM_STORAGE__BACKEND", "sqlite") == "sqlite"
    vols = node["volumes"]
    assert any(v.endswith(":/var/lib/mailroom") and v.split(":")[0] in doc["volumes"]
               for v in vols), vols
    targets = {str(p).rsplit(":", 1)[-1] for p in node["ports"]}
    assert {"2587", "2465", "8080"} <= targets, node["ports"]


def test_compose_three_nodes_on_postgres():
    doc = _compose("compose-3-nodes.yaml")
    services = doc["services"]
    pg = services["postgres"]
    assert str(pg["image"]).startswith("postgres:")
    assert "healthcheck" in pg
    nodes = {n: s for n, s in services.items() if n != "postgres"}
    assert len(nodes) == 3, list(nodes)
    ids, volumes, host_ports = set(), set(), []
    keys = set()
    for name, s in nodes.items():
        _builds_this_image(s)
        env = _env(s)
        assert env["MAILROOM_STORAGE__BACKEND"] == "postgres", name
        assert env["MAILROOM_STORAGE__URL"].startswith("postgres://"), name
        assert "@postgres:5432/" in env["MAILROOM_STORAGE__URL"], name
        keys.add(env["MAILROOM_SECRETS__KEY"])
        ids.add(env["MAILROOM_NODE__ID"])
        assert s["depends_on"]["postgres"]["condition"] == "service_healthy", name
        (vol,) = [v for v in s["volumes"] if v.endswith(":/var/lib/mailroom")]
        volumes.add(vol.split(":")[0])
        host_ports += [str(p).rsplit(":", 1)[0] for p in s["ports"]]
    assert len(ids) == 3, ids
    assert len(volumes) == 3 and volumes <= set(doc["volumes"]), volumes
    assert len(keys) == 1, "every node must share the secrets key"
    assert len(host_ports) == len(set(host_ports)), f"a host port published twice: {host_ports}"
