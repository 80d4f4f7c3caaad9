"""SMTP submission with real clients: smtplib, swaks and raw sockets."""

from __future__ import annotations

import base64
import re
import shutil
import smtplib
import subprocess

import pytest

from mailroom_harness import (
    HOSTNAME,
    MAX_MESSAGE_SIZE,
    MAX_RECIPIENTS,
    assert_message_queued,
    assert_queued,
    assert_reply,
    make_message,
    submit,
)


def _features(client: smtplib.SMTP) -> dict:
    return {k.lower(): v for k, v in client.esmtp_features.items()}


def _auth_mechs(client: smtplib.SMTP) -> set[str]:
    return set(_features(client).get("auth", "").upper().split())


# --------------------------------------------------------------------------------------
# Greeting and EHLO
# --------------------------------------------------------------------------------------


def test_greeting_is_220_with_hostname(server):
    with server.raw() as c:
        code, text = c.greeting
        assert code == 220, c.greeting
        # RFC 5321 4.3.1: the greeting starts with the server's domain.
        assert text.split(b"\n")[0].split(b" ")[0] == HOSTNAME.encode(), c.greeting
        assert_reply(c.cmd("QUIT"), 221, "2.0.0", what="QUIT")


def test_ehlo_capabilities_before_tls(server):
    client = server.smtp()
    try:
        code, _ = client.ehlo()
        assert code == 250
        feats = _features(client)
        for kw in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes",
                   "chunking", "dsn", "starttls", "size"):
            assert kw in feats, f"EHLO before TLS lacks {kw.upper()}: {client.ehlo_resp!r}"
        assert feats["size"].strip() == str(MAX_MESSAGE_SIZE), client.ehlo_resp
        assert "auth" not in feats, f"AUTH advertised before TLS: {client.ehlo_resp!r}"
    finally:
        client.close()


def test_ehlo_capabilities_after_starttls(server):
    client = server.smtp_starttls()
    try:
        feats = _features(client)
        for kw in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes",
                   "chunking", "dsn", "size"):
            assert kw in feats, f"EHLO after STARTTLS lacks {kw.upper()}: {client.ehlo_resp!r}"
        assert "starttls" not in feats, f"STARTTLS advertised inside TLS: {client.ehlo_resp!r}"
        assert {"PLAIN", "LOGIN"} <= _auth_mechs(client), client.ehlo_resp
    finally:
        client.close()


def test_ehlo_capabilities_implicit_tls(server):
    client = server.smtp_ssl()
    try:
        feats = _features(client)
        assert "starttls" not in feats, client.ehlo_resp
        assert {"PLAIN", "LOGIN"} <= _auth_mechs(client), client.ehlo_resp
        assert feats.get("size", "").strip() == str(MAX_MESSAGE_SIZE), client.ehlo_resp
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# Happy paths
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mechanism,initial_response",
    [("PLAIN", True), ("PLAIN", False), ("LOGIN", True), ("LOGIN", False)],
    ids=["plain-initial", "plain-challenge", "login-initial", "login-challenge"],
)
def test_starttls_auth_submit(server, tenant, mechanism, initial_response):
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client, mechanism, initial_response), 235, "2.7.0",
                     what=f"AUTH {mechanism}")
        rcpts = ["alice@example.net", "bob@example.org"]
        reply = submit(client, tenant.sender, rcpts, make_message(tenant.sender, rcpts))
        msg_id = assert_queued(reply)
        assert reply[1].startswith(b"2.0.0 Ok: queued as "), reply
        assert_message_queued(server, msg_id, tenant=tenant, mail_from=tenant.sender,
                              rcpts=rcpts)
        assert_reply(client.docmd("QUIT"), 221, "2.0.0", what="QUIT")
    finally:
        client.close()


def test_implicit_tls_submit(server, tenant):
    client = server.smtp_ssl()
    try:
        assert_reply(tenant.login(client, "PLAIN"), 235, "2.7.0", what="AUTH PLAIN")
        rcpts = ["carol@example.net"]
        msg_id = assert_queued(submit(client, tenant.sender, rcpts,
                                      make_message(tenant.sender, rcpts)))
        assert_message_queued(server, msg_id, tenant=tenant, mail_from=tenant.sender,
                              rcpts=rcpts)
    finally:
        client.close()


