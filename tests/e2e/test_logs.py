"""What the server logs: secrets never. Runs a login with the right and a wrong
password, an API call with a tenant key and a webhook creation at `debug` level on its
own server, then searches the whole log for each secret."""

from __future__ import annotations

import pytest

from mailroom_harness import (
    MailroomServer,
    assert_queued,
    binary_missing_reason,
    make_message,
    submit,
)


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory):
    reason = binary_missing_reason()
    if reason:
        pytest.skip(reason)
    mp = pytest.MonkeyPatch()
    mp.setenv("MAILROOM_LOG", "debug")
    srv = MailroomServer(tmp_path_factory.mktemp("mailroom-logs"),
                         extra_config="[delivery]\nenabled = false\n"
                         "[webhooks]\nenabled = false\nallow_private = true\n")
    try:
        srv.start()
    finally:
        mp.undo()
    yield srv
    srv.stop()


def test_secrets_never_reach_the_log(debug_server):
    srv = debug_server
    tenant = srv.create_tenant("logs", domain="acme.test")
    wrong = "wrong-" + tenant.password
    client = srv.smtp_starttls()
    try:
        client.user, client.password = tenant.username, wrong
        assert client.auth("PLAIN", client.auth_plain)[0] == 535
    except Exception as err:  # smtplib raises on 535
        assert "535" in str(err), err
    finally:
        client.close()
    client = srv.smtp_starttls()
    try:
        assert tenant.login(client)[0] == 235
        assert_queued(submit(client, tenant.sender, ["log@example.net"],
                             make_message(tenant.sender, ["log@example.net"])))
    finally:
        client.close()
    r = srv.api("GET", f"/v1/tenants/{tenant.id}", token=tenant.api_key)
    assert r.status == 200, r
    hook = srv.api("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/hook"},
                   token=tenant.api_key)
    assert hook.status == 201, hook
    secret = hook.body["secret"]
    srv.stop()
    log = srv.log_path.read_text(errors="replace")
    # The log did run at debug level and did record the failed attempt.
    assert " DEBUG " in log, srv.log_tail()
    assert "authentication failed peer=127.0.0.1" in log and tenant.username in log, srv.log_tail()
    for name, value in [("password", tenant.password), ("wrong password", wrong),
                        ("API key", tenant.api_key), ("webhook secret", secret)]:
        assert value not in log, f"the {name} is in the log"
