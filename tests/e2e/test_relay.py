"""Open-relay resistance and the per-tenant IP allowlist."""

from __future__ import annotations

import pytest

from mailroom_harness import (
    assert_message_queued,
    assert_queued,
    assert_reply,
    make_message,
    submit,
)

# Recipient forms that old MTAs turned into relaying to other.test.
SYNTAX_TRICKS = {
    "percent-hack": "<user%other.test@acme.test>",
    "bang-path": "<other.test!user@acme.test>",
    "quoted-at": '<"user@other.test"@acme.test>',
}
SOURCE_ROUTE = "<@acme.test:user@other.test>"
UNAUTH_RCPTS = {
    "plain-foreign": "<user@other.test>",
    "own-domain": "<user@acme.test>",
    "source-route": SOURCE_ROUTE,
    "double-at": "<user@other.test@acme.test>",
    "ip-literal": "<user@[127.0.0.1]>",
    "postmaster": "<postmaster>",
    **SYNTAX_TRICKS,
}


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_unauthenticated_never_relays(server, tenant, tls):
    """Without AUTH and from a non-allowlisted IP, no recipient is ever accepted, whatever
    the sender - even the tenant's own verified domain."""
    client = server.smtp_starttls() if tls else server.smtp()
    try:
        if not tls:
            client.ehlo()
        for sender in (tenant.sender, "user@other.test", ""):
            assert_reply(client.mail(sender), 530, "5.7.0",
                         what=f"unauthenticated MAIL FROM:<{sender}>")
            for name, rcpt in UNAUTH_RCPTS.items():
                code, text = client.docmd("RCPT", f"TO:{rcpt}")
                assert code != 250 and code != 251, (
                    f"OPEN RELAY: unauthenticated RCPT {name} {rcpt} got {code} {text!r}")
                assert code in (503, 530), f"RCPT {name} {rcpt}: expected 530/503, got {code} {text!r}"
            code, text = client.docmd("DATA")
            assert code != 354, f"OPEN RELAY: DATA got {code} {text!r}"
            client.rset()
    finally:
        client.close()


def test_unauthenticated_rcpt_without_mail(server):
    client = server.smtp()
    try:
        client.ehlo()
        for name, rcpt in UNAUTH_RCPTS.items():
            code, text = client.docmd("RCPT", f"TO:{rcpt}")
            assert code >= 500 and code in (503, 530), f"RCPT {name} without MAIL: {code} {text!r}"
    finally:
        client.close()


@pytest.mark.parametrize("name", list(SYNTAX_TRICKS))
def test_authenticated_syntax_tricks_refused(server, tenant, name):
    """%, ! and a quoted @ in the local part are refused (553 5.1.3 in the contract)."""
    rcpt = SYNTAX_TRICKS[name]
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        assert_reply(client.mail(tenant.sender), 250, "2.1.0", what="MAIL")
        code, text = client.docmd("RCPT", f"TO:{rcpt}")
        assert code != 250 and code != 251, f"RCPT {rcpt} accepted: {code} {text!r}"
        assert 500 <= code < 600, f"RCPT {rcpt}: expected a permanent refusal, got {code} {text!r}"
        if code != 553 or not text.startswith(b"5.1.3"):
            pytest.fail(f"RCPT {rcpt}: refused, but with {code} {text!r} instead of 553 5.1.3")
        # A refused RCPT leaves the transaction usable.
        assert_reply(client.rcpt("fine@example.net"), 250, "2.1.5", what="RCPT after refusal")
    finally:
        client.close()


