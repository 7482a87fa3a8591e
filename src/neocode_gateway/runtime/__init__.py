"""Runtimes: the agents behind the gateway, behind one port (:mod:`._port`)."""

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

__all__ = [
    "CANCELLED",
    "CompactResult",
    "PermissionOption",
    "PermissionOutcome",
    "RunInput",
    "RunSink",
    "Runtime",
    "RuntimeOptions",
    "SessionRef",
]
