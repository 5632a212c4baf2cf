"""MLflow pyfunc form of a trained generator, logged as "model from code": MLflow stores this file,
not a pickle, and the weights travel as a plain checkpoint artifact loaded with weights_only=True.

Input: float32 L (B, 1, H, W) in [-1, 1]; output: ab (B, 2, H, W) in Lab units. ``params``
may carry ``temperature`` (the saturation knob).
"""

import mlflow
import numpy as np


class GeneratorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from pipeline import checkpoint

        self.G = checkpoint.load_generator(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None):
        import torch

        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            return self.G(x, (params or {}).get("temperature"))[1].numpy()


mlflow.models.set_model(GeneratorModel())
