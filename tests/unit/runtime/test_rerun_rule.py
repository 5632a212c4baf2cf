"""The one rule for reruns: nothing that exists is replaced without --overwrite; a rerun with the
same settings keeps the result (exit 0), one with other settings says what differs in one line and
exits 1. Photos record their settings inside (pipeline.made_with); the prior in its .json."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from pipeline import cli
from pipeline.jobs.common import per_input
from pipeline.runtime import made_with
from pipeline.runtime.outputs import output_name
from support import ROOT, corpus


@pytest.fixture
def photo(tmp_path):
    src = tmp_path / "old.jpg"
    Image.fromarray(corpus.photo(0, 24, 32)).convert("L").save(src)
    return src


def _infer(ckpt, *argv):
    return cli.main(["infer", *argv, "--model", str(ckpt), "--size", "16"])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_settings_round_trip_inside_a_photo(fmt):
    import io

    s = made_with.photo_settings("shipped", [0.3], 256)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, fmt, **made_with.save_options(fmt, s))
    assert made_with.read_photo_settings(buf.getvalue()[: made_with.HEADER_BYTES]) == s
    assert made_with.differences(s, s) == []
    assert made_with.differences(s, {**s, "temperature": 0.5}) == ["temperature 0.3 (now 0.5)"]
    assert made_with.read_photo_settings(b"not an image") is None
    assert made_with.differences(None, s) == []  # a file we did not make is kept, never judged


def test_a_setting_recorded_only_when_used_counts_on_either_side():
    """Colour hints are recorded only when given: a rerun without them, or with others, differs;
    a long list is cut short in the message."""
    s = made_with.photo_settings("shipped", [0.3], 256)
    hinted = {**s, "hints": [{"x": 10.0, "y": 20.0, "color": "#ff0000"}] * 3}
    (gone,) = made_with.differences(hinted, s)
    assert gone.startswith('hints [{"x": 10.0, "y": 20.0, "color": "#ff0000"}') and gone.endswith("... (now none)")
    assert len(gone) == len("hints ") + made_with.SHOWN_CHARS + len(" (now none)")
    (added,) = made_with.differences(s, hinted)
    assert added.startswith("hints none (now [{") and added.endswith("...)")
    assert made_with.differences(hinted, {**hinted, "hints": [{"x": 1.0, "y": 2.0, "color": "#ff0000"}]})
    assert made_with.differences(hinted, hinted) == []


def test_default_output_sits_next_to_the_input():
    assert per_input.default_output("old.jpg", True, output_name, "-colour") == "old-colour.jpg"
    assert per_input.default_output("a/old.tif", True, output_name, "-colour") == "a/old-colour.png"
    assert per_input.default_output("photos/", False, output_name, "-colour") == "photos-colour"
    assert per_input.default_output("s3://b/p/", False, output_name, "-colour") == "s3://b/p-colour"
    with pytest.raises(ValueError, match="list file"):
        per_input.default_output("list.txt", False, output_name, "-colour")


def _without_model_line(err: str) -> str:
    """stderr less the line naming the checkpoint a command loaded (``model_ref.describe``)."""
    return "\n".join(line for line in err.splitlines() if not line.startswith("model: "))


def test_infer_photo_rerun_rule(ckpt, photo, tmp_path, capsys):
    out = tmp_path / "old-colour.jpg"
    assert _infer(ckpt, str(photo)) == 0  # positional input, output next to it
    assert out.exists() and "old-colour.jpg" in capsys.readouterr().out
    first = out.read_bytes()
    assert _infer(ckpt, str(photo)) == 0  # same settings: kept
    assert "kept" in capsys.readouterr().out and out.read_bytes() == first
    assert _infer(ckpt, str(photo), "--temperature", "0.9") == 1  # other settings: says so, keeps the file
    err = _without_model_line(capsys.readouterr().err)
    assert "temperature" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == first
    assert _infer(ckpt, str(photo), "--temperature", "0.9", "--overwrite") == 0
    assert made_with.read_photo_settings(out.read_bytes())["temperature"] == 0.9
    assert photo.exists()  # never over the input


def test_infer_folder_rerun_rule(ckpt, tmp_path, capsys, monkeypatch):
    """A folder rerun reads each kept result's settings: other settings count as other_settings, exit 1."""
    from pipeline.apply import infer as apply_infer
    from pipeline.jobs import infer

    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(corpus.photo(i, 24, 32)).save(src / f"p{i}.png")
    dst = tmp_path / "in-colour"
    dst.mkdir()
    settings = made_with.photo_settings(str(ckpt), [0.38], 16)
    calls = []

    def fake_run(G, info, todo, fs, args, s3, settings=None):  # no Ray in unit tests
        calls.append([t.out for t in todo])
        return [{"path": t.path, "out": t.out, "skip": ""} for t in todo]

    monkeypatch.setattr(infer, "_run_on_ray", fake_run)
    same = apply_infer.encode(corpus.photo(0, 24, 32), "p0.png", {**settings, "model": _ref(ckpt)})
    (dst / "p0.png").write_bytes(same)
    (dst / "p1.png").write_bytes(
        apply_infer.encode(corpus.photo(1, 24, 32), "p1.png", {**settings, "temperature": 0.7})
    )
    assert _infer(ckpt, str(src), "--temperature", "0.38") == 1
    out = capsys.readouterr().out
    assert "skipped 1 (exists)" in out and "skipped 1 (other_settings) (--overwrite replaces them)" in out
    assert calls == []  # nothing to redo, nothing replaced
    assert (dst / "p0.png").read_bytes() == same
    assert _infer(ckpt, str(src), "--temperature", "0.38", "--overwrite") == 0
    assert sorted(calls[0]) == [str(dst / "p0.png"), str(dst / "p1.png")]


