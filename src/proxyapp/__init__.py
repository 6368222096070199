"""proxyapp: a stateful SIP proxy built on fastsip that behaves like OpenSIPS on the wire."""

__version__ = "0.1.0"

__all__ = ["__version__"]
