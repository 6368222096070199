"""proxyapp location (OpenSIPS usrloc): registration bindings in memory for the call path, persisted and shared by a backend."""

from .binding import Binding

__all__ = ["Binding"]
