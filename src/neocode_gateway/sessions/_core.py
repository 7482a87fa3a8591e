"""The sessions core: sessions, runs, permissions, bindings, fan-out and replay (contract v1.1).

Every rule of sections 4 to 8 of ``frame-contract-v1.1.md`` that is not pure
validation lives here. The core is given a :class:`~neocode_gateway.store.Store`
(the log), the runtimes, and connections (to bind and push to); it knows no
sockets. Its public methods are the actions' handlers: they take a valid
request :class:`~neocode_gateway.protocol.Frame` and the connection, and
return the encoded response now (``bytes``) or an awaitable of it.

How an event travels: a runtime reports it through its run's sink; the core
numbers it (``seq``), encodes the frame once and records it in the
:class:`~._journal.Journal`; at the end of the loop turn the journal commits
everything recorded in one transaction and only then hands the frames to the
live bindings. A binding that replays reads the log until it reaches the last
committed event and turns live in the same loop turn, so replay and live
events join without a gap or a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from neocode_gateway import __version__
from neocode_gateway.errors import (
    CompactUnsupported,
    ModeUnknown,
    RunFailed,
    StoreError,
)
from neocode_gateway.protocol import (
    CANCELED,
    CONFLICT,
    GATEWAY_RESTARTED,
    INTERNAL_ERROR,
    INVALID_ACTION,
    MISSING_REQUIRED_FIELD,
    PROGRESS_KINDS,
    RESOURCE_NOT_FOUND,
    RUNTIME_ERROR,
    SLOW_CONSUMER,
    STOP_REASONS,
    UNSUPPORTED_ACTION,
    ErrorBody,
    Frame,
    codes,
    encode_error,
    encode_event,
    encode_frame,
)
from neocode_gateway.runtime import (
    CANCELLED,
    CompactResult,
    PermissionOption,
    PermissionOutcome,
    RunInput,
    RunSink,
    Runtime,
    RuntimeSet,
    SessionRef,
)
from neocode_gateway.server import Connection, HandlerResult
from neocode_gateway.sessions._ids import EventClock, new_id
from neocode_gateway.sessions._journal import Journal, Pending
from neocode_gateway.sessions._model import Binding, Permission, Run, Session
from neocode_gateway.store import (
    EventRow,
    PermissionRow,
    RunRow,
    SessionRow,
    Store,
    WriteBatch,
)

log = logging.getLogger("neocode_gateway.sessions")

DEFAULT_PERMISSION_TIMEOUT: Final = 600.0
DEFAULT_RETENTION_DAYS: Final = 30
MAX_BINDINGS: Final = 128
SLOW_CONSUMER_BYTES: Final = 8 << 20
SLOW_CONSUMER_SECONDS: Final = 5.0
#: A canceled run whose runtime does not stop within this grace is stopped by force.
CANCEL_GRACE: Final = 5.0
#: Events recorded but not committed before a runtime's ``emit`` waits for the commit.
EMIT_HIGH_WATER: Final = 1024
#: Events per page read from the log while replaying.
REPLAY_PAGE: Final = 1000
TITLE_MAX: Final = 80
LIST_LIMIT_DEFAULT: Final = 50
LIST_LIMIT_MAX: Final = 500
#: Permission decisions -> the option kinds that carry them, in order of preference.
DECISION_KINDS: Final[Mapping[str, tuple[str, ...]]] = {
    "allow_once": ("allow_once", "allow_always"),
    "allow_session": ("allow_always", "allow_once"),
    "reject": ("reject_once", "reject_always"),
}
_KIND_DECISION: Final = {
    "allow_once": "allow_once",
    "allow_always": "allow_session",
    "reject_once": "reject",
    "reject_always": "reject",
}


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """The core's settings (the daemon's flags)."""

    data_dir: Path
    default_workdir: str
    permission_timeout: float = DEFAULT_PERMISSION_TIMEOUT
    event_retention_days: int = DEFAULT_RETENTION_DAYS
    max_bindings: int = MAX_BINDINGS
    slow_consumer_bytes: int = SLOW_CONSUMER_BYTES
    slow_consumer_seconds: float = SLOW_CONSUMER_SECONDS
    cancel_grace: float = CANCEL_GRACE


class RequestError(Exception):
    """A request the core refuses: answered with an error frame of ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _ack(
    frame: Frame,
    payload: Any,
    *,
    session_id: str | None = None,
    run_id: str | None = None,
) -> bytes:
    return encode_frame(
        Frame(
            type="ack",
            action=frame.action,
            request_id=frame.request_id,
            session_id=session_id,
            run_id=run_id,
            payload=payload,
        )
    )


def _error(frame: Frame, exc: RequestError) -> bytes:
    return encode_error(exc.code, exc.message, action=frame.action, request_id=frame.request_id)


def _payload(frame: Frame) -> dict[str, Any]:
    payload = frame.payload
    if payload is None:
        return {}
    if type(payload) is not dict:
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload(frame.action or ""))
    return payload


def _opt_str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field(key))
    return value


