"""Contract events to HTML fragments the page places by id: Markdown rendered on the server.

Why on the server: one renderer (markdown-it-py with raw HTML disabled) that a
transcript cannot subvert, and a page with no Markdown library and no inline
script. Every fragment is built from escaped text, so a transcript that
carries ``<script>`` or ``<img onerror>`` shows it as text. A
:class:`TranscriptView` folds a session's events into *items* (a run's input,
an agent message, folded thoughts, a tool call, the plan, usage, a permission,
the run's end), each with a stable id: an event that changes an item sends the
item again whole, so replaying events the page already has changes nothing,
and a message cut by a reconnect is rendered again from all its chunks.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from html import escape
from typing import Any, Final

from markdown_it import MarkdownIt

from neocode_gateway.protocol import Event

_md: Final = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(
    ["table", "strikethrough"]
)
#: What each decision kind is called on a button and in the log.
DECISIONS: Final = {
    "allow_once": "allow_once",
    "allow_always": "allow_session",
    "reject_once": "reject",
    "reject_always": "reject",
}
_PLAN_MARK: Final = {"completed": "☑", "in_progress": "◐", "pending": "☐"}
#: Events that end the agent's current message or thought block.
_BREAKS: Final = frozenset({"tool_call", "tool_call_update"})


def markdown(text: str) -> str:
    """Markdown to HTML; raw HTML in the text is escaped, unsafe link schemes dropped."""
    return str(_md.render(text))


def _short(value: Any, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + " …"


def render_diff(path: str, old: str, new: str) -> str:
    """A unified diff as escaped lines, each marked added, removed or context."""
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), f"a/{path}", f"b/{path}", lineterm=""
    )
    out = []
    for line in lines:
        cls = "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx"
        out.append(f'<span class="{cls}">{escape(line)}</span>')
    return f'<pre class="diff" aria-label="diff of {escape(path)}">{chr(10).join(out)}</pre>'


def _tool_content(content: Any) -> str:
    """ACP tool-call content: text blocks, diffs, terminals; anything else as JSON."""
    parts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "diff":
            parts.append(
                render_diff(
                    str(block.get("path", "")),
                    str(block.get("oldText") or ""),
                    str(block.get("newText") or ""),
                )
            )
        elif block.get("type") == "content" and isinstance(block.get("content"), dict):
            inner = block["content"]
            if inner.get("type") == "text":
                parts.append(f"<pre>{escape(_short(inner.get('text', '')))}</pre>")
        else:
            parts.append(f"<pre>{escape(_short(block))}</pre>")
    return "".join(parts)


@dataclass
class _Tool:
    title: str = ""
    kind: str = "other"
    status: str = "pending"
    locations: list[Any] = field(default_factory=list)
    raw_input: Any = None
    raw_output: Any = None
    content: Any = None


@dataclass
class _Block:
    id: str
    text: list[str] = field(default_factory=list)


class TranscriptView:
    """One session's events folded into items; ``feed`` returns the items that changed."""

    def __init__(self, session_id: str, *, can_approve: bool) -> None:
        self.session_id = session_id
        self.can_approve = can_approve
        self.clear()

    def clear(self) -> None:
        """Forget every event (the log was not the one the numbers came from)."""
        self.last_seq = 0
        #: seq of the latest run's ``run_started``: where a reconnect must re-read from.
        self.anchor = 0
        self.active_run: str | None = None
        self._message: _Block | None = None
        self._thought: _Block | None = None
        self._tools: dict[str, _Tool] = {}
        self._permissions: dict[str, dict[str, Any]] = {}

    def feed(self, event: Event) -> list[dict[str, Any]]:
        """Fold one event in; the items it changed (the page replaces them by id)."""
        if event.seq <= self.last_seq:
            return []
        self.last_seq = event.seq
        data, run = event.data, event.run_id or ""
        kind = event.kind if event.event_type == "run_progress" else event.event_type
        if kind in _BREAKS or event.event_type != "run_progress":
            self._message = self._thought = None
        item = self._item(kind or "", data, run, event)
        return [item] if item is not None else []

    def _item(self, kind: str, data: dict[str, Any], run: str, ev: Event) -> dict[str, Any] | None:
        seq = ev.seq
        if kind == "run_started":
            self.anchor, self.active_run = seq, run
            self._tools.clear()
            text = str(data.get("input_text") or "(input parts)")
            return _item(f"u-{run}", "user", seq, f'<div class="md">{markdown(text)}</div>', run)
        if kind == "message_chunk":
            if self._message is None:
                self._message = _Block(f"m-{seq}")
            self._message.text.append(str(data.get("text", "")))
            html = f'<div class="md">{markdown("".join(self._message.text))}</div>'
            return _item(self._message.id, "msg", seq, html, run)
        if kind == "thought_chunk":
            if self._thought is None:
                self._thought = _Block(f"t-{seq}")
            self._thought.text.append(str(data.get("text", "")))
            body = markdown("".join(self._thought.text))
            html = f'<details class="thought"><summary>Thoughts</summary>{body}</details>'
            return _item(self._thought.id, "thought", seq, html, run)
        if kind in ("tool_call", "tool_call_update"):
            return self._tool(data, run, seq)
        if kind == "plan":
            return _item(f"p-{run}", "plan", seq, _plan(data.get("entries")), run)
        if kind == "usage":
            return _item(f"us-{run}", "usage", seq, _usage(data), run)
        if kind == "phase":
            html = f'<p class="phase">{escape(str(data.get("phase", "")))}…</p>'
            return _item(f"ph-{run}", "phase", seq, html, run)
        if kind == "permission_request":
            request_id = str(data.get("request_id", ""))
            self._permissions[request_id] = data
            return self._permission(request_id, run, seq, None)
        if kind == "permission_resolved":
            request_id = str(data.get("request_id", ""))
            return self._permission(request_id, run, seq, data)
        if kind in ("run_done", "run_error"):
            self.active_run = None
            return _item(f"end-{run}", "end", seq, _end(kind, data), run)
        return None

    def _tool(self, data: dict[str, Any], run: str, seq: int) -> dict[str, Any]:
        key = str(data.get("tool_call_id", ""))
        tool = self._tools.setdefault(key, _Tool())
        tool.title = str(data.get("title") or tool.title)
        tool.kind = str(data.get("tool_kind") or tool.kind)
        tool.status = str(data.get("status") or tool.status)
        for name in ("locations", "raw_input", "raw_output", "content"):
            if data.get(name) is not None:
                setattr(tool, name, data[name])
        paths = " ".join(
            str(loc.get("path", "")) for loc in tool.locations if isinstance(loc, dict)
        )
        body = _tool_content(tool.content)
        raw = tool.raw_input if isinstance(tool.raw_input, dict) else {}
        if "old_string" in raw and "new_string" in raw:
            body += render_diff(
                str(raw.get("file_path", "")), str(raw["old_string"]), str(raw["new_string"])
            )
        if tool.raw_output is not None:
            body += f'<pre class="output">{escape(_short(tool.raw_output))}</pre>'
        html = (
            f'<div class="tool-head"><span class="kind">{escape(tool.kind)}</span> '
            f'<span class="title">{escape(tool.title)}</span> '
            f'<span class="status s-{escape(tool.status)}">{escape(tool.status)}</span></div>'
            + (f'<div class="paths">{escape(paths)}</div>' if paths else "")
            + body
        )
        return _item(f"tc-{run}-{key}", "tool", seq, html, run)

    def _permission(
        self, request_id: str, run: str, seq: int, resolved: dict[str, Any] | None
    ) -> dict[str, Any]:
        request = self._permissions.get(request_id, {})
        title = str((request.get("tool_call") or {}).get("title") or "a tool call")
        head = f'<p class="perm-title">Permission: <b>{escape(title)}</b></p>'
        if resolved is not None:
            who = resolved.get("client")
            device = resolved.get("device")
            by = str(resolved.get("decided_by", ""))
            if isinstance(who, str) and who:
                by = f"{who} ({device})" if isinstance(device, str) and device else who
            decision = escape(str(resolved.get("decision", "")))
            body = f'<p class="decision">{decision} — by {escape(by)}</p>'
        elif self.can_approve:
            body = permission_buttons(request_id, request.get("options"))
        else:
            body = '<p class="waiting">Waiting for an answer (this device may only watch).</p>'
        item = _item(f"perm-{request_id}", "perm", seq, head + body, run)
        item["open"] = resolved is None
        return item


