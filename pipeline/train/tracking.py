"""MLflow, best effort: training never dies because tracking is unreachable; it warns and goes on.

Only rank 0 of a training run logs (through ``Tracker``, a thin wrapper over ``MlflowClient``), the
trained generator last, as an MLflow model (``log_generator``).
The driver creates (or, for a resumed run name, finds) the MLflow run, so one training run maps to
one MLflow run across resumes and failures.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any, Dict, Optional

from pipeline.data.storage import redact
from pipeline.gan import checkpoint

if TYPE_CHECKING:
    from models import Generator
    from pipeline.config import ExperimentConfig

log = logging.getLogger(__name__)

RUN_NAME_TAG = "colorize.run_name"


def resolve_uri(uri: Optional[str], out_dir: str) -> str:
    """Config value, else ``MLFLOW_TRACKING_URI``, else sqlite under the output folder (MLflow 3
    refuses a plain file store)."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    os.makedirs(out_dir, exist_ok=True)
    return f"sqlite:///{os.path.abspath(os.path.join(out_dir, 'mlflow.db'))}"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def start_or_resume_run(
    uri: str, experiment: str, run_name: str, params: Dict[str, Any], artifact_dir: Optional[str] = None
) -> Optional[str]:
    """The MLflow run id for ``run_name`` in ``experiment``: the existing one (resume) or a new one
    with ``params`` logged. None (with a warning) when tracking is unreachable."""
    try:
        client = _client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            location = None
            if uri.startswith("sqlite:") and artifact_dir:
                location = "file://" + os.path.abspath(artifact_dir)
            exp_id = client.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        found = client.search_runs([exp_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'", max_results=1)
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return run_id
        run = client.create_run(exp_id, run_name=run_name, tags={RUN_NAME_TAG: run_name})
        items = list(params.items())
        from mlflow.entities import Param

        for i in range(0, len(items), 100):
            client.log_batch(run.info.run_id, params=[Param(k, _param(v)) for k, v in items[i : i + 100]])
        return run.info.run_id
    except Exception as e:  # tracking must never stop training
        why = redact(str(e), uri)[:200]  # an HTTP error quotes the query without its host
        warnings.warn(
            f"MLflow tracking unavailable at {redact(uri)}: {type(e).__name__}: {why}; training goes on untracked",
            stacklevel=2,
        )
        return None


def _param(v: Any) -> str:
    """An MLflow param value: URIs redacted (a config's data.train may carry user:secret@ or a signed query)."""
    s = "null" if v is None else str(list(v) if isinstance(v, tuple) else v)
    return redact(s)[:6000]


class Tracker:
    """Logs into one MLflow run; every call swallows errors with a (rate-limited) warning."""

    def __init__(self, uri: Optional[str], run_id: Optional[str]):
        self.uri, self.run_id = uri, run_id
        self._client = None
        self._last_warning = 0.0

    @property
    def active(self) -> bool:
        return bool(self.uri and self.run_id)

    def _call(self, what: str, fn):
        if not self.active:
            return None
        try:
            if self._client is None:
                self._client = _client(self.uri)
            return fn(self._client)
        except Exception as e:
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                why = redact(str(e), self.uri)[:300]
                msg = f"MLflow {what} failed ({type(e).__name__}: {why}); training goes on"
                log.warning(msg)  # worker logs
                warnings.warn(msg, stacklevel=3)  # points at the caller of Tracker's method
            return None

    def metrics(self, values: Dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        ms = [Metric(k, float(v), ts, int(step)) for k, v in values.items() if v == v]  # drop NaN
        self._call("log metrics", lambda c: c.log_batch(self.run_id, metrics=ms))

    def tags(self, values: Dict[str, str]) -> None:
        from mlflow.entities import RunTag

        tags = [RunTag(k, redact(str(v))) for k, v in values.items()]
        self._call("set tags", lambda c: c.log_batch(self.run_id, tags=tags))

    def image(self, png: bytes, artifact_file: str) -> None:
        def go(c):
            from PIL import Image

            c.log_image(self.run_id, Image.open(io.BytesIO(png)), artifact_file)

        self._call("log image", go)

    def artifact(self, path: str, artifact_path: Optional[str] = None) -> None:
        self._call("log artifact", lambda c: c.log_artifact(self.run_id, path, artifact_path))

    def finish(self, status: str = "FINISHED") -> None:
        self._call("end run", lambda c: c.set_terminated(self.run_id, status))


def log_generator(tracker: Tracker, G: Generator, cfg: ExperimentConfig, step: int = 0, epoch: int = 0) -> None:
    """The trained generator (give it ``GAN.generator()``: the EMA when on) as an MLflow model,
    registered (and aliased) when configured.

    Saved as a pyfunc "model from code" (``pipeline/gan/pyfunc.py``) with the generator's weights as a
    plain checkpoint artifact: loading runs no pickle (``colorize infer``/``eval`` read the
    checkpoint with weights_only=True), and the registry entry works with ``mlflow.pyfunc`` and
    ``mlflow models serve`` too: images in, colour images out, with the signature, params and
    input example of ``pipeline.gan.model_io``.
    """

    def go(client):
        # Client calls only: the fluent API (mlflow.set_tracking_uri, start_run) would leave this
        # process's global tracking URI, and MLFLOW_TRACKING_URI, pointing at this run's server.
        # Imported here, not at the top: every Ray Train worker imports this module (it holds
        # train_loop_per_worker) and only rank 0's last act needs mlflow.pyfunc: at the top it would
        # add about a quarter to every worker's import of this module (~1 s; python -X importtime).
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        from pipeline.gan import model_io

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
        with tempfile.TemporaryDirectory() as tmp:
            ckpt, model_dir = os.path.join(tmp, "checkpoint"), os.path.join(tmp, "generator")
            checkpoint.save_generator(ckpt, G, step, epoch, cfg.to_dict())
            # the code the model runs, without the shipped model's weights (the checkpoint artifact
            # is this model) and caches: another 19 MB copy of a model in every logged one otherwise
            code = os.path.join(tmp, "code")
            skip = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(os.path.join(root, "pipeline"), os.path.join(code, "pipeline"), ignore=skip)
            shutil.rmtree(os.path.join(code, "pipeline", "assets", "model"), ignore_errors=True)
            shutil.copytree(os.path.join(root, "models"), os.path.join(code, "models"), ignore=skip)
            with warnings.catch_warnings():
                # MLflow suggests type hints on predict; the signature is given explicitly here
                warnings.simplefilter("ignore", UserWarning)
                mlflow.pyfunc.save_model(
                    model_dir,
                    python_model=os.path.join(root, "pipeline", "gan", "pyfunc.py"),
                    artifacts={"checkpoint": ckpt},
                    code_paths=[os.path.join(code, "pipeline"), os.path.join(code, "models")],
                    signature=model_io.signature(G.temperature, cfg.data.resize, G.prior_correction),
                    input_example=model_io.input_example(),
                    pip_requirements=model_io.pip_requirements(),
                )
            client.log_artifacts(tracker.run_id, model_dir, "generator")
        name = cfg.tracking.register_as
        if name:
            try:
                client.create_registered_model(name)
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = f"{client.get_run(tracker.run_id).info.artifact_uri}/generator"
            version = client.create_model_version(name, source, run_id=tracker.run_id)
            if cfg.tracking.register_alias:
                client.set_registered_model_alias(name, cfg.tracking.register_alias, version.version)

    tracker._call("log model", go)
