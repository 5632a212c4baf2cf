"""Checkpoint I/O, pure torch: G, D, both optimizers, step, epoch, config, MLflow run id.

Everything loads with ``weights_only=True`` (no pickled code runs from a checkpoint); the config is
kept beside the tensors as JSON, so a checkpoint explains itself.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

import torch

STATE = "state.pt"
CONFIG = "config.json"
META = "meta.json"


def save(directory: str, G, D, opt_g, opt_d, step: int, epoch: int, config: Dict[str, Any], meta: Optional[Dict[str, Any]] = None) -> None:
    """Write a checkpoint into ``directory`` (G and D unwrapped from DDP)."""
    from pipeline.steps import unwrap

    os.makedirs(directory, exist_ok=True)
    torch.save(
        {
            "generator": unwrap(G).state_dict(),
            "discriminator": unwrap(D).state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "step": int(step),
            "epoch": int(epoch),
        },
        os.path.join(directory, STATE),
    )
    with open(os.path.join(directory, CONFIG), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, META), "w") as f:
        json.dump({"step": int(step), "epoch": int(epoch), **(meta or {})}, f, indent=2)


def save_generator(directory: str, G, step: int, epoch: int, config: Dict[str, Any]) -> None:
    """A generator-only checkpoint (what serving needs): ``load_generator`` reads it like a full one."""
    from pipeline.steps import unwrap

    os.makedirs(directory, exist_ok=True)
    torch.save({"generator": unwrap(G).state_dict(), "step": int(step), "epoch": int(epoch)}, os.path.join(directory, STATE))
    with open(os.path.join(directory, CONFIG), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, META), "w") as f:
        json.dump({"step": int(step), "epoch": int(epoch), "kind": "generator"}, f, indent=2)


def load_state(directory: str, map_location="cpu") -> Dict[str, Any]:
    path = os.path.join(directory, STATE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint state at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def load_config(directory: str) -> Dict[str, Any]:
    with open(os.path.join(directory, CONFIG)) as f:
        return json.load(f)


def load_meta(directory: str) -> Dict[str, Any]:
    path = os.path.join(directory, META)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def restore(directory: str, G, D, opt_g, opt_d, map_location="cpu") -> Dict[str, int]:
    """Load a checkpoint into existing models/optimizers; returns {"step", "epoch"}."""
    from pipeline.steps import unwrap

    state = load_state(directory, map_location)
    unwrap(G).load_state_dict(state["generator"])
    unwrap(D).load_state_dict(state["discriminator"])
    opt_g.load_state_dict(state["opt_g"])
    opt_d.load_state_dict(state["opt_d"])
    return {"step": int(state["step"]), "epoch": int(state["epoch"])}


def generator_from_state(generator_state: Dict[str, Any], config: Dict[str, Any]):
    """A generator in eval mode from its state dict and the run's config dict (as saved)."""
    from models import Generator
    from pipeline.config import ExperimentConfig

    cfg = ExperimentConfig.from_dict(config)
    G = Generator.from_config(cfg.model, bins=generator_state["bins"].cpu().numpy())
    G.load_state_dict(generator_state)
    return G.eval()


def load_generator(directory: str, map_location="cpu"):
    """The trained generator of a checkpoint, in eval mode, built from its own saved config."""
    return generator_from_state(load_state(directory, map_location)["generator"], load_config(directory))
