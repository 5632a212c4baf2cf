"""The model the product trains and ships: the GAN (G, D, optimisers, EMA) and its step,
checkpoints, model references, prediction, and the MLflow model form of a generator."""
