"""Third-party scanners and clients against a real `mailroom serve` (Debian packages,
installed by scripts/install-test-deps.sh; each test skips with the reason if its tool
is missing):

- nmap's NSE scripts smtp-open-relay (its 16 relay tricks), smtp-commands and
  smtp-enum-users (VRFY, EXPN, RCPT) against the submission port: no open relay, no
  user enumeration. Judged on nmap's result lines only (`script_result`), never on the
  echoed command line. smtp-open-relay cannot authenticate, so it runs twice: from an
  address on no allowlist (stopped at MAIL: 530), and against a second server where
  127.0.0.1 is allowlisted, so every trick reaches the relay logic and must fail.
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

from mailroom_harness import assert_message_queued, start_server

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


def _nmap(port: int, relay_domain: str) -> str:
    # -sV --version-light: the NSE smtp scripts only run on a port nmap knows to be
    # SMTP; with a random port that takes version detection (the 220 banner suffices).
    # -d: smtp-open-relay lists each combination it got through, not only the count.
    return _run([
        "nmap", "-n", "-Pn", "-sT", "-sV", "--version-light", "-d", "-p", str(port),
        "--host-timeout", f"{NMAP_TIMEOUT - 10}s",
        "--script", "smtp-open-relay,smtp-commands,smtp-enum-users",
        "--script-args",
        f"smtp.domain=client.test,smtp-open-relay.domain={relay_domain},"
        "smtp-open-relay.ip=127.0.0.1,smtp-enum-users.methods={VRFY,EXPN,RCPT}",
        "127.0.0.1",
    ], NMAP_TIMEOUT)


def script_result(report: str, script: str) -> str:
    """The result block nmap printed for `script`: its "| name: ..." line and the "|"
    lines under it up to the closing "|_" line. Only nmap's result lines count - the
    echoed command line (which names every script) and the debug log do not."""
    lines = report.splitlines()
    for i, line in enumerate(lines):
        m = re.match(rf"^\|(_?)\s?{re.escape(script)}:", line)
        if not m:
            continue
        block = [line]
        if m.group(1):  # "|_name: ..." is a one-line block
            return line
        for nxt in lines[i + 1:]:
            if not nxt.startswith("|"):
                break
            block.append(nxt)
            if nxt.startswith("|_"):
                break
        return "\n".join(block)
    return ""


@pytest.fixture(scope="module")
def nmap_report(server, tenant) -> str:
    """nmap from an address on no allowlist, without credentials."""
    _need("nmap")
    return _nmap(server.submission_port, tenant.domain)


@pytest.fixture(scope="module")
def nmap_allowlisted_report(tmp_path_factory) -> str:
    """nmap from an allowlisted address: its own server, where 127.0.0.1 is on a
    tenant's allowlist without TLS, so MAIL is accepted and every trick reaches the
    relay logic (smtp-open-relay cannot authenticate; the allowlist is how a client
    is authorized without AUTH). The tricks' target domain is foreign (example.net)."""
    _need("nmap")
    # The script runs all 16 tricks in one session; each refusal counts toward
    # smtp.max_errors (10), after which the session is closed (421) and nmap reports
    # the broken connection instead of its verdict. Raised here so it can finish.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAILROOM_SMTP__MAX_ERRORS", "40")
        srv = start_server(tmp_path_factory.mktemp("nmap-allowlisted"),
                           extra_config="[delivery]\nenabled = false")
    try:
        t = srv.create_tenant("nmap", domain="acme.test", credential=False)
        r = srv.api("PUT", f"/v1/tenants/{t.id}/allowed-ips",
                    {"cidrs": ["127.0.0.1/32"], "require_tls": False})
        assert r.status == 200, r
        # The allowlist really authorizes this address: a plain message is accepted.
        with srv.smtp() as c:
            c.ehlo()
            assert c.mail("app@acme.test")[0] == 250
            assert c.rcpt("someone@example.net")[0] == 250
            c.rset()
        report = _nmap(srv.submission_port, "example.net")
        report += "\n--- server log tail ---\n" + srv.log_tail(40)
        return report
    finally:
        srv.stop()


def test_nmap_finds_no_open_relay(nmap_report):
    block = script_result(nmap_report, "smtp-open-relay")
    assert block, f"smtp-open-relay printed no result:\n{nmap_report}"
    assert "is an open relay" not in block, nmap_report
    # Without AUTH the script stops at MAIL FROM (530): "isn't an open relay,
    # authentication needed".
    assert "Server isn't an open relay, authentication needed" in block, nmap_report


def test_nmap_allowlisted_finds_no_open_relay(nmap_allowlisted_report):
    """From an allowlisted address MAIL is accepted, so the script runs its 16 tricks
    (null sender, foreign and server-named senders, address literals, `%`, `!`,
    quoted and source-routed recipients) against the relay logic, in one session.
    Every one must fail: "doesn't seem to be an open relay, all tests failed"."""
    report = nmap_allowlisted_report
    block = script_result(report, "smtp-open-relay")
    assert block, f"smtp-open-relay printed no result:\n{report}"
    assert "authentication needed" not in block, f"the allowlist did not apply:\n{report}"
    assert "is an open relay" not in block, report
    assert "Server doesn't seem to be an open relay, all tests failed" in block, report


def test_nmap_lists_commands(nmap_report):
    """smtp-commands: EHLO works and AUTH is not offered before TLS."""
    block = script_result(nmap_report, "smtp-commands")
    assert block, f"no smtp-commands output:\n{nmap_report}"
    assert "STARTTLS" in block, nmap_report
    assert "PIPELINING" in block, nmap_report
    assert "AUTH" not in block, f"AUTH offered in the clear:\n{nmap_report}"


ENUM_USERS = ("root", "admin", "administrator", "webadmin", "sysadmin", "netadmin",
              "guest", "user", "web", "test")


def listed_users(block: str) -> list[str]:
    """The user names smtp-enum-users lists, one per line ("|   root", or with its
    method: "|_  RCPT, root")."""
    users = []
    for line in block.splitlines()[1:]:
        m = re.match(r"^\|_?\s+(?:(?:VRFY|EXPN|RCPT),\s*)?([\w.-]+)\s*$", line)
        if m:
            users.append(m.group(1))
    return users


def test_enum_users_parser_sees_listed_users():
    """The check below is not vacuous: a block that lists users is read as such."""
    found = ("| smtp-enum-users: \n|   RCPT, root\n|   admin\n|_  RCPT, test")
    assert listed_users(found) == ["root", "admin", "test"]
    assert listed_users(script_result(found + "\nService Info: x", "smtp-enum-users")) \
        == ["root", "admin", "test"]
    assert listed_users("|_smtp-enum-users: Method RCPT returned a unhandled status code.") == []


def test_nmap_cannot_enumerate_users(nmap_report):
    block = script_result(nmap_report, "smtp-enum-users")
    assert block, f"smtp-enum-users did not run:\n{nmap_report}"
    users = listed_users(block)
    assert not users, f"users enumerated: {users}\n{nmap_report}"
    # And it says why, in one of its two verdicts for a server that gives nothing away
    # (which one depends on the order it tries its methods in, which varies): VRFY
    # answers 252 for anyone and EXPN 502 ("Couldn't find any accounts"), RCPT needs
    # AUTH first ("... authentication needed").
    assert re.search(r"^\|_?\s+(Couldn't find any accounts|"
                     r"Couldn't perform user enumeration, authentication needed)\s*$",
                     block, re.M), block
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
