"""The CI rule of tests/conftest.py, run for real: a throwaway suite with one passing
test, one that skips in its body, one that skips in a fixture and one module that skips
at import, run by a child pytest with and without CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

SUITE = {
    "test_a.py": """
import pytest

@pytest.fixture
def tool():
    pytest.skip("frobnicator is not installed")

def test_passes():
    assert True

def test_skips_in_body():
    pytest.skip("nmap is not installed")

def test_skips_in_fixture(tool):
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
""",
    "test_b.py": """
import pytest
pytest.skip("whole module needs root", allow_module_level=True)

def test_never():
    pass
""",
}


def run_suite(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_skips_stay_skips_outside_ci(tmp_path):
    proc = run_suite(tmp_path, None)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 3 skipped, 1 xfailed" in out, out
    assert "nmap is not installed" in out, out  # -rs shows the reason


@pytest.mark.parametrize("ci", ["true", "1"])
def test_every_skip_fails_under_ci(tmp_path, ci):
    proc = run_suite(tmp_path, ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # The skip in a body is a failure, the one in a fixture an error (setup failed), the
    # skipped module fails the run's exit status; an xfail is not a skip.
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in out, out
    assert "modules skipped under CI=true" in out, out
    for reason in ("nmap is not installed", "frobnicator is not installed",
                   "whole module needs root"):
        assert reason in out, f"{reason!r} not in the CI failure report:\n{out}"
    assert "counts as a failure" in out, out
