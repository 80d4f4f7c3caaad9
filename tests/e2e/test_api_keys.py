"""Named API keys and the operator token with the real binary and its own CLI:
create (secret shown once) -> use (HTTP and SMTP AUTH) -> rotate (old and new both work
during the overlap) -> revoke (401 / 535 on the very next attempt, no restart), scopes,
last use, persistence across a restart, and `mailroom operator-token rotate` (the old
token is refused at once; only digests are in the database)."""

from __future__ import annotations

import hashlib
import json
import smtplib
import sqlite3
import subprocess

from mailroom_harness import make_message, mailroom_bin, start_server, submit

CONFIG = "[delivery]\nenabled = false"


def cli(srv, *args, token: str | None = None) -> dict:
    """Runs `mailroom <args>` against the server found in its data directory."""
    cmd = [str(mailroom_bin()), *args, "--data-dir", str(srv.data_dir)]
    if token is not None:
        cmd += ["--token", token]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def message(domain: str) -> dict:
    return {"from": f"app@{domain}", "to": "someone@example.net", "subject": "keys", "text": "hi"}


def smtp_auth(srv, password: str, domain: str) -> tuple[int, bytes]:
    """AUTH PLAIN with username `apikey` over STARTTLS; on success submits one message."""
    client = srv.smtp_starttls()
    try:
        client.user, client.password = "apikey", password
        try:
            code, text = client.auth("PLAIN", client.auth_plain, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as err:
            return err.smtp_code, err.smtp_error
        reply = submit(client, f"app@{domain}", ["someone@example.net"],
                       make_message(mail_from=f"app@{domain}"))
        assert reply[0] == 250, reply
        return code, text
    finally:
        client.close()


def test_key_lifecycle_scopes_and_operator_token(tmp_path):
    srv = start_server(tmp_path, extra_config=CONFIG)
    try:
        t = srv.create_tenant("keys", domain="keys.test", credential=False)

        # create: the secret is printed once; the listing never shows it.
        created = cli(srv, "key", "create", "ci", "--scope", "send", "--tenant", t.name)
        key_id, secret = created["id"], created["api_key"]
        assert created["scope"] == "send" and secret.startswith("mrk_"), created
        reader = cli(srv, "key", "create", "dash", "--scope", "read", "--tenant", t.name)

        # use: a send key submits over HTTP and SMTP, and nothing else.
        r = srv.api("POST", "/v1/messages", message(t.domain), token=secret)
        assert r.status == 202, r
        assert smtp_auth(srv, secret, t.domain)[0] == 235
        r = srv.api("GET", "/v1/keys", token=secret)
        assert r.status == 403 and r.headers["content-type"] == "application/problem+json", r
        # read: GET only; never SMTP.
        assert srv.api("GET", "/v1/keys", token=reader["api_key"]).status == 200
        assert srv.api("POST", "/v1/messages", message(t.domain), token=reader["api_key"]).status == 403
        assert smtp_auth(srv, reader["api_key"], t.domain)[0] == 535

        listed = cli(srv, "key", "list", "--tenant", t.name)["keys"]
        by_name = {k["name"]: k for k in listed}
        assert set(by_name) == {"default", "ci", "dash"}, listed
        assert by_name["default"]["scope"] == "full"
        assert by_name["ci"]["last_used_at"], listed
        assert secret not in json.dumps(listed)

        # rotate: both secrets work during the overlap, over HTTP and SMTP.
        rotated = cli(srv, "key", "rotate", key_id, "--grace-seconds", "600")
        new = rotated["api_key"]
        assert new != secret and rotated["id"] == key_id, rotated
        assert rotated["previous_secret_expires_at"] > rotated["rotated_at"], rotated
        for s in (secret, new):
            assert srv.api("POST", "/v1/messages", message(t.domain), token=s).status == 202
            assert smtp_auth(srv, s, t.domain)[0] == 235

        # revoke: the very next request with either secret is refused.
        assert cli(srv, "key", "revoke", key_id) == {"revoked": key_id}
        for s in (secret, new):
            r = srv.api("POST", "/v1/messages", message(t.domain), token=s)
            assert r.status == 401 and r.headers.get("www-authenticate") == "Bearer", r
            assert smtp_auth(srv, s, t.domain)[0] == 535

        # A restart keeps all of it: revoked stays revoked, the rest works.
        srv.stop()
        srv.start()
        assert srv.api("GET", "/v1/keys", token=new).status == 401
        r = srv.api("GET", "/v1/keys", token=reader["api_key"])
        assert r.status == 200 and {k["name"] for k in r.body["keys"]} == {"default", "dash"}, r
        assert srv.api("GET", "/v1/keys", token=t.api_key).status == 200

        # operator-token rotate: the old token is refused at once, the new one works,
        # the CLI's token file follows, and the database holds only digests.
        old_token = srv.operator_token
        out = cli(srv, "operator-token", "rotate")
        token = out["token"]
        assert token.startswith("mro_") and token != old_token, out
        assert srv.api("GET", "/v1/tenants", token=old_token).status == 401
        assert srv.api("GET", "/v1/tenants", token=token).status == 200
        assert (srv.data_dir / "operator-token").read_text().strip() == token
        srv.operator_token = token
        assert cli(srv, "tenant", "list")["tenants"], "the CLI works with the new token file"
        # With --token, the file is left alone.
        again = cli(srv, "operator-token", "rotate", token=token)["token"]
        assert srv.api("GET", "/v1/tenants", token=token).status == 401
        assert (srv.data_dir / "operator-token").read_text().strip() == token
        srv.operator_token = again

        db = sqlite3.connect(srv.data_dir / "mailroom.db")
        try:
            (stored,) = db.execute("SELECT token_hash FROM operator_token").fetchone()
            assert stored == hashlib.sha256(again.encode()).hexdigest()
        finally:
            db.close()
        srv.stop()
        blob = b"".join(p.read_bytes() for p in srv.data_dir.glob("mailroom.db*"))
        for s in (again, token, old_token, secret, new, reader["api_key"], t.api_key):
            assert s.encode() not in blob, "a secret is stored in clear in the database"
        srv.start()
        assert srv.api("GET", "/v1/tenants", token=again).status == 200
        assert srv.api("GET", "/v1/tenants", token=token).status == 401
    finally:
        srv.stop()
