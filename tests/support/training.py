"""Tiny training runs and checkpoints: the config overrides the Ray training tests share, and a
saved tiny generator for the inference, evaluation and export tests."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from support import corpus

TINY = [
    "model.preset=tiny",
    "model.d_base_channels=8",
    "model.d_layers=2",
    "data.resize=48",
    "data.crop=32",
    "train.batch_size=2",
    "train.num_workers=2",
    "train.cpus_per_worker=0.5",
    "tracking.sample_images=2",
    "train.log_every=1",
]


def tiny_settings(*changes: str, without: Sequence[str] = ()) -> List[str]:
    """``TINY`` as KEY=VALUE strings with ``changes`` applied: a change of a key TINY sets takes its
    place, a new key goes at the end; the keys in ``without`` are left out (their defaults hold)."""
    new = dict(c.split("=", 1) for c in changes)
    out = []
    for s in TINY:
        key = s.split("=", 1)[0]
        if key not in without:
            out.append(f"{key}={new.pop(key)}" if key in new else s)
    return out + [f"{k}={v}" for k, v in new.items()]


def set_args(settings: Sequence[str]) -> List[str]:
    """``--set KEY=VALUE`` arguments, one pair per setting (pipeline/run.py, ``colorize tune``)."""
    return [x for s in settings for x in ("--set", s)]


def args_for(tmp: Path, name: str, *extra: str) -> List[str]:
    """pipeline/run.py arguments for a tiny run on a corpus written under ``tmp`` (once)."""
    photos, val = tmp / "photos", tmp / "val"
    if not photos.exists():  # good photos, odd encodings and bad files: the bad ones are skipped and counted
        corpus.write_corpus(photos)
        val.mkdir()
        for i, data in enumerate(corpus.good_files(4).values()):
            (val / f"v{i}.png").write_bytes(data)
    sets = tiny_settings(
        f"data.train={photos}",
        f"data.val={val}",
        f"train.storage_path={tmp / 'runs'}",
        f"train.run_name={name}",
        *extra,
    )
    return [*set_args(sets), "--out", str(tmp / "out")]


def tiny_generator_checkpoint(
    folder: Path, temperature: float = 0.38, hints: bool = False, rebalanced: bool = False
) -> Path:
    """A tiny generator with a peaked, non-grey head, saved as a generator checkpoint in ``folder``;
    ``temperature``: its own decoding temperature (model.temperature); ``hints``: a hint model
    (model.hints), untrained, so it takes hints but does not follow them; ``rebalanced``: it
    carries class weights that grow along its head's bias, so a prior correction dulls it."""
    import torch

    from pipeline.config import ExperimentConfig
    from pipeline.gan import cgan, checkpoint

    cfg = ExperimentConfig().replace({"model.preset": "tiny", "model.temperature": temperature, "model.hints": hints})
    torch.manual_seed(0)
    G = cgan.build_generator(cfg.model)
    with torch.no_grad():
        G.head.bias.copy_(torch.linspace(-4, 4, G.num_bins))  # favours high-a bins: visibly coloured output
    if rebalanced:
        G.set_rebalance_weights(torch.linspace(-4, 4, G.num_bins).exp())  # A 1 undoes the head's bias
    d = folder / "generator"
    checkpoint.save_generator(str(d), G, step=7, epoch=0, config=cfg.to_dict())
    return d
