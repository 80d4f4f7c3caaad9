#!/usr/bin/env bash
# Installs what the Python suites (tests/e2e, tests/auth) need: the swaks SMTP client,
# pytest, and dkimpy/pyspf for the independent DKIM/ARC/SPF checks.
# Idempotent and fast when everything is already there.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

if ! command -v swaks >/dev/null 2>&1; then
    echo "install-test-deps: installing swaks" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q swaks
fi

if ! "$python" -c 'import pytest, dkim, nacl, spf, dns.resolver' >/dev/null 2>&1; then
    echo "install-test-deps: installing Python test requirements" >&2
    "$python" -m pip install -q -r "$repo_root/requirements-dev.txt"
fi

echo "install-test-deps: swaks $(command -v swaks), pytest $("$python" -c 'import pytest; print(pytest.__version__)')" >&2
