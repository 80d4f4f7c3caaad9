"""SMTP smuggling: bare LF / bare CR / NUL around a dot must never end DATA.

Each variant sends, inside one DATA, a body that contains `<variant>` followed by a complete
second transaction. A vulnerable server takes the variant as end-of-data and queues the
'smuggled' message; a correct one reads on to the real CRLF.CRLF and answers exactly once:
with a 5xx when the data contains a fake end (a line holding only `.` that is not
CRLF.CRLF), a bare CR or a NUL, and with 250 for one message (the would-be commands are
its text) when it only has lines ending in a bare LF, which are stored as CRLF lines.
"""

from __future__ import annotations

import time

import pytest

from mailroom_harness import assert_reply, make_message

VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-lf": b"\r.\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "lf-dot-cr": b"\n.\r",
    "crlf-nul-dot-crlf": b"\r\n\x00.\r\n",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-cr-crlf": b"\r\n.\r\r\n",
    "crlf-dot-space-crlf": b"\r\n. \r\n\n.\n",
    "lf-lf-dot-lf": b"\n\n.\n",
    "crlf-lf-dot-crlf": b"\r\n\n.\r\n",
    "bare-cr-line": b"\rbare cr line\r",
    "nul-in-line": b"\r\nnul\x00byte\r\n",
}

# Lines ending in a bare LF, with no fake end among them: one message, stored with CRLF.
NORMALISED = {
    "dot-lf": b".\n",
    "bare-lf-line": b"\nbare lf line\n",
    "lf-dotdot-lf": b"\n..\n",
}

SMUGGLED = (
    b"MAIL FROM:<x@acme.test>\r\n"
    b"RCPT TO:<y@example.net>\r\n"
    b"DATA\r\n"
    b"smuggled"
)
FINAL = b"\r\n.\r\n"


def _open_transaction(server, tenant):
    c = server.raw(implicit_tls=True)
    assert c.greeting[0] == 220, c.greeting
    assert c.ehlo()[0] == 250
    assert_reply(c.auth_plain(tenant.username, tenant.password), 235, "2.7.0", what="AUTH")
    assert_reply(c.cmd(f"MAIL FROM:<{tenant.sender}>"), 250, "2.1.0", what="MAIL")
    assert_reply(c.cmd("RCPT TO:<victim@example.net>"), 250, "2.1.5", what="RCPT")
    code, text = c.cmd("DATA")
    assert code == 354, (code, text)
    return c


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_smuggling_variant_rejected(server, tenant, variant):
    c = _open_transaction(server, tenant)
    try:
        headers = make_message(tenant.sender, ["victim@example.net"], subject="smuggle",
                               body="")
        payload = headers + b"first line" + variant + SMUGGLED + FINAL
        c.send(payload)
        # Exactly one reply for the data, and it is a permanent refusal.
        c.sock.settimeout(20)
        first = c.read_reply()
        assert 500 <= first[0] < 600, (
            f"data with {variant!r} must be refused 5xx after the real CRLF.CRLF, got {first!r}")
        assert b"queued as" not in first[1], first
        # Nothing else may have been taken as commands: QUIT's reply must be the next one.
        try:
            c.send(b"QUIT\r\n")
        except OSError:
            pass  # the server may close after a protocol violation; that is fine
        rest = c.read_all_replies(time.monotonic() + 10)
        assert all(b"queued as" not in t for _, t in rest), (
            f"SMUGGLED MESSAGE QUEUED with {variant!r}: {rest!r}")
        assert not any(code == 354 for code, _ in rest), (
            f"smuggled DATA command was executed with {variant!r}: {rest!r}")
        assert [code for code, _ in rest] in ([221], []), (
            f"extra replies after the data reply with {variant!r} (smuggled commands were "
            f"interpreted?): {rest!r}")
    finally:
        c.close()


@pytest.mark.parametrize("variant", list(NORMALISED.values()), ids=list(NORMALISED))
def test_bare_lf_lines_are_one_message(server, tenant, variant):
    c = _open_transaction(server, tenant)
    try:
        headers = make_message(tenant.sender, ["victim@example.net"], subject="lf", body="")
        c.send(headers + b"first line" + variant + SMUGGLED + FINAL)
        c.sock.settimeout(20)
        code, text = c.read_reply()
        assert code == 250 and b"queued as" in text, (variant, code, text)
        c.send(b"QUIT\r\n")
        rest = c.read_all_replies(time.monotonic() + 10)
        # The would-be commands were text of the one message: no reply of their own.
        assert [code for code, _ in rest] == [221], (variant, rest)
    finally:
        c.close()


def test_session_usable_after_bare_cr_rejection(server, tenant):
    """After the 5xx for a bare CR the connection either stays in sync (a new transaction
    works) or was closed cleanly - never out of sync."""
    c = _open_transaction(server, tenant)
    try:
        c.send(make_message(tenant.sender, ["victim@example.net"], body="") + b"a\rb" + FINAL)
        first = c.read_reply()
        assert 500 <= first[0] < 600, first
        try:
            reply = c.cmd("NOOP")
        except (ConnectionError, OSError):
            return  # closed after the refusal: acceptable
        if reply[0] == 421:
            return
        assert_reply(reply, 250, "2.0.0", what="NOOP after refused data")
        assert_reply(c.cmd(f"MAIL FROM:<{tenant.sender}>"), 250, "2.1.0", what="MAIL again")
        assert_reply(c.cmd("RCPT TO:<again@example.net>"), 250, "2.1.5", what="RCPT again")
        assert c.cmd("DATA")[0] == 354
        c.send(make_message(tenant.sender, ["again@example.net"]) + b".\r\n")
        code, text = c.read_reply()
        assert code == 250 and b"queued as" in text, (code, text)
    finally:
        c.close()
