"""The web console (/ui/) in a real headless Chromium (Debian's chromium + chromium-driver,
driven by Python selenium) against the real binary: signing in as the operator and as a
tenant, the overview chart picking up a message sent through SMTP, the message page with
the delivery attempt and the sink's reply, a domain check against a test DNS server, API
keys created and revoked, a webhook's delivery log, releasing a quarantined message,
tenant isolation (another tenant's message is a "Not found" page), a cross-site form post
refused, and signed-out visits sent to sign-in.

Every page visited is saved as a PNG under the test's tmp dir; with
`MAILROOM_SCREENSHOTS=docs/screenshots` they are also written there (relative to the repo).
Every wait is bounded (WebDriverWait / poll_until with a deadline).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mailroom_harness import REPO_ROOT, assert_queued, make_message, poll_until, start_server, submit
from sink import SmtpSink
from test_delivery import delivery_config
from fakes import DnsServer
from test_domains import publish
from test_webhooks import Receiver

WAIT = 20.0

selenium = pytest.importorskip("selenium", reason="selenium is not installed (scripts/install-test-deps.sh)")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def chromium_paths() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    return browser, driver


# --------------------------------------------------------------------------------------
# Fixtures: one server (delivery to the sink, content protection, a test DNS server,
# webhooks to loopback), two tenants, one browser.
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dns_server():
    s = DnsServer()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink, dns_server):
    extra = delivery_config(sink.port) + (
        "\n[content]\nscore_threshold = 6\n"
        + dns_server.config() +
        "\n[webhooks]\nallow_private = true\nretry_schedule_secs = [1]\ntimeout_secs = 5\n"
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-console"), extra_config=extra)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant_a(server):
    return server.create_tenant("alpha", domain="alpha.test")


@pytest.fixture(scope="module")
def tenant_b(server):
    return server.create_tenant("beta", domain="beta.test")


class Console:
    """The browser, pointed at one server, with helpers that wait with a deadline."""

    def __init__(self, driver, server, shots: Path):
        self.d = driver
        host, port = server.http_addr
        self.base = f"http://{host}:{port}"
        self.server = server
        self.shots = shots
        extra = os.environ.get("MAILROOM_SCREENSHOTS", "").strip()
        self.repo_shots = (REPO_ROOT / extra) if extra else None

    def open(self, route: str = ""):
        self.d.get(f"{self.base}/ui/#/{route}")

    def wait(self, cond, timeout: float = WAIT, what: str = "condition"):
        try:
            # The pages redraw themselves every few seconds: an element found a moment
            # ago may be gone, so a stale reference is one more poll, not a failure.
            return WebDriverWait(self.d, timeout, poll_frequency=0.1,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(cond)
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what}; url={self.d.current_url}\n"
                                 f"page text:\n{self.text()[:3000]}") from None

    def css(self, selector: str, timeout: float = WAIT):
        return self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, selector)), timeout,
                         f"element {selector!r}")

    def visible(self, selector: str, timeout: float = WAIT):
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, selector)), timeout,
                         f"visible {selector!r}")

    def wait_text(self, selector: str, needle: str, timeout: float = WAIT):
        def check(d):
            for el in d.find_elements(By.CSS_SELECTOR, selector):
                try:
                    if needle in el.text:
                        return el
                except Exception:  # noqa: BLE001 - redrawn meanwhile: try again
                    pass
            return False
        return self.wait(check, timeout, f"{needle!r} in {selector!r}")

    def text(self) -> str:
        try:
            return self.d.find_element(By.TAG_NAME, "body").text
        except Exception:  # noqa: BLE001
            return ""

    def h1(self) -> str:
        return self.css("main h1").text

    def sign_out(self):
        """Forgets the session: on a static asset (no console script running), so no
        page of the last test sees its session vanish mid-request."""
        self.d.get(f"{self.base}/ui/logo.svg")
        self.d.delete_all_cookies()
        self.d.execute_script("sessionStorage.clear()")

    def sign_in(self, token: str):
        self.sign_out()
        self.open("overview")
        field = self.visible("#signin-form input[name=token]")
        field.send_keys(token + Keys.RETURN)  # the keyboard alone signs in
        self.visible("header.top")
        self.wait(lambda d: "#/overview" in d.current_url, what="the overview after sign-in")

    def accept_confirm(self):
        self.wait(EC.alert_is_present(), 5, "a confirm dialog").accept()

    def shot(self, name: str, full: bool = False):
        """Saves the window (or, `full`, the whole page up to 2,400 px high) as a PNG."""
        time.sleep(0.2)  # let the last redraw paint
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        size = self.d.get_window_size()
        if full:
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            self.d.set_window_size(size["width"], min(int(height) + 140, 2400))
            time.sleep(0.3)
        self.d.save_screenshot(str(path))
        if full:
            self.d.set_window_size(size["width"], size["height"])
        if self.repo_shots is not None:
            self.repo_shots.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.repo_shots / f"{name}.png")


@pytest.fixture(scope="module")
def console(server, tmp_path_factory):
    browser, driver_path = chromium_paths()
    if not browser or not driver_path:
        pytest.skip("chromium and chromium-driver are not installed (scripts/install-test-deps.sh)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1366,900", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=opts)
    driver.set_page_load_timeout(WAIT)
    c = Console(driver, server, tmp_path_factory.mktemp("screenshots"))
    yield c
    driver.quit()


@pytest.fixture(autouse=True)
def no_console_errors(request):
    """Fails a test whose page logged a JavaScript error or a CSP violation."""
    yield
    if "console" not in request.fixturenames:
        return
    c = request.getfixturevalue("console")
    severe = [e for e in c.d.get_log("browser") if e.get("level") == "SEVERE"
              and "Failed to load resource" not in e.get("message", "")]
    assert not severe, f"browser console errors: {severe}"


def uniq(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}@example.net"


def send_smtp(server, tenant, to: str, subject: str) -> str:
    with server.smtp_starttls() as client:
        code, _ = tenant.login(client)
        assert code == 235
        reply = submit(client, tenant.sender, [to], make_message(tenant.sender, [to], subject=subject))
    return assert_queued(reply)


# --------------------------------------------------------------------------------------
# Tests (one browser; each test signs in as whom it needs)
# --------------------------------------------------------------------------------------


def test_assets_are_served_with_csp_types_and_no_other_host(server):
    host, port = server.http_addr
    base = f"http://{host}:{port}"
    req = urllib.request.Request(f"{base}/", method="GET")
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None}))
    try:
        opener.open(req, timeout=10)
        raise AssertionError("/ did not redirect")
    except urllib.error.HTTPError as err:
        assert 300 <= err.code < 400 and err.headers["Location"] == "/ui/", (err.code, dict(err.headers))
    with urllib.request.urlopen(f"{base}/ui/", timeout=10) as r:
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["Content-Type"].startswith("text/html")
        html = r.read().decode()
    assert '<script type="module" src="app.js">' in html
    with urllib.request.urlopen(f"{base}/ui/app.js", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
        etag = r.headers["ETag"]
    req = urllib.request.Request(f"{base}/ui/app.js", headers={"If-None-Match": etag})
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("a matching ETag was not answered 304")
    except urllib.error.HTTPError as err:
        assert err.code == 304


def test_signed_out_visits_are_sent_to_sign_in(console):
    console.sign_out()
    console.open("messages")
    console.visible("#signin-form")
    console.wait(lambda d: "#/signin?next=messages" in d.current_url, what="the sign-in route")
    assert not console.css("header.top").is_displayed()
    console.css("#signin-form input[name=token]").send_keys("mrk_not-a-real-key")
    console.css("#signin-form button[type=submit]").click()
    console.wait_text("#signin-form [role=alert]", "not valid")
    console.shot("signin")


def test_a_session_that_ends_mid_use_goes_back_to_sign_in(console, server):
    console.sign_in(server.operator_token)
    console.open("tenants")
    console.css("main table.tenants, main .empty")
    console.d.delete_all_cookies()  # the session cookie is gone (expired, or signed out elsewhere)
    console.css("#nav a[href='#/nodes']").click()
    console.visible("#signin-form")
    console.wait(lambda d: "#/signin?next=nodes" in d.current_url, what="the sign-in route")
    # Signing in again lands on the page that was asked for.
    console.css("#signin-form input[name=token]").send_keys(server.operator_token)
    console.css("#signin-form button[type=submit]").click()
    console.wait(lambda d: d.current_url.endswith("#/nodes"), what="the nodes page after sign-in")
    console.css("main table.nodes, main .empty")


def test_operator_sees_a_message_sent_now_in_the_overview_and_its_attempt(console, server, tenant_a, sink):
    console.sign_in(server.operator_token)
    console.wait_text("#who", "Operator")
    console.css("#total-accepted")
    to = uniq("ok")
    msg_id = send_smtp(server, tenant_a, to, "Console overview")
    bounced, later = uniq("bad"), uniq("later")
    bounced_id = send_smtp(server, tenant_a, bounced, "Console overview: a bounce")
    send_smtp(server, tenant_a, later, "Console overview: a deferral")
    sink.wait_for_rcpt(to, timeout=WAIT)

    def tile(kind: str) -> int:
        # The tiles are redrawn every 3 s; read again if this one was replaced under us.
        for _ in range(20):
            try:
                el = console.d.find_element(By.CSS_SELECTOR, f"#total-{kind} .tile-value")
                return int(el.text.replace(",", "") or 0)
            except StaleElementReferenceException:
                time.sleep(0.05)
        raise AssertionError(f"the {kind} tile kept being replaced while read")

    # The page refreshes itself: no reload, the counters and the chart move.
    console.wait(lambda d: tile("delivered") >= 1 and tile("bounced_hard") >= 1,
                 8, "the delivered and bounced counters to move (the page redraws every 3 s)")
    sink.wait_for_rcpt(later, timeout=WAIT)  # 451 first, delivered on the 1 s retry
    console.wait(lambda d: tile("deferred") >= 1 and tile("delivered") >= 2, 8, "the deferral and its retry")
    assert tile("accepted") >= 3
    chart = console.css("svg.chart[data-total]")
    assert int(chart.get_attribute("data-total")) >= 3 + 2 + 1 + 1  # accepted, delivered, bounced, deferred
    assert console.d.find_elements(By.CSS_SELECTOR, "svg.chart path.series-delivered")
    console.wait_text("main table.domains", "example.net")
    console.shot("overview", full=True)

    # The messages search finds it by recipient; its page shows the attempt and the reply.
    console.open(f"messages?recipient={to}")
    link = console.wait_text("#message-results a", msg_id)
    console.shot("messages")
    link.click()
    console.wait(lambda d: f"#/messages/{msg_id}" in d.current_url, what="the message page")
    rec = console.css(f"section.recipient[data-address='{to}']")
    console.wait_text(f"section.recipient[data-address='{to}'] .state", "delivered")
    console.wait_text(f"section.recipient[data-address='{to}'] .timeline", "delivered")
    console.wait_text(f"section.recipient[data-address='{to}'] .timeline", "Ok: queued as")
    assert "127.0.0.1" in rec.text, rec.text
    # The attempt's duration, as recorded by delivery (`duration_ms`), in its column.
    cells = [c.text for c in console.d.find_elements(
        By.CSS_SELECTOR, f"section.recipient[data-address='{to}'] .timeline td[data-label='Duration']")]
    assert any(c.endswith(" ms") or c.endswith(" s") for c in cells), cells
    assert console.css("#envelope").text.count("Console overview") >= 1
    console.shot("message", full=True)

    # The bounced message: its hard bounce, and the failure report (DSN) sent to the
    # sender about it, listed on its page and linked to the report's own page.
    console.open(f"messages/{bounced_id}")
    console.wait_text(f"section.recipient[data-address='{bounced}'] .state", "bounced")
    console.wait_text(f"section.recipient[data-address='{bounced}'] .timeline", "5.1.1")
    deadline = time.monotonic() + WAIT
    while tenant_a.sender not in console.css("main").text:
        assert time.monotonic() < deadline, console.text()[:2000]
        time.sleep(0.5)
        console.d.refresh()
        console.css(f"section.recipient[data-address='{bounced}']")
    report = console.wait_text("table.reports", tenant_a.sender)
    assert "No report" not in report.text
    console.shot("message-bounced", full=True)


def test_a_domain_is_checked_from_its_page(console, server, tenant_a, dns_server):
    r = server.api("POST", f"/v1/tenants/{tenant_a.id}/domains", {"name": "news.alpha.test"})
    assert r.status == 201, r
    console.sign_in(tenant_a.api_key)
    console.open("domains")
    console.wait_text("main table.domains", "news.alpha.test").find_element(By.LINK_TEXT, "news.alpha.test").click()
    console.css("#check-now")
    first = console.css("main h1 .state").text
    assert first != "verified", first
    publish(dns_server, server.api("GET", "/v1/domains/news.alpha.test").body["records"])
    console.css("#check-now").click()
    console.wait_text("main h1 .state", "verified")
    assert console.css("#last-checked").text != "—"
    zone = console.css("#zone-download")
    assert zone.get_attribute("download") == "news.alpha.test.zone"
    console.shot("domain", full=True)


def test_an_api_key_is_created_shown_once_and_revoked(console, server, tenant_a):
    console.sign_in(tenant_a.api_key)
    console.open("keys")
    form = console.css("#key-form")
    form.find_element(By.NAME, "name").send_keys("console-e2e")
    form.find_element(By.CSS_SELECTOR, "select[name=scope] option[value=read]").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    secret = console.visible("#new-secret .secret-value").get_attribute("value")
    assert secret.startswith("mrk_"), secret
    assert server.api("GET", "/v1/keys", token=secret).status == 200
    console.wait_text("main table.keys", "console-e2e")
    console.shot("keys")
    console.css("button[data-key='console-e2e']").click()
    console.accept_confirm()
    console.wait(lambda d: "console-e2e" not in d.find_element(By.CSS_SELECTOR, "main").text,
                 what="the revoked key to leave the list")
    poll_until(lambda: server.api("GET", "/v1/keys", token=secret).status == 401, timeout=10,
               what="the revoked key refused")


def test_a_webhook_is_added_and_its_delivery_log_shows_the_retry(console, server, tenant_a, receiver, sink):
    console.sign_in(tenant_a.api_key)
    console.open("webhooks")
    form = console.css("#webhook-form")
    form.find_element(By.NAME, "url").send_keys(receiver.url)
    form.find_element(By.CSS_SELECTOR, "input[value=delivered]").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert console.visible("#new-secret .secret-value").get_attribute("value").startswith("whsec_")
    console.wait_text("main table.webhooks", receiver.url).find_element(By.LINK_TEXT, receiver.url).click()
    console.css("#send-test").click()
    poll_until(lambda: any(r["payload"]["events"][0]["type"] == "ping" for r in receiver.requests),
               timeout=WAIT, what="the test ping")
    to = uniq("ok")
    send_smtp(server, tenant_a, to, "Webhook log")
    sink.wait_for_rcpt(to, timeout=WAIT)
    # The receiver answers 500 to the first event, 200 to the retry.
    def logged():
        console.d.refresh()
        rows = console.css("main").find_elements(By.CSS_SELECTOR, "table.deliveries tbody tr")
        return any("delivered" in r.text and "200" in r.text for r in rows)
    poll_until(logged, timeout=WAIT, interval=1.0, what="a delivered row with status 200 in the log")
    row = [r for r in console.d.find_elements(By.CSS_SELECTOR, "table.deliveries tbody tr") if "200" in r.text][0]
    assert "2" in row.find_element(By.CSS_SELECTOR, "td[data-label=Attempts]").text
    console.shot("webhook")


def test_a_quarantined_message_is_released(console, server, tenant_a, sink):
    to = uniq("held")
    r = server.api("POST", "/v1/messages", {
        "from": f"news@{tenant_a.domain}", "to": [to], "subject": "Urgent action required",
        "text": "Please verify your account.",
        "html": "<p><a href=\"https://collector.example/\">https://www.bank.example/login</a></p>",
        "tags": ["phish-test"], "metadata": {"campaign": "spring-42"}},
        token=tenant_a.api_key)
    assert r.status == 202, r
    assert r.body["recipients"][0]["status"] == "quarantined", r
    msg_id = r.body["id"]
    console.sign_in(tenant_a.api_key)
    # Its page while it is held: tags, metadata and the header fields of the stored body.
    console.open(f"messages/{msg_id}")
    console.wait_text("#envelope", "phish-test")
    console.wait_text("#envelope", "spring-42")
    headers = console.css("#headers")
    headers.find_element(By.TAG_NAME, "summary").click()
    console.wait_text("#headers", "Urgent action required")
    assert "Message-ID" in headers.text or "Message-Id" in headers.text, headers.text
    console.css("#release")
    console.shot("message-quarantined", full=True)
    console.open("quarantine")
    console.wait_text("main table.quarantine", msg_id)
    console.shot("quarantine")
    assert not any(to in m.rcpts for m in list(sink.messages)), "delivered while quarantined"
    console.css(f"button[data-id='{msg_id}']").click()
    console.wait(lambda d: msg_id not in d.find_element(By.CSS_SELECTOR, "main").text,
                 what="the released message to leave the quarantine")
    sink.wait_for_rcpt(to, timeout=WAIT)


def test_tenant_b_cannot_open_tenant_a_message(console, server, tenant_a, tenant_b, sink):
    to = uniq("ok")
    msg_id = send_smtp(server, tenant_a, to, "Only for alpha")
    console.sign_in(tenant_b.api_key)
    console.wait_text("#who", "Tenant")
    console.open(f"messages/{msg_id}")
    console.wait_text("main h1", "Not found")
    assert to not in console.text()
    console.open(f"messages?recipient={to}")
    console.wait_text("#message-results", "No message matches")


def test_a_cross_site_form_post_is_refused(console, server, tenant_a):
    """A page on another origin auto-submits a form to the API while the browser holds a
    console session: no CSRF token, so 403 and nothing is created."""
    host, port = server.http_addr
    target = f"http://{host}:{port}/v1/keys"
    page = (
        "<!doctype html><html><body>"
        f'<form id="f" method="POST" action="{target}" enctype="text/plain">'
        '<input name=\'{"name":"csrf-attack","scope":"full","x":"\' value=\'"}\'>'
        "</form><script>document.getElementById('f').submit()</script></body></html>"
    ).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        console.sign_in(tenant_a.api_key)
        console.d.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        console.wait(lambda d: d.current_url.startswith(target), what="the form post to land")
        # Same site (ports do not count), so the SameSite=Strict cookie went along: the
        # refusal is the server's CSRF check (no X-CSRF-Token, foreign Origin).
        body = console.text().replace(" ", "")
        assert '"status":403' in body, body
    finally:
        evil.shutdown()
    names = [k["name"] for k in server.api("GET", f"/v1/keys?tenant={tenant_a.id}").body["keys"]]
    assert "csrf-attack" not in names, names
    # The console still works in the same browser afterwards.
    console.open("keys")
    console.css("#key-form")


def test_operator_pages_and_phone_width(console, server, tenant_a):
    console.sign_in(server.operator_token)
    for route, marker, name in [("tenants", "main table.tenants", "tenants"),
                                ("queue", "main table.destinations, main .empty", "queue"),
                                ("nodes", "main table.nodes, main .empty", "nodes"),
                                ("suppressions", "#suppression-form", "suppressions")]:
        console.open(route)
        console.css(marker)
        console.shot(name)
    console.open(f"tenants/{tenant_a.id}")
    console.css("#tenant-edit")
    console.shot("tenant")
    # Suppressions: add one through the form for the tenant in view (picked in the header).
    console.open("suppressions")
    before = console.css("#suppression-form")
    pick = Select(console.css("#tenant-pick"))
    if pick.first_selected_option.get_attribute("value") != tenant_a.id:
        pick.select_by_value(tenant_a.id)
        console.wait(EC.staleness_of(before), what="the page redrawn for the picked tenant")
    form = console.css("#suppression-form")
    addr = uniq("gone")
    form.find_element(By.NAME, "address").send_keys(addr)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    console.wait_text("main table.suppressions", addr)
    # CSV import: a header line and two addresses, read by the page and added one by one.
    first, second = uniq("csv"), uniq("csv")
    csv_path = console.shots / "import.csv"
    csv_path.write_text(f"address,reason\n{first},manual\n\"{second}\",complaint\n")
    console.css("input[type=file][name=csv]").send_keys(str(csv_path))
    console.css("input[type=file][name=csv]").find_element(By.XPATH, "ancestor::form").submit()
    console.wait_text("main table.suppressions", first)
    console.wait_text("main table.suppressions", second)
    r = server.api("GET", f"/v1/suppressions/{second}?tenant={tenant_a.id}")
    assert r.status == 200 and r.body["reason"] == "complaint", r
    # A phone-width screen: the menu collapses behind a button that opens it.
    console.d.set_window_size(390, 844)
    try:
        console.open("overview")
        console.css("#total-accepted")
        menu = console.visible("#menu-toggle")
        assert not console.css("#nav").is_displayed()
        menu.click()
        console.visible("#nav a[href='#/messages']")
        console.shot("overview-phone")
    finally:
        console.d.set_window_size(1366, 900)
