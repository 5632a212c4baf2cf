"""MLflow pyfunc form of a trained generator, logged as "model from code": MLflow stores this file,
not a pickle, and the weights travel as a plain checkpoint artifact loaded with weights_only=True.

It takes images and gives colour images (``pipeline.gan.model_io``): per row a uint8 (H, W, 3) or
(H, W) array, or encoded bytes (base64 in JSON); back the same size with L kept, as arrays or PNG
bytes. ``params``: ``temperature`` (lower = more vivid), ``size`` (working short side), ``format``,
``hint_spread``, ``prior_correction``.
``mlflow models serve -m models:/NAME@ALIAS`` answers ``POST /invocations`` with
``{"dataframe_split": {"columns": ["image"], "data": [["<base64 PNG>"]]}, "params": {...}}``.
"""

import mlflow


class ColorizerModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import torch

        from pipeline.gan import checkpoint

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.G = checkpoint.load_generator(context.artifacts["checkpoint"]).to(self.device)  # weights_only

    def predict(self, context, model_input, params=None):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from pipeline.gan import model_io

        try:
            return model_io.colorize_rows(self.G, model_input, params, self.device)
        except model_io.BadImage as e:  # a 400 from the scoring server, not a 500
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None


mlflow.models.set_model(ColorizerModel())
