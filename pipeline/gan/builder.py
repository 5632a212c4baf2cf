"""The one builder of the cGAN: G, D, their Adam optimisers and the EMA of G, from a config.

Training (``pipeline/train/trainer.py``, hence Tune), the benchmarks and the tests all build through
``build`` and train through ``GAN.train_step``, so what a benchmark measures is what
``pipeline/run.py`` ships. Pure torch, no Ray: the caller wraps G and D for DDP if it needs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from models import EMA, Generator, PatchDiscriminator, unwrap
from pipeline.config import ExperimentConfig
from pipeline.core import color
from pipeline.gan import steps


def build_generator(model_cfg, bins: Optional[np.ndarray] = None) -> Generator:
    """A generator from the model section; ``bins`` default to this project's grid."""
    return Generator.from_config(model_cfg, color.ab_bins() if bins is None else bins)


def adam(params, lr: float, optim_cfg, device: torch.device) -> torch.optim.Adam:
    """Adam with the config's betas and weight decay; the fused kernel on CUDA."""
    return torch.optim.Adam(
        params,
        lr,
        betas=(optim_cfg.beta1, optim_cfg.beta2),
        weight_decay=optim_cfg.weight_decay,
        fused=device.type == "cuda" or None,
    )


@dataclass
class GAN:
    """G and D (either may be wrapped for DDP after building), their optimisers, and ``ema``: the
    moving average of G's weights (None when ``train.ema_decay`` is 0)."""

    cfg: ExperimentConfig
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: Optional[EMA]

    def generator(self) -> Generator:
        """The generator the product uses (validation, samples, serving, infer, eval): the EMA
        when it is on, else G itself; never a DDP wrapper."""
        return self.ema.module if self.ema is not None else unwrap(self.G)

    def adv_scale(self, step: int) -> float:
        """Weight of the adversarial term at ``step``: ramps 0 -> 1 over ``loss.adv_warmup_steps``."""
        warm = self.cfg.loss.adv_warmup_steps
        return min(1.0, step / warm) if warm else 1.0

    def train_step(
        self,
        batch: Dict[str, torch.Tensor],
        step: int,
        class_weights: Optional[torch.Tensor],
        loss_scale: float = 1.0,
        sync: bool = False,
    ) -> Dict[str, float]:
        """One training step (D step, G step, then the EMA update) on a ``steps.step_batch``
        batch; ``step`` is the number of steps before this one. ``loss_scale``: see
        ``steps.d_step``; ``sync=False`` keeps the stats as device tensors (no host sync)."""
        cfg = self.cfg
        stats = steps.train_step(
            self.G,
            self.D,
            self.opt_g,
            self.opt_d,
            batch,
            cfg.loss,
            class_weights,
            self.adv_scale(step),
            cfg.train.amp,
            cfg.optim.grad_clip,
            sync=sync,
            loss_scale=loss_scale,
        )
        if self.ema is not None:
            self.ema.update(self.G)
        return stats


def compile_enabled(cfg: ExperimentConfig, device: torch.device) -> bool:
    """Whether ``train.compile`` turns torch.compile on for this device (``auto``: on CUDA only)."""
    mode = cfg.train.compile
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compile_modules(*modules: nn.Module) -> None:
    """``torch.compile`` each module in place (``nn.Module.compile``): the same module objects,
    parameter names and state_dict keys, so checkpoints, the EMA and ``unwrap`` are unchanged.

    ``dynamic=False``: training crops have one static shape (a smaller last batch or validation
    shape costs one recompile each). Compiled before any DDP wrapping, so the DDP module calls
    the compiled forward; each backward is one compiled graph, so DDP's gradient all-reduce then
    overlaps less with compute than eager (correct, one GPU unaffected). CUDA graphs
    (``mode="reduce-overhead"``) are not used: the optimiser steps and EMA run outside the
    compiled forward and the G step toggles D's mode, so they would buy little and risk re-records.
    """
    for m in modules:
        m.compile(dynamic=False)


def build(cfg: ExperimentConfig, device: torch.device, bins: Optional[np.ndarray] = None) -> GAN:
    """G, D, their optimisers (``optim.*``) and the EMA of G (``train.ema_decay``), on ``device``;
    channels_last on CUDA (faster convolutions under bf16); G and D compiled per ``train.compile``.
    Seed torch first for repeatable weights."""
    G = build_generator(cfg.model, bins).to(device)
    D = PatchDiscriminator.from_config(cfg.model).to(device)
    if device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_g = adam(G.parameters(), cfg.optim.lr_g, cfg.optim, device)
    opt_d = adam(D.parameters(), cfg.optim.lr_d, cfg.optim, device)
    ema = EMA(G, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None  # an eager copy
    if compile_enabled(cfg, device):
        compile_modules(G, D)
    return GAN(cfg, G, D, opt_g, opt_d, ema)