def _title(frame: Frame) -> str:
    text = frame.input_text
    if not text or not text.strip():
        for part in frame.input_parts or ():
            if part.type == "text" and part.text and part.text.strip():
                text = part.text
                break
            if part.type == "image" and part.media is not None:
                text = part.media.file_name or "image"
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else "untitled"
    return line[:TITLE_MAX]


class SessionCore:
    """Sessions, runs, permissions and bindings over a store and a set of runtimes."""

    def __init__(
        self,
        store: Store,
        runtimes: RuntimeSet,
        config: CoreConfig,
        *,
        connection_count: Callable[[], int] = lambda: 0,
    ) -> None:
        self.store = store
        self.runtimes = runtimes
        self.config = config
        self._connection_count = connection_count
        self._sessions: dict[str, Session] = {}
        self._runs: dict[tuple[str, str], Run] = {}
        self._permissions: dict[str, Permission] = {}
        self._conn_bindings: dict[Connection, dict[str, Binding]] = {}
        self._clock = EventClock()
        self._journal: Journal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = time.monotonic()
        self._stopping = False
        #: Events recorded and not yet committed (after the last append).
        self._waiting = 0
        self._retention: asyncio.TimerHandle | None = None
        self.events_logged = 0

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the last run of the gateway, start the runtimes, schedule retention."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._journal = Journal(self.store, loop, self._fan_out, self._commit_failed)
        self._recover()
        self._journal.flush()
        self._apply_retention()
        await self.runtimes.start_all()

    def _recover(self) -> None:
        """End the runs the previous gateway left active; void their permission requests."""
        voided = self.store.void_pending_permissions()
        runs = self.store.recover()
        for run in runs:
            session = self._session(run.session_id)
            if session is None:  # pragma: no cover - the foreign key prevents it
                continue
            self._append(
                session,
                run.run_id,
                "run_error",
                {"code": GATEWAY_RESTARTED, "message": "the gateway restarted during the run"},
            )
            self._end_run_rows(session, run.run_id, "error")
        if runs or voided:
            log.info(
                "recovered: %d interrupted runs ended with gateway_restarted, "
                "%d pending permission requests voided",
                len(runs),
                voided,
            )

    def _apply_retention(self) -> None:
        days = self.config.event_retention_days
        if days <= 0:
            return
        cutoff = time.time() - days * 86400
        from neocode_gateway.protocol import utc_timestamp

        try:
            deleted = self.store.delete_events_before(utc_timestamp(cutoff))
        except StoreError as exc:
            log.warning("retention: old events could not be deleted: %s", exc)
        else:
            if deleted:
                log.info("retention: deleted %d events older than %d days", deleted, days)
                for session in self._sessions.values():
                    session.first_seq = self.store.first_seq(session.id)
        assert self._loop is not None
        self._retention = self._loop.call_later(3600, self._apply_retention)

    async def shutdown(self) -> None:
        """Stop: runs are left for the next start to end (``gateway_restarted``), agents closed."""
        self._stopping = True
        if self._retention is not None:
            self._retention.cancel()
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for binding in [b for bs in self._conn_bindings.values() for b in bs.values()]:
            if binding.replay is not None:
                binding.replay.cancel()
        if self._journal is not None:
            self._journal.flush()
        await self.runtimes.close_all()

    # -- the log ------------------------------------------------------------------------

    @property
    def journal(self) -> Journal:
        assert self._journal is not None, "SessionCore.start() was not awaited"
        return self._journal

    def _append(
        self, session: Session, run_id: str | None, event_type: str, data: dict[str, Any]
    ) -> int:
        """Number, encode and record one event; it is fanned out after its commit."""
        seq = session.last_seq + 1
        session.last_seq = seq
        ts = self._clock.now()
        session_id = session.id
        frame = encode_event(session_id, run_id, seq, event_type, ts, data)
        self._waiting = self.journal.event(EventRow(session_id, seq, run_id, event_type, ts, frame))
        session.updated_at = ts
        self.events_logged += 1
        return seq

    def _fan_out(self, pending: list[Pending]) -> None:
        """Committed events: write them to every live binding of their session."""
        start = 0
        count = len(pending)
        while start < count:
            session_id = pending[start].session_id
            end = start + 1
            while end < count and pending[end].session_id == session_id:
                end += 1
            session = self._sessions.get(session_id)
            if session is not None:
                session.committed_seq = pending[end - 1].seq
                if session.bindings:
                    self._deliver(session, pending[start:end])
            start = end

    def _deliver(self, session: Session, events: list[Pending]) -> None:
        whole: bytes | None = None
        last_seq = events[-1].seq
        for binding in list(session.bindings.values()):
            if not binding.live:
                continue
            conn = binding.conn
            if binding.run_id is None:
                if whole is None:
                    whole = b"".join([e.frame for e in events])
                data = whole
                mark = last_seq
            else:
                mine = [e for e in events if e.run_id == binding.run_id]
                if not mine:
                    continue
                data = b"".join([e.frame for e in mine])
                mark = mine[-1].seq
            if not conn.send(data, mark=(session.id, mark)):
                continue
            if conn.pending_bytes > self.config.slow_consumer_bytes:
                self._slow_consumer(conn, session.id)

    def _commit_failed(self, pending: list[Pending], batch: WriteBatch, exc: StoreError) -> None:
        """A commit failed: its events never happened; their runs end with runtime_error."""
        for row in batch.new_sessions:
            self._sessions.pop(row.id, None)
        touched = {p.session_id for p in pending} | set(batch.session_updates)
        for session_id in touched:
            session = self._sessions.get(session_id)
            if session is None:
                continue
            session.last_seq = session.committed_seq
            run = session.active_run
            if run is not None and not run.ended and run.failure is None:
                run.failure = f"the event log could not be written: {exc}"
                if run.task is not None:
                    run.task.cancel()

    # -- sessions -----------------------------------------------------------------------

    def _session(self, session_id: str) -> Session | None:
        """The session, from memory or the store; ``None`` if unknown."""
        session = self._sessions.get(session_id)
        if session is not None:
            return session
        row = self.store.get_session(session_id)
        if row is None:
            return None
        runtime = self.runtimes.get(row.agent) or _MissingRuntime(row.agent)
        state: dict[str, Any] = {}
        if row.runtime_state:
            with contextlib.suppress(msgspec.DecodeError):
                decoded = msgspec.json.decode(row.runtime_state)
                if isinstance(decoded, dict):
                    state = decoded
        session = Session(
            row.id,
            row.title,
            row.workdir,
            row.agent,
            runtime,
            row.created_at,
            row.updated_at,
            last_seq=row.last_seq,
            first_seq=row.first_seq,
            mode=row.mode,
            state=state,
        )
        session._on_state = self._state_saved
        self._sessions[session_id] = session
        return session

    def _require_session(self, session_id: str | None) -> Session:
        session = self._session(session_id or "")
        if session is None:
            raise RequestError(RESOURCE_NOT_FOUND, codes.msg_not_found("session", session_id or ""))
        return session

    def _state_saved(self, session: Session) -> None:
        self.journal.update_session(
            session.id, runtime_state=msgspec.json.encode(session.state).decode()
        )

    def _new_session(self, workdir: str, agent: str, runtime: Runtime, title: str) -> Session:
        ts = self._clock.now()
        session = Session(new_id("s"), title, workdir, agent, runtime, ts, ts)
        session._on_state = self._state_saved
        return session

    def _register_session(self, session: Session) -> None:
        self._sessions[session.id] = session
        self.journal.session(
            SessionRow(
                id=session.id,
                title=session.title,
                workdir=session.workdir,
                agent=session.agent,
                created_at=session.created_at,
                updated_at=session.updated_at,
                last_seq=0,
                first_seq=1,
                active_run_id=None,
                mode=session.mode,
                runtime_state=msgspec.json.encode(session.state).decode()
                if session.state
                else None,
            )
        )

    # -- handlers: a wrapper turns RequestError into the error frame ---------------------

    def _handle(
        self, frame: Frame, conn: Connection, body: Callable[[Frame, Connection], Any]
    ) -> HandlerResult:
        try:
            result = body(frame, conn)
        except RequestError as exc:
            return _error(frame, exc)
        if isinstance(result, bytes):
            return result
        return self._await(frame, result)

    async def _await(self, frame: Frame, result: Awaitable[bytes]) -> bytes:
        try:
            return await result
        except RequestError as exc:
            return _error(frame, exc)

    # -- run ----------------------------------------------------------------------------

    def run(self, frame: Frame, conn: Connection) -> HandlerResult:
        """``run``: start a run (new session or existing one), bind, ack, then stream."""
        return self._handle(frame, conn, self._run)

    def _run(self, frame: Frame, conn: Connection) -> bytes | Awaitable[bytes]:
        payload = _payload(frame)
        agent = _opt_str(payload, "agent")
        mode = _opt_str(payload, "mode")
        workdir = self._workdir(frame.workdir)
        if frame.session_id:
            session = self._require_session(frame.session_id)
            if workdir is not None and workdir != session.workdir:
                raise RequestError(INVALID_ACTION, codes.MSG_WORKDIR_CHANGE)
            if agent is not None and agent != session.agent:
                raise RequestError(INVALID_ACTION, "agent cannot change within a session")
            self._check_idle(session)
            new = False
        else:
            name = agent or self.runtimes.default
            runtime = self.runtimes.get(name)
            if runtime is None:
                raise RequestError(INVALID_ACTION, codes.MSG_UNKNOWN_AGENT)
            session = self._new_session(
                workdir or self.config.default_workdir, name, runtime, _title(frame)
            )
            new = True
        bindings = self._conn_bindings.get(conn, {})
        if session.id not in bindings and len(bindings) >= self.config.max_bindings:
            raise RequestError(INVALID_ACTION, codes.MSG_TOO_MANY_BINDINGS)
        run_id = frame.run_id or frame.request_id or new_id("r")
        if not new and (
            (session.id, run_id) in self._runs or self.store.get_run(session.id, run_id)
        ):
            raise RequestError(CONFLICT, codes.MSG_RUN_ID_USED)
        run_input = RunInput(
            run_id=run_id,
            text=frame.input_text,
            parts=tuple(frame.input_parts or ()),
            mode=mode,
        )
        run = Run(session, run_input)
        if mode is None:
            return self._start_run(frame, conn, run, new)
        # The mode is checked with the agent before anything starts; the session is
        # reserved meanwhile so that a second run is refused, not interleaved.
        session.active_run = run
        return self._check_mode_then_start(frame, conn, run, new, mode)

    async def _check_mode_then_start(
        self, frame: Frame, conn: Connection, run: Run, new: bool, mode: str
    ) -> bytes:
        session = run.session
        try:
            await session.runtime.check_mode(session, mode)
        except ModeUnknown:
            session.active_run = None
            raise RequestError(INVALID_ACTION, codes.MSG_UNKNOWN_MODE) from None
        except RunFailed as exc:
            session.active_run = None
            raise RequestError(exc.code, exc.message) from None
        except Exception as exc:
            session.active_run = None
            log.exception("runtime %s failed to check mode %r", session.agent, mode)
            raise RequestError(INTERNAL_ERROR, f"the agent failed: {exc}") from None
        session.active_run = None
        if conn.closed:
            raise RequestError(INTERNAL_ERROR, "connection closed")
        return self._start_run(frame, conn, run, new)

    def _workdir(self, workdir: str | None) -> str | None:
        if workdir is None:
            return None
        if not os.path.isabs(workdir) or not os.path.isdir(workdir):
            raise RequestError(INVALID_ACTION, codes.MSG_INVALID_WORKDIR)
        return os.path.realpath(workdir)

    def _check_idle(self, session: Session) -> None:
        if session.active_run is not None or session.busy:
            raise RequestError(CONFLICT, codes.MSG_RUN_ACTIVE)

    def _start_run(self, frame: Frame, conn: Connection, run: Run, new: bool) -> bytes:
        session = run.session
        if new:
            self._register_session(session)
        else:
            self._check_idle(session)
        session.active_run = run
        self._runs[(session.id, run.id)] = run
        # Bound before the ack is written: the sender sees every event of its run.
        self._bind(conn, session, None, after_seq=None)
        data: dict[str, Any] = {}
        if frame.input_text is not None:
            data["input_text"] = frame.input_text
        if frame.input_parts:
            data["input_parts"] = msgspec.to_builtins(frame.input_parts)
        data["workdir"] = session.workdir
        if run.input.mode:
            data["mode"] = run.input.mode
        ts = self._clock.now()
        self.journal.run(
            RunRow(
                session_id=session.id,
                run_id=run.id,
                state="active",
                started_seq=session.last_seq + 1,
                ended_seq=None,
                created_at=ts,
            )
        )
        self.journal.update_session(session.id, active_run_id=run.id)
        self._append(session, run.id, "run_started", data)
        run.task = asyncio.get_running_loop().create_task(
            self._drive(run), name=f"run {session.id}/{run.id}"
        )
        return _ack(
            frame, {"message": codes.MSG_RUN_ACCEPTED}, session_id=session.id, run_id=run.id
        )

    async def _drive(self, run: Run) -> None:
        """Run the runtime's prompt; turn its outcome into exactly one terminal event."""
        session = run.session
        sink = _Sink(self, run)
        terminal: tuple[str, dict[str, Any]]
        try:
            if run.input.mode and run.input.mode != session.mode:
                session.mode = run.input.mode
                self.journal.update_session(session.id, mode=run.input.mode)
            reason = await session.runtime.prompt(session, run.input, sink)
        except asyncio.CancelledError:
            if self._stopping:
                run.ended = True
                self._forget_run(run)
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
        session = run.session
        decided = "cancel"
        for permission in list(run.permissions.values()):
            self._resolve(permission, None, "reject", decided)
        run.ended = True
        self._append(session, run.id, event_type, data)
        self._end_run_rows(session, run.id, "done" if event_type == "run_done" else "error")
        self._forget_run(run)

    def _end_run_rows(self, session: Session, run_id: str, state: str) -> None:
        self.journal.update_run(session.id, run_id, state=state, ended_seq=session.last_seq)
        self.journal.update_session(session.id, active_run_id=None)

    def _forget_run(self, run: Run) -> None:
        session = run.session
        if run.cancel_timer is not None:
            run.cancel_timer.cancel()
        if session.active_run is run:
            session.active_run = None
        self._runs.pop((session.id, run.id), None)

    # -- cancel -------------------------------------------------------------------------

    def cancel(self, frame: Frame, conn: Connection) -> HandlerResult:
        """``cancel``: stop an active run (ack first, then its ``run_error canceled``)."""
        return self._handle(frame, conn, self._cancel)

    def _cancel(self, frame: Frame, conn: Connection) -> bytes:
        run_id = frame.run_id
        session_id = frame.session_id
        if not run_id and not session_id:
            raise RequestError(MISSING_REQUIRED_FIELD, codes.msg_missing_field("run_id"))
        run: Run | None = None
        if session_id:
            session = self._require_session(session_id)
            if run_id:
                run = self._runs.get((session.id, run_id))
                if run is None and self.store.get_run(session.id, run_id) is None:
                    raise RequestError(RESOURCE_NOT_FOUND, codes.msg_not_found("run", run_id))
            else:
                run = session.active_run
                if run is None or run.task is None:
                    raise RequestError(
                        RESOURCE_NOT_FOUND, f"session {session.id} has no active run"
                    )
        else:
            assert run_id is not None
            run = next((r for (_, rid), r in self._runs.items() if rid == run_id), None)
            if run is None and self.store.find_run(run_id) is None:
                raise RequestError(RESOURCE_NOT_FOUND, codes.msg_not_found("run", run_id))
        if run is None or run.ended or run.task is None:
            return _ack(frame, {"canceled": False, "run_id": run_id or (run.id if run else "")})
        session = run.session
        if not run.cancel_requested:
            run.cancel_requested = True
            for permission in list(run.permissions.values()):
                self._resolve(permission, None, "reject", "cancel")
            asyncio.get_running_loop().create_task(self._tell_runtime_to_cancel(run))
            run.cancel_timer = asyncio.get_running_loop().call_later(
                self.config.cancel_grace, self._force_cancel, run
            )
        return _ack(
            frame, {"canceled": True, "run_id": run.id}, session_id=session.id, run_id=run.id
        )

    async def _tell_runtime_to_cancel(self, run: Run) -> None:
        try:
            await run.session.runtime.cancel(run.session)
        except Exception:
            log.exception("runtime %s failed to cancel run %s", run.session.agent, run.id)

    def _force_cancel(self, run: Run) -> None:
        if not run.ended and run.task is not None:
            log.warning(
                "run %s did not stop within %.1fs of its cancel; stopping it",
                run.id,
                self.config.cancel_grace,
            )
            run.task.cancel()

    # -- permissions --------------------------------------------------------------------

    async def request_permission(
        self, run: Run, tool_call: dict[str, Any], options: Sequence[PermissionOption]
    ) -> PermissionOutcome:
        """A runtime asks: log the request, wait for a client, the timeout or a cancel."""
        if run.ended or run.cancel_requested:
            return PermissionOutcome(None, None, "cancel")
        loop = asyncio.get_running_loop()
        permission = Permission(
            new_id("p"),
            run,
            tool_call,
            [dict(o) for o in options],  # type: ignore[misc]
            loop.create_future(),
        )
        session = run.session
        self._permissions[permission.id] = permission
        run.permissions[permission.id] = permission
        request = {
            "request_id": permission.id,
            "tool_call": tool_call,
            "options": permission.options,
        }
        self.journal.permission(
            PermissionRow(
                id=permission.id,
                session_id=session.id,
                run_id=run.id,
                state="pending",
                decision=None,
                decided_by=None,
                option_id=None,
                request=msgspec.json.encode(request).decode(),
                created_at=self._clock.now(),
                resolved_at=None,
            )
        )
        self._append(session, run.id, "permission_request", request)
        permission.timer = loop.call_later(
            self.config.permission_timeout, self._permission_timed_out, permission
        )
        try:
            return await asyncio.shield(permission.future)
        except asyncio.CancelledError:
            if permission.id in self._permissions:
                self._resolve(permission, None, "reject", "cancel")
            raise

    def _permission_timed_out(self, permission: Permission) -> None:
        if permission.id in self._permissions:
            option = self._option_for(permission, "reject", None)
            self._resolve(permission, option, "reject", "timeout")

    def _option_for(
        self, permission: Permission, decision: str, option_id: str | None
    ) -> str | None:
        options = permission.options
        if option_id is not None:
            if not any(o.get("option_id") == option_id for o in options):
                raise RequestError(INVALID_ACTION, codes.MSG_UNKNOWN_OPTION)
            return option_id
        for kind in DECISION_KINDS[decision]:
            for option in options:
                if option.get("kind") == kind:
                    return str(option["option_id"])
        return None

    def _resolve(
        self, permission: Permission, option_id: str | None, decision: str, decided_by: str
    ) -> None:
        self._permissions.pop(permission.id, None)
        run = permission.run
        run.permissions.pop(permission.id, None)
        if permission.timer is not None:
            permission.timer.cancel()
        self._append(
            run.session,
            run.id,
            "permission_resolved",
            {"request_id": permission.id, "decision": decision, "decided_by": decided_by},
        )
        self.journal.update_permission(
            permission.id,
            state="resolved",
            decision=decision,
            decided_by=decided_by,
            option_id=option_id,
            resolved_at=self._clock.now(),
        )
        if not permission.future.done():
            if decided_by == "cancel":
                outcome = PermissionOutcome(None, None, "cancel")
            else:
                outcome = PermissionOutcome(option_id, decision, decided_by)
            permission.future.set_result(outcome)

    def resolve_permission(self, frame: Frame, conn: Connection) -> HandlerResult:
        """``resolve_permission``: the first answer wins; later ones are a ``conflict``."""
        return self._handle(frame, conn, self._resolve_permission)

    def _resolve_permission(self, frame: Frame, conn: Connection) -> bytes:
        payload = frame.payload
        assert isinstance(payload, dict)  # validated by the protocol layer
        permission_id = payload["request_id"]
        decision = payload["decision"]
        option_id = _opt_str(payload, "option_id")
        permission = self._permissions.get(permission_id)
        if permission is None:
            if self.store.get_permission(permission_id) is not None:
                raise RequestError(CONFLICT, codes.MSG_PERMISSION_RESOLVED)
            raise RequestError(
                RESOURCE_NOT_FOUND, codes.msg_not_found("permission request", permission_id)
            )
        chosen = self._option_for(permission, decision, option_id)
        if option_id is not None:
            kind = next(o.get("kind") for o in permission.options if o.get("option_id") == chosen)
            decision = _KIND_DECISION.get(str(kind), decision)
        self._resolve(permission, chosen, decision, "client")
        run = permission.run
        return _ack(
            frame,
            {
                "request_id": permission_id,
                "decision": decision,
                "message": codes.MSG_PERMISSION_OK,
            },
            session_id=run.session.id,
            run_id=run.id,
        )

    # -- bindings, replay, slow consumers -----------------------------------------------

    def bind_stream(self, frame: Frame, conn: Connection) -> HandlerResult:
        """``bind_stream``: replay from ``after_seq`` (if given), then follow live."""
        return self._handle(frame, conn, self._bind_stream)

    def _bind_stream(self, frame: Frame, conn: Connection) -> bytes:
        session = self._require_session(frame.session_id)
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        after_seq = payload.get("after_seq")
        run_id = frame.run_id or None
        bindings = self._conn_bindings.get(conn, {})
        if session.id not in bindings and len(bindings) >= self.config.max_bindings:
            raise RequestError(INVALID_ACTION, codes.MSG_TOO_MANY_BINDINGS)
        last_seq = session.committed_seq
        ack: dict[str, Any] = {"last_seq": last_seq, "replayed": 0}
        if after_seq is not None and after_seq < last_seq:
            start = after_seq
            if session.first_seq > after_seq + 1:
                ack["gap"] = True
                ack["first_seq"] = session.first_seq
                start = session.first_seq - 1
            if run_id is None:
                ack["replayed"] = last_seq - start
            else:
                ack["replayed"] = self.store.count_events(session.id, start, last_seq, run_id)
            self._bind(conn, session, run_id, after_seq=start)
        else:
            self._bind(conn, session, run_id, after_seq=None)
        return _ack(frame, ack, session_id=session.id)

    def _bind(
        self, conn: Connection, session: Session, run_id: str | None, *, after_seq: int | None
    ) -> None:
        bindings = self._conn_bindings.get(conn)
        if bindings is None:
            bindings = self._conn_bindings[conn] = {}
            conn.add_close_callback(self._connection_closed)
        old = bindings.get(session.id)
        if old is not None:
            if after_seq is None and run_id == old.run_id and old.live:
                return  # already bound the same way (a run on a bound connection)
            self._drop_binding(old)
        binding = Binding(conn, session, run_id)
        bindings[session.id] = binding
        session.bindings[conn] = binding
        conn.bound = True
        if after_seq is not None and after_seq < session.committed_seq:
            binding.live = False
            binding.replay = asyncio.get_running_loop().create_task(
                self._replay(binding, after_seq), name=f"replay {session.id}"
            )

    async def _replay(self, binding: Binding, cursor: int) -> None:
        """Write logged events after ``cursor``, paced by the client; then turn live."""
        session = binding.session
        conn = binding.conn
        try:
            while True:
                target = session.committed_seq
                if cursor >= target:
                    binding.live = True  # no await between the check and this
                    return
                rows = self.store.read_events(
                    session.id, cursor, target, REPLAY_PAGE, run_id=binding.run_id
                )
                if not rows:
                    cursor = target
                    continue
                if not conn.send(b"".join(r[1] for r in rows), mark=(session.id, rows[-1][0])):
                    return
                cursor = rows[-1][0]
                if not await conn.drain():
                    return
                await asyncio.sleep(0)  # let other connections in between pages
        except StoreError as exc:
            log.error("replay of session %s failed: %s", session.id, exc)  # noqa: TRY400
            conn.close_with_error(
                encode_error(INTERNAL_ERROR, f"replay failed: {exc}", action="bind_stream")
            )

    def unbind_stream(self, frame: Frame, conn: Connection) -> HandlerResult:
        """``unbind_stream``: stop receiving a session's events (idempotent)."""
        bindings = self._conn_bindings.get(conn)
        if bindings is not None and frame.session_id in bindings:
            self._drop_binding(bindings[frame.session_id])
        return _ack(frame, {"message": codes.MSG_STREAM_UNBOUND}, session_id=frame.session_id)

    def _drop_binding(self, binding: Binding) -> None:
        conn = binding.conn
        binding.session.bindings.pop(conn, None)
        if binding.replay is not None:
            binding.replay.cancel()
        bindings = self._conn_bindings.get(conn)
        if bindings is not None and bindings.get(binding.session.id) is binding:
            del bindings[binding.session.id]
            if not bindings:
                conn.bound = False

    def _connection_closed(self, conn: Connection) -> None:
        for binding in list(self._conn_bindings.pop(conn, {}).values()):
            binding.session.bindings.pop(conn, None)
            if binding.replay is not None:
                binding.replay.cancel()

    def check_slow_consumers(self, now: float) -> None:
        """The server's sweeper tick: cut bound connections whose oldest event waits too long."""
        limit = self.config.slow_consumer_seconds
        for conn, bindings in list(self._conn_bindings.items()):
            if bindings and conn.oldest_pending_age(now) > limit:
                self._slow_consumer(conn, next(iter(bindings)))

    def _slow_consumer(self, conn: Connection, session_id: str) -> None:
        """Write one ``slow_consumer`` error and close (spec v1.1 section 7)."""
        bindings = self._conn_bindings.get(conn, {})
        # Name the session whose events are furthest behind on this connection.
        worst, last, behind = session_id, conn.delivered(session_id) or 0, -1
        for sid, binding in bindings.items():
            delivered = conn.delivered(sid) or 0
            if binding.session.committed_seq - delivered > behind:
                worst, last = sid, delivered
                behind = binding.session.committed_seq - delivered
        log.warning(
            "slow consumer: closing a connection bound to session %s (last delivered seq %d, "
            "%d bytes waiting)",
            worst,
            last,
            conn.pending_bytes,
        )
        frame = Frame(
            type="error",
            session_id=worst,
            payload={"last_seq": last},
            error=ErrorBody(code=SLOW_CONSUMER, message=codes.msg_slow_consumer(last)),
        )
        self._connection_closed(conn)
        conn.close_with_error(encode_frame(frame))

    # -- list, load, compact, status ----------------------------------------------------

    def list_sessions(self, frame: Frame, conn: Connection) -> HandlerResult:
        """``list_sessions``: newest first, paged by ``limit`` and ``cursor``."""
        return self._handle(frame, conn, self._list_sessions)

    def _list_sessions(self, frame: Frame, conn: Connection) -> bytes:
        payload = _payload(frame)
        limit = payload.get("limit", LIST_LIMIT_DEFAULT)
        if limit is None:
            limit = LIST_LIMIT_DEFAULT
        if type(limit) is not int or not 1 <= limit <= LIST_LIMIT_MAX:
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("limit"))
        cursor = payload.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("cursor"))
        try:
            rows, next_cursor = self.store.list_sessions(limit, cursor or None)
        except ValueError:
            raise RequestError(INVALID_ACTION, codes.msg_invalid_payload_field("cursor")) from None
        sessions = [self._describe_row(row) for row in rows]
        result: dict[str, Any] = {"sessions": sessions}
        if next_cursor:
            result["next_cursor"] = next_cursor
        return _ack(frame, result)

    def _describe_row(self, row: SessionRow) -> dict[str, Any]:
        live = self._sessions.get(row.id)
        if live is not None:
            return live.describe()
        out: dict[str, Any] = {
            "id": row.id,
            "title": row.title,
            "workdir": row.workdir,
            "agent": row.agent,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "last_seq": row.last_seq,
            "state": "idle",
        }
        if row.mode:
            out["mode"] = row.mode
        return out

    def load_session(self, frame: Frame, conn: Connection) -> HandlerResult:
        """``load_session``: the session and its transcript (user inputs, agent messages)."""
        return self._handle(frame, conn, self._load_session)

    def _load_session(self, frame: Frame, conn: Connection) -> bytes:
        session = self._require_session(frame.session_id)
        result = session.describe()
        result["messages"] = self._transcript(session)
        return _ack(frame, result, session_id=session.id)

    def _transcript(self, session: Session) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        agent: dict[str, Any] | None = None
        chunks: list[str] = []
        calls: dict[str, dict[str, Any]] = {}

        def close_agent() -> None:
            nonlocal agent
            if agent is not None:
                agent["text"] = "".join(chunks)
                if calls:
                    agent["tool_calls"] = list(calls.values())
                messages.append(agent)
            agent = None
            chunks.clear()
            calls.clear()

        decoder = msgspec.json.Decoder()
        for _seq, run_id, event_type, frame_bytes in self.store.iter_events(
            session.id, ("run_started", "run_progress")
        ):
            data = decoder.decode(frame_bytes)["payload"]
            body = data.get("data") or {}
            if event_type == "run_started":
                close_agent()
                text = body.get("input_text")
                if text is None:
                    text = "\n".join(
                        p.get("text", "")
                        for p in body.get("input_parts") or ()
                        if p.get("type") == "text"
                    )
                messages.append({"role": "user", "run_id": run_id, "text": text, "ts": data["ts"]})
                continue
            kind = body.get("kind")
            if kind not in ("message_chunk", "tool_call", "tool_call_update"):
                continue
            if agent is None or agent["run_id"] != run_id:
                close_agent()
                agent = {"role": "agent", "run_id": run_id, "text": "", "ts": data["ts"]}
            if kind == "message_chunk":
                chunks.append(str(body.get("text", "")))
            else:
                call_id = str(body.get("tool_call_id", ""))
                call = calls.setdefault(call_id, {"tool_call_id": call_id})
                for key in ("title", "tool_kind", "status"):
                    if key in body:
                        call[key] = body[key]
        close_agent()
        return messages

    def compact(self, frame: Frame, conn: Connection) -> HandlerResult:
        """``compact``: ask the session's runtime to compact its context."""
        return self._handle(frame, conn, self._compact)

    def _compact(self, frame: Frame, conn: Connection) -> Awaitable[bytes]:
        session = self._require_session(frame.session_id)
        self._check_idle(session)
        session.busy = True
        return self._do_compact(frame, session)

    async def _do_compact(self, frame: Frame, session: Session) -> bytes:
        try:
            result = await session.runtime.compact(session)
        except CompactUnsupported:
            raise RequestError(UNSUPPORTED_ACTION, codes.MSG_COMPACT_UNSUPPORTED) from None
        except RunFailed as exc:
            raise RequestError(exc.code, exc.message) from None
        finally:
            session.busy = False
        before, after = result.before_chars, result.after_chars
        if not before and result.before_tokens and result.after_tokens is not None:
            before, after = result.before_tokens, result.after_tokens  # the ratio in tokens
        saved = (before - after) / before if before else 0.0
        payload: dict[str, Any] = {
            "applied": result.applied,
            "before_chars": result.before_chars,
            "after_chars": result.after_chars,
            "saved_ratio": round(saved, 4),
            "trigger_mode": "manual",
        }
        if result.before_tokens is not None:
            payload["before_tokens"] = result.before_tokens
        if result.after_tokens is not None:
            payload["after_tokens"] = result.after_tokens
        return _ack(frame, payload, session_id=session.id)

    def status(self) -> dict[str, Any]:
        """The core's part of the ``status`` ack."""
        return {
            "default_runtime": self.runtimes.default,
            "runtimes": self.runtimes.names(),
            "data_dir": str(self.config.data_dir),
            "bindings": sum(len(b) for b in self._conn_bindings.values()),
            "sessions": self.store.count_sessions(),
            "active_runs": len(self._runs),
            "pending_permissions": len(self._permissions),
            "agents": self._agent_stats(),
        }

    def _agent_stats(self) -> dict[str, Any]:
        """Each runtime that reports on itself (an ACP agent: running, pid, live sessions,
        memory); the port does not require it."""
        stats: dict[str, Any] = {}
        for name in self.runtimes.names():
            report = getattr(self.runtimes.get(name), "stats", None)
            if callable(report):
                try:
                    stats[name] = report()
                except Exception:  # a report must never fail status
                    log.exception("runtime %s: stats failed", name)
        return stats


