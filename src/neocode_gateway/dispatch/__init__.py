"""Dispatch: the action registry that answers valid request frames."""

from neocode_gateway.dispatch._actions import install
from neocode_gateway.dispatch._registry import BUILTIN_HANDLERS, Dispatcher, ping

__all__ = ["BUILTIN_HANDLERS", "Dispatcher", "install", "ping"]
