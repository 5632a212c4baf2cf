"""Model references read through MLflow leave nothing behind, and a mistyped sqlite store is an error."""

from __future__ import annotations

import tempfile

import pytest

from pipeline.gan import model_ref


def test_mlflow_download_is_removed_once_loaded(ckpt, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(ckpt), "generator")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where mkdtemp puts the download

    G, info = model_ref.resolve_generator(f"runs:/{run.info.run_id}/generator", tracking_uri=uri)

    assert G.temperature > 0 and info["config"]["model"] and info["step"] is not None
    assert not list(scratch.glob(f"{model_ref.DOWNLOAD_PREFIX}*")), "the temporary copy of the model was left behind"


def test_a_missing_sqlite_store_is_a_typo_not_an_empty_registry(tmp_path):
    typo = tmp_path / "mlfow.db"
    with pytest.raises(model_ref.ModelNotFound, match="no MLflow store"):
        model_ref.resolve_generator("models:/colorizer@champion", tracking_uri=f"sqlite:///{typo}")
    assert not typo.exists()
