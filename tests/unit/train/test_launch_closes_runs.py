"""``train.launch`` never leaves its MLflow run RUNNING: a data error before Ray starts, a failing
``fit`` (Train V2 raises), Ctrl-C, and a result carrying ``error`` (Train V1) all close it FAILED;
a good result closes it FINISHED. No Ray: the data error comes before Ray starts, and the other
cases replace the datasets and the trainer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipeline.config import ExperimentConfig
from pipeline.core import color
from pipeline.data import storage
from pipeline.train import trainer

PRIOR = np.full(color.num_bins(), 1.0 / color.num_bins())


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def status(uri: str, run_id: str) -> str:
    return MlflowClient(uri).get_run(run_id).info.status


def launch(cfg, uri, name, tmp_path):
    return trainer.launch(cfg, PRIOR, storage.S3Settings(), uri, name, artifact_dir=str(tmp_path / "art"))


def test_a_missing_data_folder_fails_the_run(tracking_uri, tmp_path):
    cfg = ExperimentConfig().replace(
        {"data.train": str(tmp_path / "no-such-folder"), "train.storage_path": str(tmp_path / "runs")}
    )
    with pytest.raises(storage.StorageError):
        launch(cfg, tracking_uri, "missing-data", tmp_path)
    (run,) = MlflowClient(tracking_uri).search_runs(
        [MlflowClient(tracking_uri).get_experiment_by_name(cfg.tracking.experiment).experiment_id],
        filter_string="tags.`colorize.run_name` = 'missing-data'",
    )
    assert run.info.status == "FAILED"


class FakeTrainer:
    def __init__(self, outcome):
        self.outcome = outcome

    def fit(self):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.fixture
def fake_training(monkeypatch):
    """Datasets and trainer replaced: ``set(outcome)`` makes ``fit`` raise it or return it."""
    info = {"source": "raw", "train_files": 1, "val_files": 1}
    monkeypatch.setattr(trainer.sources, "training_datasets", lambda *a, **k: (None, None, None, info))
    monkeypatch.setattr(trainer, "_skip_counts", lambda collector: {"corrupt": 1})
    outcome = {}
    monkeypatch.setattr(trainer, "build_trainer", lambda *a, **k: FakeTrainer(outcome["fit"]))
    return lambda value: outcome.__setitem__("fit", value)


@pytest.mark.parametrize("error", [RuntimeError("worker group failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_fit_that_raises_fails_the_run(fake_training, tracking_uri, tmp_path, error):
    fake_training(error)
    name = f"raises-{type(error).__name__}"
    with pytest.raises(type(error)):
        launch(ExperimentConfig(), tracking_uri, name, tmp_path)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(ExperimentConfig().tracking.experiment)
    (run,) = client.search_runs([exp.experiment_id], filter_string=f"tags.`colorize.run_name` = '{name}'")
    assert run.info.status == "FAILED"


def test_a_result_with_an_error_fails_the_run_and_a_good_one_finishes_it(fake_training, tracking_uri, tmp_path):
    fake_training(SimpleNamespace(error=RuntimeError("V1 hands the error back"), metrics={}, checkpoint=None))
    failed = launch(ExperimentConfig(), tracking_uri, "v1-error", tmp_path)
    assert status(tracking_uri, failed.run_id) == "FAILED"
    fake_training(SimpleNamespace(error=None, metrics={}, checkpoint=None))
    done = launch(ExperimentConfig(), tracking_uri, "good", tmp_path)
    assert status(tracking_uri, done.run_id) == "FINISHED" and done.skipped == {"corrupt": 1}
    history = MlflowClient(tracking_uri).get_metric_history(done.run_id, "data/skipped_corrupt")
    assert [m.value for m in history] == [1.0]


def test_a_missing_validation_prior_stops_before_any_run(tracking_uri, tmp_path):
    cfg = ExperimentConfig().replace(
        {"train.val_prior": str(tmp_path / "no-such-prior.npy"), "train.storage_path": str(tmp_path / "runs")}
    )
    with pytest.raises(storage.StorageError, match="no-such-prior.npy"):
        launch(cfg, tracking_uri, "missing-val-prior", tmp_path)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert not [r for r in runs if r.data.tags.get("colorize.run_name") == "missing-val-prior"]
