"""Inference and the evaluation CLI in-process with a tiny generator checkpoint (no Ray, no servers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline import cli
from pipeline.core import color
from pipeline.gan import checkpoint, model_ref, predict
from support import corpus


@pytest.mark.parametrize("hw", [(9, 13), (31, 47), (300, 120), (523, 777)])
def test_any_size_comes_back_at_its_size_with_its_lightness(ckpt, hw):
    G, _ = model_ref.resolve_generator(str(ckpt))
    rgb = corpus.photo(hw[0] + hw[1], *hw)
    out = predict.colorize(G, rgb, size=64)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    dL = np.abs(color.rgb_to_lab(out)[..., 0] - color.rgb_to_lab(rgb)[..., 0])
    assert dL.max() < 1.0, f"L changed by {dL.max():.2f}"  # 8-bit rounding only
    assert np.abs(color.rgb_to_lab(out)[..., 1:]).mean() > 2  # and it is coloured


def test_colour_input_is_made_grey_first(ckpt):
    G, _ = model_ref.resolve_generator(str(ckpt))
    rgb = corpus.photo(3, 40, 56)
    lab_grey = np.stack([color.rgb_to_lab(rgb)[..., 0]] + [np.zeros(rgb.shape[:2])] * 2, -1)
    grey = np.repeat(np.rint(color.lab_to_rgb(lab_grey) * 255).astype(np.uint8)[..., :1], 3, -1)
    a, b = predict.colorize(G, rgb, 32), predict.colorize(G, grey, 32)
    diff = np.abs(a.astype(int) - b.astype(int))  # only L is used; the grey copy's L differs by rounding
    assert diff.mean() < 1.0 and diff.max() <= 12


def test_saturation_knob(ckpt):
    G, _ = model_ref.resolve_generator(str(ckpt))
    rgb = corpus.photo(5, 48, 48)
    chroma = [
        np.linalg.norm(color.rgb_to_lab(predict.colorize(G, rgb, 48, T))[..., 1:], axis=-1).mean() for T in (0.1, 1.0)
    ]
    assert chroma[0] > chroma[1] + 1


def test_cli_single_file_with_exif_rotation_and_grey_mode(ckpt, tmp_path):
    img = Image.fromarray(corpus.photo(1, 40, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display: the output must be 64 x 40 (H x W)
    src = tmp_path / "rot.jpg"
    img.save(src, "JPEG", exif=exif.tobytes(), quality=95)
    assert (
        cli.main(["infer", "--model", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o"), "--size", "32"])
        == 0
    )
    out = np.asarray(Image.open(tmp_path / "o" / "rot.jpg"))
    assert out.shape == (64, 40, 3)
    grey = tmp_path / "grey.png"
    Image.fromarray(corpus.photo(2, 30, 20)[..., 0], "L").save(grey)
    assert cli.main(["infer", "--model", str(ckpt), "--input", str(grey), "--output", str(tmp_path / "g.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "g.png")).shape == (30, 20, 3)


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(corpus.photo(0)).save(src)
    missing = str(tmp_path / "nope")
    assert cli.main(["infer", "--model", missing, "--input", str(src), "--output", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(model_ref.ModelNotFound, match="no checkpoint"):
        model_ref.resolve_generator(str(empty))


def test_run_folder_picks_newest_checkpoint(ckpt, tmp_path):
    G, _ = model_ref.resolve_generator(str(ckpt))
    for step in (3, 11, 5):
        checkpoint.save_generator(str(tmp_path / f"checkpoint_{step}"), G, step, 0, checkpoint.load_config(str(ckpt)))
    assert model_ref.resolve_generator(str(tmp_path))[1]["step"] == 11


def test_eval_cli_writes_metrics_and_report(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(corpus.photo(i, 50, 70)).save(photos / f"p{i}.png")
    (photos / "broken.jpg").write_bytes(b"not a picture at all")
    out = tmp_path / "eval"
    assert (
        cli.main(
            [
                "eval",
                "--model",
                str(ckpt),
                "--compare",
                str(ckpt),
                "--data",
                str(photos),
                "--out",
                str(out),
                "--size",
                "48",
            ]
        )
        == 0
    )
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["images"] == 3 and doc["skipped"] == {"not_image": 1}
    assert set(doc["results"]) == {"grey", "model", "compare1"}
    assert doc["results"]["model"] == {**doc["results"]["compare1"], "ref": doc["results"]["model"]["ref"]}
    assert doc["results"]["grey"]["cf_pred"] < 1 < doc["results"]["model"]["cf_pred"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 * 4 and "auc_rebalanced" in page
