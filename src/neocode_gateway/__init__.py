"""NeoCode Gateway: a local IPC daemon that speaks the v1 frame contract.

Front-ends connect over a Unix domain socket (a named pipe on Windows) and
exchange newline-delimited JSON frames. The package is layered, bottom up:

* :mod:`neocode_gateway.protocol`: pure frame types, validation, framing (no I/O)
* :mod:`neocode_gateway.transport`: listeners and dialers, address defaults, security
* :mod:`neocode_gateway.server`: asyncio accept loop, limits, timeouts, shutdown
* :mod:`neocode_gateway.dispatch`: the action registry that answers frames
* :mod:`neocode_gateway.client`: client library
* :mod:`neocode_gateway.cli`: the ``neocode-gateway`` command
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
