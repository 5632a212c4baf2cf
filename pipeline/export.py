"""``colorize export``: the generator as ONNX (L (B,1,H,W) in [-1,1] -> ab (B,2,H,W); dynamic batch,
height and width), checked by onnxruntime against torch on a sample of another size."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Optional

import numpy as np
import torch

from models.generator import ABPredictor
from pipeline import cli_args, model_ref, outputs

log = logging.getLogger(__name__)


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize export`` arguments."""
    cli_args.add_model_args(p)
    onnx = p.add_argument("--output", "--onnx", dest="onnx", required=True, help="output .onnx file")
    cli_args.hide(onnx, "--onnx")
    cli_args.add_overwrite_arg(p, "an .onnx file")


def check_output(path: str) -> None:
    """ValueError (one line) unless ``path`` is a local ``.onnx`` file name in a writable folder that exists."""
    if "://" in path:
        problem = "must be a local file (copy it to object storage afterwards)"
    elif os.path.isdir(path):
        problem = "is a folder; give a file name ending in .onnx"
    else:
        problem = outputs.output_file_problem(path, ".onnx")
    folder = os.path.dirname(os.path.abspath(path))
    if not problem and not os.path.isdir(folder):
        problem = f"folder {os.path.dirname(path) or '.'} does not exist"
    elif not problem and not os.access(folder, os.W_OK):
        problem = f"folder {os.path.dirname(path) or '.'} is not writable"
    if problem:
        raise ValueError(f"--output {path}: {problem}")


def export_onnx(G, path: str, temperature: Optional[float] = None, opset: int = 18) -> None:
    model = ABPredictor(G.cpu().eval(), temperature).eval()
    dims = {
        0: torch.export.Dim("batch", max=4096),
        2: torch.export.Dim("height", min=16, max=16384),
        3: torch.export.Dim("width", min=16, max=16384),
    }
    torch.onnx.export(
        model,
        (torch.randn(1, 1, 64, 96),),
        path,
        input_names=["L"],
        output_names=["ab"],
        dynamic_shapes={"L": dims},
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )


def check_onnx(G, path: str, temperature: Optional[float] = None, shape=(2, 1, 72, 120), seed: int = 0) -> float:
    """Max |ab_onnx - ab_torch| (Lab units) on a random input of ``shape``; raises if over 0.05."""
    import onnxruntime as ort  # optional dependency: only this check needs it

    x = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))
    with torch.no_grad():
        ref = G.cpu().eval()(x, temperature)[1].numpy()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"L": x.numpy()})[0]
    err = float(np.abs(got - ref).max())
    if got.shape != ref.shape or not err < 0.05:
        raise ValueError(f"ONNX model disagrees with torch: shape {got.shape} vs {ref.shape}, max error {err:.4g}")
    return err


def run(args) -> int:
    check_output(args.onnx)  # before the model loads and the export runs, not after
    if os.path.exists(args.onnx) and not getattr(args, "overwrite", False):
        raise ValueError(f"--output {args.onnx} exists: --overwrite replaces it, or give another name")
    G, info = model_ref.resolve_generator(args.model, args.tracking_uri)
    export_onnx(G, args.onnx, args.temperature)
    err = check_onnx(G, args.onnx, args.temperature)
    print(f"colorize export: wrote {args.onnx} from {info['ref']}; onnxruntime vs torch max |Δab| = {err:.2e}")
    return 0
