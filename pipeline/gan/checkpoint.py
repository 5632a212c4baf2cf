"""Checkpoint I/O, pure torch: G, D, both optimizers, the EMA of G, step, epoch, config, MLflow run id.

Two kinds, one reader: a training checkpoint (``save``: everything ``restore`` needs to resume) and
a generator checkpoint (``save_generator``: what serving needs). ``load_generator`` reads either and
returns the generator the product uses: the EMA weights when the run kept them, else G's.

Everything loads with ``weights_only=True`` (no pickled code runs from a checkpoint); the config is
kept beside the tensors as JSON, so a checkpoint explains itself.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from typing import Any, Dict, Optional

import torch

from models import Generator, unwrap
from pipeline.config import ConfigError, ExperimentConfig
from pipeline.gan.cgan import GAN, build_generator

STATE = "state.pt"
CONFIG = "config.json"
META = "meta.json"

# Keys of state.pt: "generator" holds the weights to serve in a generator checkpoint, G's raw
# weights in a training one (whose "ema" entry, when present, holds the weights to serve).
GENERATOR_KEY, EMA_KEY = "generator", "ema"
HINT_GAIN_KEY = "hint_gain"  # in init_weights: the model.hint_gain the weights learnt with


class NotACheckpoint(ValueError):
    """A folder or file that is not a colorize checkpoint: "not a colorize checkpoint: PATH (why)".
    The why is ours, never torch's (whose unpickling error advises weights_only=False)."""

    def __init__(self, path: str, why: str):
        super().__init__(f"not a colorize checkpoint: {path} ({why})")


def _write(directory: str, state: Dict[str, Any], config: Dict[str, Any], meta: Dict[str, Any]) -> None:
    os.makedirs(directory, exist_ok=True)
    torch.save(state, os.path.join(directory, STATE))
    with open(os.path.join(directory, CONFIG), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, META), "w") as f:
        json.dump(meta, f, indent=2)


def save(
    directory: str, gan: GAN, step: int, epoch: int, config: Dict[str, Any], meta: Optional[Dict[str, Any]] = None
) -> None:
    """A training checkpoint of ``gan`` into ``directory`` (G and D unwrapped from DDP)."""
    state = {
        GENERATOR_KEY: unwrap(gan.G).state_dict(),
        "discriminator": unwrap(gan.D).state_dict(),
        "opt_g": gan.opt_g.state_dict(),
        "opt_d": gan.opt_d.state_dict(),
        "step": int(step),
        "epoch": int(epoch),
    }
    if gan.ema is not None:
        state[EMA_KEY] = gan.ema.state_dict()
    meta = {"step": int(step), "epoch": int(epoch), "ema": gan.ema is not None, **(meta or {})}
    _write(directory, state, config, meta)


def save_generator(directory: str, G, step: int, epoch: int, config: Dict[str, Any]) -> None:
    """A generator-only checkpoint of ``G`` (give it ``GAN.generator()``: the weights to serve)."""
    state = {GENERATOR_KEY: unwrap(G).state_dict(), "step": int(step), "epoch": int(epoch)}
    _write(directory, state, config, {"step": int(step), "epoch": int(epoch), "kind": "generator"})


SHIP_MAX_BYTES = 25 * 10**6  # a shipped generator travels inside the package: keep the wheel small


def half_state(G) -> Dict[str, torch.Tensor]:
    """``G``'s state dict (or a state dict) on the CPU with floating tensors in fp16, except the
    colour bins and the class weights (exact, and a few hundred numbers)."""
    out = {}
    for k, v in (G if isinstance(G, dict) else unwrap(G).state_dict()).items():
        v = v.detach().cpu()
        out[k] = v.half() if v.is_floating_point() and k not in ("bins", "rebalance_weights") else v.clone()
    return out


