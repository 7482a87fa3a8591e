"""The sessions core: a thin facade over the modules that own each rule (contract v1.1).

Every rule of sections 4 to 8 of ``frame-contract-v1.1.md`` that is not pure
validation lives in one module of this package:

========================  ======================================================
module                    owns
========================  ======================================================
``_subscriber``           the port a client satisfies (send, back-pressure, close)
``_wire``                 refusals, acks, payload readers, titles
``_cache``                sessions in memory, loaded on use, evicted when idle
``_journal``              group commit, retry of a failed commit, retraction
``_log``                  numbering, fan-out after commit, recovery, retention
``_runs``                 run, cancel, the run's sink, one terminal event
``_permissions``          permission requests, decisions, timeouts
``_streams``              bind/unbind, replay, answers before events, slow consumers
``_queries``              list_sessions, load_session, compact, status
``_lifecycle``            create_session and delete_session (v1.2)
``_clients``              hello: who is connected, named in decisions (v1.2)
``_approvals``            rules and grants before a person; pending, grants, audit (v1.2)
========================  ======================================================

The core is given a :class:`~neocode_gateway.store.Store`, the runtimes, and
subscribers (to answer and push to); it knows no sockets. Its handlers take a
valid request :class:`~neocode_gateway.protocol.Frame` and the subscriber, and
return the encoded answer now (``bytes``) or an awaitable of it.

How an event travels: a runtime reports it through its run's sink; the log
encodes and numbers it and records it in the journal; at the end of the loop
turn the journal commits everything recorded in one transaction and only then
hands the frames to the live bindings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import msgspec

from neocode_gateway import __version__
from neocode_gateway.limits import DEFAULT_PERMISSION_TIMEOUT, DEFAULT_RETENTION_DAYS
from neocode_gateway.protocol import Frame
from neocode_gateway.runtime import RuntimeSet
from neocode_gateway.sessions._approvals import Approvals
from neocode_gateway.sessions._cache import MAX_CACHED_SESSIONS, SessionCache
from neocode_gateway.sessions._clients import Clients
from neocode_gateway.sessions._journal import Journal
from neocode_gateway.sessions._lifecycle import Lifecycle
from neocode_gateway.sessions._log import EventLog
from neocode_gateway.sessions._model import Session
from neocode_gateway.sessions._permissions import Permissions
from neocode_gateway.sessions._queries import Queries
from neocode_gateway.sessions._runs import LOG_FAILURE_GRACE, Runs
from neocode_gateway.sessions._streams import Streams
from neocode_gateway.sessions._subscriber import Subscriber
from neocode_gateway.sessions._wire import RequestError, error
from neocode_gateway.store import Store

if TYPE_CHECKING:
    from neocode_gateway.policy import Policy

log = logging.getLogger("neocode_gateway.sessions")

MAX_BINDINGS: Final = 128
SLOW_CONSUMER_BYTES: Final = 8 << 20
SLOW_CONSUMER_SECONDS: Final = 5.0
#: A canceled run whose runtime does not stop within this grace is stopped by force.
CANCEL_GRACE: Final = 5.0

#: What a handler returns: the answer now, or an awaitable of it.
Answer: TypeAlias = bytes | Awaitable[bytes]
_Body: TypeAlias = Callable[[Frame, Subscriber], Answer]


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
    max_cached_sessions: int = MAX_CACHED_SESSIONS
    #: The approval rules (``[[policy]]`` tables of the configuration file), if any.
    policy: Policy | None = None


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
        self.cache = SessionCache(store, runtimes, self._state_saved, config.max_cached_sessions)
        self.runs = Runs(self)
        self.permissions = Permissions(self)
        self.streams = Streams(self)
        self.queries = Queries(self)
        self.lifecycle = Lifecycle(self)
        self.clients = Clients(self)
        self.approvals = Approvals(self, config.policy)
        self._journal: Journal | None = None
        self._log: EventLog | None = None
        self.stopping = False

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the last run of the gateway, start the runtimes, start retention."""
        self._journal = Journal(self.store, asyncio.get_running_loop(), self._committed)
        self._log = EventLog(self, self._journal)
        self._log.recover(self.store)
        self._journal.flush()
        self._log.start_retention(self.config.event_retention_days)
        await self.runtimes.start_all()

    async def shutdown(self) -> None:
        """Stop: runs are left for the next start to end (``gateway_restarted``), agents closed."""
        self.stopping = True
        self.log.stop_retention()
        await self.runs.stop()
        self.streams.stop()
        self.journal.flush()
        await self.runtimes.close_all()

    @property
    def journal(self) -> Journal:
        assert self._journal is not None, "SessionCore.start() was not awaited"
        return self._journal

    @property
    def log(self) -> EventLog:
        assert self._log is not None, "SessionCore.start() was not awaited"
        return self._log

    def now(self) -> str:
        """The gateway's timestamp for rows and events (RFC 3339, milliseconds)."""
        return self.log.clock.now()

    @property
    def events_logged(self) -> int:
        return self._log.events_logged if self._log is not None else 0

    def _committed(self, pending: list[Any], single: bool) -> None:
        self.log.committed(pending, single)

    def _state_saved(self, session: Session) -> None:
        self.journal.update_session(
            session.id, runtime_state=msgspec.json.encode(session.state).decode()
        )

    def tick(self, now: float) -> None:
        """The server's sweeper tick: slow consumers, and runs stuck behind a failing log."""
        self.streams.check_slow_consumers(now)
        since = self.journal.failing_since
        if since is not None and time.monotonic() - since > LOG_FAILURE_GRACE:
            error = self.journal.last_error
            self.runs.fail_stuck(str(error) if error else "unknown error")

    check_slow_consumers = tick

    # -- handlers: a wrapper turns RequestError into the error frame ---------------------

    @staticmethod
    def _handle(frame: Frame, sub: Subscriber, body: _Body) -> Answer:
        try:
            result = body(frame, sub)
        except RequestError as exc:
            return error(frame, exc)
        if isinstance(result, bytes):
            return result
        return _refusals(frame, result)

    def run(self, frame: Frame, sub: Subscriber) -> Answer:
        """``run``: start a run (new session or existing one), bind, ack, then stream."""
        return self._handle(frame, sub, self.runs.run)

    def cancel(self, frame: Frame, sub: Subscriber) -> Answer:
        """``cancel``: stop an active run (ack first, then its ``run_error canceled``)."""
        return self._handle(frame, sub, self.runs.cancel)

    def resolve_permission(self, frame: Frame, sub: Subscriber) -> Answer:
        """``resolve_permission``: the first answer wins; later ones are a ``conflict``."""
        return self._handle(frame, sub, self.permissions.resolve_permission)

    def bind_stream(self, frame: Frame, sub: Subscriber) -> Answer:
        """``bind_stream``: replay from ``after_seq`` (if given), then follow live."""
        return self._handle(frame, sub, self.streams.bind_stream)

    def unbind_stream(self, frame: Frame, sub: Subscriber) -> Answer:
        """``unbind_stream``: stop receiving a session's events (idempotent)."""
        return self._handle(frame, sub, self.streams.unbind_stream)

    def list_sessions(self, frame: Frame, sub: Subscriber) -> Answer:
        """``list_sessions``: newest first, paged by ``limit`` and ``cursor``."""
        return self._handle(frame, sub, self.queries.list_sessions)

    def load_session(self, frame: Frame, sub: Subscriber) -> Answer:
        """``load_session``: the session and a page of its transcript."""
        return self._handle(frame, sub, self.queries.load_session)

    def compact(self, frame: Frame, sub: Subscriber) -> Answer:
        """``compact``: ask the session's runtime to compact its context."""
        return self._handle(frame, sub, self.queries.compact)

    def create_session(self, frame: Frame, sub: Subscriber) -> Answer:
        """``create_session`` (v1.2): a session without a run."""
        return self._handle(frame, sub, self.lifecycle.create_session)

    def set_mode(self, frame: Frame, sub: Subscriber) -> Answer:
        """``set_mode`` (v1.2): a session's mode, without a run."""
        return self._handle(frame, sub, self.lifecycle.set_mode)

    def delete_session(self, frame: Frame, sub: Subscriber) -> Answer:
        """``delete_session`` (v1.2): a session and its log."""
        return self._handle(frame, sub, self.lifecycle.delete_session)

    def hello(self, frame: Frame, sub: Subscriber) -> Answer:
        """``hello`` (v1.2): a client names itself."""
        return self._handle(frame, sub, self.clients.hello)

    def list_pending(self, frame: Frame, sub: Subscriber) -> Answer:
        """``list_pending`` (v1.2): unanswered permission requests, oldest first."""
        return self._handle(frame, sub, self.approvals.list_pending)

    def list_grants(self, frame: Frame, sub: Subscriber) -> Answer:
        """``list_grants`` (v1.2): the grants people gave."""
        return self._handle(frame, sub, self.approvals.list_grants)

    def revoke_grant(self, frame: Frame, sub: Subscriber) -> Answer:
        """``revoke_grant`` (v1.2): end a grant now."""
        return self._handle(frame, sub, self.approvals.revoke_grant)

    def audit(self, frame: Frame, sub: Subscriber) -> Answer:
        """``audit`` (v1.2): every permission decision, who decided, how long it waited."""
        return self._handle(frame, sub, self.approvals.audit)

    def status(self) -> dict[str, Any]:
        """The core's part of the ``status`` ack."""
        return self.queries.status()


async def _refusals(frame: Frame, result: Awaitable[bytes]) -> bytes:
    try:
        return await result
    except RequestError as exc:
        return error(frame, exc)


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
        payload.update(core.clients.listing(connections))
    return payload
