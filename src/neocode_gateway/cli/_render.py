"""Showing a run's events in a terminal (rich) or as plain text (pipes, logs).

:class:`PlainRenderer` writes text a pipe can take: the agent's words as they
stream, and one line per tool call state, plan, permission and end.
:class:`RichRenderer` (on a terminal) renders the agent's text as Markdown
once a block is complete, thoughts dimmed, each tool call as one status line
that updates in place (a spinner, then ✓ or ✗), the plan as a checklist, and
the usage at the end. Both take :class:`~neocode_gateway.protocol.Event` s
through :meth:`feed`; rich is imported only by the terminal renderer.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

from neocode_gateway.cli._describe import (
    MARKS,
    NOT_CONTENT,
    PLAN_MARKS,
    describe_end,
    describe_usage,
    phase_label,
    tool_command,
)
from neocode_gateway.protocol import Event

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.spinner import Spinner


class PlainRenderer:
    """Events as plain text: nothing but what a pipe or a log file should hold."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self._midline = False
        self._thinking = False
        self._tools: dict[str, dict[str, Any]] = {}
        self._phase: str | None = None

    def waiting(self, label: str) -> None:
        """The run waits (for the gateway, the agent): a terminal shows a spinner; a pipe
        gets nothing, the phases say it."""

    def _line(self, text: str) -> None:
        if self._midline:
            self.out.write("\n")
            self._midline = False
        self.out.write(text + "\n")
        self.out.flush()

    def feed(self, event: Event) -> None:
        """Show one event."""
        kind = event.kind
        data = event.data
        etype = event.event_type
        if etype == "run_progress" and kind == "session_info" and data.get("context_reset"):
            self.note(f"note: {data.get('message', 'the agent lost its context')}")
        elif etype == "run_progress" and kind == "phase":
            label = phase_label(data)
            if label != self._phase:
                self._phase = label
                self.note(f"... {label}")
        elif etype == "run_progress" and kind == "message_chunk":
            text = str(data.get("text", ""))
            if self._thinking:
                self._line("")
                self._thinking = False
            self.out.write(text)
            self.out.flush()
            self._midline = bool(text) and not text.endswith("\n")
        elif etype == "run_progress" and kind == "thought_chunk":
            self._line(f"(thinking) {data.get('text', '')}".rstrip())
        elif etype == "run_progress" and kind in ("tool_call", "tool_call_update"):
            call = self._tools.setdefault(str(data.get("tool_call_id")), {})
            before = call.get("status")
            call.update({k: v for k, v in data.items() if k != "kind"})
            if kind == "tool_call" or call.get("status") != before:
                self._line(self._tool_line(call))
        elif etype == "run_progress" and kind == "plan":
            self._line("plan:")
            for entry in data.get("entries") or ():
                mark = PLAN_MARKS.get(entry.get("status"), "[ ]")
                self._line(f"  {mark} {entry.get('content', '')}")
        elif etype == "run_progress" and kind == "usage":
            self._line("usage: " + describe_usage(data))
        elif etype == "permission_request":
            call = data.get("tool_call") or {}
            command = tool_command(call)
            what = f"{call.get('title', 'a tool call')}" + (f": {command}" if command else "")
            self._line(f"permission requested ({data.get('request_id')}): {what}")
        elif etype == "permission_resolved":
            self._line(
                f"permission {data.get('request_id')}: {data.get('decision')} "
                f"(by {data.get('decided_by')})"
            )
        elif etype in ("run_done", "run_error"):
            self._line(describe_end(event))

    def _tool_line(self, call: dict[str, Any]) -> str:
        status = str(call.get("status", "pending"))
        command = tool_command(call)
        title = str(call.get("title", call.get("tool_call_id", "tool")))
        extra = f" ({command})" if command and command not in title else ""
        return f"[{MARKS.get(status, '·')}] {title}{extra} {status}"

    def note(self, text: str) -> None:
        """A line of our own (not an event): waiting, canceling, detaching; on stderr, so
        that stdout holds only the run."""
        if self._midline:
            self._line("")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def pause(self) -> None:
        """Before asking the user something."""
        if self._midline:
            self._line("")

    def close(self) -> None:
        """The end: finish the last line."""
        if self._midline:
            self.out.write("\n")
            self._midline = False
        self.out.flush()


