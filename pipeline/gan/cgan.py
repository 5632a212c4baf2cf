"""The cGAN: G, D, their Adam optimisers and the EMA of G, built from a config by ``build``, and
its update, which the GAN object owns (``GAN.train_step``: D step, G step, EMA).

Training (``pipeline/train/trainer.py``, hence Tune), the benchmarks and the tests all build through
``build`` and train through ``GAN.train_step``, so what a benchmark measures is what
``pipeline/run.py`` ships. Pure torch, no Ray: the caller wraps G and D for DDP if it needs to.

The step is DDP-safe by design:
- the D step runs D once on concat(real, fake) (one forward per backward, as DDP expects) with G's
  output detached, so G's parameters get no gradient;
- the G step back-propagates through the *unwrapped* D with its parameters frozen and in eval
  mode: no DDP reducer is armed for D, no gradient lands on D, and spectral norm's power-iteration
  buffers are not advanced (they change only in the D step, where DDP broadcasts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from models import EMA, Generator, PatchDiscriminator, losses, unwrap
from pipeline.config import ExperimentConfig
from pipeline.core import color, hints
from pipeline.gan.batches import autocast


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
    moving average of G's weights (None when ``train.ema_decay`` is 0). ``hint_rng`` draws the
    simulated colour hints of a hint model's steps."""

    cfg: ExperimentConfig
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: Optional[EMA]
    hint_rng: Optional[np.random.Generator] = None
    frozen_bn: bool = False  # G's BatchNorm layers use and keep their running statistics (``freezes_batchnorm``)

    def generator(self) -> Generator:
        """The generator the product uses (validation, samples, serving, infer, eval): the EMA
        when it is on, else G itself; never a DDP wrapper."""
        return self.ema.module if self.ema is not None else unwrap(self.G)

    def _d_start(self) -> int:
        """The step D starts learning: the last ``D_LEAD_STEPS`` of ``loss.adv_warmup_steps`` (all of a shorter one)."""
        warm = self.cfg.loss.adv_warmup_steps
        return warm - min(warm, D_LEAD_STEPS)

    def adv_scale(self, step: int) -> float:
        """Weight of the adversarial term at ``step``: 0 (the cross-entropy alone) until D starts
        learning, then a ramp to 1 at the end of ``loss.adv_warmup_steps``: G hears from D in
        proportion to how long D has learnt (a fresh D's first opinions are noise)."""
        warm, start = self.cfg.loss.adv_warmup_steps, self._d_start()
        if warm == start:  # no ramp (no warm-up, or no lead): the whole term from the warm-up's end
            return 1.0 if step >= warm else 0.0
        return min(1.0, max(0.0, (step - start) / (warm - start)))

    def d_learns(self, step: int) -> bool:
        """Whether D trains at ``step``: from the start of the adversarial ramp (``adv_scale``)."""
        return self.cfg.loss.lambda_adv > 0 and step >= self._d_start()

    def train_mode(self) -> None:
        """G in training mode; its BatchNorm layers in eval mode when ``frozen_bn``."""
        self.G.train()
        if self.frozen_bn:
            for m in self.G.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def with_hints(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``batch`` plus "hints" (B,3,H,W) drawn from its true ab when G takes hints
        (``hints.sample_hints`` with ``train.hint_stop`` / ``hint_none``); unchanged otherwise."""
        if not unwrap(self.G).takes_hints or "hints" in batch:
            return batch
        if self.hint_rng is None:
            self.hint_rng = np.random.default_rng(int(torch.initial_seed()) % 2**63)
        t = self.cfg.train
        return {**batch, "hints": hints.sample_hints(batch["ab"], self.hint_rng, t.hint_stop, t.hint_none)}

    def train_step(
        self,
        batch: Dict[str, torch.Tensor],
        step: int,
        class_weights: Optional[torch.Tensor],
        loss_scale: float = 1.0,
        sync: bool = False,
    ) -> Dict[str, float]:
        """One training step on a ``steps.step_batch`` batch: the D step and the G step sharing a
        single forward of G, then the EMA update. ``step`` is the number of steps before this one
        (the adversarial warm-up); ``loss_scale``: see ``d_step``; ``sync=False`` keeps the stats
        as device tensors (no host sync)."""
        adv_scale = self.adv_scale(step)
        batch = self.with_hints(batch)
        self.train_mode()
        with autocast(batch["L"].device, self.cfg.train.amp):
            out = self.G(batch["L"], hints=batch.get("hints"))
        stats = {}
        if self.d_learns(step):
            stats.update(self.d_step(batch, fake_ab=out[1], sync=sync, loss_scale=loss_scale))
        stats.update(self.g_step(batch, class_weights, out=out, adv_scale=adv_scale, sync=sync, loss_scale=loss_scale))
        if self.ema is not None:
            self.ema.update(self.G)
        return stats

    def d_step(
        self,
        batch: Dict[str, torch.Tensor],
        fake_ab: Optional[torch.Tensor] = None,
        sync: bool = True,
        loss_scale: float = 1.0,
    ) -> Dict[str, float]:
        """One discriminator update: real (L, ab) vs fake (L, G(L)). Touches only D's parameters.

        ``fake_ab``: G's ab from a forward already run on this batch. ``loss_scale`` multiplies the
        loss before backward (0: a filler step that only keeps DDP's collectives in step on a
        worker whose data ran out)."""
        L, ab = batch["L"], batch["ab"]
        amp, gan_kind = self.cfg.train.amp, self.cfg.loss.gan
        if fake_ab is None:
            with torch.no_grad(), autocast(L.device, amp):
                fake_ab = self.G(L, hints=batch.get("hints"))[1]
        self.D.train()
        with autocast(L.device, amp):
            logits = self.D(torch.cat([L, L]), torch.cat([ab, fake_ab.detach().to(ab.dtype)]))  # (2B,1,h,w)
            real, fake = logits.chunk(2)
            loss_real = losses.gan_loss(real, True, gan_kind)
            loss_fake = losses.gan_loss(fake, False, gan_kind)
            loss = 0.5 * (loss_real + loss_fake)
        self.opt_d.zero_grad(set_to_none=True)
        (loss * loss_scale).backward()
        _clip(self.D.parameters(), self.cfg.optim.grad_clip)
        self.opt_d.step()
        return _floats({"d_loss": loss, "d_real": real.float().mean(), "d_fake": fake.float().mean()}, sync)

    def g_step(
        self,
        batch: Dict[str, torch.Tensor],
        class_weights: Optional[torch.Tensor],
        out: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        adv_scale: float = 1.0,
        sync: bool = True,
        loss_scale: float = 1.0,
    ) -> Dict[str, float]:
        """One generator update: λ_adv·adv + λ_ce·rebalanced CE + λ_l1·L1. Touches only G's parameters.

        ``out``: G's (logits, ab) from a forward already run on this batch (saves a second forward).
        ``adv_scale`` multiplies λ_adv (warm-up of the adversarial term).
        """
        L, loss_cfg = batch["L"], self.cfg.loss
        mask = batch["colour_mask"] if loss_cfg.mask_grey else None
        self.train_mode()
        lambda_adv = loss_cfg.lambda_adv * adv_scale
        with autocast(L.device, self.cfg.train.amp):
            logits, ab = self.G(L, hints=batch.get("hints")) if out is None else out
            ce = losses.rebalanced_ce(logits, batch["target"], class_weights, mask)
            l1 = losses.l1(ab, batch["ab"], mask)
            adv = self._adversarial(L, ab) if lambda_adv > 0 else torch.zeros((), device=L.device)
            total = losses.generator_total(adv, ce, l1, lambda_adv, loss_cfg.lambda_ce, loss_cfg.lambda_l1)
        self.opt_g.zero_grad(set_to_none=True)
        (total * loss_scale).backward()
        _clip(self.G.parameters(), self.cfg.optim.grad_clip)
        self.opt_g.step()
        return _floats({"g_loss": total, "g_adv": adv, "g_ce": ce, "g_l1": l1}, sync)

    def _adversarial(self, L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """G's adversarial loss through the unwrapped D, frozen and in eval mode for the call."""
        d = unwrap(self.D)
        was_training = d.training
        d.eval().requires_grad_(False)
        try:
            return losses.gan_loss(d(L, ab), True, self.cfg.loss.gan, for_discriminator=False)
        finally:
            d.requires_grad_(True).train(was_training)


# D trains over the last this many steps of the adversarial warm-up (all of a shorter one), while
# the adversarial term's weight ramps in from 0.
D_LEAD_STEPS = 200
# Per-worker batches below this many photos give BatchNorm statistics too noisy to train on or to
# keep (a fine-tune on batches of 2 replaced a trained model's statistics within ~20 steps).
BN_MIN_BATCH = 8


def freezes_batchnorm(cfg: ExperimentConfig) -> bool:
    """``train.freeze_bn``: on, off, or auto = when a run starts from trained weights
    (``train.init_from``) with per-worker batches under ``BN_MIN_BATCH`` photos."""
    mode = cfg.train.freeze_bn
    return mode == "on" or (mode == "auto" and bool(cfg.train.init_from) and cfg.train.batch_size < BN_MIN_BATCH)


def _clip(params, max_norm: Optional[float]) -> None:
    if max_norm:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


def _floats(d: Dict[str, torch.Tensor], sync: bool):
    return {k: float(v.detach()) for k, v in d.items()} if sync else {k: v.detach() for k, v in d.items()}


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


def record_rebalancing(gan: GAN, weights: torch.Tensor) -> None:
    """G and its average record the (Q,) class weights the run's cross-entropy trains them with:
    saved with every checkpoint, for decoding's ``model.prior_correction``."""
    for G in {id(m): m for m in (unwrap(gan.G), gan.generator())}.values():
        G.set_rebalance_weights(weights)


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
    return GAN(cfg, G, D, opt_g, opt_d, ema, frozen_bn=freezes_batchnorm(cfg))
