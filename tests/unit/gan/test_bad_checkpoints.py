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