class _MissingRuntime:
    """Stands in for the runtime of a session whose agent is no longer configured."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _fail(self) -> RunFailed:
        return RunFailed(
            "runtime_unavailable", f"agent {self.name!r} is not configured on this gateway"
        )

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def check_mode(self, session: SessionRef, mode: str) -> None:
        raise self._fail()

    async def prompt(self, session: SessionRef, run: RunInput, sink: RunSink) -> str:
        raise self._fail()

    async def cancel(self, session: SessionRef) -> None:
        return None

    async def compact(self, session: SessionRef) -> CompactResult:
        raise self._fail()


class _Sink:
    """The :class:`~neocode_gateway.runtime.RunSink` of one run."""

    __slots__ = ("_core", "_journal", "_run", "_session")

    def __init__(self, core: SessionCore, run: Run) -> None:
        self._core = core
        self._run = run
        self._session = run.session
        self._journal = core.journal

    async def emit(self, data: dict[str, Any]) -> None:
        run = self._run
        if run.ended:
            log.debug("run %s: an event after the run ended was ignored", run.id)
            return
        kind = data.get("kind")
        if kind not in PROGRESS_KINDS:
            data = {"kind": "other", "update": data}
        elif kind == "session_info":
            self._session_info(data)
        core = self._core
        core._append(self._session, run.id, "run_progress", data)
        if core._waiting >= EMIT_HIGH_WATER:
            await self._journal.wait_committed()

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
            self._journal.update_session(session.id, **changes)

    async def request_permission(
        self, tool_call: dict[str, Any], options: Sequence[PermissionOption]
    ) -> PermissionOutcome:
        return await self._core.request_permission(self._run, tool_call, options)


def status_payload(core: SessionCore | None, connections: int, started: float) -> dict[str, Any]:
    """The whole ``status`` ack payload (``core`` is ``None`` with ``--runtime none``)."""
    payload: dict[str, Any] = {
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - started, 3),
        "connections": connections,
    }
    if core is None:
        payload.update(
            default_runtime="none",
            runtimes=[],
            bindings=0,
            sessions=0,
            active_runs=0,
            pending_permissions=0,
        )
    else:
        payload.update(core.status())
    return payload
