"""Grants: "allow for this session", remembered as exactly what was allowed.

When a person answers a request with *allow for the session*, the gateway
keeps a grant that matches only the same thing again, in the same session:
the exact command (whitespace normalised) for ``execute``, the same real paths
(or a subset of them) for the file kinds, the same title for the kinds with no
specifier. A grant never widens to a pattern: that is what rules are for.

The intended order is: deny rules, then grants, then ask and allow rules, then
ask by default (:func:`decide_with_grants`): a grant may answer again what an
ask rule asked, but never what a deny rule forbids. Grants may expire
(``expires_at``, a time in seconds, as ``now``) or run out (``remaining``
uses); storing them and counting uses (:meth:`Grant.used`) is the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from neocode_gateway.policy._glob import normalise_command
from neocode_gateway.policy._paths import resolve, workdir_forms
from neocode_gateway.policy._policy import Decision, Policy
from neocode_gateway.policy._request import ToolRequest
from neocode_gateway.policy._rules import FILE_KINDS


@dataclass(frozen=True, slots=True)
class Grant:
    """One session-scoped permission. ``command``/``paths``/``title``: what it matches exactly.

    ``paths`` are real absolute paths; ``workdir`` is the one relative request
    paths are resolved against.
    """

    session_id: str
    kind: str
    workdir: str
    command: str | None = None
    paths: tuple[str, ...] = ()
    title: str = ""
    expires_at: float | None = None
    remaining: int | None = None

    @property
    def rule(self) -> str:
        """The grant written as a rule, for decisions and the audit."""
        if self.kind == "execute":
            return f"execute({self.command})"
        if self.kind in FILE_KINDS:
            return f"{self.kind}({', '.join(self.paths)})"
        return f"{self.kind}[{self.title}]"

    def live(self, now: float) -> bool:
        """Not expired and not used up."""
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return self.remaining is None or self.remaining > 0

    def matches(self, request: ToolRequest, session_id: str, now: float) -> bool:
        """Whether this grant answers ``request`` in ``session_id`` at time ``now``."""
        if session_id != self.session_id or request.kind != self.kind or not self.live(now):
            return False
        if self.kind == "execute":
            return request.command is not None and (
                normalise_command(request.command) == self.command
            )
        if self.kind in FILE_KINDS:
            paths = _real_paths(request, self.workdir)
            return bool(paths) and set(paths) <= set(self.paths)
        return request.title == self.title

    def used(self) -> Grant:
        """The grant after one use (``remaining`` decremented if counted)."""
        if self.remaining is None:
            return self
        return replace(self, remaining=max(0, self.remaining - 1))


def _real_paths(request: ToolRequest, workdir: str) -> tuple[str, ...]:
    forms = workdir_forms(workdir)
    out: list[str] = []
    for path in request.paths:
        location = resolve(path, forms)
        out.extend(form for form in location.absolute if form not in out)
    return tuple(out)


def grant_from_request(
    request: ToolRequest,
    session_id: str,
    *,
    workdir: str,
    expires_at: float | None = None,
    remaining: int | None = None,
) -> Grant:
    """The grant for a request that a person allowed for the session.

    Every resolved form of each path is kept, so the same file named the same
    way matches again; a request with no command (``execute``) or no path (file
    kinds) gives a grant that matches nothing, rather than everything.
    """
    command = None
    if request.kind == "execute":
        command = normalise_command(request.command) if request.command else None
    paths = _real_paths(request, workdir) if request.kind in FILE_KINDS else ()
    return Grant(
        session_id=session_id,
        kind=request.kind,
        workdir=workdir,
        command=command,
        paths=paths,
        title=request.title,
        expires_at=expires_at,
        remaining=remaining,
    )


def decide_with_grants(
    policy: Policy,
    request: ToolRequest,
    *,
    agent: str,
    workdir: str,
    session_id: str,
    grants: Iterable[Grant],
    now: float,
) -> tuple[Decision, Grant | None]:
    """Deny rules, then grants, then the rest of the policy; the grant used, if any."""
    decision = policy.decide(request, agent=agent, workdir=workdir)
    if decision.verdict == "deny":
        return decision, None
    for grant in grants:
        if grant.matches(request, session_id, now):
            return Decision("allow", grant.rule, "allowed for this session", "grant"), grant
    return decision, None
