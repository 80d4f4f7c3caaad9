"""The README's first-start sample is what `mailroom serve` really prints: a fresh data
directory, the embedded defaults except for ports chosen at run time, stdout and stderr
in one stream as a terminal shows them. Tokens, times and ports are normalised; every
other character must match, so a changed start-up line fails here until the README
says it too."""

from __future__ import annotations

import re
import signal
import subprocess
import time

from mailroom_harness import REPO_ROOT, mailroom_bin

STARTED = "mailroom started"


def normalise(line: str) -> str:
    line = re.sub(r"mro_\S+", "mro_…", line)
    line = re.sub(r'key_id="[0-9a-f]+"', 'key_id="…"', line)
    line = re.sub(r"node_id=\S+", "node_id=…", line)
    line = re.sub(r"^\d{4}-\d\d-\d\dT[0-9:.]+Z|^\d{4}-…Z", "<time>", line)
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", line).rstrip()


def readme_sample() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    after = text.split("First start warns", 1)[1]
    block = after.split("```", 2)[1]
    return [normalise(line) for line in block.splitlines()[1:] if line.strip()]


def test_readme_first_start_sample_matches_the_output(tmp_path):
    (tmp_path / "mailroom.toml").write_text(
        'data_dir = "./mailroom-data"\n'
        '[smtp]\nsubmission_listen = ["127.0.0.1:0"]\nimplicit_tls_listen = ["127.0.0.1:0"]\n'
        '[http]\nlisten = "127.0.0.1:0"\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.Popen([str(mailroom_bin()), "serve", "--config", "mailroom.toml"],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 20
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if STARTED in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert any(STARTED in line for line in lines), lines
    assert [normalise(line) for line in lines] == readme_sample(), "\n".join(lines)
