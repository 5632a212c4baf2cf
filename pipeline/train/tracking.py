"""MLflow, best effort: training never dies because tracking is unreachable; it warns and goes on.

Only rank 0 of a training run logs (through ``Tracker``, a thin wrapper over ``MlflowClient``).
The driver creates (or, for a resumed run name, finds) the MLflow run, so one training run maps to
one MLflow run across resumes and failures.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from typing import Any, Dict, Optional

from pipeline.data.storage import redact

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
