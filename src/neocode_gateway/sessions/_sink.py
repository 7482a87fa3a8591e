"""The sink a runtime reports a run's progress and permission requests to."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from neocode_gateway.protocol import PROGRESS_KINDS
from neocode_gateway.runtime import PermissionOption, PermissionOutcome
from neocode_gateway.sessions._model import Run
from neocode_gateway.sessions._wire import TITLE_MAX

if TYPE_CHECKING:
    from neocode_gateway.sessions._core import SessionCore

log = logging.getLogger("neocode_gateway.sessions")

#: Events recorded but not committed before a runtime's ``emit`` waits for the commit.
EMIT_HIGH_WATER: Final = 1024


class Sink:
    """The :class:`~neocode_gateway.runtime.RunSink` of one run."""

    __slots__ = ("_append", "_core", "_log", "_run", "_run_id", "_session")

    def __init__(self, core: SessionCore, run: Run) -> None:
        self._core = core
        self._run = run
        self._run_id = run.id
        self._session = run.session
        self._log = core.log
        self._append = core.log.append

    async def emit(self, data: dict[str, Any]) -> None:
        """Log one progress event (the hot path: a few lookups, one append)."""
        run = self._run
        if run.ended:
            log.debug("run %s: an event after the run ended was ignored", run.id)
            return
        kind = data.get("kind")
        if kind not in PROGRESS_KINDS:
            data = {"kind": "other", "update": data}
        elif kind == "session_info":
            self._session_info(data)
        self._append(self._session, self._run_id, "run_progress", data)
        if self._log.waiting >= EMIT_HIGH_WATER:
            journal = self._core.journal
            await journal.wait_committed()
            while journal.failing and not run.ended:
                await journal.wait_committed()  # held until the log takes events again

    def _session_info(self, data: dict[str, Any]) -> None:
        session = self._session
        title = data.get("title")
        mode = data.get("mode")
        changes: dict[str, Any] = {}
        if isinstance(title, str) and title.strip():
            session.title = title.strip()[:TITLE_MAX]
            changes["title"] = session.title
        if isinstance(mode, str) and mode:
            session.mode = mode
            changes["mode"] = mode
        if changes:
            self._core.journal.update_session(session.id, **changes)

    async def request_permission(
        self, tool_call: dict[str, Any], options: Sequence[PermissionOption]
    ) -> PermissionOutcome:
        return await self._core.permissions.request(self._run, tool_call, options)
