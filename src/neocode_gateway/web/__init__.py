"""The web page: ``neocode-gateway web``, a front-end served locally, a client of the contract.

It talks to the gateway only through :class:`neocode_gateway.client.AsyncGatewayClient`
(never the core's packages), so the contract stays the one way in. Modules:

``_devices``  paired devices and one-time tokens, stored as hashes in a 0600 file
``_guard``    what the browser must not be able to do: Host, Origin, framing, inline script
``_auth``     the credential of a request: token exchange, cookie, scope
``_render``   contract events to HTML fragments (Markdown on the server, raw HTML inert)
``_bridge``   one page's WebSocket, bridged to its own gateway connection
``_app``      the Starlette application: routes, the JSON API, the shared pollers
``_serve``    binding rules (loopback, TLS, --insecure-lan) and running uvicorn
"""
