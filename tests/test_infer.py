"""Inference, evaluation CLI and ONNX export with a tiny generator checkpoint (no servers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import corpus
from models import Generator
from pipeline import checkpoint, cli, color, model_ref, predict
from pipeline.config import ExperimentConfig


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny generator with a peaked, non-grey head, saved as a generator checkpoint."""
    cfg = ExperimentConfig().replace({"model.preset": "tiny"})
    torch.manual_seed(0)
    G = Generator.from_config(cfg.model)
    with torch.no_grad():
        G.head.bias.copy_(torch.linspace(-4, 4, G.num_bins))  # favours high-a bins: visibly coloured output
    d = tmp_path_factory.mktemp("ckpt") / "generator"
    checkpoint.save_generator(str(d), G, step=7, epoch=0, config=cfg.to_dict())
    return d


@pytest.mark.parametrize("hw", [(9, 13), (31, 47), (300, 120), (523, 777)])
def test_any_size_comes_back_at_its_size_with_its_lightness(ckpt, hw):
    G, _ = model_ref.load_generator(str(ckpt))
    rgb = corpus.photo(hw[0] + hw[1], *hw)
    out = predict.colorize(G, rgb, size=64)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    dL = np.abs(color.rgb_to_lab(out)[..., 0] - color.rgb_to_lab(rgb)[..., 0])
    assert dL.max() < 1.0, f"L changed by {dL.max():.2f}"  # 8-bit rounding only
    assert np.abs(color.rgb_to_lab(out)[..., 1:]).mean() > 2  # and it is coloured


def test_colour_input_is_made_grey_first(ckpt):
    G, _ = model_ref.load_generator(str(ckpt))
    rgb = corpus.photo(3, 40, 56)
    grey = np.repeat(np.rint(color.lab_to_rgb(np.stack([color.rgb_to_lab(rgb)[..., 0]] + [np.zeros(rgb.shape[:2])] * 2, -1)) * 255)
                     .astype(np.uint8)[..., :1], 3, -1)
    a, b = predict.colorize(G, rgb, 32), predict.colorize(G, grey, 32)
    diff = np.abs(a.astype(int) - b.astype(int))  # only L is used; the grey copy's L differs by rounding
    assert diff.mean() < 1.0 and diff.max() <= 12


def test_saturation_knob(ckpt):
    G, _ = model_ref.load_generator(str(ckpt))
    rgb = corpus.photo(5, 48, 48)
    chroma = [np.linalg.norm(color.rgb_to_lab(predict.colorize(G, rgb, 48, T))[..., 1:], axis=-1).mean() for T in (0.1, 1.0)]
    assert chroma[0] > chroma[1] + 1


def test_cli_single_file_with_exif_rotation_and_grey_mode(ckpt, tmp_path):
    img = Image.fromarray(corpus.photo(1, 40, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display: the output must be 64 x 40 (H x W)
    src = tmp_path / "rot.jpg"
    img.save(src, "JPEG", exif=exif.tobytes(), quality=95)
    assert cli.main(["infer", "--model", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o"), "--size", "32"]) == 0
    out = np.asarray(Image.open(tmp_path / "o" / "rot.jpg"))
    assert out.shape == (64, 40, 3)
    grey = tmp_path / "grey.png"
    Image.fromarray(corpus.photo(2, 30, 20)[..., 0], "L").save(grey)
    assert cli.main(["infer", "--model", str(ckpt), "--input", str(grey), "--output", str(tmp_path / "g.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "g.png")).shape == (30, 20, 3)


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(corpus.photo(0)).save(src)
    assert cli.main(["infer", "--model", str(tmp_path / "nope"), "--input", str(src), "--output", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(model_ref.ModelNotFound, match="no checkpoint"):
        model_ref.load_generator(str(empty))


def test_run_folder_picks_newest_checkpoint(ckpt, tmp_path):
    G, _ = model_ref.load_generator(str(ckpt))
    for step in (3, 11, 5):
        checkpoint.save_generator(str(tmp_path / f"checkpoint_{step}"), G, step, 0, checkpoint.load_config(str(ckpt)))
    assert model_ref.load_generator(str(tmp_path))[1]["step"] == 11


@pytest.mark.ray
def test_folder_on_ray_skips_bad_files_and_keeps_names(ckpt, tmp_path, ray_local, capsys):
    photos = tmp_path / "photos"
    info = corpus.write_corpus(photos)
    (photos / "sub").mkdir()
    Image.fromarray(corpus.photo(9, 33, 21)).save(photos / "sub" / "deep.tif")
    out = tmp_path / "out"
    assert cli.main(["infer", "--model", str(ckpt), "--input", str(photos), "--output", str(out), "--size", "32", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "sub/deep.png" in written  # odd formats come back as PNG, same name
    for name in info["good"]:
        assert any(w.rsplit(".", 1)[0] == name.rsplit(".", 1)[0] for w in written), name
    for name, reason in info["skip"].items():
        out_there = any(w.rsplit(".", 1)[0] == name.rsplit(".", 1)[0] for w in written)
        assert out_there == (reason == "grey"), (name, reason)  # grey photos are what infer is for
        if reason != "grey":
            assert f"({reason})" in text
    src = np.asarray(Image.open(photos / "sub" / "deep.tif").convert("RGB"))
    assert np.asarray(Image.open(out / "sub" / "deep.png")).shape == src.shape


def test_eval_cli_writes_metrics_and_report(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(corpus.photo(i, 50, 70)).save(photos / f"p{i}.png")
    (photos / "broken.jpg").write_bytes(b"not a picture at all")
    out = tmp_path / "eval"
    assert cli.main(["eval", "--model", str(ckpt), "--compare", str(ckpt), "--data", str(photos), "--out", str(out), "--size", "48"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["images"] == 3 and doc["skipped"] == {"not_image": 1}
    assert set(doc["results"]) == {"grey", "model", "compare1"}
    assert doc["results"]["model"] == {**doc["results"]["compare1"], "ref": doc["results"]["model"]["ref"]}
    assert doc["results"]["grey"]["cf_pred"] < 1 < doc["results"]["model"]["cf_pred"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 * 4 and "auc_rebalanced" in page


@pytest.mark.slow
def test_export_onnx_dynamic_size(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "g.onnx"
    assert cli.main(["export", "--model", str(ckpt), "--onnx", str(onnx_path), "--saturation", "0.3"]) == 0
    import onnxruntime as ort

    from pipeline import export

    G, _ = model_ref.load_generator(str(ckpt))
    assert export.check_onnx(G, str(onnx_path), 0.3, shape=(1, 1, 41, 97)) < 0.05
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"L": np.zeros((3, 1, 128, 64), np.float32)})[0].shape == (3, 2, 128, 64)
    with pytest.raises(ValueError, match="disagrees"):
        export.check_onnx(Generator.from_config({"preset": "tiny"}), str(onnx_path), 0.3)
