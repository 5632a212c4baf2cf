"""A trained model applied: ``infer`` (photos, in-process and the Ray Data stages), ``evaluate``
(scores beside the grey baseline, the report), ``export`` (ONNX, the shipped form)."""

__all__ = ["evaluate", "export", "infer"]
