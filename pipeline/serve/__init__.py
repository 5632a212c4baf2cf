"""Serving a model online: ``app`` (the Ray Serve application), ``handling`` (the request rules
and the service's CPU / batched-model halves) and ``proxy`` (what runs in Serve's HTTP proxy)."""

__all__ = ["app", "handling", "proxy"]
