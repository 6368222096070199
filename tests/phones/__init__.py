"""End-to-end tests with real softphones (baresip) on loopback: the harness, then calls through proxyapp."""
