"""No credential or signed-URL token reaches MLflow, a sidecar, a warning, an error line or Tune's
saved state: every URI goes through ``storage.redact`` first."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from pipeline import cli
from pipeline.config import ExperimentConfig
from pipeline.core import color
from pipeline.data import priors, storage
from pipeline.train import tracking

SECRETS = ("KEY:SECRET", "SECRET", "X-Amz-Signature", "SIG1234")
PLANTED = "s3://KEY:SECRET@photos/train?X-Amz-Signature=SIG1234"


def _clean(text: str) -> bool:
    text = text.replace("AWS_SECRET_ACCESS_KEY", "")  # the refusal names where credentials belong
    return not any(s in text for s in SECRETS)


@pytest.mark.parametrize(
    "uri, shown",
    [
        (PLANTED, "s3://photos/train"),
        ("https://user:p/a+ss@host:5000/x?token=abc", "https://host:5000/x"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("/local/path/a.png", "/local/path/a.png"),
        (
            f"cannot read {PLANTED} (denied); also 'http://u:pw@h/?q=1'",
            "cannot read s3://photos/train (denied); also 'http://h/'",
        ),
    ],
)
def test_redact(uri, shown):
    assert storage.redact(uri) == shown


def test_redact_hides_the_pieces_an_error_quotes_without_the_scheme():
    uri = "http://user:SECRET@127.0.0.1:9/?token=SIG1234"
    msg = "Max retries exceeded with url: /?token=SIG1234/api/2.0 (user:SECRET)"
    assert _clean(storage.redact(msg, uri))


def test_run_params_and_tags_never_hold_a_secret(tmp_path):
    # what pipeline/run.py (train.launch) logs: the flat config as params
    cfg = ExperimentConfig().replace({"data.train": PLANTED, "data.val": PLANTED})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = tracking.start_or_resume_run(uri, "e", "r", cfg.flat(), artifact_dir=str(tmp_path / "art"))
    tracking.Tracker(uri, run_id).tags({"source": PLANTED})
    from mlflow.tracking import MlflowClient

    run = MlflowClient(uri).get_run(run_id)
    assert run.data.params["data.train"] == "s3://photos/train"
    assert _clean(json.dumps(run.data.params)) and _clean(json.dumps(run.data.tags))


def test_the_tracking_warning_never_holds_a_secret(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uri = "http://user:SECRET@127.0.0.1:9/?X-Amz-Signature=SIG1234"
        assert tracking.start_or_resume_run(uri, "e", "r", {}) is None
    text = " ".join(str(w.message) for w in caught)
    assert "tracking unavailable at http://127.0.0.1:9/" in text and _clean(text), text


def test_a_prior_sidecar_and_summary_never_hold_a_secret(tmp_path):
    q = color.num_bins()
    result = priors.PriorResult(counts=np.ones(q, np.int64), images=1, pixels=q, listed=1, skipped={})
    meta = priors.provenance(result, PLANTED, 64, True, None)
    out = tmp_path / "prior_probs.npy"
    written = priors.write_prior(result, str(out), meta, None)
    assert _clean((tmp_path / "prior_probs.json").read_text())
    assert _clean(priors.summary(result, [*written, PLANTED + "/p.npy"]))


def test_tune_state_holds_redacted_values_only():
    from tune import sweep

    base = ExperimentConfig().replace({"data.train": PLANTED})
    tracking_uri = "https://user:SECRET@mlflow.example/?X-Amz-Signature=SIG1234"
    state, private = sweep.sweep_state(base, tracking_uri, name="s")
    assert _clean(json.dumps(state))  # Tune writes this into its experiment state and each trial's params.json
    assert state["base"]["data"]["train"] == "s3://photos/train"
    assert private == {"base": base.to_dict(), "tracking_uri": tracking_uri}  # reaches trials via with_parameters


def test_a_cli_error_line_never_holds_a_secret(tmp_path, capsys):
    argv = [
        "infer",
        "--model",
        str(tmp_path),
        "--input",
        "gs://KEY:SECRET@bucket/x?X-Amz-Signature=SIG1234",
        "--output",
        str(tmp_path / "o"),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "gs://bucket/x" in err and _clean(err), err