def test_several_messages_in_one_session(server, tenant):
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        ids = set()
        for i in range(3):
            rcpts = [f"multi{i}@example.net"]
            ids.add(assert_queued(submit(client, tenant.sender, rcpts,
                                         make_message(tenant.sender, rcpts, subject=f"#{i}"))))
        assert len(ids) == 3, f"queue ids are not unique: {ids}"
        for msg_id in ids:
            assert_message_queued(server, msg_id, tenant=tenant)
    finally:
        client.close()


def test_utf8_and_8bit_submission(server, tenant):
    """SMTPUTF8 + 8BITMIME are advertised: an internationalised local part is accepted."""
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        rcpt = "jürgen@example.net"
        assert_reply(client.mail(tenant.sender, ["SMTPUTF8", "BODY=8BITMIME"]), 250, "2.1.0",
                     what="MAIL SMTPUTF8")
        assert_reply(client.rcpt(rcpt), 250, "2.1.5", what="RCPT utf8")
        msg = make_message(tenant.sender, [rcpt], subject="Grüße",
                           body="Grüße aus Köln\r\n")
        msg_id = assert_queued(client.data(msg))
        assert_message_queued(server, msg_id, tenant=tenant, rcpts=[rcpt])
    finally:
        client.close()


def _swaks(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    if not shutil.which("swaks"):
        pytest.skip("swaks is not installed (run scripts/install-test-deps.sh)")
    return subprocess.run(["swaks", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("mode", ["starttls", "tls-on-connect"])
def test_swaks_submit(server, tenant, mode):
    if mode == "starttls":
        port, tls = server.submission_port, ["--tls"]
    else:
        port, tls = server.implicit_tls_port, ["--tls-on-connect"]
    rcpt = f"swaks-{mode}@example.net"
    proc = _swaks([
        "--server", f"127.0.0.1:{port}", *tls,
        "--auth", "PLAIN", "--auth-user", tenant.username, "--auth-password", tenant.password,
        "--from", tenant.sender, "--to", rcpt,
        "--header", f"From: <{tenant.sender}>",
        "--header", f"Subject: swaks {mode}",
        "--ehlo", "client.test", "--timeout", "30",
    ])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"swaks exited {proc.returncode}:\n{out}"
    m = re.search(r"<[~-]\s+250 2\.0\.0 Ok: queued as ([0-9A-Za-z]{26})\b", out)
    assert m, f"no '250 2.0.0 Ok: queued as <ID>' in swaks output:\n{out}"
    assert_message_queued(server, m.group(1), tenant=tenant, mail_from=tenant.sender,
                          rcpts=[rcpt])


# --------------------------------------------------------------------------------------
# Authentication failures
# --------------------------------------------------------------------------------------


def test_auth_before_starttls_refused(server, tenant):
    client = server.smtp()
    try:
        client.ehlo()
        token = base64.b64encode(f"\0{tenant.username}\0{tenant.password}".encode()).decode()
        code, text = client.docmd("AUTH", f"PLAIN {token}")
        assert 500 <= code < 600, f"AUTH before TLS must be refused with 5xx, got {code} {text!r}"
        assert code != 235
        assert code in (538, 503, 530, 504), f"unexpected code for AUTH before TLS: {code} {text!r}"
        if code == 538:
            assert text.startswith(b"5.7.11"), (code, text)
        # Still unauthenticated: a transaction is refused.
        assert_reply(client.mail(tenant.sender), 530, "5.7.0", what="MAIL after refused AUTH")
    finally:
        client.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_wrong_password_535(server, tenant, mechanism):
    client = server.smtp_starttls()
    try:
        client.user, client.password = tenant.username, tenant.password + "x"
        method = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}[mechanism]
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            client.auth(mechanism, method)
        assert_reply((exc.value.smtp_code, exc.value.smtp_error), 535, "5.7.8",
                     what=f"AUTH {mechanism} wrong password")
        assert_reply(client.mail(tenant.sender), 530, "5.7.0", what="MAIL after failed AUTH")
    finally:
        client.close()


def test_unknown_user_535(server, tenant):
    client = server.smtp_starttls()
    try:
        client.user, client.password = "no-such-user-" + tenant.username, tenant.password
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            client.auth("PLAIN", client.auth_plain)
        assert_reply((exc.value.smtp_code, exc.value.smtp_error), 535, "5.7.8",
                     what="AUTH unknown user")
    finally:
        client.close()


def test_revoked_credential_535(server, tenant):
    cred = tenant.new_credential()

    def login(c):
        c.user, c.password = cred["username"], cred["password"]
        return c.auth("PLAIN", c.auth_plain)

    client = server.smtp_starttls()
    try:
        assert_reply(login(client), 235, "2.7.0", what="AUTH with fresh credential")
    finally:
        client.close()

    r = server.api("DELETE", f"/v1/tenants/{tenant.id}/smtp-credentials/{cred['id']}")
    assert r.status == 204, f"DELETE credential: {r}"

    client = server.smtp_starttls()
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            login(client)
        assert_reply((exc.value.smtp_code, exc.value.smtp_error), 535, "5.7.8",
                     what="AUTH with revoked credential")
    finally:
        client.close()

    # The tenant's other credential still works.
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH with remaining credential")
    finally:
        client.close()


def test_unauthenticated_mail_530(server, tenant):
    # Plain session, and a TLS session without AUTH: both must be refused at MAIL.
    client = server.smtp()
    try:
        client.ehlo()
        assert_reply(client.mail(tenant.sender), 530, "5.7.0", what="MAIL without TLS/AUTH")
    finally:
        client.close()
    client = server.smtp_starttls()
    try:
        assert_reply(client.mail(tenant.sender), 530, "5.7.0", what="MAIL with TLS, no AUTH")
        code, text = client.rcpt("someone@example.net")
        assert code != 250 and code >= 500, f"RCPT after refused MAIL: {code} {text!r}"
        code, text = client.docmd("DATA")
        assert code != 354 and code >= 500, f"DATA after refused MAIL: {code} {text!r}"
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# Sender authorization
# --------------------------------------------------------------------------------------


def test_foreign_envelope_domain_550(server, tenant, other_tenant):
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        assert_reply(client.mail("sender@other.test"), 550, "5.7.1",
                     what="MAIL FROM unverified domain")
        client.rset()
        # Another tenant's verified domain is just as foreign.
        assert_reply(client.mail(other_tenant.sender), 550, "5.7.1",
                     what="MAIL FROM another tenant's domain")
        # Look-alikes that a suffix match would let through (README: a subdomain of a
        # verified domain is allowed, but these are not subdomains of acme.test).
        for lookalike in ("evilacme.test", "acme.test.evil.test", "acme.tes", "cme.test"):
            client.rset()
            assert_reply(client.mail(f"sender@{lookalike}"), 550, "5.7.1",
                         what=f"MAIL FROM look-alike domain {lookalike}")
        client.rset()
        # README: subdomains of a verified domain are allowed.
        assert_reply(client.mail("sender@mail.acme.test"), 250, "2.1.0",
                     what="MAIL FROM subdomain of verified domain (README)")
    finally:
        client.close()


def test_foreign_from_header_550(server, tenant):
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        rcpts = ["dave@example.net"]
        msg = make_message(tenant.sender, rcpts, header_from="ceo@other.test")
        reply = submit(client, tenant.sender, rcpts, msg)
        assert_reply(reply, 550, "5.7.1", what="DATA with From: header of unverified domain")
        assert not re.search(rb"queued as", reply[1]), reply
        # The session remains usable and a good message goes through.
        client.rset()
        assert_queued(submit(client, tenant.sender, rcpts, make_message(tenant.sender, rcpts)))
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------


def test_too_many_recipients_452(server, tenant):
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        assert_reply(client.mail(tenant.sender), 250, "2.1.0", what="MAIL")
        rcpts = [f"r{i}@example.net" for i in range(MAX_RECIPIENTS)]
        for r in rcpts:
            assert_reply(client.rcpt(r), 250, "2.1.5", what=f"RCPT {r}")
        assert_reply(client.rcpt("one-too-many@example.net"), 452, "4.5.3",
                     what=f"RCPT number {MAX_RECIPIENTS + 1}")
        # The transaction goes on with the first MAX_RECIPIENTS recipients.
        msg_id = assert_queued(client.data(make_message(tenant.sender, rcpts)))
        assert_message_queued(server, msg_id, tenant=tenant, rcpts=rcpts)
    finally:
        client.close()


def test_oversize_message_552(server, tenant):
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        rcpts = ["big@example.net"]
        line = "x" * 76 + "\r\n"
        body = line * (MAX_MESSAGE_SIZE // len(line) + 2000)  # ~150 KiB over the limit
        reply = submit(client, tenant.sender, rcpts, make_message(tenant.sender, rcpts, body=body))
        assert_reply(reply, 552, "5.3.4", what="DATA over max_message_size")
        # The server read to the end of data: the session is in sync and still usable.
        assert_reply(client.noop(), 250, "2.0.0", what="NOOP after oversize")
        client.rset()
        assert_queued(submit(client, tenant.sender, rcpts, make_message(tenant.sender, rcpts)))
    finally:
        client.close()


def test_mail_size_parameter_over_limit_552(server, tenant):
    """RFC 1870: MAIL FROM with SIZE= above the advertised limit is refused 552 5.3.4."""
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        reply = client.mail(tenant.sender, [f"SIZE={MAX_MESSAGE_SIZE + 1}"])
        assert_reply(reply, 552, "5.3.4", what="MAIL SIZE= over limit")
        assert_reply(client.mail(tenant.sender, [f"SIZE={MAX_MESSAGE_SIZE // 2}"]), 250,
                     "2.1.0", what="MAIL SIZE= under limit")
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# CHUNKING, VRFY, RSET/NOOP
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("last_empty", [False, True], ids=["bdat-last-with-data", "bdat-0-last"])
def test_bdat_chunking_submission(server, tenant, last_empty):
    rcpts = ["chunky@example.net"]
    msg = make_message(tenant.sender, rcpts, subject="BDAT",
                       body="line one\r\n.a line starting with a dot (no stuffing in BDAT)\r\n")
    with server.raw(implicit_tls=True) as c:
        assert c.greeting[0] == 220, c.greeting
        code, text = c.ehlo()
        assert code == 250 and b"CHUNKING" in text.upper(), (code, text)
        assert_reply(c.auth_plain(tenant.username, tenant.password), 235, "2.7.0", what="AUTH")
        assert_reply(c.cmd(f"MAIL FROM:<{tenant.sender}>"), 250, "2.1.0", what="MAIL")
        assert_reply(c.cmd(f"RCPT TO:<{rcpts[0]}>"), 250, "2.1.5", what="RCPT")
        half = len(msg) // 2
        first, second = msg[:half], msg[half:]
        c.send(f"BDAT {len(first)}\r\n".encode() + first)
        assert_reply(c.read_reply(), 250, "2.0.0", what="BDAT first chunk")
        if last_empty:
            c.send(f"BDAT {len(second)}\r\n".encode() + second)
            assert_reply(c.read_reply(), 250, "2.0.0", what="BDAT second chunk")
            c.send(b"BDAT 0 LAST\r\n")
        else:
            c.send(f"BDAT {len(second)} LAST\r\n".encode() + second)
        reply = c.read_reply()
        msg_id = assert_queued(reply, what="BDAT LAST")
        assert_message_queued(server, msg_id, tenant=tenant, rcpts=rcpts)
        assert_reply(c.cmd("QUIT"), 221, "2.0.0", what="QUIT")


def test_vrfy_does_not_disclose(server, tenant):
    for authenticated in (False, True):
        client = server.smtp_starttls()
        try:
            if authenticated:
                assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
            for who in (tenant.sender, "postmaster", tenant.username):
                code, text = client.verify(who)
                assert code in (252, 502), (
                    f"VRFY {who} (auth={authenticated}) must be 252 or 502, got {code} {text!r}")
            code, text = client.expn("all")
            assert code != 250, f"EXPN disclosed something: {code} {text!r}"
        finally:
            client.close()


def test_rset_noop_and_sequence(server, tenant):
    client = server.smtp_starttls()
    try:
        assert_reply(client.noop(), 250, "2.0.0", what="NOOP before AUTH")
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        assert_reply(client.noop(), 250, "2.0.0", what="NOOP")
        assert_reply(client.mail(tenant.sender), 250, "2.1.0", what="MAIL")
        assert_reply(client.rset(), 250, "2.0.0", what="RSET")
        # After RSET there is no transaction: RCPT is out of sequence.
        code, text = client.rcpt("x@example.net")
        assert_reply((code, text), 503, "5.5.1", what="RCPT after RSET")
        # DATA without recipients is out of sequence too.
        assert_reply(client.mail(tenant.sender), 250, "2.1.0", what="MAIL after RSET")
        code, text = client.docmd("DATA")
        assert code == 503 or code == 554, f"DATA without RCPT: {code} {text!r}"
        assert text.startswith(b"5.5."), (code, text)
        # A nested MAIL is refused.
        client.rset()
        assert_reply(client.mail(tenant.sender), 250, "2.1.0", what="MAIL")
        assert_reply(client.mail(tenant.sender), 503, "5.5.1", what="nested MAIL")
        client.rset()
        # And a full transaction still works after all that.
        assert_queued(submit(client, tenant.sender, ["after-rset@example.net"],
                             make_message(tenant.sender, ["after-rset@example.net"])))
        assert_reply(client.docmd("QUIT"), 221, "2.0.0", what="QUIT")
    finally:
        client.close()


def test_unknown_command_500(server):
    with server.raw() as c:
        c.ehlo()
        code, text = c.cmd("FROBNICATE now")
        assert code in (500, 502), (code, text)
        assert text.startswith(b"5.5."), (code, text)
        assert_reply(c.cmd("NOOP"), 250, "2.0.0", what="NOOP after unknown command")


def test_pipelined_transaction(server, tenant):
    """PIPELINING is advertised: MAIL, RCPT*, DATA in one write get replies in order."""
    rcpts = ["p1@example.net", "p2@example.net"]
    with server.raw(implicit_tls=True) as c:
        c.ehlo()
        assert_reply(c.auth_plain(tenant.username, tenant.password), 235, "2.7.0", what="AUTH")
        batch = f"MAIL FROM:<{tenant.sender}>\r\n" + "".join(
            f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n"
        c.send(batch.encode())
        assert_reply(c.read_reply(), 250, "2.1.0", what="pipelined MAIL")
        for r in rcpts:
            assert_reply(c.read_reply(), 250, "2.1.5", what=f"pipelined RCPT {r}")
        assert c.read_reply()[0] == 354
        c.send(make_message(tenant.sender, rcpts) + b".\r\n")
        msg_id = assert_queued(c.read_reply())
        assert_message_queued(server, msg_id, tenant=tenant, rcpts=rcpts)


def test_dot_stuffing_roundtrip_accepted(server, tenant):
    """Control for the smuggling tests: a proper CRLF message with dot-stuffed lines is
    accepted over the raw-socket path used there."""
    rcpts = ["dots@example.net"]
    body = b"first\r\n..leading dot\r\n...\r\nlast\r\n"
    with server.raw(implicit_tls=True) as c:
        c.ehlo()
        assert_reply(c.auth_plain(tenant.username, tenant.password), 235, "2.7.0", what="AUTH")
        assert_reply(c.cmd(f"MAIL FROM:<{tenant.sender}>"), 250, "2.1.0", what="MAIL")
        assert_reply(c.cmd(f"RCPT TO:<{rcpts[0]}>"), 250, "2.1.5", what="RCPT")
        assert c.cmd("DATA")[0] == 354
        c.send(make_message(tenant.sender, rcpts, body="") + body + b".\r\n")
        msg_id = assert_queued(c.read_reply(), what="dot-stuffed DATA")
        assert_message_queued(server, msg_id, tenant=tenant, rcpts=rcpts)
        assert_reply(c.cmd("QUIT"), 221, "2.0.0", what="QUIT")


def test_dsn_parameters_accepted(server, tenant):
    """DSN is advertised (RFC 3461): RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT are accepted."""
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        assert_reply(client.mail(tenant.sender, ["RET=HDRS", "ENVID=e2e-envid-1"]), 250, "2.1.0",
                     what="MAIL with RET/ENVID")
        rcpts = ["dsn@example.net", "dsn2@example.net"]
        assert_reply(client.rcpt(rcpts[0], ["NOTIFY=FAILURE,DELAY",
                                            "ORCPT=rfc822;dsn@example.net"]),
                     250, "2.1.5", what="RCPT with NOTIFY/ORCPT")
        assert_reply(client.rcpt(rcpts[1], ["NOTIFY=NEVER"]), 250, "2.1.5",
                     what="RCPT NOTIFY=NEVER")
        msg_id = assert_queued(client.data(make_message(tenant.sender, rcpts)))
        assert_message_queued(server, msg_id, tenant=tenant, rcpts=rcpts)
        client.rset()
        # An invalid NOTIFY combination is a syntax error in parameters.
        assert_reply(client.mail(tenant.sender), 250, "2.1.0", what="MAIL")
        code, text = client.rcpt("bad-dsn@example.net", ["NOTIFY=NEVER,FAILURE"])
        assert code in (501, 555), f"NOTIFY=NEVER,FAILURE must be refused 501/555: {code} {text!r}"
        assert text.startswith(b"5.5.4") or text.startswith(b"5.5.2"), (code, text)
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# Documented bounds and hardening (README "What holds" / configuration reference)
# --------------------------------------------------------------------------------------


def test_starttls_pipelined_commands_discarded(server, tenant):
    """CVE-2011-0411 style: commands sent in the same packet as STARTTLS must not be
    executed inside the TLS session."""
    import socket as _socket

    from mailroom_harness import HOSTNAME, insecure_tls_context

    with server.raw() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@acme.test>\r\n")
        assert_reply(c.read_reply(), 220, what="STARTTLS")
        leftover = c.buf
        c.sock = insecure_tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
        c.buf = b""
        assert leftover == b"", f"server replied in clear text after 220: {leftover!r}"
        code, text = c.ehlo()
        assert code == 250, (
            f"first reply inside TLS must be the EHLO reply, got {code} {text!r} "
            "(the injected MAIL was executed?)")
        assert_reply(c.auth_plain(tenant.username, tenant.password), 235, "2.7.0", what="AUTH")
        # If the injected MAIL had been kept, this would be a nested MAIL (503).
        assert_reply(c.cmd(f"MAIL FROM:<{tenant.sender}>"), 250, "2.1.0", what="MAIL")
        c.sock.settimeout(1)
        try:
            extra = c.sock.recv(4096)
        except (_socket.timeout, TimeoutError):
            extra = b""
        assert extra == b"", f"unexpected extra reply: {extra!r}"


def test_overlong_command_line_500(server):
    with server.raw() as c:
        c.ehlo()
        code, text = c.cmd("NOOP " + "x" * 3000)
        assert_reply((code, text), 500, "5.5.2", what="command line over 2048 bytes")
        assert_reply(c.cmd("NOOP"), 250, "2.0.0", what="NOOP after overlong line")


def test_overlong_text_line_550(server, tenant):
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        rcpts = ["longline@example.net"]
        reply = submit(client, tenant.sender, rcpts,
                       make_message(tenant.sender, rcpts, body="y" * 1200 + "\r\n"))
        assert_reply(reply, 550, "5.6.0", what="body line over 998 characters")
    finally:
        client.close()


# README ("Bounded"): failed AUTH per session (3) and per address (10, then `421 4.7.0`).
AUTH_FAILURES_PER_SESSION = 3
AUTH_FAILURES_PER_IP = 10


def test_auth_failure_lockout_per_ip(server, tenant):
    """README: 3 failed AUTH close the session; 10 per address lock the address out
    (421 4.7.0), while other addresses are unaffected. Exactly 10: the first 10 failures
    are each answered 535 5.7.8 (no earlier lockout), the next AUTH from that address is
    refused 421 4.7.0 even with the right password (no later lockout). Uses 127.0.0.9 /
    127.0.0.10 so the lockout does not touch the other tests."""
    bad = base64.b64encode(f"\0{tenant.username}\0wrong".encode()).decode()
    good = base64.b64encode(f"\0{tenant.username}\0{tenant.password}".encode()).decode()
    failures, per_session = 0, []
    while failures < AUTH_FAILURES_PER_IP:
        with server.raw(source="127.0.0.9") as c:
            assert c.greeting[0] == 220, (
                f"locked out after only {failures} failed AUTH: greeting {c.greeting!r}")
            c.ehlo()
            c.starttls()
            c.ehlo()
            n = 0
            while n < AUTH_FAILURES_PER_SESSION and failures < AUTH_FAILURES_PER_IP:
                assert_reply(c.cmd(f"AUTH PLAIN {bad}"), 535, "5.7.8",
                             what=f"failed AUTH #{failures + 1} from 127.0.0.9")
                failures += 1
                n += 1
            per_session.append(n)
            if n == AUTH_FAILURES_PER_SESSION:
                # The third failure ends the session: 421 4.7.0 and the connection closes.
                assert_reply(c.read_reply(), 421, "4.7.0",
                             what=f"session close after {n} failed AUTH")
                with pytest.raises((ConnectionError, OSError)):
                    c.cmd(f"AUTH PLAIN {good}")
    assert per_session == [3, 3, 3, 1], per_session
    # Now locked out: even the right password is refused from 127.0.0.9.
    with server.raw(source="127.0.0.9") as c:
        if c.greeting[0] == 421:
            locked_reply = c.greeting
        else:
            c.ehlo()
            c.starttls()
            c.ehlo()
            locked_reply = c.cmd(f"AUTH PLAIN {good}")
    assert_reply(locked_reply, 421, "4.7.0",
                 what=f"AUTH after {AUTH_FAILURES_PER_IP} failures from 127.0.0.9")
    # Another address is not affected.
    with server.raw(source="127.0.0.10") as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert_reply(c.cmd(f"AUTH PLAIN {good}"), 235, "2.7.0", what="AUTH from 127.0.0.10")
