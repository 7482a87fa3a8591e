"""The web page in a real headless Chromium (Debian's, driven by Playwright's Python package).

Each test starts a real gateway (echo runtime) and a real ``neocode-gateway web``
process, pairs devices with the CLI as a user would, and drives the page by its
accessible names. Waits are Playwright's auto-waiting with timeouts, never sleeps.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.integration.web_support import WebServer, browser  # noqa: F401 - fixture
from tests.support import Gateway

pytestmark = pytest.mark.timeout(120)
WAIT = 15_000  # ms, Playwright's timeout for each expectation


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT)
    return expect


@pytest.fixture
def web(gateway: Gateway) -> Any:
    server = WebServer(gateway.path)
    try:
        yield server.start()
    finally:
        server.stop()


def _page(browser: Any, link: str) -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(link)
    _expect()(page.get_by_role("heading", name="Sessions")).to_be_visible()
    return page


def _start_run(page: Any, text: str) -> str:
    page.goto(page.url.split("#")[0] + "#/new")
    page.get_by_label("Prompt").fill(text)
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"#/s/s_"), timeout=WAIT)
    return str(page.url).split("#/s/")[1]


def test_pair_run_approve_and_see_it_everywhere(
    browser: Any,  # noqa: F811
    web: WebServer,
    gateway: Gateway,
) -> None:
    expect = _expect()
    page = _page(browser, web.pair("phone", "full"))
    expect(page.get_by_text("phone · full")).to_be_visible()
    session = _start_run(page, "hello from the phone /ask")
    attach = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neocode_gateway",
            "attach",
            session,
            "--all",
            "--until-done",
            "--listen",
            gateway.path,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        allow = page.locator("#transcript").get_by_role("button", name="Allow once", exact=True)
        expect(allow).to_be_visible()
        expect(page).to_have_title(re.compile("Permission waiting"))
        expect(
            page.locator("#pending").get_by_role("button", name="Reject", exact=True)
        ).to_be_visible()
        allow.click()
        expect(page.get_by_text("Run finished (end_turn)")).to_be_visible()
        expect(page.get_by_text("by web (phone)")).to_be_visible()
        expect(page.locator("#pending")).to_be_hidden()
        expect(page).not_to_have_title(re.compile("Permission waiting"))
        out, _ = attach.communicate(timeout=30)
    finally:
        if attach.poll() is None:
            attach.kill()
            attach.wait(timeout=5)
    assert "hello from the phone" in out
    assert attach.returncode == 0, out
    audit = subprocess.run(
        [sys.executable, "-m", "neocode_gateway", "audit", "--listen", gateway.path, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "web (phone)" in audit.stdout, audit.stdout + audit.stderr
    # It fits a phone: nothing wider than the 390 px screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_read_device_sees_no_approve_button_and_the_api_refuses(
    browser: Any,  # noqa: F811
    web: WebServer,
) -> None:
    expect = _expect()
    owner = web.cookie_for(web.login)
    run = httpx.post(
        f"{web.url}/api/runs",
        json={"text": "watch me /ask"},
        cookies=owner,
        headers=web.headers(),
        timeout=10,
    )
    assert run.status_code == 200, run.text
    session = run.json()["session_id"]
    page = _page(browser, web.pair("tv", "read"))
    page.goto(page.url.split("#")[0] + f"#/s/{session}")
    expect(page.get_by_text("this device may only watch")).to_be_visible()
    expect(page.get_by_role("button", name="Allow once", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Send")).to_be_hidden()
    expect(page.locator("#pending-list")).to_contain_text("Run echo")
    reader = web.cookie_for(web.pair("tv-api", "read"))
    pending = httpx.get(f"{web.url}/api/pending", cookies=reader, timeout=10).json()
    request_id = pending["requests"][0]["request_id"]
    refused = httpx.post(
        f"{web.url}/api/permissions/{request_id}",
        json={"decision": "allow_once"},
        cookies=reader,
        headers=web.headers(),
        timeout=10,
    )
    assert refused.status_code == 403
    assert "scope 'read'" in refused.json()["error"]


def test_a_revoked_device_gets_401_and_its_page_closes(
    browser: Any,  # noqa: F811
    web: WebServer,
) -> None:
    expect = _expect()
    link = web.pair("old-phone", "approve")
    page = _page(browser, link)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert httpx.get(f"{web.url}/api/me", cookies=cookies, timeout=10).status_code == 200
    subprocess.run(
        [
            sys.executable,
            "-m",
            "neocode_gateway",
            "web",
            "revoke",
            "old-phone",
            "--data-dir",
            web.data_dir,
        ],
        check=True,
        capture_output=True,
        timeout=20,
    )
    expect(page.get_by_role("alertdialog")).to_be_visible()
    expect(page.get_by_text("revoked")).to_be_visible()
    assert httpx.get(f"{web.url}/api/me", cookies=cookies, timeout=10).status_code == 401
    page.reload()
    expect(page.get_by_text("pair this browser")).to_be_visible()


def test_a_reconnect_mid_run_loses_and_doubles_nothing(
    browser: Any,  # noqa: F811
    web: WebServer,
) -> None:
    expect = _expect()
    page = _page(browser, web.pair("laptop", "full"))
    _start_run(page, "count /slow 50")
    transcript = page.locator("#transcript")
    expect(transcript).to_contain_text("[10/50]")
    page.evaluate("window.neocode.state.ws.close()")
    expect(page.locator("#conn")).to_have_text("")
    # A second prompt while the run is active: the page says so.
    page.get_by_label("Prompt").fill("again")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("a run is already active")
    expect(page.get_by_text("Run finished (end_turn)")).to_be_visible(timeout=30_000)
    text = transcript.inner_text()
    for index in range(1, 51):
        assert text.count(f"[{index}/50]") == 1, (index, text)
    assert page.locator("#transcript .k-msg").count() == 1


def test_the_gateway_going_away_shows_reconnecting_and_recovers(
    browser: Any,  # noqa: F811
    web: WebServer,
    gateway: Gateway,
) -> None:
    expect = _expect()
    page = _page(browser, web.pair("desk", "full"))
    session = _start_run(page, "before the restart")
    expect(page.get_by_text("Run finished (end_turn)")).to_be_visible()
    gateway.stop(timeout=10)
    expect(page.locator("#conn")).to_contain_text("reconnecting")
    gateway.start()
    expect(page.locator("#conn")).to_have_text("")
    page.get_by_label("Prompt").fill("after the restart")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#transcript .k-end")).to_have_count(2)
    assert session in page.url


def test_unknown_session_and_html_in_a_transcript(
    browser: Any,  # noqa: F811
    web: WebServer,
) -> None:
    expect = _expect()
    page = _page(browser, web.pair("lab", "full"))
    page.goto(page.url.split("#")[0] + "#/s/s_doesnotexist")
    expect(page.get_by_text("404: this session does not exist")).to_be_visible()
    page.evaluate("window.pwned = false")
    _start_run(page, "<img src=x onerror=window.pwned=true> <script>window.pwned=true</script>")
    expect(page.get_by_text("Run finished (end_turn)")).to_be_visible()
    expect(
        page.locator("#transcript").get_by_text("<script>window.pwned=true</script>").first
    ).to_be_visible()
    assert page.locator("#transcript img").count() == 0
    assert page.evaluate("window.pwned") is False
