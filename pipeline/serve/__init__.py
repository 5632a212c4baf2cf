"""Serving a model online: ``app`` (the Ray Serve application) and ``handling`` (the request rules
and the service's CPU / batched-model halves)."""

__all__ = ["app", "handling"]
