"""A folder that is not a colorize checkpoint is one line, "not a colorize checkpoint: PATH (why)",
exit 2: never a traceback, never torch's advice to load with weights_only=False, never code run."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from pipeline import cli

MARKER = "/tmp/colorize-test-pwned"


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _garbage(d):
    (d / "state.pt").write_bytes(np.random.default_rng(0).bytes(4096))


def _malicious_pickle(d):
    (d / "state.pt").write_bytes(pickle.dumps({"generator": _Evil()}))


def _malicious_torch_zip(d):
    torch.save({"generator": _Evil()}, d / "state.pt")


def _empty(d):
    (d / "state.pt").write_bytes(b"")


def _text(d):
    (d / "state.pt").write_text("hello\n")


def _not_a_dict(d):
    torch.save([1, 2, 3], d / "state.pt")


def _no_config(d):
    (d / "config.json").unlink()


def _config_not_json(d):
    (d / "config.json").write_bytes(b"\xff\x00 not json")


def _config_a_list(d):
    (d / "config.json").write_text("[1, 2]")


def _config_bad_value(d):
    (d / "config.json").write_text('{"model": {"depth": 0}}')


def _meta_garbage(d):
    (d / "meta.json").write_text("{broken")


def _weights_of_another_shape(d):
    state = torch.load(d / "state.pt", weights_only=True)
    state["generator"] = {k: v[..., :1] if v.ndim else v for k, v in state["generator"].items()}
    torch.save(state, d / "state.pt")


@pytest.mark.parametrize(
    "spoil, why",
    [
        (_garbage, ("refused unread", "not a PyTorch checkpoint file")),
        (_malicious_pickle, "refused unread"),
        (_malicious_torch_zip, "refused unread"),
        (_empty, "empty file"),
        (_text, "not a PyTorch checkpoint file"),
        (_not_a_dict, "no 'generator' weights"),
        (_no_config, "no config.json"),
        (_config_not_json, "unreadable JSON"),
        (_config_a_list, "not an object"),
        (_config_bad_value, "config.json: model.depth must be in"),
        (_meta_garbage, "unreadable JSON"),
        (_weights_of_another_shape, "weights do not fit"),
    ],
)
def test_a_spoilt_checkpoint_is_one_line(ckpt, tmp_path, capsys, spoil, why):
    d = tmp_path / "model"
    shutil.copytree(ckpt, d)
    spoil(d)
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    src = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 120, 30)).save(src)
    for argv in (
        ["infer", "--model", str(d), "--input", str(src), "--output", str(tmp_path / "o.png")],
        ["export", "--model", str(d), "--onnx", str(tmp_path / "g.onnx")],
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "not a colorize checkpoint: " + str(d) in err, err
        assert any(w in err for w in ((why,) if isinstance(why, str) else why)), err
        assert "weights_only" not in err and "Traceback" not in err
    assert not os.path.exists(MARKER), "loading the checkpoint ran its code"
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "g.onnx").exists()


# Run in a child under a 6 GB address-space cap: its peak resident memory is what loading cost.
_PEAK_OF_LOADING = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
from pipeline import cli
code = cli.main(sys.argv[1:])
# VmHWM, not ru_maxrss: Linux carries the forking parent's peak (here pytest's) into a child's ru_maxrss
print("PEAK_MB", int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) // 1024)
sys.exit(code)
"""


def test_a_config_that_asks_for_a_huge_model_is_refused_before_it_is_allocated(ckpt, tmp_path):
    """A few KB of weights (only the colour bins) with a config.json for a model of tens of GB: its
    shapes are checked on the meta device, so the refusal costs no more memory than the import."""
    import json
    import subprocess
    import sys

    d = tmp_path / "huge"
    d.mkdir()
    bins = torch.load(ckpt / "state.pt", weights_only=True)["generator"]["bins"]
    torch.save({"generator": {"bins": bins}, "step": 1, "epoch": 0}, d / "state.pt")
    config = json.loads((ckpt / "config.json").read_text())
    config["model"].update(base_channels=1024, max_channels=4096, depth=6, blocks_per_stage=4)
    (d / "config.json").write_text(json.dumps(config))
    src = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 120, 30)).save(src)
    argv = ["infer", str(src), "--model", str(d), "--output", str(tmp_path / "o.png")]
    r = subprocess.run([sys.executable, "-c", _PEAK_OF_LOADING, *argv], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "weights do not fit its config.json" in r.stderr and "Traceback" not in r.stderr
    peak = int(r.stdout.split("PEAK_MB")[1])
    assert peak < 1500, f"{peak} MB resident to refuse a 5 KB checkpoint"


def test_a_run_whose_checkpoints_record_steps_of_other_types_still_resolves(ckpt, tmp_path, capsys):
    """meta.json steps 5 and "abc" (and null): the numbered one is the newest, no TypeError."""
    import json

    from PIL import Image

    run = tmp_path / "run"
    for name, step in (("checkpoint_a", 5), ("checkpoint_b", "abc"), ("checkpoint_c", None)):
        shutil.copytree(ckpt, run / name)
        meta = json.loads((run / name / "meta.json").read_text())
        (run / name / "meta.json").write_text(json.dumps({**meta, "step": step}))
    src = tmp_path / "a.png"
    Image.new("RGB", (16, 16), (90, 120, 30)).save(src)
    assert cli.main(["infer", str(src), "--model", str(run), "--output", str(tmp_path / "o.png")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and (tmp_path / "o.png").is_file()
    assert f"model: {run / 'checkpoint_a'}" in err  # the numbered step wins
