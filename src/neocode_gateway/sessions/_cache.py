"""The sessions held in memory: loaded from the store on first use, evicted when idle.

A session is kept while something holds it (an active run, a compaction, a
binding); beyond that the cache keeps the most recently used ones up to its
cap and forgets the rest, so that a gateway touching many sessions over its
life holds memory for the ones in use, not for every session ever touched.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Final

import msgspec

from neocode_gateway.errors import RunFailed
from neocode_gateway.protocol import RESOURCE_NOT_FOUND, codes
from neocode_gateway.runtime import (
    CompactResult,
    RunInput,
    RunSink,
    RuntimeSet,
    SessionRef,
)
from neocode_gateway.sessions._model import Session
from neocode_gateway.sessions._wire import RequestError
from neocode_gateway.store import SessionRow, Store

log = logging.getLogger("neocode_gateway.sessions")

#: Idle sessions kept in memory at most (the least recently used go first).
MAX_CACHED_SESSIONS: Final = 4096


class SessionCache:
    """Sessions by id: an LRU over the idle ones, never evicting one in use."""

    __slots__ = ("_on_state", "_runtimes", "_sessions", "_store", "cap")

    def __init__(
        self,
        store: Store,
        runtimes: RuntimeSet,
        on_state: Callable[[Session], None],
        cap: int = MAX_CACHED_SESSIONS,
    ) -> None:
        self._store = store
        self._runtimes = runtimes
        self._on_state = on_state
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.cap = cap

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def peek(self, session_id: str) -> Session | None:
        """The session if it is in memory (no store read, no change of its recency)."""
        return self._sessions.get(session_id)

    def get(self, session_id: str) -> Session | None:
        """The session, from memory or the store; ``None`` if unknown."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions.move_to_end(session_id)
            return session
        row = self._store.get_session(session_id) if session_id else None
        if row is None:
            return None
        session = self._from_row(row)
        self.add(session)
        return session

    def require(self, session_id: str | None) -> Session:
        """The session, or ``resource_not_found``."""
        session = self.get(session_id or "")
        if session is None:
            raise RequestError(RESOURCE_NOT_FOUND, codes.msg_not_found("session", session_id or ""))
        return session

    def new(self, session_id: str, title: str, workdir: str, agent: str, ts: str) -> Session:
        """A new session object (not yet in the cache nor the store)."""
        runtime = self._runtimes.get(agent) or MissingRuntime(agent)
        session = Session(session_id, title, workdir, agent, runtime, ts, ts)
        session._on_state = self._on_state
        return session

    def add(self, session: Session) -> None:
        """Hold ``session``; evict idle ones beyond the cap."""
        self._sessions[session.id] = session
        self._sessions.move_to_end(session.id)
        if len(self._sessions) > self.cap:
            self.evict()

    def remove(self, session_id: str) -> None:
        """Forget a session (its creation was rolled back)."""
        self._sessions.pop(session_id, None)

    def evict(self) -> int:
        """Forget the least recently used idle sessions beyond the cap; return how many."""
        excess = len(self._sessions) - self.cap
        if excess <= 0:
            return 0
        gone = [s.id for s in self._sessions.values() if s.evictable][:excess]
        for session_id in gone:
            del self._sessions[session_id]
        return len(gone)

    def _from_row(self, row: SessionRow) -> Session:
        runtime = self._runtimes.get(row.agent) or MissingRuntime(row.agent)
        state = _json_object(row.runtime_state)
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
            options=_json_object(row.options),
        )
        session._on_state = self._on_state
        return session


def _json_object(text: str | None) -> dict[str, Any]:
    if text:
        with contextlib.suppress(msgspec.DecodeError):
            decoded = msgspec.json.decode(text)
            if isinstance(decoded, dict):
                return decoded
    return {}


def session_row(session: Session) -> SessionRow:
    """A new session's row, as it is first stored."""
    return SessionRow(
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
        runtime_state=msgspec.json.encode(session.state).decode() if session.state else None,
        options=msgspec.json.encode(session.options).decode() if session.options else None,
    )


class MissingRuntime:
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
