"""The ``acp`` runtime: coding agents that speak the Agent Client Protocol, behind the gateway.

Each agent of the configuration (:mod:`neocode_gateway.config`) becomes one
:class:`AcpRuntime` named after it. Importing this package is cheap: the ACP
SDK (``acp``, with pydantic) is imported only when an agent starts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from neocode_gateway.config import AgentConfig, GatewayConfig
from neocode_gateway.errors import ConfigError
from neocode_gateway.runtime._port import RuntimeOptions
from neocode_gateway.runtime.acp._runtime import AcpRuntime


def create_agent_runtimes(
    config: GatewayConfig | Mapping[str, AgentConfig], options: RuntimeOptions
) -> dict[str, AcpRuntime]:
    """One runtime per configured agent, by name, in the configuration's order.

    ``ConfigError`` on Windows: agents run in process groups of their own (POSIX).
    """
    agents = config.agents if isinstance(config, GatewayConfig) else config
    if agents and sys.platform == "win32":  # pragma: no cover - Windows
        raise ConfigError("ACP agents are not supported on Windows yet (POSIX only)")
    return {name: AcpRuntime(name, agent, options) for name, agent in agents.items()}


__all__ = ["AcpRuntime", "create_agent_runtimes"]
