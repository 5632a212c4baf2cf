"""A prior and its provenance sidecar are written as a pair that a reader can check."""

from __future__ import annotations

import numpy as np

from pipeline.core import color
from pipeline.data import priors, storage
from support import ROOT

S3 = storage.S3Settings()


def _result(seed: int) -> priors.PriorResult:
    counts = np.random.default_rng(seed).integers(1, 100, color.num_bins())
    return priors.PriorResult(counts=counts, images=3, pixels=int(counts.sum()), listed=3, skipped={})


def test_sidecar_describes_its_own_prior_and_a_half_written_rerun_is_refused(tmp_path):
    out = str(tmp_path / "prior_probs.npy")
    priors.write_prior(_result(0), out, {"data_uri": "run-a"}, S3)
    assert priors.read_provenance(out, S3)["data_uri"] == "run-a"

    # A second run killed after its sidecar but before its .npy: the pair no longer matches.
    other = str(tmp_path / "other" / "prior_probs.npy")
    priors.write_prior(_result(1), other, {"data_uri": "run-b"}, S3)
    (tmp_path / "prior_probs.json").write_bytes((tmp_path / "other" / "prior_probs.json").read_bytes())
    assert priors.read_provenance(out, S3) is None
    assert np.allclose(priors.load_prior(out, S3), _result(0).prior)  # the prior itself is intact


def test_a_training_run_logs_the_sidecar_only_when_it_describes_its_prior(tmp_path):
    from pipeline.config import ExperimentConfig

    out = str(tmp_path / "prior_probs.npy")
    priors.write_prior(_result(0), out, {"data_uri": "run-a"}, S3)
    cfg = ExperimentConfig().replace({"loss.prior": out})
    prior, path, artifacts = priors.training_prior(cfg, S3, str(tmp_path / "run"), recompute=False)
    assert path == out and np.allclose(prior, _result(0).prior)
    assert artifacts == [(out, "prior"), (str(tmp_path / "prior_probs.json"), "prior")]
    (tmp_path / "prior_probs.json").write_text("{}")  # a sidecar that no longer describes it
    assert priors.training_prior(cfg, S3, str(tmp_path / "run"), recompute=False)[2] == [(out, "prior")]


def test_the_shipped_prior_and_its_sidecar_match():
    meta = priors.read_provenance(str(ROOT / "prior_probs.npy"), S3)
    assert meta is not None and meta["Q"] == color.num_bins()


def test_atomic_writes_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        storage.write_bytes_atomic(str(tmp_path / "a.json"), b"{}", S3)
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
