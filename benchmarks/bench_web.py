"""The web page's figures (issue 21): list render, a 10,000-event transcript, latency, memory.

Run: ``.venv/bin/python benchmarks/bench_web.py`` (needs the ``web`` extra, Playwright's
Python package and a Chromium: ``$NEOCODE_CHROMIUM`` or Debian's ``/usr/bin/chromium``).
Everything runs on loopback, in temporary directories removed at the end:

- the session list with 1,000 sessions: from navigation to the first rows, and to all rows;
- a transcript of about 10,000 events (200 runs of text, thoughts and a plan): first
  screen, all of it, and the longest task that blocked the tab (PerformanceObserver);
- event latency gateway -> page: ``/tick`` chunks carry the gateway's monotonic clock; a
  WebSocket client of the web process (as the page is) compares them with its own;
- the web process's memory (RSS) with 20 open pages, each following a session.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.web_support import CHROMIUM_ARGS, WebServer, chromium_path  # noqa: E402

from neocode_gateway.client import AsyncGatewayClient  # noqa: E402

#: Runs of about 50 events each: a transcript of more than 10,000 events.
RUNS = 220
OBSERVE = """
window.__long = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__long = Math.max(window.__long, e.duration);
}).observe({ type: "longtask", buffered: true });
window.__first = 0;
new MutationObserver(() => {
  if (!window.__first && document.querySelector("#transcript .item, #sessions li"))
    window.__first = performance.now();
}).observe(document, { childList: true, subtree: true });
"""


async def _populate(address: str, workdir: str) -> tuple[str, str]:
    async with AsyncGatewayClient(address, request_timeout=60) as client:
        for index in range(1000):
            await client.create_session(workdir=workdir, title=f"session {index}")
        words = " ".join(f"word{i}" for i in range(40))
        session = ""
        for _ in range(RUNS):
            stream = client.run(
                f"{words} /think /plan", session_id=session or None, workdir=workdir
            )
            await stream.result()
            session = stream.session_id
        live = (await client.create_session(workdir=workdir, title="live"))["id"]
        return session, live


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _page(web: WebServer, name: str, session: str) -> Any:
    from websockets.asyncio.client import connect

    ws_url = web.url.replace("http://", "ws://") + "/ws"
    cookie = "; ".join(f"{k}={v}" for k, v in web.cookie_for(web.pair(name)).items())
    ws = await connect(ws_url, origin=web.url, additional_headers={"Cookie": cookie}, max_size=None)
    await ws.send(json.dumps({"op": "open", "session": session}))
    return ws


async def _until_seq(ws: Any, target: int) -> None:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if message.get("t") == "items" and message["last_seq"] >= target:
            return


async def _ticks(address: str, watcher: Any, live: str, count: int) -> list[float]:
    latencies: list[float] = []
    seen = 0
    async with AsyncGatewayClient(address) as client:
        stream = client.run(f"/tick {count}", session_id=live)
        await stream
        done = asyncio.ensure_future(stream.result())
        while seen < count:
            raw = await asyncio.wait_for(watcher.recv(), 10)
            now = time.monotonic()
            message = json.loads(raw)
            if message.get("t") != "items":
                continue
            for item in message["items"]:
                ticks = re.findall(r"t=(\d+\.\d+)", item["html"])
                latencies.extend((now - float(stamp)) * 1000 for stamp in ticks[seen:])
                seen = max(seen, len(ticks))
        await done
    latencies.sort()
    return latencies


def _p(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(len(values) * q))], 2)


async def _latency_and_memory(web: WebServer, address: str, live: str, big: str) -> dict[str, Any]:
    """Latency with one page, then with 20 pages open (19 on the 10,000-event session)."""
    out: dict[str, Any] = {}
    assert web.proc is not None
    out["rss_idle_mib"] = round(_rss_kib(web.proc.pid) / 1024, 1)
    watcher = await _page(web, "watcher", live)
    alone = await _ticks(address, watcher, live, 1000)
    out.update(latency_1_page_p50_ms=_p(alone, 0.5), latency_1_page_p99_ms=_p(alone, 0.99))
    async with AsyncGatewayClient(address) as client:
        target = (
            await client.request(
                {"action": "load_session", "session_id": big, "payload": {"limit": 1}}
            )
        ).payload["last_seq"]
    pages = [await _page(web, f"m{i}", big) for i in range(19)]
    await asyncio.gather(*(_until_seq(ws, target) for ws in pages))
    out["rss_20_pages_mib"] = round(_rss_kib(web.proc.pid) / 1024, 1)
    crowd = await _ticks(address, watcher, live, 1000)
    out.update(latency_20_pages_p50_ms=_p(crowd, 0.5), latency_20_pages_p99_ms=_p(crowd, 0.99))
    for ws in [watcher, *pages]:
        await ws.close()
    return out


def _browser(web: WebServer, big: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    assert path, "no Chromium (set NEOCODE_CHROMIUM)"
    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        # bypass_csp: Playwright's wait_for_function evaluates strings, which our CSP forbids.
        context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
        context.add_init_script(OBSERVE)
        page = context.new_page()
        page.goto(web.pair("bench"))
        page.wait_for_function("document.querySelectorAll('#sessions li').length >= 1001")
        for _ in range(3):
            page.goto("about:blank")
            page.goto(web.url + "/#/")
            page.wait_for_function("document.querySelectorAll('#sessions li').length >= 1001")
            out.setdefault("list_first_ms", []).append(round(page.evaluate("window.__first")))
            out.setdefault("list_all_ms", []).append(round(page.evaluate("performance.now()")))
            page.goto("about:blank")
            page.goto(web.url + f"/#/s/{big}")
            page.wait_for_function(
                "window.neocode.transcript.pending === 0"
                f" && document.querySelectorAll('#transcript .k-end').length === {RUNS}",
                timeout=60_000,
            )
            out.setdefault("transcript_first_ms", []).append(round(page.evaluate("window.__first")))
            out.setdefault("transcript_all_ms", []).append(
                round(page.evaluate("performance.now()"))
            )
            out.setdefault("longest_task_ms", []).append(round(page.evaluate("window.__long")))
            out["events"] = page.evaluate("window.neocode.state.lastSeq")
        browser.close()
    return out


def main() -> int:
    base = tempfile.mkdtemp(prefix="ngw-bench-web-", dir="/tmp")
    sock = f"{base}/gw.sock"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "neocode_gateway", "--listen", sock, "--data-dir", f"{base}/data"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    web = WebServer(sock, f"{base}/web")
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not start")
            time.sleep(0.02)
        big, live = asyncio.run(_populate(sock, base))
        web.start()
        results = _browser(web, big)
        results.update(asyncio.run(_latency_and_memory(web, sock, live, big)))
        print(json.dumps(results, indent=1))
    finally:
        web.stop()
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=20)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
