"""A mock of Anthropic's Messages API for Claude Code, on loopback, scripted by the prompt.

Claude Code (``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT``) calls
``POST /v1/messages?beta=true`` with ``stream: true``. The mock answers the
*last* ``user`` message (Claude Code appends other material after it):

* it holds a ``tool_result`` -> "Done." (the tool ran; the turn ends);
* ``touch created.txt`` -> a ``tool_use`` of ``Bash`` running exactly that;
* ``WRITE /abs/path`` -> a ``tool_use`` of ``Write`` creating that file;
* ``SLOWLY`` -> 600 small text deltas 50 ms apart (a turn to cancel);
* ``RECALL`` -> "recalled: " and the earlier user texts of the conversation
  (a session that was loaded again still has them);
* anything else, including Claude Code's title and "[SUGGESTION MODE" side
  requests -> a short text.

Run ``python tests/agents/mock_anthropic.py [PORT]`` to try it by hand.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

from tests.agents.mock_models import MockServer, SseHandler

_ids = itertools.count(1)
SHELL_COMMAND = "touch created.txt"


def _texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    out = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "text":
            text = str(block.get("text", ""))
            if not text.lstrip().startswith("<system-reminder>"):
                out.append(text)
    return out


def _has_tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def answer(body: dict[str, Any]) -> tuple[str, Any, float]:
    """What to answer: ("text", text, delay per delta) or ("tool", command, 0)."""
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    last = users[-1] if users else {}
    text = "\n".join(_texts(last))
    if "[SUGGESTION MODE" in text:
        return ("text", "ok", 0.0)
    if _has_tool_result(last):
        return ("text", "Done.", 0.0)
    if SHELL_COMMAND in text:
        return ("tool", SHELL_COMMAND, 0.0)
    write = re.search(r"WRITE (/\S+)", text)
    if write:
        return ("write", write.group(1), 0.0)
    if "SLOWLY" in text:
        return ("slow", "tick ", 0.05)
    if "RECALL" in text:
        earlier = [t for m in users[:-1] for t in _texts(m) if not _has_tool_result(m)]
        return ("text", "recalled: " + " | ".join(t.strip() for t in earlier), 0.0)
    return ("text", "Mock answer.", 0.0)


def events(body: dict[str, Any]) -> Iterator[tuple[str | None, Any, float]]:
    kind, value, delay = answer(body)
    model = body.get("model", "claude-mock")
    message_id = f"msg_mock_{next(_ids)}"
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        },
        0.0,
    )
    stop = "end_turn"
    if kind in ("tool", "write"):
        stop = "tool_use"
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {
                    "type": "tool_use",
                    "id": f"toolu_mock_{next(_ids)}",
                    "name": "Bash" if kind == "tool" else "Write",
                    "input": {},
                },
            },
            0.0,
        )
        if kind == "tool":
            arguments = json.dumps({"command": value, "description": "Create created.txt"})
        else:
            arguments = json.dumps({"file_path": value, "content": "written by the mock\n"})
        yield (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": arguments},
            },
            0.0,
        )
    else:
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            0.0,
        )
        pieces = [value] * 600 if kind == "slow" else [value]
        for piece in pieces:
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
                delay,
            )
    yield ("content_block_stop", {"type": "content_block_stop", "index": 0}, 0.0)
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 12},
        },
        0.0,
    )
    yield ("message_stop", {"type": "message_stop"}, 0.0)


class AnthropicHandler(SseHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        if self.path.startswith("/v1/messages/count_tokens"):
            self.send_json(200, {"input_tokens": 100})
        elif self.path.startswith("/v1/messages"):
            if not isinstance(body, dict):
                self.send_json(400, {"type": "error", "error": {"type": "invalid_request_error"}})
                return
            if body.get("stream"):
                self.send_events(events(body))
            else:
                kind, value, _ = answer(body)
                self.send_json(
                    200,
                    {
                        "id": f"msg_mock_{next(_ids)}",
                        "type": "message",
                        "role": "assistant",
                        "model": body.get("model", "claude-mock"),
                        "content": [
                            {"type": "text", "text": "ok" if kind in ("tool", "write") else value}
                        ],
                        "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": 25, "output_tokens": 5},
                    },
                )
        else:
            self.send_json(404, {"type": "error", "error": {"type": "not_found_error"}})

    def do_GET(self) -> None:
        self.server.record("GET", self.path, None)
        self.send_json(404, {"type": "error", "error": {"type": "not_found_error"}})

    def do_HEAD(self) -> None:
        self.server.record("HEAD", self.path, None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def start(port: int = 0) -> MockServer:
    """A running mock on 127.0.0.1 (``server.url``); ``server.stop()`` when done."""
    return MockServer(AnthropicHandler, port).start()


if __name__ == "__main__":  # pragma: no cover - by hand
    server = start(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(server.url, flush=True)
    server.thread.join()
