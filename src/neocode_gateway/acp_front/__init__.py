"""The ACP front door: editors and ACP clients use the gateway as their agent.

``neocode-gateway acp`` is an Agent Client Protocol agent on stdio, built on
the official SDK, and a client of the running gateway like every other
front-end: a session it opens is a gateway session, durable, followed and
approved from any other client, loaded again with its whole history. Nothing
of the session core runs in it.

- :mod:`._mapping`: contract events <-> ACP, pure;
- :mod:`._link`: the gateway connection, started and reconnected on demand;
- :mod:`._follow`: one session's events to the editor, permissions included;
- :mod:`._agent`: the ACP methods (imports the SDK);
- :mod:`._stdio`: stdio, a quick ``initialize`` while the SDK loads.
"""
