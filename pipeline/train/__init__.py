"""Training on Ray Train (the per-worker loop, the trainer, one tracked run) and MLflow tracking."""
