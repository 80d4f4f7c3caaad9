"""Deleting a sending domain: `DELETE /v1/domains/{name}` and `mailroom domain delete`.

The domain and its DKIM keys go, with a `domain.deleted` event; from then on mail from
it is refused (`550 5.7.1`) and the domain is 404. Mail accepted from it before stays
queued (delivery is off here, so it stays exactly where it was): it was signed when it
was accepted and an accepted message is never dropped. Another tenant cannot delete it
(404, as if it did not exist).

Deleting a tenant: `DELETE /v1/tenants/{id}` and `mailroom tenant delete`. Its keys,
credentials, domains, suppressions and webhooks go, its queued mail is cancelled (each
recipient with a `cancelled` event saying why), its key gets 401 and its SMTP login 535
from the reply on, and a `tenant.deleted` event (the operator's) counts what went. Its
message stays until `--purge`, which removes it (and its events) at once.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import smtplib

import pytest

from mailroom_harness import (
    assert_queued,
    assert_reply,
    make_message,
    mailroom_bin,
    start_server,
    submit,
)


def test_domain_delete(tmp_path):
    srv = start_server(tmp_path, extra_config="[delivery]\nenabled = false\n")
    try:
        domain = f"del-{uuid.uuid4().hex[:8]}.test"
        owner = srv.create_tenant("owner", domain)
        other = srv.create_tenant("other", f"other-{uuid.uuid4().hex[:8]}.test")
        rcpts = ["a@example.net", "b@example.net"]
        with srv.smtp_starttls() as c:
            assert_reply(owner.login(c), 235, "2.7.0", what="AUTH")
            msg_id = assert_queued(
                submit(c, owner.sender, rcpts, make_message(owner.sender, rcpts)))

        r = srv.api("DELETE", f"/v1/domains/{domain}", token=other.api_key)
        assert r.status == 404, r
        assert srv.api("GET", f"/v1/domains/{domain}").status == 200

        host, port = srv.http_addr
        out = subprocess.run(
            [str(mailroom_bin()), "domain", "delete", domain, "--url", f"http://{host}:{port}",
             "--token", srv.operator_token],
            capture_output=True, text=True, timeout=20,
        )
        assert out.returncode == 0, out
        body = json.loads(out.stdout)
        assert body["name"] == domain and body["deleted"] is True, body
        assert body["tenant_id"] == owner.id, body
        assert body["queued_recipients"] == 2, body
        assert body["queued_mail"] == "delivered", body
        assert body["dkim_keys_deleted"] >= 1, body

        assert srv.api("GET", f"/v1/domains/{domain}").status == 404
        r = srv.api("DELETE", f"/v1/domains/{domain}")
        assert r.status == 404, r
        domains = srv.api("GET", f"/v1/tenants/{owner.id}/domains").body
        assert domain not in json.dumps(domains), domains

        # From now on the domain cannot send.
        with srv.smtp_starttls() as c:
            assert_reply(owner.login(c), 235, "2.7.0", what="AUTH")
            assert_reply(c.mail(owner.sender), 550, "5.7.1", what="MAIL FROM a deleted domain")
        r = srv.api("POST", "/v1/messages", {
            "from": owner.sender, "to": ["c@example.net"], "subject": "x", "text": "x",
        }, token=owner.api_key)
        assert r.status == 403, r

        # What was accepted before is still queued, untouched.
        m = srv.api("GET", f"/v1/messages/{msg_id}").body
        assert sorted(x["state"] for x in m["recipients"]) == ["queued", "queued"], m

        # The event, for the tenant (and so its webhooks).
        r = srv.api("GET", "/v1/events?type=domain.deleted", token=owner.api_key)
        assert r.status == 200, r
        events = r.body["events"]
        assert len(events) == 1, events
        assert events[0]["detail"]["domain"] == domain, events
        assert events[0]["detail"]["queued_recipients"] == 2, events
        assert events[0]["id"] == body["event_id"], (events, body)
        r = srv.api("GET", "/v1/events?type=domain.deleted", token=other.api_key)
        assert r.body["events"] == [], r
    finally:
        srv.stop()


def cli(srv, *args):
    host, port = srv.http_addr
    out = subprocess.run(
        [str(mailroom_bin()), *args, "--url", f"http://{host}:{port}",
         "--token", srv.operator_token],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out
    return json.loads(out.stdout)


def test_tenant_delete(tmp_path):
    srv = start_server(tmp_path, extra_config="[delivery]\nenabled = false\n\n"
                       "[webhooks]\nallow_private = true\n")
    try:
        tag = uuid.uuid4().hex[:8]
        doomed = srv.create_tenant("doomed", f"doomed-{tag}.test")
        kept = srv.create_tenant("kept", f"kept-{tag}.test")
        r = srv.api("POST", "/v1/suppressions", {"address": "no@example.net"},
                    token=doomed.api_key)
        assert r.status in (200, 201), r
        r = srv.api("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/hook"},
                    token=doomed.api_key)
        assert r.status == 201, r
        rcpts = ["a@example.net", "b@example.net"]
        with srv.smtp_starttls() as c:
            assert_reply(doomed.login(c), 235, "2.7.0", what="AUTH")
            msg_id = assert_queued(
                submit(c, doomed.sender, rcpts, make_message(doomed.sender, rcpts)))

        # Only the operator may.
        r = srv.api("DELETE", f"/v1/tenants/{doomed.id}", token=doomed.api_key)
        assert r.status == 403, r
        r = srv.api("DELETE", f"/v1/tenants/{doomed.id}?purge=maybe")
        assert r.status == 422 and r.body["field"] == "purge", r

        body = cli(srv, "tenant", "delete", doomed.id)
        assert body["deleted"] is True and body["purged"] is False, body
        removed = body["removed"]
        assert removed["api_keys"] == 1 and removed["smtp_credentials"] == 1, body
        assert removed["domains"] == 1 and removed["dkim_keys"] >= 1, body
        assert removed["suppressions"] == 1 and removed["webhooks"] == 1, body
        assert removed["cancelled_recipients"] == 2, body
        assert body["queued_mail"]["cancelled"] == 2, body

        # From the reply on: its key is 401, its SMTP login 535.
        r = srv.api("GET", f"/v1/tenants/{doomed.id}", token=doomed.api_key)
        assert r.status == 401, r
        with srv.smtp_starttls() as c:
            with pytest.raises(smtplib.SMTPAuthenticationError) as err:
                doomed.login(c)
            assert err.value.smtp_code == 535, err.value
        assert srv.api("GET", f"/v1/tenants/{doomed.id}").status == 404
        assert srv.api("GET", f"/v1/domains/doomed-{tag}.test").status == 404

        # Its message is kept, cancelled, each recipient with an event saying why.
        m = srv.api("GET", f"/v1/messages/{msg_id}").body
        assert sorted(x["state"] for x in m["recipients"]) == ["cancelled", "cancelled"], m
        r = srv.api("GET", f"/v1/events?type=cancelled&tenant={doomed.id}")
        assert r.status == 200, r
        assert [e["detail"]["reason"] for e in r.body["events"]] == ["tenant_deleted"] * 2, r
        r = srv.api("GET", "/v1/events?type=tenant.deleted")
        events = r.body["events"]
        assert len(events) == 1 and events[0]["tenant_id"] == doomed.id, events
        assert events[0]["id"] == body["event_id"], (events, body)
        assert events[0]["detail"]["removed"]["cancelled_recipients"] == 2, events
        assert srv.api("GET", "/v1/events?type=tenant.deleted",
                       token=kept.api_key).body["events"] == []

        # The other tenant carries on.
        with srv.smtp_starttls() as c:
            assert_reply(kept.login(c), 235, "2.7.0", what="AUTH")
            assert_queued(submit(c, kept.sender, ["c@example.net"],
                                 make_message(kept.sender, ["c@example.net"])))

        # Purged later: its message and events go now, the deletion's event stays.
        body = cli(srv, "tenant", "delete", doomed.id, "--purge")
        assert body["purged"] is True and body["removed"]["messages"] == 1, body
        assert srv.api("GET", f"/v1/messages/{msg_id}").status == 404
        r = srv.api("GET", f"/v1/events?tenant={doomed.id}&limit=1000")
        assert [e["type"] for e in r.body["events"]] == ["tenant.deleted"], r
        r = srv.api("DELETE", f"/v1/tenants/{doomed.id}?purge=true")
        assert r.status == 404, r
    finally:
        srv.stop()
