"""The quality protocol (bench/quality.py) end to end on CPU with tiny budgets: every model trains,
ours is decoded under every temperature rule (each steered by val only), everything is scored on
test, and the report files appear."""

from __future__ import annotations

import json
import sys

import pytest

from support import DATA, ROOT

sys.path.insert(0, str(ROOT / "bench"))


def test_quality_protocol_smoke(tmp_path, reference):
    if not (DATA / "splits" / "test.txt").exists():
        pytest.skip("shared data not present")
    import quality

    out = tmp_path / "q"
    quality.main(
        [
            "--budget",
            "1",
            "--limit",
            "3",
            "--batch",
            "2",
            "--preset",
            "tiny",
            "--ngf",
            "8",
            "--models",
            "grey,ours,pix2pix",
            "--reference",
            str(reference),
            "--out",
            str(out),
        ]
    )
    doc = json.loads((out / "metrics.json").read_text())
    res = doc["results"]
    assert set(res) == {"grey", "ours", "pix2pix"}
    assert res["grey"]["test"]["cf_pred"] < 1 and "steps" not in res["grey"]
    for name in ("ours", "pix2pix"):
        assert res[name]["steps"] >= 1 and res[name]["images_seen"] == 2 * res[name]["steps"]
        assert res[name]["test"]["images"] == 3
        assert 0 <= res[name]["test"]["auc"] <= 100
    ours = res["ours"]
    assert ours["temperature_rule"] == quality.PRIMARY_RULE and set(ours["rules"]) == set(quality.TEMPERATURE_RULES)
    assert ours["test"] == ours["rules"][quality.PRIMARY_RULE]["test"]
    val_sweep, test_sweep = ours["sweep"]["val"], ours["sweep"]["test_diagnostic"]
    assert list(val_sweep) == list(test_sweep) == [str(t) for t in quality.TEMPERATURES]
    # each global rule's T is what its criterion picks from the val sweep, never from the test one
    objective = {k: v["auc_rebalanced"] - 0.5 * v["cf_gap"] for k, v in val_sweep.items()}
    assert str(ours["rules"]["val_objective"]["temperature"]) == max(objective, key=objective.get)
    gaps = {k: v["cf_gap"] for k, v in val_sweep.items()}
    assert gaps[str(ours["rules"]["val_cf"]["temperature"])] == min(gaps.values())
    assert ours["rules"]["default"]["temperature"] == 0.38
    # a global rule's test figures agree with the sweep at its T (same scorer)
    t = str(ours["rules"]["default"]["temperature"])
    assert abs(ours["rules"]["default"]["test"]["auc"] - test_sweep[t]["auc"]) < 1e-3
    chosen = ours["rules"]["discriminator"]["test_temperatures"]
    assert len(chosen) == 3 and set(chosen) <= set(quality.TEMPERATURES)
    # colourfulness by source: every test image counted once, under its dataset folder
    by = res["grey"]["test_by_source"]
    assert sum(d["images"] for d in by.values()) == 3 and all("." not in k for k in by)
    md = (out / "quality.md").read_text()
    assert (out / "grid.png").stat().st_size > 0 and "| grey" in md and "temperature sweep" in md
