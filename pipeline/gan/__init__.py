"""The model the product trains and ships. Its public face: ``cgan`` (the GAN: G, D, optimisers,
EMA and their step), ``batches`` (a step's tensors), ``checkpoint``, ``model_ref`` (a model
reference -> the generator), ``predict`` (a generator on photos), ``model_io`` (what the registered
MLflow model takes and gives). ``pyfunc`` is MLflow's entry, loaded by its path, never imported."""

__all__ = ["batches", "cgan", "checkpoint", "model_io", "model_ref", "predict"]
