"""Every job's result appears whole or not at all, and nothing that exists is replaced without
--overwrite, even by a second run at the same time: files are written under a temporary name and
moved into place (``storage.local_file_in_place``), folders likewise (``storage.local_folder_in_place``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from pipeline import cli
from pipeline.data import storage
from support import corpus


def _leftovers(folder) -> list:
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


def test_an_exclusive_write_never_replaces_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "a.png")
    storage.write_bytes_atomic(path, b"first", None, exclusive=True)
    with pytest.raises(FileExistsError):
        storage.write_bytes_atomic(path, b"second", None, exclusive=True)
    assert open(path, "rb").read() == b"first" and _leftovers(tmp_path) == []
    storage.write_bytes_atomic(path, b"third", None)  # not exclusive: replaced, as --overwrite wants
    assert open(path, "rb").read() == b"third"


def test_a_folder_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "m"
    with pytest.raises(RuntimeError):
        with storage.local_folder_in_place(str(target)) as tmp:
            (tmp_path / os.path.basename(tmp) / "state.pt").write_bytes(b"half")
            raise RuntimeError("the job failed half way")
    assert not target.exists() and _leftovers(tmp_path) == []
    (target / "keep").parent.mkdir()
    (target / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        with storage.local_folder_in_place(str(target)) as tmp:
            open(os.path.join(tmp, "new"), "w").close()
    assert os.listdir(target) == ["keep"] and _leftovers(tmp_path) == []
    with storage.local_folder_in_place(str(target), overwrite=True) as tmp:
        open(os.path.join(tmp, "new"), "w").close()
    assert os.listdir(target) == ["new"] and _leftovers(tmp_path) == []


def _one_line_exit_2(argv, capsys) -> str:
    """The one error line of a command that exits 2 (besides the line naming the model it loaded)."""
    assert cli.main(argv) == 2
    err = "\n".join(line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("model: "))
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_export_ship_replaces_nothing_and_leaves_nothing_half_written(ckpt, tmp_path, capsys):
    ship = ["export", "--model", str(ckpt), "--ship"]
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.json").write_text('{"mine": 1}')
    (theirs / "meta.json").write_text('{"mine": 2}')
    assert "already there" in _one_line_exit_2([*ship, str(theirs)], capsys)
    assert (theirs / "config.json").read_text() == '{"mine": 1}' and sorted(os.listdir(theirs)) == [
        "config.json",
        "meta.json",
    ]
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "a file is there" in _one_line_exit_2([*ship, str(afile)], capsys)
    out = tmp_path / "out" / "m"
    assert "--temperature must be in" in _one_line_exit_2([*ship, str(out), "--temperature", "nan"], capsys)
    assert not out.exists()
    assert cli.main([*ship, str(out), "--temperature", "0.5"]) == 0  # the rerun is not told "a model is there"
    assert json.loads((out / "config.json").read_text())["model"]["temperature"] == 0.5
    assert sorted(os.listdir(out)) == ["MODEL_CARD.md", "config.json", "meta.json", "state.pt"]
    assert cli.main([*ship, str(theirs), "--overwrite"]) == 0
    assert "state.pt" in os.listdir(theirs) and _leftovers(tmp_path) == []


def test_eval_that_cannot_write_its_report_says_so_and_a_rerun_does_not_keep_it(ckpt, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(corpus.encode(Image.fromarray(corpus.photo(3)), "PNG"))
    out = tmp_path / "eval"
    (out / "report.html").mkdir(parents=True)  # the report cannot be written (as on a full disk)
    argv = ["eval", "--model", str(ckpt), "--data", str(photos), "--out", str(out), "--size", "32"]
    assert "cannot write" in _one_line_exit_2(argv, capsys)
    assert sorted(os.listdir(out)) == ["report.html"]  # no metrics.json: the eval is not finished
    (out / "report.html").rmdir()
    assert cli.main(argv) == 0
    assert "kept" not in capsys.readouterr().out and (out / "report.html").is_file()


def test_output_named_like_a_photo_that_is_a_folder_gets_the_photo_inside(ckpt, tmp_path, capsys):
    src = tmp_path / "astro.jpg"
    Image.fromarray(corpus.photo(0, 24, 32)).save(src)
    folder = tmp_path / "dir.png"
    folder.mkdir()
    assert cli.main(["infer", str(src), "--model", str(ckpt), "--size", "16", "--output", str(folder)]) == 0
    assert "wrote" in capsys.readouterr().out and Image.open(folder / "astro.jpg").size == (32, 24)


# Two `colorize infer` at once with one --output: each loads the model, waits until both are
# ready (a file each), then colorizes and writes, so the two writes race.
_RACER = """
import os, sys, time
from pipeline.gan import model_ref
resolve = model_ref.resolve_generator
def ready_together(*a, **k):
    out = resolve(*a, **k)
    open(sys.argv[1], "w").close()
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.05)
    return out
model_ref.resolve_generator = ready_together
from pipeline import cli
sys.exit(cli.main(sys.argv[3:]))
"""


def test_two_runs_at_once_do_not_replace_each_others_result(ckpt, tmp_path):
    src = tmp_path / "astro.jpg"
    Image.fromarray(corpus.photo(1, 96, 128)).save(src)
    out = tmp_path / "race.png"
    marks = [str(tmp_path / "ready0"), str(tmp_path / "ready1")]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, marks[i], marks[1 - i], "infer", str(src), "--model", str(ckpt)]
            + ["--size", "64", "--temperature", t, "--output", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, t in enumerate(("0.3", "2.0"))
    ]
    said = [r.communicate(timeout=300) for r in runs]
    wrote = [i for i, (o, _) in enumerate(said) if "wrote" in o]
    assert len(wrote) == 1, said  # one result; the other run follows the rerun rule
    other = 1 - wrote[0]
    assert runs[other].returncode == 1 and "exists, made with temperature" in said[other][1], said
    assert _leftovers(tmp_path) == []
