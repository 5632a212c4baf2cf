"""``colorize infer`` on a folder: Ray Data with model actors, bad files skipped, names kept."""

import numpy as np
from PIL import Image

from pipeline import cli
from support import corpus


def test_folder_on_ray_skips_bad_files_and_keeps_names(ckpt, tmp_path, ray_local, capsys):
    photos = tmp_path / "photos"
    info = corpus.write_corpus(photos)
    (photos / "sub").mkdir()
    Image.fromarray(corpus.photo(9, 33, 21)).save(photos / "sub" / "deep.tif")
    out = tmp_path / "out"
    argv = [
        "infer",
        "--model",
        str(ckpt),
        "--input",
        str(photos),
        "--output",
        str(out),
        "--size",
        "32",
        "--workers",
        "1",
    ]
    assert cli.main(argv) == 0
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


def test_folder_grid_on_ray_batches_by_size(ckpt, tmp_path, ray_local, capsys):
    """Photos of two shapes in one actor batch (grouped by working size), two temperatures each:
    one sheet per photo, L + 2 panels wide, named <name>-grid."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shapes = {"a.png": (24, 32), "b.png": (24, 32), "c.jpg": (40, 30)}
    for i, (name, hw) in enumerate(shapes.items()):
        Image.fromarray(corpus.photo(20 + i, *hw)).save(photos / name)
    out = tmp_path / "sheets"
    argv = ["infer", "--model", str(ckpt), "--input", str(photos), "--output", str(out), "--size", "16"]
    assert cli.main([*argv, "--workers", "1", "--batch", "3", "--grid", "0.2,0.7"]) == 0
    assert "3 of 3 written" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a-grid.png", "b-grid.png", "c-grid.jpg"]
    for name, (h, w) in shapes.items():
        stem, ext = name.rsplit(".", 1)
        sheet = np.asarray(Image.open(out / f"{stem}-grid.{ext}"))
        assert sheet.shape[1] == 3 * w + 2 * 4 and sheet.shape[0] > h, (name, sheet.shape)