def save_shipped(
    directory: str,
    G,
    config: Dict[str, Any],
    meta: Optional[Dict[str, Any]] = None,
    max_bytes: int = SHIP_MAX_BYTES,
    D=None,
) -> int:
    """The form a model ships in: a generator checkpoint of ``G`` (give it ``GAN.generator()``, the
    EMA) with fp16 weights, loadable with ``weights_only=True`` like any checkpoint. With ``D``,
    the discriminator too (fp16): a resume point that the next stage of a long training continues
    from with ``train.init_from`` (G, its average and D; fresh optimisers). Refuses (ValueError,
    nothing left behind) a state over ``max_bytes``; reads it back before returning its size."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, STATE)
    state = {GENERATOR_KEY: half_state(G), "step": int((meta or {}).get("step", 0)), "epoch": 0}
    if D is not None:
        state["discriminator"] = half_state(D)
    torch.save(state, path)
    size = os.path.getsize(path)
    if size > max_bytes:
        os.remove(path)
        raise ValueError(
            f"{path}: {size / 1e6:.1f} MB of weights, over the {max_bytes / 1e6:.0f} MB a shipped model may have"
        )
    with open(os.path.join(directory, CONFIG), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, META), "w") as f:
        json.dump({"epoch": 0, **(meta or {}), "kind": "generator", "dtype": "float16"}, f, indent=2)
    load_generator(directory)  # it reads back as a colorize checkpoint, tensors only
    return size


def load_state(directory: str, map_location="cpu") -> Dict[str, Any]:
    """``state.pt`` as a dict, read tensors-only; NotACheckpoint for anything else."""
    path = os.path.join(directory, STATE)
    if not os.path.isfile(path):
        raise NotACheckpoint(directory, f"no {STATE}")
    if os.path.getsize(path) == 0:
        raise NotACheckpoint(path, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's loader warnings talk about weights_only too
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        why = "damaged, or holds objects other than tensors and plain values: refused unread"
        raise NotACheckpoint(path, why) from None
    except EOFError:
        raise NotACheckpoint(path, "truncated") from None
    except OSError as e:
        raise NotACheckpoint(path, e.strerror or type(e).__name__) from None
    except Exception:  # zip, key and type errors of a file that is no torch checkpoint at all
        raise NotACheckpoint(path, "not a PyTorch checkpoint file") from None
    if not isinstance(state, dict) or GENERATOR_KEY not in state:
        raise NotACheckpoint(path, f"no {GENERATOR_KEY!r} weights in it")
    return state


def load_config(directory: str) -> Dict[str, Any]:
    """``config.json`` (the run's config dict); NotACheckpoint when missing or not a JSON object."""
    return _read_json(directory, CONFIG, required=True)


def load_meta(directory: str) -> Dict[str, Any]:
    """``meta.json`` ({} when there is none); NotACheckpoint when it is not a JSON object."""
    return _read_json(directory, META, required=False)


def _read_json(directory: str, name: str, required: bool) -> Dict[str, Any]:
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        if required:
            raise NotACheckpoint(directory, f"no {name}")
        return {}
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise NotACheckpoint(path, f"unreadable JSON: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise NotACheckpoint(path, f"a JSON {type(doc).__name__}, not an object")
    return doc


def restore(directory: str, gan: GAN, map_location="cpu") -> Dict[str, int]:
    """Load a training checkpoint into ``gan`` (built from the same config); returns {"step", "epoch"}.

    The EMA resumes from its saved average; a checkpoint without one (saved with the EMA off)
    starts it from the restored G."""
    state = load_state(directory, map_location)
    unwrap(gan.G).load_state_dict(state[GENERATOR_KEY])
    unwrap(gan.D).load_state_dict(state["discriminator"])
    gan.opt_g.load_state_dict(state["opt_g"])
    gan.opt_d.load_state_dict(state["opt_d"])
    if gan.ema is not None:
        if EMA_KEY in state:
            gan.ema.load_state_dict(state[EMA_KEY])
        else:
            gan.ema.module.load_state_dict(state[GENERATOR_KEY])
    return {"step": int(state["step"]), "epoch": int(state["epoch"])}


def served_weights(state: Dict[str, Any]) -> Dict[str, Any]:
    """The generator weights to serve from a loaded ``state.pt`` of either kind."""
    return state[EMA_KEY]["weights"] if EMA_KEY in state else state[GENERATOR_KEY]


def init_weights(state: Dict[str, Any]) -> Dict[str, Any]:
    """The weights a run starts from (``train.init_from``) out of a loaded ``state.pt`` of either
    kind: "generator" (G's raw weights in a training checkpoint, else the served ones), "ema" (the
    served weights) and, when saved, "discriminator". Optimisers are not carried: fresh ones."""
    init = {GENERATOR_KEY: state[GENERATOR_KEY], EMA_KEY: served_weights(state)}
    if isinstance(state.get("discriminator"), dict):
        init["discriminator"] = state["discriminator"]
    return init


def hint_gain_of(config: Dict[str, Any]) -> float:
    """The ``model.hint_gain`` of a checkpoint's config dict (1: configs from before the key)."""
    return float((config.get("model") or {}).get("hint_gain") or 1.0)


def apply_init(gan: GAN, init: Dict[str, Any]) -> bool:
    """Load ``init_weights`` into a freshly built ``gan`` (same model config). G and its EMA always;
    D when the checkpoint has one that fits this run's D (else D starts fresh). Returns whether D
    was loaded. Weights may be stored in fp16 (the shipped model): they are cast to the model's.
    An L-only model's weights start a hint model with its hint channels at zero, and hint weights
    learnt at another ``model.hint_gain`` (``init["hint_gain"]``) are rescaled (``widen_state``)."""
    G = unwrap(gan.G)
    gain = init.get(HINT_GAIN_KEY)
    G.load_state_dict(G.widen_state(init[GENERATOR_KEY], gain))
    if gan.ema is not None:
        gan.ema.module.load_state_dict(G.widen_state(init[EMA_KEY], gain))
        gan.ema.settle()  # the average goes on from the trained weights at its full decay
    D = unwrap(gan.D)
    saved = init.get("discriminator")
    ours = D.state_dict()
    if saved is None or saved.keys() != ours.keys() or any(saved[k].shape != ours[k].shape for k in ours):
        return False
    D.load_state_dict(saved)
    return True


def generator_from_state(generator_state: Dict[str, Any], config: Dict[str, Any]) -> Generator:
    """A generator in eval mode from its state dict (with its own ``bins``) and the run's config dict.
    ValueError, before any memory is allocated, when the weights do not fit the config."""
    cfg = ExperimentConfig.from_dict(config)
    bins = generator_state["bins"].cpu().numpy()
    check_fits(generator_state, cfg.model, bins)
    G = build_generator(cfg.model, bins=bins)
    G.load_state_dict(generator_state)
    G.working_size = cfg.data.resize  # the scale it was trained at: inference's default working size
    return G.eval()


def check_fits(generator_state: Dict[str, Any], model_cfg, bins) -> None:
    """ValueError unless ``generator_state`` holds exactly the tensors, of exactly the shapes, of the
    generator ``model_cfg`` describes. Built on the meta device (shapes, no storage): a small file
    whose config.json asks for a huge model is refused without allocating it."""
    with torch.device("meta"):
        wanted = build_generator(model_cfg, bins=bins).state_dict()
    if "rebalance_weights" not in generator_state:  # saved before generators recorded them: loads as all 1
        wanted.pop("rebalance_weights")
    if set(wanted) != set(generator_state):
        missing, extra = sorted(set(wanted) - set(generator_state)), sorted(set(generator_state) - set(wanted))
        raise ValueError(f"{len(missing)} tensors missing (e.g. {missing[:1]}), {len(extra)} unexpected")
    for k, v in wanted.items():
        got = getattr(generator_state[k], "shape", None)
        if got is None or tuple(got) != tuple(v.shape):
            raise ValueError(f"{k}: shape {tuple(got) if got is not None else None}, the config makes {tuple(v.shape)}")


def load_generator(directory: str, map_location="cpu") -> Generator:
    """The generator the product uses from a checkpoint folder, in eval mode, built from its own
    saved config: the EMA weights when the checkpoint has them. NotACheckpoint (a ValueError) for
    a folder whose files do not make one."""
    state, config = load_state(directory, map_location), load_config(directory)
    try:
        ExperimentConfig.from_dict(config)
    except ConfigError as e:
        raise NotACheckpoint(directory, f"{CONFIG}: {e}") from None
    try:
        return generator_from_state(served_weights(state), config)
    except (KeyError, RuntimeError, TypeError, AttributeError, ValueError) as e:  # weights that do not fit its config
        raise NotACheckpoint(directory, f"weights do not fit its {CONFIG}: {type(e).__name__}") from None
