"""``colorize infer`` on one photo: never over its input, an existing output kept unless --overwrite."""

from __future__ import annotations

import pytest
from PIL import Image

from pipeline import cli
from support import corpus


@pytest.fixture
def photo(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(corpus.photo(0, 24, 32)).save(src)
    return src


def _infer(ckpt, src, out, *extra):
    return cli.main(["infer", "--model", str(ckpt), "--input", str(src), "--output", str(out), "--size", "16", *extra])


@pytest.mark.parametrize("name", ["a.png", "a.tif"])
def test_the_input_given_as_the_output_is_refused(ckpt, tmp_path, capsys, name):
    src = tmp_path / name
    Image.fromarray(corpus.photo(1, 24, 32)).save(src)
    before = src.read_bytes()
    assert _infer(ckpt, src, src, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "is the input itself" in err and len(err.strip().splitlines()) == 1
    assert src.read_bytes() == before
    # the same file by another spelling
    assert _infer(ckpt, src, tmp_path / "sub" / ".." / name, "--overwrite") == 2
    assert src.read_bytes() == before and not (tmp_path / "sub").exists()


def test_an_existing_output_is_kept_unless_overwrite(ckpt, photo, tmp_path, capsys):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep me")
    assert _infer(ckpt, photo, out) == 0
    assert out.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().out
    assert _infer(ckpt, photo, out, "--overwrite") == 0
    assert Image.open(out).size == (32, 24)


def test_a_folder_output_gets_the_input_name_and_keeps_what_is_there(ckpt, photo, tmp_path):
    folder = tmp_path / "res"
    assert _infer(ckpt, photo, folder) == 0
    first = (folder / "a.png").read_bytes()
    (folder / "a.png").write_bytes(b"edited by hand")
    assert _infer(ckpt, photo, folder) == 0
    assert (folder / "a.png").read_bytes() == b"edited by hand"
    assert _infer(ckpt, photo, folder, "--overwrite") == 0
    assert (folder / "a.png").read_bytes() == first


@pytest.mark.parametrize("name", ["astro-out.tif", "astro-out.webp", "astro-out.bmp"])
def test_an_output_named_in_another_picture_format_is_a_png_file_not_a_folder(ckpt, photo, tmp_path, capsys, name):
    out = tmp_path / name
    assert _infer(ckpt, photo, out) == 0
    written = out.with_suffix(".png")
    assert not out.exists() and Image.open(written).format == "PNG"
    assert f"wrote {written}" in capsys.readouterr().out


def test_a_photo_with_transparency_keeps_its_alpha_channel(ckpt, tmp_path):
    import numpy as np

    rgba = np.dstack([corpus.photo(2, 24, 32), np.tile(np.arange(0, 256, 8, dtype=np.uint8), (24, 1))])
    src = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(src)
    assert _infer(ckpt, src, tmp_path / "logo-colour.png") == 0
    out = Image.open(tmp_path / "logo-colour.png")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])
    assert _infer(ckpt, src, tmp_path / "logo-colour.jpg") == 0  # JPEG holds no alpha: RGB
    assert Image.open(tmp_path / "logo-colour.jpg").mode == "RGB"


def test_the_folder_stages_keep_the_alpha_channel(ckpt, tmp_path):
    import numpy as np

    from pipeline.apply import infer
    from pipeline.data import storage
    from pipeline.gan import model_ref

    rgba = np.dstack([corpus.photo(3, 24, 32), np.full((24, 32), 90, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    fs, _ = storage.resolve(str(tmp_path), storage.S3Settings())
    rows = infer.read_decode({"path": [str(tmp_path / "a.png")], "out": [str(tmp_path / "o.png")]}, fs, 16)
    G, _ = model_ref.resolve_generator(str(ckpt))
    infer.finish(infer.BatchModel(G, [0.38])(rows), storage.S3Settings().to_dict())
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png"))[..., 3], rgba[..., 3])


def test_a_video_given_to_infer_is_pointed_to_colorize_video(ckpt, tmp_path, capsys):
    src = tmp_path / "pan.mp4"
    src.write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 64)
    assert _infer(ckpt, src, tmp_path / "o.png") == 1
    assert f"a video? colorize video {src}" in capsys.readouterr().out
