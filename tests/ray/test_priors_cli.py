"""``colorize priors`` end to end as a user runs it: a subprocess on the built-in photos."""

import json
import os
import subprocess
import sys

import numpy as np

from support import ROOT


def test_priors_cli_on_builtin_photos(tmp_path):
    out = tmp_path / "prior_probs.npy"
    argv = [sys.executable, "-m", "pipeline.cli", "priors", "--data", "skimage:", "--out", str(out), "--size", "64"]
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "top bins" in r.stdout and str(out) in r.stdout
    p = np.load(out)
    assert p.shape == (323,) and abs(p.sum() - 1) < 1e-12
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["images_used"] >= 8 and meta["data_uri"] == "skimage:"
    assert "AWS_SECRET_ACCESS_KEY" not in out.with_suffix(".json").read_text()
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in r.stdout + r.stderr
