"""``colorize export``: the generator as ONNX checked by onnxruntime, or in the form a model ships
inside the package (``pipeline.apply.export`` does the work)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Optional

from pipeline.apply import export
from pipeline.core.metrics import temperature_key
from pipeline.gan import model_ref
from pipeline.jobs.common import flags
from pipeline.runtime import made_with


@dataclass(kw_only=True)
class Options(flags.ModelOptions):
    onnx: Optional[str] = None
    ship: Optional[str] = None
    with_discriminator: bool = False
    overwrite: bool = False


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize export`` arguments."""
    flags.add_model_args(p)
    out = p.add_mutually_exclusive_group(required=True)
    onnx = out.add_argument("--output", "--onnx", dest="onnx", help="output .onnx file")
    flags.hide(onnx, "--onnx")
    out.add_argument("--ship", metavar="DIR", help="output folder: the model in fp16 as colorize ships it")
    p.add_argument(
        "--with-discriminator",
        action="store_true",
        help="with --ship: the discriminator too, from a training checkpoint: a resume point that "
        "the next stage of a long training starts from (train.init_from)",
    )
    flags.add_overwrite_arg(p, "an .onnx file or a --ship folder")


def run(args) -> int:
    o = flags.options(Options, args)
    if o.with_discriminator and not o.ship:
        raise ValueError("--with-discriminator goes with --ship DIR (a resume point), not with an ONNX export")
    if o.ship:
        size, info = export.ship(
            o.model, o.ship, o.tracking_uri, o.temperature, o.overwrite, o.with_discriminator, o.prior_correction
        )
        print(f"colorize export: wrote {o.ship} from {o.model} ({size / 1e6:.1f} MB of fp16 weights)")
        if info.get("backfilled"):
            print(f"colorize export: {info['backfilled']}")
        scored = info.get("val_temperature")
        if (
            o.temperature is None
            and scored is not None
            and temperature_key(scored) != temperature_key(info["temperature"])
        ):
            print(
                f"colorize export: validation scored this checkpoint best at T {scored:g}; it keeps its model's "
                f"T {info['temperature']:g} (--temperature {scored:g} ships it at the validated one)"
            )
        return 0
    export.check_output(o.onnx)  # before the model loads and the export runs, not after
    G, info = model_ref.resolve_generator(o.model, o.tracking_uri)
    backfilled = export.backfill_class_weights(G, info["config"])  # what --prior-correction divides out
    if backfilled and o.prior_correction:
        print(f"colorize export: {backfilled}")
    G, info = model_ref.with_prior_correction(G, info, o.prior_correction)
    settings = {"model": str(info["ref"]), "temperature": round(float(o.temperature or G.temperature), 6)}
    if G.prior_correction:  # baked into the graph, so part of what was exported
        settings["prior_correction"] = round(float(G.prior_correction), 6)
    if os.path.exists(o.onnx) and not o.overwrite:  # the rerun rule
        return made_with.report("colorize export", o.onnx, export.onnx_settings(o.onnx), settings)
    err = export._export_in_place(G, o.onnx, o.temperature, settings)
    print(f"colorize export: wrote {o.onnx} from {info['ref']}; onnxruntime vs torch max |Δab| = {err:.2e}")
    return 0
