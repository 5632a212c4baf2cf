"""``colorize export``: an ONNX graph of any input size that onnxruntime runs like the generator."""

import numpy as np
import pytest

from pipeline import cli
from pipeline.apply import export
from pipeline.gan import cgan, model_ref


def test_export_onnx_dynamic_size(ckpt, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "g.onnx"
    assert cli.main(["export", "--model", str(ckpt), "--onnx", str(onnx_path), "--saturation", "0.3"]) == 0
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # made in a temporary folder, moved
    G, _ = model_ref.resolve_generator(str(ckpt))
    assert export.check_onnx(G, str(onnx_path), 0.3, shape=(1, 1, 41, 97)) < 0.05
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"L": np.zeros((3, 1, 128, 64), np.float32)})[0].shape == (3, 2, 128, 64)
    assert export.onnx_settings(str(onnx_path)) == {"model": str(ckpt), "temperature": 0.3}  # a rerun keeps it
    with pytest.raises(ValueError, match="disagrees"):
        export.check_onnx(cgan.build_generator({"preset": "tiny"}), str(onnx_path), 0.3)
