"""``colorize infer`` on Ray: outputs stay under --output, never replace an input or each other, and
the summary counts what is on disk."""

from __future__ import annotations

import re

from PIL import Image

from pipeline import cli
from support import corpus


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def _written(text):
    return int(re.search(r"(\d+) of (\d+) written", text).group(1))


def test_list_with_dotdot_lines_collisions_and_reruns(ckpt, tmp_path, ray_local, capsys):
    x = tmp_path / "x"
    data, victim, res = x / "data", x / "victim", x / "res"
    data.mkdir(parents=True)
    victim.mkdir()
    for i, name in enumerate(["a.png", "a.tif", "b.jpg"]):
        Image.fromarray(corpus.photo(i, 24, 32)).save(data / name)
    Image.fromarray(corpus.photo(9, 24, 32)).save(victim / "keep.jpg")
    originals = {p: p.read_bytes() for p in _files(x)}
    # absolute lines, one climbing out of data/ (it used to be named ../victim/keep.jpg: written over
    # the original), the same file again by another spelling, and a relative line
    (x / "list.txt").write_text(
        "\n".join(
            [str(data / "a.png"), str(data / "a.tif"), f"{data}/../victim/keep.jpg", "data/b.jpg", f"{data}/./b.jpg"]
        )
        + "\n"
    )
    run = ["infer", "--model", str(ckpt), "--input", str(x / "list.txt"), "--size", "16", "--workers", "1"]

    assert cli.main([*run, "--output", str(res)]) == 0
    text = capsys.readouterr().out
    for p, content in originals.items():
        assert p.read_bytes() == content, f"{p} was changed"
    written = sorted(p.relative_to(res).as_posix() for p in _files(res))
    assert written == ["data/a.png", "data/a.tif.png", "data/b.jpg", "victim/keep.jpg"]  # a.tif and a.png: both kept
    assert _written(text) == len(written) and "(duplicate)" in text

    before = {p: p.read_bytes() for p in _files(res)}
    (res / "data" / "a.png").write_bytes(b"edited")
    before[res / "data" / "a.png"] = b"edited"
    assert cli.main([*run, "--output", str(res)]) == 0  # a rerun keeps what is there
    text = capsys.readouterr().out
    assert _written(text) == 0 and "skipped 4 (exists)" in text
    assert {p: p.read_bytes() for p in _files(res)} == before

    assert cli.main([*run, "--output", str(res), "--overwrite"]) == 0
    assert _written(capsys.readouterr().out) == 4
    assert (res / "data" / "a.png").read_bytes() != b"edited" and len(_files(res)) == 4


def test_output_equal_to_the_input_folder_is_refused(ckpt, tmp_path, ray_local, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i, name in enumerate(["a.png", "b.jpg", "c.tif"]):
        Image.fromarray(corpus.photo(i, 24, 32)).save(data / name)
    originals = {p: p.read_bytes() for p in _files(data)}
    for output in (data, tmp_path / "link"):
        if output.name == "link":
            output.symlink_to(data)  # the same folder under another name
        argv = [
            "infer",
            "--model",
            str(ckpt),
            "--input",
            str(data),
            "--output",
            str(output),
            "--size",
            "16",
            "--overwrite",
        ]
        assert cli.main(argv) == 2
        assert "is the input folder" in capsys.readouterr().err
        assert {p: p.read_bytes() for p in _files(data)} == originals
