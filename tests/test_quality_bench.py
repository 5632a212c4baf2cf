"""The quality protocol (bench/quality.py) end to end on CPU with tiny budgets: every model trains,
picks its temperature on val, is scored on test, and the report files appear."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import DATA, ROOT

sys.path.insert(0, str(ROOT / "bench"))


@pytest.mark.slow
def test_quality_protocol_smoke(tmp_path, reference):
    if not (DATA / "splits" / "test.txt").exists():
        pytest.skip("shared data not present")
    import quality

    out = tmp_path / "q"
    quality.main(["--budget", "1", "--limit", "3", "--batch", "2", "--preset", "tiny", "--ngf", "8",
                  "--models", "grey,ours,pix2pix", "--reference", str(reference), "--out", str(out)])
    doc = json.loads((out / "metrics.json").read_text())
    res = doc["results"]
    assert set(res) == {"grey", "ours", "pix2pix"}
    assert res["grey"]["test"]["cf_pred"] < 1 and "steps" not in res["grey"]
    for name in ("ours", "pix2pix"):
        assert res[name]["steps"] >= 1 and res[name]["images_seen"] == 2 * res[name]["steps"]
        assert res[name]["test"]["images"] == 3
        assert 0 <= res[name]["test"]["auc"] <= 100
    assert res["ours"]["temperature"] in quality.TEMPERATURES
    sweep = res["ours"]["val_sweep"]
    assert len(sweep) == len(quality.TEMPERATURES)
    assert res["ours"]["val_sweep"][str(res["ours"]["temperature"])]["cf_gap"] == min(v["cf_gap"] for v in sweep.values())
    assert (out / "grid.png").stat().st_size > 0 and "| grey" in (out / "quality.md").read_text()
