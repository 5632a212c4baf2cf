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