def permission_buttons(request_id: str, options: Any) -> str:
    """One button per option the agent offered, named as the agent named it."""
    buttons = []
    for option in options if isinstance(options, list) else []:
        if not isinstance(option, dict) or option.get("kind") not in DECISIONS:
            continue
        decision = DECISIONS[option["kind"]]
        name = escape(str(option.get("name") or decision))
        cls = "allow" if decision != "reject" else "reject"
        buttons.append(
            f'<button type="button" class="{cls}" data-perm="{escape(request_id)}" '
            f'data-decision="{decision}" data-option="{escape(str(option.get("option_id", "")))}"'
            f">{name}</button>"
        )
    return f'<div class="options">{"".join(buttons)}</div>'


def _item(key: str, kind: str, seq: int, html: str, run: str) -> dict[str, Any]:
    return {"id": key, "k": kind, "seq": seq, "run": run, "html": html}


def _plan(entries: Any) -> str:
    rows = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            status = str(entry.get("status", "pending"))
            mark = _PLAN_MARK.get(status, "☐")
            rows.append(
                f'<li class="plan-{escape(status)}"><span aria-hidden="true">{mark}</span> '
                f"{escape(str(entry.get('content', '')))}</li>"
            )
    return f'<p class="label">Plan</p><ul class="plan">{"".join(rows)}</ul>'


def _usage(data: dict[str, Any]) -> str:
    parts = []
    for name in ("input_tokens", "output_tokens", "context_used", "context_size"):
        if isinstance(data.get(name), int):
            parts.append(f"{name.replace('_', ' ')}: {data[name]:,}")
    cost = data.get("cost")
    if isinstance(cost, dict) and "amount" in cost:
        parts.append(f"cost: {cost.get('amount')} {cost.get('currency', '')}")
    return f'<p class="usage">{escape(" · ".join(parts))}</p>'


def _end(kind: str, data: dict[str, Any]) -> str:
    if kind == "run_done":
        return f'<p class="end done">Run finished ({escape(str(data.get("stop_reason", "")))})</p>'
    code, message = escape(str(data.get("code", ""))), escape(str(data.get("message", "")))
    return f'<p class="end failed">Run ended: {code} {message}</p>'
