"""Training on Ray Train. Its public face: ``trainer`` (the per-worker loop, the trainer, one
tracked run) and ``tracking`` (MLflow, best effort: runs, params, metrics, artifacts, the model)."""

__all__ = ["tracking", "trainer"]
