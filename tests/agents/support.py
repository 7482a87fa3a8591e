"""Test doubles of the sessions core for driving an ACP runtime directly (no daemon).

:class:`FakeSession` is a :class:`~neocode_gateway.runtime.SessionRef`;
:class:`FakeSink` a :class:`~neocode_gateway.runtime.RunSink` that records
every event and answers permission requests by a policy the test sets (or
lets the test answer them, or waits like a client that never answers).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from neocode_gateway.config import AgentConfig
from neocode_gateway.runtime import PermissionOption, PermissionOutcome, RuntimeOptions
from neocode_gateway.runtime.acp import AcpRuntime

FAKE_AGENT = str(Path(__file__).with_name("fake_acp_agent.py"))


class FakeSession:
    """A gateway session as the core shows it to a runtime."""

    def __init__(self, session_id: str, workdir: str, state: Mapping[str, Any] | None = None):
        self.id = session_id
        self.workdir = os.path.realpath(workdir)
        self.state: dict[str, Any] = dict(state or {})
        self.saves = 0

    @property
    def runtime_state(self) -> Mapping[str, Any]:
        return self.state

    def save_runtime_state(self, state: Mapping[str, Any]) -> None:
        self.state = dict(state)
        self.saves += 1


Policy = Callable[[dict[str, Any], Sequence[PermissionOption]], Awaitable[PermissionOutcome]]


class FakeSink:
    """Records ``run_progress`` data and permission requests of one run."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.phases: list[str] = []
        self.permissions: list[tuple[dict[str, Any], list[PermissionOption]]] = []
        self.policy = policy
        self.pending: asyncio.Future[PermissionOutcome] | None = None
        self.changed = asyncio.Event()

    async def emit(self, data: dict[str, Any]) -> None:
        if data.get("kind") == "phase":  # what the run waits for: kept apart, in order
            self.phases.append(data["phase"])
        else:
            self.events.append(data)
        self.changed.set()

    async def request_permission(
        self, tool_call: dict[str, Any], options: Sequence[PermissionOption]
    ) -> PermissionOutcome:
        self.events.append({"kind": "permission_request", "tool_call": tool_call})
        self.permissions.append((tool_call, list(options)))
        self.changed.set()
        if self.policy is not None:
            return await self.policy(tool_call, options)
        self.pending = asyncio.get_running_loop().create_future()
        try:
            return await self.pending
        except asyncio.CancelledError:
            self.events.append({"kind": "permission_cancelled"})
            raise

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]

    def text(self) -> str:
        return "".join(e["text"] for e in self.events if e["kind"] == "message_chunk")

    async def wait_for(self, predicate: Callable[[FakeSink], bool], timeout: float = 30.0) -> None:
        """Wait (no fixed sleep) until ``predicate(self)`` holds."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


def choose(kind: str) -> Policy:
    """A policy answering every permission request with its first option of ``kind``."""

    async def policy(
        tool_call: dict[str, Any], options: Sequence[PermissionOption]
    ) -> PermissionOutcome:
        for option in options:
            if option["kind"] == kind:
                decision = {"allow_once": "allow_once", "allow_always": "allow_session"}.get(
                    kind, "reject"
                )
                return PermissionOutcome(option["option_id"], decision, "client")
        raise AssertionError(f"no option of kind {kind}: {options}")

    return policy


def fake_agent_config(
    name: str = "fake",
    env: Mapping[str, str] | None = None,
    mode: str | None = None,
    max_live_sessions: int = 8,
) -> AgentConfig:
    return AgentConfig(
        name=name,
        command=(sys.executable, FAKE_AGENT),
        env=dict(env or {}),
        mode=mode,
        max_live_sessions=max_live_sessions,
    )


def fake_runtime(
    workdir: str,
    *,
    env: Mapping[str, str] | None = None,
    mode: str | None = None,
    max_live_sessions: int = 8,
    settings: Mapping[str, Any] | None = None,
) -> AcpRuntime:
    options = RuntimeOptions(
        data_dir=Path(workdir), default_workdir=workdir, settings=dict(settings or {})
    )
    return AcpRuntime(
        "fake", fake_agent_config(env=env, mode=mode, max_live_sessions=max_live_sessions), options
    )
