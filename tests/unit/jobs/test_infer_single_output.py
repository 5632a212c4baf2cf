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
