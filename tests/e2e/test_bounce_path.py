"""Bounces that come home, or a loud warning that they do not, against the real binary:

- `mailroom check-config` on a configuration with VERP on, no intake listener, no
  `domains.return_path_mx` and no egress addresses warns (exit 0) naming the keys to set;
  a configuration with intake, a public hostname and egress addresses does not;
- `mailroom serve` logs the same warnings at start;
- `GET /v1/domains/{name}` (and `mailroom domain show`) lists the return-path MX and
  its SPF, marked `deliverable: false` with a `problem` under the defaults, and
  deliverable once intake listens, the MX names a public host and SPF names a public
  egress address.
"""

from __future__ import annotations

import subprocess
import uuid

from mailroom_harness import mailroom_bin, start_server

GOOD = (
    '[domains]\negress_ips = ["192.0.2.7"]\n'
    '[intake]\nlisten = ["127.0.0.1:0"]\n'
)


def check_config(tmp_path, text):
    path = tmp_path / f"c-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + text)
    return subprocess.run([str(mailroom_bin()), "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_check_config_warns_when_bounces_cannot_come_home(tmp_path):
    run = check_config(tmp_path, "")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith(": ok"), run.stdout
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, run.stderr
    verp, spf = warnings
    assert "bounces.<domain>" in verp
    for key in ("intake.listen", "domains.return_path_mx", "domains.return_path_label"):
        assert key in verp, (key, verp)
    assert "ip4:127.0.0.1" in spf and "domains.egress_ips" in spf, spf

    run = check_config(tmp_path, 'hostname = "mx1.op.example"\n' + GOOD)
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr, run.stderr
    # Intake on but the MX would name localhost: still said.
    run = check_config(tmp_path, GOOD)
    assert run.returncode == 0 and "warning: " in run.stderr, run.stderr
    assert "localhost" in run.stderr and "domains.return_path_mx" in run.stderr, run.stderr


def records_of(server, prefix):
    tenant = server.create_tenant(prefix)
    domain = f"{prefix}-{uuid.uuid4().hex[:6]}.test"
    r = server.api("POST", f"/v1/tenants/{tenant.id}/domains", {"name": domain})
    assert r.status == 201, r
    r = server.api("GET", f"/v1/domains/{domain}")
    assert r.status == 200, r
    return domain, {rec["kind"]: rec for rec in r.body["records"]}


def test_default_server_warns_and_marks_records_not_deliverable(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("bounce-default"))
    try:
        log = server.log_tail(200)
        assert "nothing receives mail for bounces.<domain>" in log, log
        assert "name only loopback addresses" in log, log
        domain, recs = records_of(server, "rpdefault")
        mx = recs["return_path_mx"]
        assert (mx["type"], mx["name"]) == ("MX", f"bounces.{domain}"), mx
        assert mx["deliverable"] is False, mx
        assert "intake.listen" in mx["problem"] and "domains.return_path_mx" in mx["problem"], mx
        for kind in ("spf", "return_path_spf"):
            assert recs[kind]["deliverable"] is False, recs[kind]
            assert "domains.egress_ips" in recs[kind]["problem"], recs[kind]
        for kind in ("verification", "dkim", "dmarc"):
            assert recs[kind]["deliverable"] is True and recs[kind]["problem"] is None, recs[kind]

        host, port = server.http_addr
        show = subprocess.run(
            [str(mailroom_bin()), "domain", "--url", f"http://{host}:{port}",
             "--token", server.operator_token, "show", domain],
            capture_output=True, text=True, timeout=60)
        assert show.returncode == 0, show.stderr
        assert f"NOT DELIVERABLE return_path_mx bounces.{domain}: nothing receives" in show.stdout, \
            show.stdout
    finally:
        server.stop()


def test_with_intake_and_egress_the_records_are_deliverable(tmp_path_factory):
    # The harness names the server mailroom.test: a public-looking name for the MX.
    server = start_server(tmp_path_factory.mktemp("bounce-good"), extra_config=GOOD)
    try:
        assert server.listeners.get("intake"), server.listeners
        log = server.log_tail(200)
        assert "nothing receives mail" not in log and "loopback addresses" not in log, log
        domain, recs = records_of(server, "rpgood")
        assert recs["return_path_mx"]["value"] == "10 mailroom.test", recs["return_path_mx"]
        assert recs["return_path_spf"]["value"] == "v=spf1 ip4:192.0.2.7 -all"
        for kind, rec in recs.items():
            assert rec["deliverable"] is True and rec["problem"] is None, (kind, rec)
    finally:
        server.stop()
