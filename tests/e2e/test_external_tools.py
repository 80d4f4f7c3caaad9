"""Third-party scanners and clients against a real `mailroom serve` (Debian packages,
installed by scripts/install-test-deps.sh; each test skips with the reason if its tool
is missing):

- nmap's NSE scripts smtp-open-relay (its 16 relay tricks), smtp-commands and
  smtp-enum-users (VRFY, EXPN, RCPT) against the submission port: no open relay, no
  user enumeration.
- testssl against the implicit-TLS port, judged on its JSON findings: nothing rated
  HIGH or CRITICAL except the two findings a generated self-signed certificate always
  has (see CERT_EXPECTED). Checks run (testssl 3.0, `--fast`): protocols (-p), server
  defaults / certificate (-S), server preference (-P), forward secrecy (-f) and the
  vulnerability checks (-U: Heartbleed, CCS, Ticketbleed, ROBOT, renegotiation, CRIME,
  POODLE, fallback SCSV, SWEET32, FREAK, DROWN, LOGJAM, BEAST, LUCKY13, RC4). Not run:
  the per-cipher listing (-E), client simulation (-c) and HTTP header checks (not
  HTTP). Bounded by timeouts per connection and a hard 240 s limit.
- swaks transcripts for what test_submission.py does not already cover (it has
  STARTTLS+AUTH and implicit TLS submission): refusal without AUTH, a wrong password,
  AUTH LOGIN over implicit TLS.

Only 127.0.0.1 is scanned.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from mailroom_harness import assert_message_queued

NMAP_TIMEOUT = 120
TESTSSL_TIMEOUT = 240

# testssl finding ids that a self-signed, generated certificate always produces; they
# say "nobody vouches for this certificate", not "the TLS setup is weak". Production
# deployments configure tls.cert_file/tls.key_file with a CA-issued chain.
CERT_EXPECTED = {
    # Rated CRITICAL ("failed (self signed)").
    "cert_chain_of_trust": "the generated certificate is self-signed (no CA chain)",
    # Rated HIGH. Only a CA publishes CRLs or runs an OCSP responder; a self-signed
    # certificate has neither by construction.
    "cert_revocation": "a self-signed certificate has no CA to publish revocation",
}


def _need(tool: str):
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed (run scripts/install-test-deps.sh)")


def _run(args: list[str], timeout: float) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return f"$ {' '.join(args)}\n(exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}"


# --------------------------------------------------------------------------------------
# nmap
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nmap_report(server, tenant) -> str:
    _need("nmap")
    port = server.submission_port
    # -sV --version-light: the NSE smtp scripts only run on a port nmap knows to be
    # SMTP; with a random port that takes version detection (the 220 banner suffices).
    return _run([
        "nmap", "-n", "-Pn", "-sT", "-sV", "--version-light", "-p", str(port),
        "--host-timeout", f"{NMAP_TIMEOUT - 10}s",
        "--script", "smtp-open-relay,smtp-commands,smtp-enum-users",
        "--script-args",
        f"smtp.domain=client.test,smtp-open-relay.domain={tenant.domain},"
        "smtp-open-relay.ip=127.0.0.1,smtp-enum-users.methods={VRFY,EXPN,RCPT}",
        "127.0.0.1",
    ], NMAP_TIMEOUT)


def test_nmap_finds_no_open_relay(nmap_report):
    assert "smtp-open-relay" in nmap_report, f"the script did not run:\n{nmap_report}"
    assert not re.search(r"Server is an open relay", nmap_report), nmap_report
    # Without AUTH the script stops at MAIL FROM (530): "isn't an open relay,
    # authentication needed". Were MAIL ever accepted, it would try its 16 tricks and
    # say "doesn't seem to be an open relay" only if all of them failed.
    assert re.search(r"smtp-open-relay: Server (isn't an open relay|doesn't seem to be an open relay)",
                     nmap_report), nmap_report


def test_nmap_lists_commands(nmap_report):
    """smtp-commands: EHLO works and AUTH is not offered before TLS."""
    m = re.search(r"smtp-commands:(.*?)(\n\|_|\n\S)", nmap_report, re.S)
    assert m, f"no smtp-commands output:\n{nmap_report}"
    assert "STARTTLS" in m.group(1), nmap_report
    assert "AUTH" not in m.group(1), f"AUTH offered in the clear:\n{nmap_report}"


def test_nmap_cannot_enumerate_users(nmap_report):
    m = re.search(r"smtp-enum-users:(.*?)(\n\|_.*?\n|\n\S)", nmap_report, re.S)
    assert m, f"smtp-enum-users did not run:\n{nmap_report}"
    out = m.group(0)
    # When it finds users it lists them one per line (e.g. "|   root"); otherwise it
    # says why it could not enumerate.
    assert re.search(r"(Couldn't|couldn't|not|failed|unhandled|authentication)", out, re.I), \
        f"smtp-enum-users may have enumerated users:\n{nmap_report}"
    for user in ("root", "admin", "administrator", "webadmin", "sysadmin", "netadmin",
                 "guest", "user", "web", "test"):
        assert not re.search(rf"^\|\s+{user}\s*$", out, re.M), \
            f"user {user!r} enumerated:\n{nmap_report}"


# --------------------------------------------------------------------------------------
# testssl
# --------------------------------------------------------------------------------------


def test_testssl_implicit_tls_has_no_high_or_critical_finding(server, tmp_path):
    _need("testssl")
    port = server.implicit_tls_port
    out = tmp_path / "testssl.json"
    log = _run([
        "testssl", "--quiet", "--color", "0", "--warnings", "off", "--fast", "--sneaky",
        "--connect-timeout", "5", "--openssl-timeout", "5",
        "-p", "-S", "-P", "-f", "-U",
        "--jsonfile", str(out), f"127.0.0.1:{port}",
    ], TESTSSL_TIMEOUT)
    assert out.exists(), f"testssl wrote no JSON:\n{log[-4000:]}"
    findings = json.loads(out.read_text())
    assert len(findings) > 20, f"too few findings, did the scan run?\n{log[-4000:]}"
    ids = {f.get("id") for f in findings}
    for must in ("SSLv3", "TLS1", "TLS1_2", "heartbleed", "ROBOT"):
        assert must in ids, f"check {must} missing from the scan\n{log[-4000:]}"
    bad = [f for f in findings
           if f.get("severity") in ("HIGH", "CRITICAL") and f.get("id") not in CERT_EXPECTED]
    assert not bad, "HIGH/CRITICAL findings:\n" + "\n".join(
        f"{f.get('id')}: {f.get('severity')}: {f.get('finding')}" for f in bad)
    # The old protocols are off.
    by_id = {f["id"]: f for f in findings if "id" in f}
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert "not offered" in by_id[proto]["finding"], by_id[proto]


# --------------------------------------------------------------------------------------
# swaks
# --------------------------------------------------------------------------------------


def _swaks(args: list[str]) -> tuple[int, str]:
    _need("swaks")
    proc = subprocess.run(["swaks", "--ehlo", "client.test", "--timeout", "30", *args],
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("tls", [[], ["--tls"]], ids=["plain", "starttls"])
def test_swaks_without_auth_is_refused(server, tenant, tls):
    code, out = _swaks(["--server", f"127.0.0.1:{server.submission_port}", *tls,
                        "--from", tenant.sender, "--to", "victim@example.net"])
    assert code != 0, out
    assert re.search(r"<[~*]\*\s+530 5\.7\.0", out), f"no 530 5.7.0 to MAIL:\n{out}"
    assert "queued as" not in out, out


def test_swaks_wrong_password_is_refused(server, tenant):
    code, out = _swaks(["--server", f"127.0.0.1:{server.submission_port}", "--tls",
                        "--auth", "PLAIN", "--auth-user", tenant.username,
                        "--auth-password", "wrong-" + tenant.password,
                        "--from", tenant.sender, "--to", "victim@example.net"])
    assert code != 0, out
    assert re.search(r"<[~*]\*\s+535 5\.7\.8", out), f"no 535 5.7.8:\n{out}"
    assert "queued as" not in out, out


def test_swaks_auth_login_implicit_tls(server, tenant):
    rcpt = "swaks-login@example.net"
    code, out = _swaks(["--server", f"127.0.0.1:{server.implicit_tls_port}",
                        "--tls-on-connect", "--auth", "LOGIN",
                        "--auth-user", tenant.username, "--auth-password", tenant.password,
                        "--from", tenant.sender, "--to", rcpt,
                        "--header", f"From: <{tenant.sender}>", "--header", "Subject: login"])
    assert code == 0, out
    m = re.search(r"<[~-]\s+250 2\.0\.0 Ok: queued as ([0-9A-Za-z]{26})\b", out)
    assert m, out
    assert_message_queued(server, m.group(1), tenant=tenant, rcpts=[rcpt])
