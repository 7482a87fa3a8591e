"""Runs: accepted once durable, driven to exactly one terminal event, canceled on request.

A ``run`` is answered only once its rows (the session, the run, ``run_started``)
are committed: no client is ever told an id that a crash could take back. The
session is reserved from the moment the request is read; whatever happens next
(an unknown mode, a failed commit, the client going away), the reservation is
released or becomes the run.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from neocode_gateway.errors import ModeUnknown, RunFailed
from neocode_gateway.protocol import (
    CANCELED,
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_ACTION,
    MISSING_REQUIRED_FIELD,
    RESOURCE_NOT_FOUND,
    RUNTIME_ERROR,
    STOP_REASONS,
    Frame,
    codes,
)
from neocode_gateway.runtime import CANCELLED, RunInput
from neocode_gateway.sessions._cache import session_row
from neocode_gateway.sessions._ids import new_id
from neocode_gateway.sessions._model import Run, Session
from neocode_gateway.sessions._sink import Sink
from neocode_gateway.sessions._streams import AnswerHold
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError, ack, opt_str, payload_of, title_of
from neocode_gateway.store import RunRow

if TYPE_CHECKING:
    from neocode_gateway.sessions._core import SessionCore

log = logging.getLogger("neocode_gateway.sessions")

#: A run whose events cannot be logged for this long ends with ``runtime_error``.
LOG_FAILURE_GRACE: Final = 5.0


class Runs:
    """The active runs of every session."""

    __slots__ = ("_core", "_telling", "active")

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self.active: dict[tuple[str, str], Run] = {}
        #: Cancels being told to runtimes (held here so that they are not collected).
        self._telling: set[asyncio.Task[None]] = set()

    # -- run --------------------------------------------------------------------------

    def run(self, frame: Frame, sub: Subscriber) -> Awaitable[bytes]:
        """``run``: check, reserve the session, then (asynchronously) log and start."""
        core = self._core
        payload = payload_of(frame)
        agent = opt_str(payload, "agent")
        mode = opt_str(payload, "mode")
        workdir = workdir_of(frame.workdir)
        if core.journal.failing:
            raise RequestError(INTERNAL_ERROR, log_down(core))
        if frame.session_id:
            session = core.cache.require(frame.session_id)
            if workdir is not None and workdir != session.workdir:
                raise RequestError(INVALID_ACTION, codes.MSG_WORKDIR_CHANGE)
            if agent is not None and agent != session.agent:
                raise RequestError(INVALID_ACTION, "agent cannot change within a session")
            check_idle(session)
            new = False
        else:
            name = agent or core.runtimes.default
            if core.runtimes.get(name) is None:
                raise RequestError(INVALID_ACTION, codes.MSG_UNKNOWN_AGENT)
            session = core.cache.new(
                new_id("s"),
                title_of(frame),
                workdir or core.config.default_workdir,
                name,
                core.log.clock.now(),
            )
            new = True
        core.streams.check_room(sub, session)
        run_id = frame.run_id or frame.request_id or new_id("r")
        if not new and (
            (session.id, run_id) in self.active or core.store.get_run(session.id, run_id)
        ):
            raise RequestError(CONFLICT, codes.MSG_RUN_ID_USED)
        run = Run(
            session,
            RunInput(
                run_id=run_id,
                text=frame.input_text,
                parts=tuple(frame.input_parts or ()),
                # A session created with a mode (v1.2) has its agent switched to it at runs
                # that ask for none.
                mode=mode or session.mode,
            ),
        )
        run.explicit_mode = mode is not None
        return self._accept(frame, sub, run, new, core.streams.hold_answer(sub))

    async def _accept(
        self, frame: Frame, sub: Subscriber, run: Run, new: bool, hold: AnswerHold
    ) -> bytes:
        session = run.session
        # The reservation is taken in the coroutine's first step, not by the handler: a
        # coroutine cancelled before it starts (its client gone at once) runs no cleanup.
        if not new:
            check_idle(session)
        session.active_run = run  # a second run is refused from now on
        try:
            if run.explicit_mode and run.input.mode is not None:
                await check_mode(session, run.input.mode)
            if sub.closed:
                raise RequestError(INTERNAL_ERROR, "connection closed")
        except BaseException:  # a refusal, a failure, or the client gone (CancelledError)
            self._release(run)
            raise
        # Shielded: once logged, the run starts even if its client goes away now.
        await asyncio.shield(self._log_and_start(frame, sub, run, new, hold))
        return ack(frame, {"message": codes.MSG_RUN_ACCEPTED}, session_id=session.id, run_id=run.id)

    def _release(self, run: Run) -> None:
        """A reservation that did not become a run."""
        if run.session.active_run is run:
            run.session.active_run = None
        self._core.cache.evict()

    async def _log_and_start(
        self, frame: Frame, sub: Subscriber, run: Run, new: bool, hold: AnswerHold
    ) -> None:
        core = self._core
        session = run.session
        first_seq = session.last_seq + 1
        binding = None
        try:
            data: dict[str, Any] = {}
            if frame.input_text is not None:
                data["input_text"] = frame.input_text
            if frame.input_parts:
                data["input_parts"] = msgspec.to_builtins(frame.input_parts)
            data["workdir"] = session.workdir
            if run.explicit_mode and run.input.mode:
                data["mode"] = run.input.mode
            if new:
                core.cache.add(session)
                core.journal.session(session_row(session))
            core.journal.run(
                RunRow(
                    session_id=session.id,
                    run_id=run.id,
                    state="active",
                    started_seq=first_seq,
                    ended_seq=None,
                    created_at=core.log.clock.now(),
                )
            )
            core.journal.update_session(session.id, active_run_id=run.id)
            core.log.append(session, run.id, "run_started", data)
            binding = core.streams.bind_for_run(sub, session, hold)
            durable = await core.journal.wait_committed()
        except BaseException:
            durable = False
        if not durable:
            # Nothing of it is durable: take it all back and say so.
            core.journal.retract(session.id, run.id, first_seq, new=new)
            session.last_seq = first_seq - 1
            if binding is not None:
                core.streams.drop(binding)
            if new:
                core.cache.remove(session.id)
            self._release(run)
            raise RequestError(INTERNAL_ERROR, log_down(core))
        self.active[(session.id, run.id)] = run
        run.task = asyncio.get_running_loop().create_task(
            self._drive(run), name=f"run {session.id}/{run.id}"
        )

    async def _drive(self, run: Run) -> None:
        """Run the runtime's prompt; turn its outcome into exactly one terminal event."""
        core = self._core
        session = run.session
        terminal: tuple[str, dict[str, Any]]
        try:
            if run.input.mode and run.input.mode != session.mode:
                session.mode = run.input.mode
                core.journal.update_session(session.id, mode=run.input.mode)
            reason = await session.runtime.prompt(session, run.input, Sink(core, run))
        except asyncio.CancelledError:
            if core.stopping:
                run.ended = True
                self._forget(run)
                raise
            if run.failure is not None:
                terminal = ("run_error", {"code": RUNTIME_ERROR, "message": run.failure})
            else:
                terminal = ("run_error", {"code": CANCELED, "message": "the run was canceled"})
        except RunFailed as exc:
            terminal = ("run_error", {"code": exc.code, "message": exc.message})
        except Exception as exc:
            log.exception("runtime %s failed during run %s", session.agent, run.id)
            terminal = ("run_error", {"code": RUNTIME_ERROR, "message": f"{exc}"})
        else:
            if run.failure is not None:
                terminal = ("run_error", {"code": RUNTIME_ERROR, "message": run.failure})
            elif run.cancel_requested or reason == CANCELLED:
                terminal = ("run_error", {"code": CANCELED, "message": "the run was canceled"})
            elif reason in STOP_REASONS:
                terminal = ("run_done", {"stop_reason": reason})
            else:
                terminal = (
                    "run_error",
                    {"code": RUNTIME_ERROR, "message": f"unknown stop reason {reason!r}"},
                )
        self._finish(run, *terminal)

    def _finish(self, run: Run, event_type: str, data: dict[str, Any]) -> None:
        core = self._core
        session = run.session
        core.permissions.cancel_all(run)
        run.ended = True
        core.log.append(session, run.id, event_type, data)
        core.journal.update_run(
            session.id,
            run.id,
            state="done" if event_type == "run_done" else "error",
            ended_seq=session.last_seq,
        )
        core.journal.update_session(session.id, active_run_id=None)
        self._forget(run)

    def _forget(self, run: Run) -> None:
        session = run.session
        if run.cancel_timer is not None:
            run.cancel_timer.cancel()
        if session.active_run is run:
            session.active_run = None
        self.active.pop((session.id, run.id), None)
        self._core.cache.evict()

    def fail_stuck(self, reason: str) -> None:
        """The log cannot be written: end every active run (its end is logged in order
        once the log can be written again)."""
        for run in list(self.active.values()):
            if not run.ended and run.failure is None and run.task is not None:
                run.failure = f"the event log could not be written: {reason}"
                run.task.cancel()

    # -- cancel -----------------------------------------------------------------------

    def cancel(self, frame: Frame, sub: Subscriber) -> bytes:
        """``cancel``: stop an active run (ack first, then its ``run_error canceled``)."""
        core = self._core
        run_id = frame.run_id
        session_id = frame.session_id
        if not run_id and not session_id:
            raise RequestError(MISSING_REQUIRED_FIELD, codes.msg_missing_field("run_id"))
        run: Run | None = None
        if session_id:
            session = core.cache.require(session_id)
            if run_id:
                run = self.active.get((session.id, run_id))
                if run is None and core.store.get_run(session.id, run_id) is None:
                    raise RequestError(RESOURCE_NOT_FOUND, codes.msg_not_found("run", run_id))
            else:
                run = session.active_run
                if run is None or run.task is None:
                    raise RequestError(
                        RESOURCE_NOT_FOUND, f"session {session.id} has no active run"
                    )
        else:
            assert run_id is not None
            run = self._find(run_id, sub)
            if run is None and core.store.find_run(run_id) is None:
                raise RequestError(RESOURCE_NOT_FOUND, codes.msg_not_found("run", run_id))
        if run is None or run.ended or run.task is None:
            return ack(frame, {"canceled": False, "run_id": run_id or (run.id if run else "")})
        session = run.session
        core.streams.hold_session(sub, session.id)
        if not run.cancel_requested:
            run.cancel_requested = True
            core.permissions.cancel_all(run)
            loop = asyncio.get_running_loop()
            task = loop.create_task(self._tell_runtime(run))
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)
            run.cancel_timer = loop.call_later(core.config.cancel_grace, self._force, run)
        return ack(
            frame, {"canceled": True, "run_id": run.id}, session_id=session.id, run_id=run.id
        )

    def _find(self, run_id: str, sub: Subscriber) -> Run | None:
        """The active run a bare ``run_id`` names. Run ids are unique per session only (they
        default to request ids), so the subscriber's own sessions are asked first, and an id
        active in several other sessions is refused rather than guessed."""
        found = [r for (_, rid), r in self.active.items() if rid == run_id]
        if len(found) <= 1:
            return found[0] if found else None
        mine = [r for r in found if sub in r.session.bindings]
        if len(mine) == 1:
            return mine[0]
        raise RequestError(
            CONFLICT,
            f"run_id {run_id} is active in {len(found)} sessions; give its session_id",
        )

    async def _tell_runtime(self, run: Run) -> None:
        try:
            await run.session.runtime.cancel(run.session)
        except Exception:
            log.exception("runtime %s failed to cancel run %s", run.session.agent, run.id)

    def _force(self, run: Run) -> None:
        if not run.ended and run.task is not None:
            log.warning(
                "run %s did not stop within %.1fs of its cancel; stopping it",
                run.id,
                self._core.config.cancel_grace,
            )
            run.task.cancel()

    async def stop(self) -> None:
        """Graceful stop: runs are left for the next start to end (``gateway_restarted``)."""
        tasks = [run.task for run in self.active.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)


def check_idle(session: Session) -> None:
    """A session takes one run (or compaction) at a time."""
    if session.active_run is not None or session.busy:
        raise RequestError(CONFLICT, codes.MSG_RUN_ACTIVE)


async def check_mode(session: Session, mode: str) -> None:
    try:
        await session.runtime.check_mode(session, mode)
    except ModeUnknown:
        raise RequestError(INVALID_ACTION, codes.MSG_UNKNOWN_MODE) from None
    except RunFailed as exc:
        raise RequestError(exc.code, exc.message) from None
    except Exception as exc:
        log.exception("runtime %s failed to check mode %r", session.agent, mode)
        raise RequestError(INTERNAL_ERROR, f"the agent failed: {exc}") from None


def workdir_of(workdir: str | None) -> str | None:
    if workdir is None:
        return None
    if not os.path.isabs(workdir) or not os.path.isdir(workdir):
        raise RequestError(INVALID_ACTION, codes.MSG_INVALID_WORKDIR)
    return os.path.realpath(workdir)


def log_down(core: SessionCore) -> str:
    error = core.journal.last_error
    return f"the event log cannot be written ({error}); try again later"
