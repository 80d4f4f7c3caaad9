"""Traffic shaping end to end (issue 17): three strict "providers" (`fakes.ProviderSink`,
each on its own loopback address and the one `delivery.mx_port`) behind the test DNS,
with MX names that match built-in profiles (Google, Yahoo, Outlook).

- MX rollup: gmail.test and a Workspace-style domain share one site `provider:google`;
  `GET /v1/queue/destinations` and `mailroom queue destinations` show each site with
  its provider, limits in force and connections; every message is delivered.
- A suspend-class reply suspends the site (visible in the API with its cause), later
  mail is deferred by Mailroom without reaching the provider, and the site resumes after
  the rule's (configured, short) duration: the mail is delivered. The action is a
  `shaping.action` event.
- A tenant-scoped block (Yahoo's TS02 text aimed at one tenant's sender domain) slows
  only that tenant: the other tenant's mail to the same provider is delivered, and the
  blocked tenant sees the event under its own key.
- Egress pool 127.0.0.2 (warm) + 127.0.0.3 (warming, day-1 cap 3): the provider sees the
  pool's addresses and EHLO names for the pooled tenant and the system address for the
  other; the warming address sends exactly its cap, the rest overflows to 127.0.0.2.
Runs on SQLite and PostgreSQL (MAILROOM_TEST_BACKEND).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from fakes import ProviderSink
from mailroom_harness import mailroom_bin, poll_until, start_server
from test_delivery import send, wait_states
from tls_fixtures import DnsServer

WAIT = 30.0
SUSPEND_SECS = 8

SITES = {
    # domain: (MX host, provider sink)
    "gmail.test": ("gmail-smtp-in.l.google.com", "google"),
    "workspace.test": ("aspmx.l.google.com", "google"),
    "yahoo.test": ("mta5.am0.yahoodns.net", "yahoo"),
    "hotmail.test": ("hotmail-com.olc.protection.outlook.com", "outlook"),
}


@pytest.fixture(scope="module")
def providers():
    google = ProviderSink("google", host="127.0.0.11", max_connections=8, per_minute=1000)
    port = google.port
    ps = {
        "google": google,
        "yahoo": ProviderSink("yahoo", host="127.0.0.12", port=port, max_connections=8,
                              per_minute=1000),
        "outlook": ProviderSink("outlook", host="127.0.0.13", port=port, max_connections=8,
                                per_minute=1000),
    }
    yield ps
    for p in ps.values():
        p.stop()


@pytest.fixture(scope="module")
def dns_server(providers):
    s = DnsServer()
    for domain, (mx, prov) in SITES.items():
        s.mx[domain] = [f"10 {mx}"]
        s.a[mx] = [providers[prov].host]
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, providers, dns_server):
    extra = (
        "[delivery]\n"
        "allow_private = true\n"
        f"mx_port = {providers['google'].port}\n"
        "retry_schedule_secs = [1]\n"
        "retry_jitter = 0.0\n"
        "connect_timeout_secs = 5\n"
        "greeting_timeout_secs = 10\n"
        "command_timeout_secs = 10\n"
        "data_timeout_secs = 10\n"
        + dns_server.config() +
        "\n[shaping]\n"
        "enabled = true\n"
        "refresh_secs = 1\n"
        "[[shaping.rules]]\n"
        'name = "suspend-class"\n'
        "pattern = '(?i)4\\.7\\.1 .*temporarily (?:suspended|blocked)'\n"
        'action = "suspend"\n'
        f"duration_secs = {SUSPEND_SECS}\n"
        "[[shaping.rules]]\n"
        'name = "yahoo-ts02"\n'
        "pattern = '\\[?TS02\\]?'\n"
        'action = "suspend_tenant"\n'
        "duration_secs = 120\n"
        "[shaping.warmup]\n"
        "schedule = [[1, 3]]\n"
        "\n[egress]\n"
        "[[egress.pools]]\n"
        'name = "main"\n'
        "addresses = [\n"
        '  { ip = "127.0.0.2", ehlo = "out2.mailroom.test" },\n'
        '  { ip = "127.0.0.3", ehlo = "out3.mailroom.test", warmup = true, connections = 2 },\n'
        "]\n"
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-shaping"), extra_config=extra)
    yield srv
    srv.stop()


def rcpt(domain: str) -> str:
    return f"ok-{uuid.uuid4().hex[:10]}@{domain}"


def destinations(server) -> dict[str, dict]:
    r = server.api("GET", "/v1/queue/destinations")
    assert r.status == 200, r
    assert r.body["shaping"] is True, r.body
    return {s["site"]: s for s in r.body["sites"]}


def shaping_events(server, token=None) -> list[dict]:
    kw = {} if token is None else {"token": token}
    r = server.api("GET", "/v1/events?type=shaping.action&limit=1000", **kw)
    assert r.status == 200, r
    return r.body["events"]


def cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(mailroom_bin()), *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=WAIT)


def test_sites_roll_up_by_mx_and_show_provider_limits(server, providers):
    t = server.create_tenant("rollup", domain="rollup-sender.test")
    sent = {}
    for domain in SITES:
        for _ in range(3):
            to = rcpt(domain)
            sent[to] = send(server, t, [to])[0]
    for to, msg_id in sent.items():
        wait_states(server, msg_id, {to: "delivered"}, timeout=WAIT)
    sites = destinations(server)
    google = sites["provider:google"]
    assert google["provider"] == "google" and google["resolved"] is True, google
    assert {"gmail.test", "workspace.test"} <= set(google["destinations"]), google
    assert google["limits"]["messages_per_connection"] == 100, google
    yahoo, outlook = sites["provider:yahoo"], sites["provider:outlook"]
    assert yahoo["limits"]["messages_per_minute"] == 600, yahoo
    assert outlook["limits"]["messages_per_connection"] == 20, outlook
    for s in (google, yahoo, outlook):
        assert 1 <= s["limits"]["connections"], s
        assert s["limits"]["tls"] == "opportunistic", s
    for name, p in providers.items():
        seen = p.report()
        # The window starts at 2 and the sinks allow 8: nothing was turned away.
        assert seen["deferred"] == 0, (name, seen)
    out = cli(server, "queue", "destinations")
    assert out.returncode == 0, out.stderr
    assert "provider:google\tgoogle\t" in out.stdout, out.stdout
    assert "provider:yahoo\tyahoo\t" in out.stdout, out.stdout
    js = json.loads(cli(server, "queue", "destinations", "--json").stdout)
    assert {s["site"] for s in js["sites"]} >= {"provider:google", "provider:yahoo"}


def test_suspend_rule_suspends_the_site_then_it_resumes(server, providers):
    yahoo = providers["yahoo"]
    t = server.create_tenant("susp", domain="susp-sender.test")
    block = "421 4.7.1 [TS99] Service temporarily suspended for this sender, try later"
    yahoo.block_all = block
    try:
        first = rcpt("yahoo.test")
        m1, _ = send(server, t, [first])
        wait_states(server, m1, {first: "deferred"}, timeout=WAIT)

        def suspended():
            s = destinations(server).get("provider:yahoo", {})
            return [x for x in s.get("throttles", []) if x["action"] == "suspend"]

        th = poll_until(suspended, 10, what="provider:yahoo suspended in the API")[0]
        assert th["rule"] == "suspend-class" and th["tenant"] is None, th
        assert "temporarily suspended" in th["cause"], th
        assert th["expires_in_secs"] <= SUSPEND_SECS, th
        # While suspended, Mailroom defers on its own: the provider is not asked.
        tried = yahoo.report()["deferred"]
        second = rcpt("yahoo.test")
        m2, _ = send(server, t, [second])
        rec = wait_states(server, m2, {second: "deferred"}, timeout=WAIT)[second.lower()]
        assert "suspended" in rec["last_reply"], rec
        assert yahoo.report()["deferred"] == tried, yahoo.report()
        ev = [e for e in shaping_events(server)
              if e["detail"].get("site") == "provider:yahoo"
              and e["detail"].get("action") == "suspend"]
        assert ev and ev[-1]["tenant_id"] is None, ev
        assert "temporarily suspended" in ev[-1]["detail"]["cause"], ev
    finally:
        yahoo.block_all = None
    started = time.monotonic()
    wait_states(server, m1, {first: "delivered"}, timeout=WAIT)
    wait_states(server, m2, {second: "delivered"}, timeout=WAIT)
    print(f"resumed {time.monotonic() - started:.1f}s after the block was lifted")
    poll_until(lambda: not suspended(), 10, what="suspension expired in the API")


def test_tenant_scoped_block_slows_only_that_tenant(server, providers):
    outlook = providers["outlook"]
    a = server.create_tenant("blocked", domain="blocked-sender.test")
    b = server.create_tenant("fine", domain="fine-sender.test")
    outlook.block["blocked-sender.test"] = (
        "421 4.7.0 [TS02] Messages from 127.0.0.1 temporarily deferred due to user complaints")
    try:
        to_a = rcpt("hotmail.test")
        ma, _ = send(server, a, [to_a])
        wait_states(server, ma, {to_a: "deferred"}, timeout=WAIT)

        def tenant_suspension():
            s = destinations(server).get("provider:outlook", {})
            return [x for x in s.get("throttles", []) if x["tenant"] == a.id]

        th = poll_until(tenant_suspension, 10, what="tenant-scoped suspension")[0]
        assert th["action"] == "suspend" and th["rule"] == "yahoo-ts02", th
        # The other tenant goes through at the same provider, several times.
        for _ in range(3):
            to_b = rcpt("hotmail.test")
            mb, _ = send(server, b, [to_b])
            wait_states(server, mb, {to_b: "delivered"}, timeout=WAIT)
        # The blocked tenant's next message is held by Mailroom, not sent.
        tried = outlook.report()["deferred"]
        to_a2 = rcpt("hotmail.test")
        ma2, _ = send(server, a, [to_a2])
        rec = wait_states(server, ma2, {to_a2: "deferred"}, timeout=WAIT)[to_a2.lower()]
        assert "suspended" in rec["last_reply"], rec
        assert outlook.report()["deferred"] == tried
        assert not outlook.accepted_for(to_a2)
        # The tenant sees its own event; the other tenant does not.
        mine = shaping_events(server, token=a.api_key)
        assert any(e["detail"].get("rule") == "yahoo-ts02" for e in mine), mine
        assert not [e for e in shaping_events(server, token=b.api_key)
                    if e["detail"].get("rule") == "yahoo-ts02"]
    finally:
        outlook.block.clear()
        server.api("DELETE", "/v1/throttles?site=provider:outlook")


def test_egress_pool_sources_and_warmup_overflow(server, providers):
    google = providers["google"]
    pooled = server.create_tenant("pooled", domain="pooled-sender.test")
    plain = server.create_tenant("plain", domain="plain-sender.test")
    r = server.api("PUT", f"/v1/tenants/{pooled.id}/egress-pool", {"pool": "main"})
    assert r.status == 200, r
    time.sleep(1.5)  # the shaper reads tenant pools every refresh_secs
    sent = {}
    for _ in range(8):
        to = rcpt("gmail.test")
        sent[to] = send(server, pooled, [to])[0]
    other = rcpt("workspace.test")
    mo, _ = send(server, plain, [other])
    for to, msg_id in sent.items():
        wait_states(server, msg_id, {to: "delivered"}, timeout=WAIT)
    wait_states(server, mo, {other: "delivered"}, timeout=WAIT)
    by_source: dict[str, int] = {}
    for to in sent:
        (ip, sender, _, _), = google.accepted_for(to)
        assert sender.endswith("pooled-sender.test"), sender  # VERP: b+…@bounces.<domain>
        by_source[ip] = by_source.get(ip, 0) + 1
    # Day 1 of 127.0.0.3's warm-up allows 3 to this provider; the rest overflowed.
    assert by_source == {"127.0.0.3": 3, "127.0.0.2": 5}, by_source
    (ip, _, _, _), = google.accepted_for(other)
    assert ip == "127.0.0.1", ip
    seen = google.report()["by_source"]
    assert seen["127.0.0.3"]["ehlo"] == ["out3.mailroom.test"], seen
    assert seen["127.0.0.2"]["ehlo"] == ["out2.mailroom.test"], seen
    assert seen["127.0.0.3"]["peak_connections"] <= 2, seen

    def warm():
        w = destinations(server).get("provider:google", {}).get("warmup", [])
        return [x for x in w if x["address"] == "127.0.0.3" and x["provider"] == "google"]

    pos = poll_until(warm, 10, what="warm-up position of 127.0.0.3")[0]
    assert (pos["day"], pos["allowance"], pos["sent_today"]) == (1, 3, 3), pos
    ev = [e for e in shaping_events(server) if e["detail"].get("kind") == "warmup_overflow"]
    assert any(e["detail"]["address"] == "127.0.0.3" for e in ev), ev
