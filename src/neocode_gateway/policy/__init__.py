"""Permission policy, pure: rules from TOML decide tool requests as allow, deny or ask.

Nothing here knows sockets, asyncio, the store or the session core; the only
I/O is :func:`os.path.realpath` on a request's paths and workdir (and reading
the TOML file in :meth:`Policy.from_toml`). The session core asks
:meth:`Policy.decide` (or :func:`decide_with_grants`) before it would ask a
person, and records the :class:`Decision`. See ``docs/permissions.md``.
"""

from neocode_gateway.policy._grants import Grant, decide_with_grants, grant_from_request
from neocode_gateway.policy._load import PolicyError
from neocode_gateway.policy._policy import Decision, Policy
from neocode_gateway.policy._request import ToolRequest, request_from_tool_call
from neocode_gateway.policy._rules import FILE_KINDS, TOOL_KINDS, Verdict

__all__ = [
    "FILE_KINDS",
    "TOOL_KINDS",
    "Decision",
    "Grant",
    "Policy",
    "PolicyError",
    "ToolRequest",
    "Verdict",
    "decide_with_grants",
    "grant_from_request",
    "request_from_tool_call",
]