def _ref(ckpt) -> str:
    from pipeline.gan import model_ref

    return model_ref.resolve_generator(str(ckpt))[1]["ref"]


def test_priors_never_replaces_the_projects_prior(tmp_path, monkeypatch, capsys):
    """`colorize priors` with no arguments, in a checkout: the project's prior stays as it is."""
    for name in ("prior_probs.npy", "prior_probs.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    before = (tmp_path / "prior_probs.npy").read_bytes()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["priors"]) == 1
    err = capsys.readouterr().err
    assert "prior_probs.npy exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "prior_probs.npy").read_bytes() == before


def test_eval_rerun_rule(ckpt, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(corpus.photo(i, 40, 48)).save(photos / f"p{i}.png")
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(ckpt), "--input", str(photos), "--output", str(out), "--size", "32"]
    assert cli.main(argv) == 0
    first = (out / "metrics.json").read_bytes()
    assert cli.main(argv) == 0 and "kept" in capsys.readouterr().out  # same settings: nothing redone
    assert cli.main([*argv, "--temperature", "0.9"]) == 1
    err = _without_model_line(capsys.readouterr().err)
    assert "temperature None (now 0.9)" in err and len(err.strip().splitlines()) == 1
    assert (out / "metrics.json").read_bytes() == first
    assert cli.main([*argv, "--temperature", "0.9", "--overwrite"]) == 0
    assert (out / "metrics.json").read_bytes() != first


def test_export_never_replaces_a_file(ckpt, tmp_path, capsys):
    onnx = tmp_path / "g.onnx"
    onnx.write_bytes(b"mine")
    assert cli.main(["export", "--model", str(ckpt), "--output", str(onnx)]) == 0  # records no settings: kept
    assert "--overwrite" in capsys.readouterr().out and onnx.read_bytes() == b"mine"


def _onnx_made_with(path, settings):
    """A (graphless) ONNX file that records ``settings`` as ``export`` does."""
    import onnx
    from onnx import helper

    graph = helper.make_model(helper.make_graph([], "g", [], []))
    graph.metadata_props.add(key=made_with.KEY, value=made_with.comment(settings))
    onnx.save(graph, str(path))
    return path.read_bytes()


def test_export_rerun_keeps_a_result_made_with_the_same_settings(ckpt, tmp_path, capsys):
    onnx = tmp_path / "g.onnx"
    before = _onnx_made_with(onnx, {"model": str(ckpt), "temperature": 0.38})
    assert cli.main(["export", "--model", str(ckpt), "--output", str(onnx)]) == 0
    assert "made with the same settings" in capsys.readouterr().out
    assert cli.main(["export", "--model", str(ckpt), "--output", str(onnx), "--temperature", "0.5"]) == 1
    assert "temperature 0.38 (now 0.5)" in capsys.readouterr().err
    assert onnx.read_bytes() == before


def test_prepare_rerun_rule(tmp_path, capsys):
    """Checked before Ray starts: shards made with other settings are not replaced without --overwrite."""
    import json

    from pipeline.core import color
    from pipeline.data import shards

    out = tmp_path / "prepared"
    out.mkdir()
    manifest = {"format": shards.FORMAT, "Q": color.num_bins(), "source": "photos", "size": 256}
    (out / "manifest.json").write_text(json.dumps({**manifest, "skip_grey": True, "limit": None}))
    before = (out / "manifest.json").read_bytes()
    argv = ["prepare", "--input", "photos", "--output", str(out)]
    assert cli.main(argv) == 0 and "kept" in capsys.readouterr().out
    assert cli.main([*argv, "--resize", "128"]) == 1
    assert "size 256 (now 128)" in capsys.readouterr().err
    assert (out / "manifest.json").read_bytes() == before