def test_authenticated_source_route_is_stripped(server, tenant):
    """RFC 5321 4.1.1.3 and README ("source routes are dropped"): a source route is
    accepted and ignored -> user@other.test, which an authenticated tenant may send to.
    It must never mean 'deliver via acme.test', and it is not refused."""
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        assert_reply(client.mail(tenant.sender), 250, "2.1.0", what="MAIL")
        assert_reply(client.docmd("RCPT", f"TO:{SOURCE_ROUTE}"), 250, "2.1.5",
                     what=f"RCPT {SOURCE_ROUTE} (README: source routes are dropped)")
        msg_id = assert_queued(client.data(make_message(tenant.sender, ["user@other.test"])))
        assert_message_queued(server, msg_id, tenant=tenant, rcpts=["user@other.test"])
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# IP allowlist
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def allow_tenant(server):
    t = server.create_tenant("allow", domain="allow.test", credential=False)
    r = server.api("PUT", f"/v1/tenants/{t.id}/allowed-ips",
                   {"cidrs": ["127.0.0.2/32"], "require_tls": False})
    assert r.status == 200, f"PUT allowed-ips: {r}"
    return t


def test_allowlisted_ip_sends_without_auth(server, allow_tenant):
    client = server.smtp(source="127.0.0.2")
    try:
        client.ehlo()
        rcpts = ["allowed@example.net"]
        msg_id = assert_queued(submit(client, allow_tenant.sender, rcpts,
                                      make_message(allow_tenant.sender, rcpts)))
        assert_message_queued(server, msg_id, tenant=allow_tenant, mail_from=allow_tenant.sender,
                              rcpts=rcpts)
    finally:
        client.close()


def test_allowlisted_ip_over_starttls(server, allow_tenant):
    client = server.smtp_starttls(source="127.0.0.2")
    try:
        rcpts = ["allowed-tls@example.net"]
        msg_id = assert_queued(submit(client, allow_tenant.sender, rcpts,
                                      make_message(allow_tenant.sender, rcpts)))
        assert_message_queued(server, msg_id, tenant=allow_tenant, rcpts=rcpts)
    finally:
        client.close()


def test_allowlisted_ip_still_needs_own_domain(server, tenant, allow_tenant):
    client = server.smtp(source="127.0.0.2")
    try:
        client.ehlo()
        # acme.test belongs to another tenant; other.test to nobody.
        for sender in (tenant.sender, "someone@other.test"):
            assert_reply(client.mail(sender), 550, "5.7.1", what=f"allowlisted MAIL FROM {sender}")
            client.rset()
        # From: header must be the tenant's domain as well.
        rcpts = ["x@example.net"]
        reply = submit(client, allow_tenant.sender, rcpts,
                       make_message(allow_tenant.sender, rcpts, header_from="boss@other.test"))
        assert_reply(reply, 550, "5.7.1", what="allowlisted DATA with foreign From:")
    finally:
        client.close()


def test_non_allowlisted_ip_gets_530(server, allow_tenant):
    client = server.smtp(source="127.0.0.3")
    try:
        client.ehlo()
        assert_reply(client.mail(allow_tenant.sender), 530, "5.7.0", what="MAIL from 127.0.0.3")
        code, text = client.rcpt("x@example.net")
        assert code != 250, f"RCPT accepted from non-allowlisted IP: {code} {text!r}"
    finally:
        client.close()


def test_allowlist_require_tls(server):
    t = server.create_tenant("tlsonly", domain="tlsonly.test", credential=False)
    r = server.api("PUT", f"/v1/tenants/{t.id}/allowed-ips",
                   {"cidrs": ["127.0.0.5/32"], "require_tls": True})
    assert r.status == 200, f"PUT allowed-ips: {r}"
    client = server.smtp(source="127.0.0.5")
    try:
        client.ehlo()
        code, text = client.mail(t.sender)
        assert 500 <= code < 600, f"require_tls allowlist accepted MAIL in clear text: {code} {text!r}"
    finally:
        client.close()
    client = server.smtp_starttls(source="127.0.0.5")
    try:
        rcpts = ["tls@example.net"]
        msg_id = assert_queued(submit(client, t.sender, rcpts, make_message(t.sender, rcpts)))
        assert_message_queued(server, msg_id, tenant=t, rcpts=rcpts)
    finally:
        client.close()
