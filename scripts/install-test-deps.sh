#!/usr/bin/env bash
# Installs what the Python suites (tests/e2e, tests/auth) need: the swaks SMTP client,
# clamd (ClamAV's daemon), pytest, and dkimpy/pyspf for the independent DKIM/ARC/SPF
# checks; nmap and testssl for tests/e2e/test_external_tools.py; cargo-fuzz for scripts/fuzz;
# a running PostgreSQL for the store's conformance suite and the multi-node tests.
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

# Debian packages: swaks (SMTP client for transcripts) and promtool (from the
# prometheus package; it checks the /metrics output). Only promtool is taken from
# prometheus: --no-install-recommends, and nothing starts the server.
missing=()
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
# swaks needs these for --tls and AUTH (Debian lists them only as recommendations).
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
perl -MAuthen::SASL -e1 >/dev/null 2>&1 || missing+=(libauthen-sasl-perl)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Scanners for tests/e2e/test_external_tools.py (nmap's NSE smtp scripts, testssl).
command -v nmap >/dev/null 2>&1 || missing+=(nmap)
command -v testssl >/dev/null 2>&1 || missing+=(testssl.sh)
# Clients for tests/e2e/test_tls_trust.py (the README's ways to trust the generated
# certificate): curl --cacert and Node's NODE_EXTRA_CA_CERTS; curl also uploads an
# LF-only file over SMTP in tests/e2e/test_lf_only.py.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
# clamd for the content-protection e2e test (it starts its own daemon on a tiny test
# signature database; nothing downloads signatures and no service is enabled).
command -v clamd >/dev/null 2>&1 || missing+=(clamav-daemon)
# Debian's headless Chromium and its WebDriver for the console's browser suite
# (tests/e2e/test_console.py, driven through Python selenium).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# pebble, Let's Encrypt's ACME test CA, for tests/e2e/test_acme.py (run on loopback by the
# test itself, with its own configuration and certificate).
command -v pebble >/dev/null 2>&1 || missing+=(pebble)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-test-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# PostgreSQL for the store's conformance suite (every store test runs on SQLite and on
# PostgreSQL) and the multi-node e2e tests. They connect to MAILROOM_TEST_PG_URL (default
# postgres://postgres@127.0.0.1:5432/postgres) and create and drop their own databases.
# On a machine without a server this installs Debian's, starts it, and lets the local
# `postgres` role in over 127.0.0.1 without a password (a test machine only); a server
# that is installed but stopped is started.
pg_url="${MAILROOM_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_ok() { psql "$pg_url" -qAtc 'SELECT 1' >/dev/null 2>&1; }
if ! pg_ok; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "install-test-deps: installing postgresql" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql postgresql-client
        fresh_pg=1
    fi
    pg_version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    if [ "${fresh_pg:-0}" = 1 ]; then
        hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
        as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start 2>/dev/null \
        || as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload 2>/dev/null || true
    for _ in $(seq 1 30); do pg_ok && break; sleep 1; done
    if ! pg_ok; then
        echo "install-test-deps: PostgreSQL is not reachable at $pg_url; start it or set MAILROOM_TEST_PG_URL" >&2
        exit 1
    fi
fi

if ! "$python" -c 'import pytest, dkim, nacl, spf, dns.resolver, cryptography, psycopg, selenium, schemathesis, jsonschema' >/dev/null 2>&1; then
    echo "install-test-deps: installing Python test requirements" >&2
    "$python" -m pip install -q -r "$repo_root/requirements-dev.txt"
fi

# cargo-fuzz (scripts/fuzz), from crates.io with its locked dependencies.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "install-test-deps: installing cargo-fuzz" >&2
    cargo install -q cargo-fuzz --locked
fi

echo "install-test-deps: PostgreSQL reachable at ${pg_url}" >&2
echo "install-test-deps: nmap $(command -v nmap), testssl $(command -v testssl), cargo-fuzz $(command -v cargo-fuzz)" >&2
echo "install-test-deps: swaks $(command -v swaks), promtool $(command -v promtool), pytest $("$python" -c 'import pytest; print(pytest.__version__)')" >&2