class RichRenderer(PlainRenderer):
    """Events on a terminal: Markdown, dimmed thoughts, live tool lines, a checklist, and a
    spinner with the elapsed time while the run waits (for the agent, its session, the model).

    The live region at the bottom holds only what may still change: the block of
    text being streamed (its last lines, so the region always fits the screen: a
    region taller than the screen cannot be redrawn in place, and its top would
    be printed again at every refresh), the running tool calls, the plan, the
    spinner. Everything final is printed once, above it.
    """

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console()
        super().__init__(self.console.file)
        self._text = ""
        self._live: Live | None = None
        self._plan: list[dict[str, Any]] = []
        self._usage: str | None = None
        self._usage_data: dict[str, Any] = {}
        self._wait_label: str | None = None
        self._wait_since = 0.0
        self._spinner: Spinner | None = None

    # -- waiting ------------------------------------------------------------------------

    def waiting(self, label: str) -> None:
        """Show a spinner with ``label`` and the seconds since the wait began."""
        if self._wait_label is None:
            self._wait_since = time.monotonic()
        self._wait_label = label
        self._refresh()

    def _content(self) -> None:
        """The run shows something: the spinner stops."""
        self._wait_label = None

    def _spinner_line(self) -> RenderableType:
        from rich.spinner import Spinner
        from rich.text import Text

        elapsed = time.monotonic() - self._wait_since
        text = Text(f"{self._wait_label}... {elapsed:.0f}s", style="dim")
        if self._spinner is None:
            self._spinner = Spinner("dots", text=text)
        else:
            self._spinner.update(text=text)
        return self._spinner

    # -- the live region ----------------------------------------------------------------

    def _renderable(self) -> RenderableType:
        from rich.console import Group
        from rich.markdown import Markdown
        from rich.spinner import Spinner
        from rich.text import Text

        parts: list[RenderableType] = []
        if self._text.strip():
            parts.append(Markdown(self._tail()))
        for call in self._tools.values():
            if call.get("status") in ("completed", "failed"):
                continue
            parts.append(Spinner("dots", text=Text(self._tool_text(call))))
        if self._plan:
            parts.append(self._plan_text())
        if self._wait_label is not None:
            parts.append(self._spinner_line())
        return Group(*parts)

    def _tail(self) -> str:
        """The streamed block's last lines: at most half the screen (the rest shows at its end)."""
        room = max(self.console.size.height // 2, 3)
        width = max(self.console.size.width, 20)
        lines: list[str] = []
        used = 0
        for line in reversed(self._text.split("\n")):
            used += 1 + len(line) // width
            if used > room:
                break
            lines.append(line)
        if len(lines) == len(self._text.split("\n")):
            return self._text
        if not lines:
            return "..." + self._text[-(room * width) // 2 :]
        return "...\n" + "\n".join(reversed(lines))

    def _refresh(self) -> None:
        if self._live is None:
            from rich.live import Live

            self._live = Live(
                console=self.console,
                refresh_per_second=12,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
                get_renderable=self._renderable,
            )
            self._live.start()
        else:
            self._live.refresh()

    def _print(self, renderable: RenderableType | str) -> None:
        """Print above the live region (it stays at the bottom)."""
        self.console.print(renderable)

    def _tool_text(self, call: dict[str, Any]) -> str:
        command = tool_command(call)
        title = str(call.get("title", call.get("tool_call_id", "tool")))
        return title + (f"  $ {command}" if command and command not in title else "")

    def _plan_text(self) -> Any:
        from rich.text import Text

        text = Text("Plan\n", style="bold")
        for entry in self._plan:
            status = entry.get("status")
            mark = {"completed": "☑", "in_progress": "◐"}.get(str(status), "☐")
            style = "dim" if status == "completed" else ""
            text.append(f" {mark} {entry.get('content', '')}\n", style=style)
        return text

    # -- events -------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        kind = event.kind
        etype = event.event_type
        if etype == "run_progress" and kind == "phase":
            self.waiting(phase_label(event.data))
            return
        if not (etype == "run_started" or (etype == "run_progress" and kind in NOT_CONTENT)):
            self._content()
        self._feed(event)

    def _feed(self, event: Event) -> None:
        from rich.markdown import Markdown
        from rich.text import Text

        kind = event.kind
        data = event.data
        etype = event.event_type
        if etype == "run_progress" and kind == "session_info" and data.get("context_reset"):
            self.note(f"note: {data.get('message', 'the agent lost its context')}")
        elif etype == "run_progress" and kind == "message_chunk":
            self._text += str(data.get("text", ""))
            head, sep, tail = self._text.rpartition("\n\n")
            if sep and head.strip():
                self._print(Markdown(head))  # a complete block: final rendering
                self._text = tail
            self._refresh()
        elif etype == "run_progress" and kind == "thought_chunk":
            self._print(Text(str(data.get("text", "")).strip(), style="dim italic"))
        elif etype == "run_progress" and kind in ("tool_call", "tool_call_update"):
            call = self._tools.setdefault(str(data.get("tool_call_id")), {})
            call.update({k: v for k, v in data.items() if k != "kind"})
            status = call.get("status")
            if status in ("completed", "failed"):
                mark, style = ("✓", "green") if status == "completed" else ("✗", "red")
                self._print(Text(f"{mark} {self._tool_text(call)}", style=style))
            self._refresh()
        elif etype == "run_progress" and kind == "plan":
            self._plan = list(data.get("entries") or ())
            self._refresh()
        elif etype == "run_progress" and kind == "usage":
            self._usage_data.update(data)  # an agent reports context and tokens apart
            self._usage = describe_usage(self._usage_data)
        elif etype == "permission_request":
            self._flush_text()
            call = data.get("tool_call") or {}
            command = tool_command(call)
            self._print(
                Text(
                    f"? permission {data.get('request_id')}: {call.get('title', 'a tool call')}"
                    + (f"\n  $ {command}" if command else ""),
                    style="bold yellow",
                )
            )
        elif etype == "permission_resolved":
            decision = data.get("decision")
            style = "green" if decision in ("allow_once", "allow_session") else "red"
            self._print(Text(f"  {decision} (by {data.get('decided_by')})", style=style))
        elif etype in ("run_done", "run_error"):
            self._flush_text()
            self._stop_live()
            if self._plan:
                self._print(self._plan_text())
            if self._usage:
                self._print(Text(f"usage: {self._usage}", style="dim"))
            style = "green" if etype == "run_done" else "bold red"
            self._print(Text(describe_end(event), style=style))

    def _flush_text(self) -> None:
        """The streamed block, printed once for good (the live region is stopped first)."""
        from rich.markdown import Markdown

        text, self._text = self._text, ""
        if text.strip():
            self._stop_live()
            self._print(Markdown(text))

    def _stop_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()

    def note(self, text: str) -> None:
        from rich.text import Text

        self._print(Text(text, style="cyan"))

    def pause(self) -> None:
        self._content()
        self._flush_text()
        self._stop_live()

    def close(self) -> None:
        self._content()
        self._flush_text()
        self._stop_live()


__all__ = ["PlainRenderer", "RichRenderer", "describe_end", "describe_usage", "tool_command"]
