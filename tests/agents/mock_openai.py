"""A mock of OpenAI's Responses API for Codex, on loopback, scripted by the prompt.

Codex, given a ``[model_providers.NAME]`` with ``base_url =
"http://127.0.0.1:PORT/v1"`` and ``wire_api = "responses"``, calls
``POST /v1/responses`` with ``stream: true``. The mock answers the last
``user`` input (the newest item of the conversation decides):

* the newest item is a function call's output -> "Done." (the command ran);
* ``touch created.txt`` -> a call of Codex's shell tool running exactly that
  (whichever of ``shell_command``, ``exec_command`` or ``shell`` the request offers),
  asking to run outside the sandbox, so that Codex asks for approval;
* ``SLOWLY`` -> 600 small text deltas 50 ms apart (a turn to cancel);
* ``RECALL`` -> "recalled: " and the earlier user texts of the conversation;
* anything else -> a short text.

Run ``python tests/agents/mock_openai.py [PORT]`` to try it by hand.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from typing import Any

from tests.agents.mock_models import MockServer, SseHandler, now

_ids = itertools.count(1)
SHELL_COMMAND = "touch created.txt"


def _item_texts(item: dict[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    out = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") in ("input_text", "text", "output_text"):
            out.append(str(part.get("text", "")))
    return out


def _user_texts(items: list[dict[str, Any]]) -> list[str]:
    """The texts the user typed (Codex adds its own context as user items in <tags>)."""
    texts = []
    for item in items:
        if item.get("type", "message") == "message" and item.get("role") == "user":
            for text in _item_texts(item):
                if not text.lstrip().startswith("<"):
                    texts.append(text)
    return texts


def _shell_call(tools: list[Any]) -> tuple[str, str]:
    names = {t.get("name") for t in tools if isinstance(t, dict)}
    if "shell_command" in names:
        return "shell_command", json.dumps({"command": SHELL_COMMAND})
    if "exec_command" in names:
        # Asking to run outside the sandbox is what makes Codex ask for approval
        # (approval_policy on-request) in every mode but full access.
        arguments = {
            "cmd": SHELL_COMMAND,
            "sandbox_permissions": "require_escalated",
            "justification": "Create created.txt in the workspace",
        }
        return "exec_command", json.dumps(arguments)
    return "shell", json.dumps({"command": ["bash", "-lc", SHELL_COMMAND]})


def answer(body: dict[str, Any]) -> tuple[str, Any, float]:
    """("text", text, delay per delta), ("slow", piece, delay) or ("call", (name, args), 0)."""
    items = [i for i in body.get("input", []) if isinstance(i, dict)]
    if items and items[-1].get("type") in ("function_call_output", "custom_tool_call_output"):
        return ("text", "Done.", 0.0)
    users = _user_texts(items)
    text = users[-1] if users else ""
    if SHELL_COMMAND in text:
        return ("call", _shell_call(body.get("tools") or []), 0.0)
    if "SLOWLY" in text:
        return ("slow", "tick ", 0.05)
    if "RECALL" in text:
        return ("text", "recalled: " + " | ".join(t.strip() for t in users[:-1]), 0.0)
    return ("text", "Mock answer.", 0.0)


def events(body: dict[str, Any]) -> Iterator[tuple[str | None, Any, float]]:
    kind, value, delay = answer(body)
    response_id = f"resp_mock_{next(_ids)}"
    model = body.get("model", "gpt-mock")
    base = {
        "id": response_id,
        "object": "response",
        "created_at": now(),
        "model": model,
        "status": "in_progress",
        "output": [],
    }
    yield ("response.created", {"type": "response.created", "response": base}, 0.0)
    if kind == "call":
        name, arguments = value
        item = {
            "type": "function_call",
            "id": f"fc_mock_{next(_ids)}",
            "call_id": f"call_mock_{next(_ids)}",
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }
        yield (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "arguments": ""},
            },
            0.0,
        )
        yield (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            0.0,
        )
        output = [item]
    else:
        message_id = f"msg_mock_{next(_ids)}"
        pieces = [value] * 600 if kind == "slow" else [value]
        item = {
            "type": "message",
            "id": message_id,
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        yield (
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            0.0,
        )
        yield (
            "response.content_part.added",
            {
                "type": "response.content_part.added",
                "item_id": message_id,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []},
            },
            0.0,
        )
        for piece in pieces:
            yield (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "item_id": message_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                },
                delay,
            )
        text = "".join(pieces)
        done = {
            **item,
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        yield (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 0, "item": done},
            0.0,
        )
        output = [done]
    usage = {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 8,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 38,
    }
    completed = {**base, "status": "completed", "output": output, "usage": usage}
    yield ("response.completed", {"type": "response.completed", "response": completed}, 0.0)


class OpenAIHandler(SseHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        if self.path.startswith("/v1/responses") and isinstance(body, dict):
            self.send_events(events(body))
        else:
            self.send_json(
                404, {"error": {"message": "not found", "type": "invalid_request_error"}}
            )

    def do_GET(self) -> None:
        self.server.record("GET", self.path, None)
        if self.path.startswith("/v1/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "gpt-mock", "object": "model"}]})
        else:
            self.send_json(404, {"error": {"message": "not found"}})


def start(port: int = 0) -> MockServer:
    """A running mock on 127.0.0.1 (``server.url``); ``server.stop()`` when done."""
    return MockServer(OpenAIHandler, port).start()


if __name__ == "__main__":  # pragma: no cover - by hand
    server = start(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(server.url, flush=True)
    server.thread.join()
