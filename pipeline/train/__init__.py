"""Training on Ray Train. Its public face: ``trainer`` (the per-worker loop, the trainer, one
tracked run), ``tracking`` (MLflow, best effort: runs, params, metrics, artifacts, the model) and
``progress`` (the lines a run prints). ``layout`` (the workers fitted to the cluster) is the
trainer's own."""

__all__ = ["progress", "tracking", "trainer"]
