"""proxyapp tests: sans-IO state machines and proxy core, the asyncio edge, SIPp end to end."""
