"""Against a real MLflow server on 127.0.0.1: train a tiny model on Ray, register it under an
alias, colorize by ``models:/name@alias``, evaluate and log the evaluation into the training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline import cli
from pipeline import run as run_job
from support import corpus
from support.training import args_for


def test_train_register_infer_eval(ray_local, mlflow_server, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = args_for(
        tmp_path,
        "reg",
        "train.epochs=1",
        f"tracking.uri={mlflow_server}",
        "tracking.register_as=colorizer-ci",
        "tracking.register_alias=champion",
    )
    assert run_job.main(args) == 0
    client = MlflowClient(mlflow_server)
    version = client.get_model_version_by_alias("colorizer-ci", "champion")
    run_id = version.run_id
    assert run_id and client.get_run(run_id).data.params["tracking.register_as"] == "colorizer-ci"

    src = tmp_path / "in.png"
    rgb = corpus.photo(4, 37, 53)
    Image.fromarray(rgb).save(src)
    ref = "models:/colorizer-ci@champion"
    assert (
        cli.main(
            [
                "infer",
                "--model",
                ref,
                "--tracking-uri",
                mlflow_server,
                "--input",
                str(src),
                "--output",
                str(tmp_path / "out.png"),
                "--size",
                "48",
            ]
        )
        == 0
    )
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == rgb.shape

    photos = tmp_path / "evalset"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(corpus.photo(10 + i, 48, 64)).save(photos / f"e{i}.png")
    assert (
        cli.main(
            [
                "eval",
                "--model",
                ref,
                "--tracking-uri",
                mlflow_server,
                "--data",
                str(photos),
                "--out",
                str(tmp_path / "eval"),
                "--size",
                "48",
                "--run-id",
                run_id,
            ]
        )
        == 0
    )
    logged = client.get_run(run_id).data.metrics
    doc = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert logged["eval/model/auc"] == pytest.approx(doc["results"]["model"]["auc"])
    assert logged["eval/grey/cf_pred"] < 1
    names = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert {"eval/metrics.json", "eval/report.html"} <= names

    assert (
        cli.main(
            [
                "infer",
                "--model",
                "models:/colorizer-ci@nosuch",
                "--tracking-uri",
                mlflow_server,
                "--input",
                str(src),
                "--output",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    import os

    assert "MLFLOW_TRACKING_URI" not in os.environ, "loading a model must not change the process's tracking URI"
