"""Runtimes: the agents behind the gateway, behind one port (:mod:`._port`)."""

from neocode_gateway.runtime._echo import EchoRuntime
from neocode_gateway.runtime._port import (
    CANCELLED,
    CompactResult,
    PermissionOption,
    PermissionOutcome,
    RunInput,
    RunSink,
    Runtime,
    RuntimeOptions,
    SessionRef,
)
from neocode_gateway.runtime._registry import (
    ENTRY_POINT_GROUP,
    RuntimeFactory,
    RuntimeSet,
    available_runtimes,
    create_runtime,
)

__all__ = [
    "CANCELLED",
    "ENTRY_POINT_GROUP",
    "EchoRuntime",
    "RuntimeFactory",
    "RuntimeSet",
    "available_runtimes",
    "create_runtime",
    "CompactResult",
    "PermissionOption",
    "PermissionOutcome",
    "RunInput",
    "RunSink",
    "Runtime",
    "RuntimeOptions",
    "SessionRef",
]
