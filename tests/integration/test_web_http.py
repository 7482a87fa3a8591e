"""The web server at the HTTP level: credentials, scopes, and what a browser must not do.

Against the real ``neocode-gateway web`` process (and a real gateway), with httpx and
the ``websockets`` client: no browser needed.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.web_support import WEB_CMD, WebServer
from tests.support import Gateway, short_tmpdir

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Gateway, WebServer]]:
    directory = short_tmpdir()
    gateway = Gateway(f"{directory}/gw.sock").start()
    web = WebServer(gateway.path)
    try:
        yield gateway, web.start()
    finally:
        web.stop()
        gateway.stop(timeout=8)
        gateway.cleanup()


@pytest.fixture
def web(served: tuple[Gateway, WebServer]) -> WebServer:
    return served[1]


def _cookie(web: WebServer, name: str, scope: str = "full") -> dict[str, str]:
    return web.cookie_for(web.pair(name, scope))


def test_nothing_without_a_credential(web: WebServer) -> None:
    page = httpx.get(f"{web.url}/", timeout=10)
    assert page.status_code == 401
    assert "neocode-gateway web pair --name" in page.text
    assert httpx.get(f"{web.url}/api/sessions", timeout=10).status_code == 401
    assert httpx.get(f"{web.url}/static/app.js", timeout=10).status_code == 401
    assert httpx.get(f"{web.url}/static/style.css", timeout=10).status_code == 200


@pytest.mark.parametrize("token", ["", "x", "not-a-real-token-" * 3, "%00%ff", "a" * 5000])
def test_a_malformed_or_unknown_token_is_401_with_how_to_pair(web: WebServer, token: str) -> None:
    page = httpx.get(f"{web.url}/?token={token}", timeout=10)
    assert page.status_code == 401
    assert "pair" in page.text
    assert "Traceback" not in page.text


def test_a_pairing_link_works_once_and_the_cookie_is_strict(web: WebServer) -> None:
    link = web.pair("once")
    first = httpx.get(link, timeout=10)
    assert first.status_code == 200
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/" in cookie
    assert httpx.get(link, timeout=10).status_code == 401
    me = httpx.get(f"{web.url}/api/me", cookies=dict(first.cookies), timeout=10)
    assert me.json() == {"device": "once", "scope": "full"}


def test_an_expired_token_and_an_expired_device_are_401(web: WebServer) -> None:
    from neocode_gateway.web._devices import DeviceStore

    store = DeviceStore(web.data_dir)
    token = store.add_pairing("late", "full", link_ttl=0.001)
    assert httpx.get(f"{web.url}/?token={token}", timeout=10).status_code == 401
    short = web.cookie_for(f"{web.url}/?token={store.add_pairing('brief', 'full', 1.5)}")
    assert httpx.get(f"{web.url}/api/me", cookies=short, timeout=10).status_code == 200
    deadline = time.monotonic() + 5
    while httpx.get(f"{web.url}/api/me", cookies=short, timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "the device did not expire"


def test_tokens_are_stored_only_as_hashes_in_a_0600_file(web: WebServer) -> None:
    link = web.pair("hashed")
    token = link.split("token=")[1]
    cookie = next(iter(web.cookie_for(link).values()))
    path = os.path.join(web.data_dir, "web-devices.json")
    with open(path) as handle:
        text = handle.read()
    assert token not in text
    assert cookie not in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(token) >= 32  # 256 bits, URL-safe base64


def test_foreign_host_is_refused(web: WebServer) -> None:
    for host in ("evil.example", f"evil.example:{web.port}", f"127.0.0.1:{web.port + 1}"):
        response = httpx.get(f"{web.url}/", headers={"Host": host}, timeout=10)
        assert response.status_code == 421, host
    assert httpx.get(f"{web.url}/", headers={"Host": f"localhost:{web.port}"}).status_code == 401


def test_cross_site_posts_are_refused(web: WebServer) -> None:
    cookies = _cookie(web, "csrf")
    for headers in ({"Origin": "http://evil.example"}, {}, {"Origin": "null"}):
        response = httpx.post(
            f"{web.url}/api/runs", json={"text": "x"}, cookies=cookies, headers=headers
        )
        assert response.status_code == 403, headers


def test_security_headers(web: WebServer) -> None:
    response = httpx.get(f"{web.url}/", cookies=_cookie(web, "headers"), timeout=10)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/app.js">' in response.text
    assert "<script>" not in response.text


def test_websocket_needs_the_page_origin_and_a_credential(web: WebServer) -> None:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect
    from websockets.typing import Origin

    ws_url = web.url.replace("http://", "ws://") + "/ws"
    cookie = "; ".join(f"{k}={v}" for k, v in _cookie(web, "sock").items())
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, origin=Origin("http://evil.example"), additional_headers={"Cookie": cookie})
    assert refused.value.response.status_code == 403
    with connect(ws_url, origin=Origin(web.url), open_timeout=10) as anonymous:
        with pytest.raises(ConnectionClosed) as closed:
            anonymous.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
    with connect(ws_url, origin=Origin(web.url), additional_headers={"Cookie": cookie}) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello == {"t": "hello", "device": "sock", "scope": "full"}
        ws.send("not json")
        ws.send(json.dumps({"op": "open", "session": "s_nope"}))
        for _ in range(10):
            message = json.loads(ws.recv(timeout=10))
            if message.get("t") == "err" and message.get("op") == "open":
                assert message["status"] == 404
                break


def _run(web: WebServer, cookies: dict[str, str], text: str) -> dict[str, Any]:
    response = httpx.post(
        f"{web.url}/api/runs", json={"text": text}, cookies=cookies, headers=web.headers()
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_scopes_and_gateway_errors_as_statuses(web: WebServer) -> None:
    full = _cookie(web, "full-dev")
    approve = _cookie(web, "approver", "approve")
    read = _cookie(web, "reader", "read")
    h = web.headers()
    refused = httpx.post(f"{web.url}/api/runs", json={"text": "x"}, cookies=approve, headers=h)
    assert refused.status_code == 403
    session = _run(web, full, "slow /slow 100")["session_id"]
    busy = httpx.post(
        f"{web.url}/api/runs", json={"text": "x", "session_id": session}, cookies=full, headers=h
    )
    assert busy.status_code == 409
    assert "already active" in busy.json()["error"]
    cancel = f"{web.url}/api/sessions/{session}/cancel"
    assert httpx.post(cancel, cookies=read, headers=h).status_code == 403
    assert httpx.post(cancel, cookies=approve, headers=h).json()["canceled"] is True
    assert httpx.get(f"{web.url}/api/sessions/s_unknown", cookies=read).status_code == 404
    bad = httpx.post(
        f"{web.url}/api/permissions/p_x", json={"decision": "maybe"}, cookies=approve, headers=h
    )
    assert bad.status_code == 400
    unknown = httpx.post(
        f"{web.url}/api/permissions/p_x", json={"decision": "reject"}, cookies=approve, headers=h
    )
    assert unknown.status_code == 404
    garbage = httpx.post(f"{web.url}/api/runs", content=b"{not json", cookies=full, headers=h)
    assert garbage.status_code == 400


def test_an_approval_is_attributed_to_the_device(served: tuple[Gateway, WebServer]) -> None:
    gateway, web = served
    approver = _cookie(web, "pixel", "approve")
    _run(web, _cookie(web, "starter"), "please /ask")
    deadline = time.monotonic() + 10
    requests: list[Any] = []
    while not requests:
        assert time.monotonic() < deadline
        requests = httpx.get(f"{web.url}/api/pending", cookies=approver).json()["requests"]
    answer = httpx.post(
        f"{web.url}/api/permissions/{requests[0]['request_id']}",
        json={"decision": "allow_once"},
        cookies=approver,
        headers=web.headers(),
    )
    assert answer.status_code == 200, answer.text
    audit = subprocess.run(
        [sys.executable, "-m", "neocode_gateway", "audit", "--listen", gateway.path, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "web (pixel)" in audit.stdout


def test_devices_and_revoke_commands(web: WebServer) -> None:
    cookies = _cookie(web, "gone", "read")
    cli = [*WEB_CMD, "--data-dir", web.data_dir]
    listing = subprocess.run(
        [*WEB_CMD, "devices", "--data-dir", web.data_dir],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert "gone" in listing
    assert "read" in listing
    subprocess.run(
        [*WEB_CMD, "revoke", "gone", "--data-dir", web.data_dir],
        check=True,
        capture_output=True,
        timeout=20,
    )
    assert httpx.get(f"{web.url}/api/me", cookies=cookies).status_code == 401
    again = subprocess.run(
        [*WEB_CMD, "revoke", "gone", "--data-dir", web.data_dir],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert again.returncode == 2
    assert "no device named 'gone'" in again.stderr
    assert "Traceback" not in again.stderr
    bad = subprocess.run(
        [*cli[:-2], "pair", "--name", "x", "--ttl", "soon", "--data-dir", web.data_dir],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert bad.returncode == 2
    assert "invalid duration" in bad.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--bind", "0.0.0.0:0"], "not a loopback address, without TLS"),
        (["--bind", "example.com:80"], "not a host name"),
        (["--bind", "0.0.0.0:0", "--certfile", "/nonexistent"], "go together"),
    ],
)
def test_lan_binding_is_refused_without_tls(args: list[str], expected: str) -> None:
    result = subprocess.run(
        [
            *WEB_CMD,
            *args,
            "--no-autostart",
            "--listen",
            "/tmp/none.sock",
            "--data-dir",
            short_tmpdir(),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_insecure_lan_warns(served: tuple[Gateway, WebServer]) -> None:
    gateway, _ = served
    server = WebServer(gateway.path, None, "--insecure-lan")
    server.args = ["--insecure-lan"]
    argv_bind = "0.0.0.0:0"
    server.start_args = argv_bind  # type: ignore[attr-defined]
    proc = subprocess.Popen(
        [
            *WEB_CMD,
            "--bind",
            argv_bind,
            "--insecure-lan",
            "--listen",
            gateway.path,
            "--data-dir",
            server.data_dir,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert any("WARNING" in line and "without TLS" in line for line in lines), lines
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_web_process_does_not_import_the_core() -> None:
    code = (
        "import sys\n"
        "from neocode_gateway.cli import _web\n"
        "from neocode_gateway.client import _autostart\n"
        "from neocode_gateway.web import _app, _serve, _bridge, _hub\n"
        "bad = [m for m in sys.modules if m.split('.')[1:2] and m.split('.')[1] in "
        "('sessions', 'server', 'store', 'dispatch') and m.startswith('neocode_gateway.')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert out.strip() == "[]"
