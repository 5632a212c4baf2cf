"""The evaluation metrics (``pipeline.core.scoring``): hand-checked cases and real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import cli
from pipeline.apply import evaluate
from pipeline.core import color, metrics, scoring
from pipeline.core.skips import SKIP_GREY, SKIP_MISSING, SKIP_NOT_IMAGE, Skips
from support import DATA, corpus


@pytest.fixture(scope="module")
def zhang(reference):
    return scoring.zhang_prior(reference)


def _photo(seed=0, h=40, w=56):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))[:h, :w].copy()  # saturated 8x8 patches


def test_perfect_prediction_scores_full_marks(zhang):
    truth = [_photo(s) for s in range(3)]
    r = scoring.score_images(truth, truth, zhang)
    assert r["auc"] == pytest.approx(100.0) and r["auc_rebalanced"] == pytest.approx(100.0)
    assert r["cf_gap"] == 0.0 and r["top1"] == 100.0 and r["top1_rebalanced"] == pytest.approx(100.0)
    assert r["ssim"] == pytest.approx(1.0) and r["psnr"] > 90


def test_grey_output_has_no_colour_and_keeps_lightness(zhang):
    truth = _photo(1)
    grey = scoring.grey_output(truth)
    r = scoring.score_images([grey], [truth], zhang)
    assert r["cf_pred"] < 0.5 and r["cf_gap"] == pytest.approx(r["cf_true"], abs=0.5)
    assert np.abs(color.rgb_to_lab(grey)[..., 0] - color.rgb_to_lab(truth)[..., 0]).max() < 0.6  # 8-bit rounding
    assert r["auc"] < 100


def test_auc_hand_computed_for_a_constant_error(zhang):
    """Every pixel off by exactly e in ab: the CDF is 0 below e and 1 from e, so AuC = (151 - e) / 151."""
    lab = np.zeros((8, 8, 3))
    lab[..., 0] = 60.0
    lab[..., 1] = 10.0
    truth = color.to_uint8(color.lab_to_rgb(lab))
    ab_t = color.rgb_to_lab(truth)[..., 1:]
    s = scoring.Scorer(zhang, ssim=False)
    m = scoring.measure(truth, truth, s.prior, ssim=False)
    assert m["hist"][0] == 64  # zero error lands in slot 0
    e = 30.0
    pred_ab = torch.from_numpy(ab_t + [e, 0.0]).permute(2, 0, 1)[None]
    hist = metrics.error_histogram(pred_ab, torch.from_numpy(ab_t).permute(2, 0, 1)[None])
    assert metrics.auc_from_histogram(hist) == pytest.approx(100 * (151 - e) / 151)


def test_rebalanced_weights_favour_rare_colours(zhang):
    """Getting a rare (saturated) colour wrong costs more in the rebalanced AuC than in the raw one."""
    grey_bg = np.full((32, 32, 3), 128, np.uint8)
    truth = grey_bg.copy()
    truth[:4, :4] = (20, 40, 230)  # a small saturated blue patch: a rare bin under the prior
    pred = grey_bg  # gets the grey right, the blue wrong
    r = scoring.score_images([pred], [truth], zhang, ssim=False)
    assert r["auc"] > 95 and r["auc_rebalanced"] < 60


def test_bad_inputs_raise_clearly(zhang):
    a = _photo()
    with pytest.raises(ValueError, match="uint8"):
        scoring.score_images([a.astype(np.float32)], [a], zhang)
    with pytest.raises(ValueError, match="one size"):
        scoring.score_images([a[:-1]], [a], zhang)
    with pytest.raises(ValueError, match="no images"):
        scoring.score_images([], [], zhang)
    with pytest.raises(ValueError, match="prior"):
        scoring.Scorer(np.ones(7))


def test_threads_give_the_same_result(zhang):
    truth = [_photo(s) for s in range(4)]
    preds = [scoring.grey_output(t) for t in truth]
    assert scoring.score_images(preds, truth, zhang, threads=1) == scoring.score_images(preds, truth, zhang, threads=3)


def test_grey_baseline_on_real_photos_orders_as_expected(zhang):
    """On Kodak photos the grey output keeps most pixels near right (high raw AuC), misses the
    colourful ones (low rebalanced AuC) and has no colourfulness; a slightly desaturated truth
    beats it on every figure."""
    paths = sorted((DATA / "ffdnet-color-testsets" / "Kodak24").glob("*.png"))[:4]
    if not paths:
        pytest.skip("shared Kodak photos not present")
    truth = [np.asarray(Image.open(p).convert("RGB").resize((192, 128), Image.BICUBIC)) for p in paths]
    grey = scoring.score_images([scoring.grey_output(t) for t in truth], truth, zhang, ssim=False)
    half = []
    for t in truth:
        lab = color.rgb_to_lab(t)
        lab[..., 1:] *= 0.5
        half.append(color.to_uint8(color.lab_to_rgb(lab)))
    halfway = scoring.score_images(half, truth, zhang, ssim=False)
    assert 70 < grey["auc"] < 95 and grey["auc_rebalanced"] < grey["auc"]
    assert grey["cf_pred"] < 1 and grey["cf_true"] > 20
    for k in ("auc", "auc_rebalanced", "psnr", "top1"):
        assert halfway[k] > grey[k], k
    assert halfway["cf_gap"] < grey["cf_gap"]


def test_eval_counts_skips_the_one_way_listing_included(tmp_path):
    """``colorize eval`` records skips as every job does (``pipeline.core.skips``): what the listing
    skipped (a dangling link: ``missing``) beside what decoding skipped, counts and examples."""
    for i in range(2):
        (tmp_path / f"colour{i}.png").write_bytes(corpus.encode(Image.fromarray(corpus.photo(i)), "PNG"))
    (tmp_path / "grey.png").write_bytes(corpus.encode(Image.fromarray(np.full((48, 64, 3), 90, np.uint8)), "PNG"))
    (tmp_path / "notes.jpg").write_bytes(b"not an image")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    kept, truths, skipped = evaluate.load_truth(str(tmp_path), 32, None, None)
    assert [p.rsplit("/", 1)[-1] for p in kept] == ["colour0.png", "colour1.png"]
    assert all(t.shape == (32, 32, 3) for t in truths)
    assert isinstance(skipped, Skips)
    assert skipped.counts == {SKIP_MISSING: 1, SKIP_GREY: 1, SKIP_NOT_IMAGE: 1}
    assert skipped.examples[SKIP_GREY] == [str(tmp_path / "grey.png")]


def test_metrics_json_keeps_its_skipped_shape(ckpt, tmp_path):
    """``metrics.json``: "skipped" {reason: n} and "skipped_examples" {reason: [paths]}, as before."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(corpus.encode(Image.fromarray(corpus.photo(3)), "PNG"))
    (photos / "b.jpg").write_bytes(b"not an image")
    out = tmp_path / "eval"
    assert cli.main(["eval", "--model", str(ckpt), "--data", str(photos), "--out", str(out), "--size", "32"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["images"] == 1
    assert doc["skipped"] == {SKIP_NOT_IMAGE: 1}
    assert doc["skipped_examples"] == {SKIP_NOT_IMAGE: [str(photos / "b.jpg")]}
