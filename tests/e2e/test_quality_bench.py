"""Protocol v2 (bench/quality.py) end to end on CPU with tiny budgets, from a portable copy
of a handful of photos of each split: every model trains, ours is decoded under every temperature
rule (each steered by large-val only), everything is scored on large-test and test.txt, the targets
table is produced, and ours ships as an fp16 colorize checkpoint."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from pipeline.gan import checkpoint
from support import DATA, ROOT

sys.path.insert(0, str(ROOT / "bench"))

TINY = ["--set", "model.d_base_channels=8", "--set", "model.d_layers=2"]


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    if not (DATA / "splits" / "large-train.txt").exists():
        pytest.skip("shared data (with the large splits) not present")
    import quality_data

    out = tmp_path_factory.mktemp("pack")
    size = quality_data.write_portable_copy(out, limit=2)
    assert 0 < size < 2**20
    return out


def test_quality_protocol_v2_smoke(tmp_path, pack):
    import quality

    from pipeline.gan import checkpoint

    out = tmp_path / "q"
    argv = ["--data", str(pack), "--reference", str(pack / "reference"), "--out", str(out), "--ship", str(out / "m")]
    argv += ["--budget", "0.5", "--batch", "2", "--preset", "tiny", "--ngf", "8", *TINY]
    quality.main(argv)
    doc = json.loads((out / "metrics.json").read_text())
    res, meta = doc["results"], doc["meta"]
    assert meta["splits"] == {"train": "large-train", "val": "large-val", "test": "large-test", "ood": "test"}
    assert meta["images"] == {"train": 2, "val": 2, "test": 2, "ood": 2} and meta["budget_s"] == 0.5
    assert set(res) == {"grey", "ours", "ours_unit", "pix2pix"}
    assert res["grey"]["test"]["cf_pred"] < 1 and "steps" not in res["grey"]
    for name in ("ours", "ours_unit", "pix2pix"):
        assert res[name]["steps"] >= 1 and res[name]["images_seen"] == 2 * res[name]["steps"]
        assert res[name]["test"]["images"] == 2 and res[name]["ood"]["images"] == 2
        assert 0 <= res[name]["test"]["auc"] <= 100
    assert meta["ours_config"]["train"]["ema_decay"] > 0  # ours predicts with the EMA, as shipped
    for name in ("ours", "ours_unit"):
        r = res[name]
        assert r["temperature_rule"] == quality.PRIMARY_RULE and set(r["rules"]) == set(quality.TEMPERATURE_RULES)
        assert r["test"] == r["rules"][quality.PRIMARY_RULE]["test"]
        val_sweep, test_sweep = r["sweep"]["val"], r["sweep"]["test_diagnostic"]
        assert list(val_sweep) == list(test_sweep) == [str(t) for t in quality.TEMPERATURES]
        # each global rule's T is what its criterion picks from the large-val sweep, never the test one
        objective = {k: v["auc_rebalanced"] - 0.5 * v["cf_gap"] for k, v in val_sweep.items()}
        assert str(r["rules"]["val_objective"]["temperature"]) == max(objective, key=objective.get)
        gaps = {k: v["cf_gap"] for k, v in val_sweep.items()}
        assert gaps[str(r["rules"]["val_cf"]["temperature"])] == min(gaps.values())
        assert r["rules"]["default"]["temperature"] == 0.38
        t = str(r["rules"]["default"]["temperature"])  # a global rule's test figures match the sweep at its T
        assert abs(r["rules"]["default"]["test"]["auc"] - test_sweep[t]["auc"]) < 1e-3
        assert len(r["rules"]["discriminator"]["test_temperatures"]) == 2
    # test.txt by source: every image counted once, under its dataset folder
    by = res["grey"]["ood_by_source"]
    assert sum(d["images"] for d in by.values()) == 2 and all("." not in k for k in by)
    # the targets: one row each, met or not
    targets = {t["target"]: t for t in doc["targets"]}
    assert len(targets) == 9 and all(t["met"] in (True, False) for t in targets.values())
    assert targets["large-test ΔCF ≤ 3"]["met"] == (res["ours"]["test"]["cf_gap"] <= 3)
    md = (out / "quality.md").read_text()
    assert "## Targets" in md and ("| met |" in md or "| not met |" in md)
    assert (out / "grid.png").stat().st_size > 0 and "temperature sweep" in md
    # the shipped checkpoint: fp16 weights, read back weights_only by the product's loader
    state = torch.load(out / "m" / checkpoint.STATE, weights_only=True)
    gen = state[checkpoint.GENERATOR_KEY]
    assert any(v.dtype == torch.float16 for v in gen.values()) and gen["bins"].dtype == torch.float32
    G = checkpoint.load_generator(str(out / "m"))
    with torch.no_grad():
        ab = G(torch.zeros(1, 1, 32, 32), 0.38)[1]
    assert ab.shape == (1, 2, 32, 32) and torch.isfinite(ab).all()
    assert "large-test" in (out / "m" / "MODEL_CARD.md").read_text()


def test_ship_model_plain_loop(tmp_path, pack):
    import ship_model

    r = ship_model.main(
        ["--data", str(pack), "--budget", "0.3", "--out", str(tmp_path / "m"), "--set", "model.preset=tiny"]
        + ["--set", "train.batch_size=2"]
        + ["--set", "model.d_base_channels=8", "--set", "model.d_layers=2"]
    )
    assert 0 < r["bytes"] < checkpoint.SHIP_MAX_BYTES
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["step"] >= 1 and meta["dtype"] == "float16" and meta["train"]["train"] == "large-train"
