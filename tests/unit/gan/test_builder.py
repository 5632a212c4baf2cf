"""The one builder (G, D, optimisers, EMA of G), the EMA's life cycle (updated, checkpointed,
restored, served), and that training, Tune and the benches build through it."""

import re

import numpy as np
import pytest
import torch

from models import EMA
from pipeline.config import ExperimentConfig
from pipeline.gan import batches, cgan, checkpoint, model_ref, predict
from support import ROOT

TINY = {"model": {"preset": "tiny", "d_base_channels": 8, "d_layers": 2}}


def tiny_cfg(**sections) -> ExperimentConfig:
    d = {k: dict(v) for k, v in TINY.items()}
    for k, v in sections.items():
        d.setdefault(k, {}).update(v)
    return ExperimentConfig.from_dict(d)


def build(cfg, seed=0) -> cgan.GAN:
    torch.manual_seed(seed)
    return cgan.build(cfg, torch.device("cpu"))


def batch(seed=0):
    rgb = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    return batches.batch_from_rgb(rgb, logits_stride=2)


def train(gan: cgan.GAN, n: int, first_step: int = 0):
    w = torch.ones(gan.G.num_bins)
    for i in range(n):
        gan.train_step(batch(i), first_step + i, w)


def weights(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_build_follows_the_config():
    cfg = tiny_cfg(
        optim={"lr_g": 1e-3, "lr_d": 3e-3, "beta1": 0.8, "beta2": 0.95, "weight_decay": 1e-5}, train={"ema_decay": 0.99}
    )
    gan = build(cfg)
    assert gan.G.stem[0].out_channels == 8 and gan.D.net[0].out_channels == 8  # tiny preset, d_base_channels
    for opt, lr, model in ((gan.opt_g, 1e-3, gan.G), (gan.opt_d, 3e-3, gan.D)):
        group = opt.param_groups[0]
        assert (group["lr"], group["betas"], group["weight_decay"]) == (lr, (0.8, 0.95), 1e-5)
        assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}
    assert gan.ema.decay == 0.99 and gan.generator() is gan.ema.module
    assert not any(p.requires_grad for p in gan.ema.module.parameters()) and not gan.ema.module.training
    off = build(tiny_cfg(train={"ema_decay": 0.0}))
    assert off.ema is None and off.generator() is off.G


def test_train_step_updates_the_ema_towards_g():
    gan = build(tiny_cfg(train={"ema_decay": 0.999}))
    start = weights(gan.ema.module)
    train(gan, 3)
    assert gan.ema.updates == 3
    g, avg = dict(gan.G.named_parameters()), dict(gan.ema.module.named_parameters())
    moved = [k for k in avg if not torch.equal(avg[k], start[k])]
    assert moved, "the average must follow G"
    assert any(not torch.equal(avg[k], g[k]) for k in avg), "...without being G (it averages)"
    # one update is exactly avg + (1 - d) * (G - avg), d from the warm-up rule
    before, d = weights(gan.ema.module), gan.ema.rate()
    gan.ema.update(gan.G)
    k = "head.weight"
    assert torch.allclose(gan.ema.module.state_dict()[k], before[k] + (1 - d) * (g[k].detach() - before[k]), atol=1e-6)
    assert d == pytest.approx(min(0.999, 5 / 14))  # 4th update: (1 + 4) / (10 + 4)


def test_ema_rejects_decays_outside_0_1():
    with pytest.raises(ValueError):
        EMA(torch.nn.Linear(2, 2), 1.0)
    with pytest.raises(Exception, match="ema_decay"):
        tiny_cfg(train={"ema_decay": 1.0})


def test_checkpoint_keeps_and_restores_the_ema(tmp_path):
    cfg = tiny_cfg(train={"ema_decay": 0.9})
    gan = build(cfg)
    train(gan, 3)
    checkpoint.save(str(tmp_path), gan, step=3, epoch=0, config=cfg.to_dict())
    resumed = build(cfg, seed=1)  # other initial weights: everything must come from the checkpoint
    assert checkpoint.restore(str(tmp_path), resumed) == {"step": 3, "epoch": 0}
    assert same(weights(resumed.ema.module), weights(gan.ema.module)) and resumed.ema.updates == 3
    assert same(weights(resumed.G), weights(gan.G)) and same(weights(resumed.D), weights(gan.D))
    # resuming continues exactly as uninterrupted training would (same dropout draws)
    torch.manual_seed(7)
    train(gan, 2, first_step=3)
    torch.manual_seed(7)
    train(resumed, 2, first_step=3)
    assert same(weights(resumed.ema.module), weights(gan.ema.module))


def test_restoring_a_checkpoint_without_ema_starts_the_average_at_g(tmp_path):
    plain = build(tiny_cfg(train={"ema_decay": 0.0}))
    train(plain, 2)
    checkpoint.save(str(tmp_path), plain, step=2, epoch=0, config=plain.cfg.to_dict())
    with_ema = build(tiny_cfg(train={"ema_decay": 0.9}), seed=1)
    checkpoint.restore(str(tmp_path), with_ema)
    assert same(weights(with_ema.ema.module), weights(plain.G))


def test_infer_and_eval_use_the_ema_generator(tmp_path):
    """A training checkpoint serves its EMA weights, not G's: what model_ref hands to colorize
    infer, eval and export, and what a generator checkpoint of ``GAN.generator()`` holds."""
    cfg = tiny_cfg(train={"ema_decay": 0.9})
    gan = build(cfg)
    train(gan, 3)
    assert not same(weights(gan.G), weights(gan.ema.module))
    checkpoint.save(str(tmp_path / "ckpt"), gan, step=3, epoch=0, config=cfg.to_dict())
    G, info = model_ref.resolve_generator(str(tmp_path / "ckpt"))
    assert same(weights(G), weights(gan.ema.module)) and info["step"] == 3
    checkpoint.save_generator(str(tmp_path / "served"), gan.generator(), 3, 0, cfg.to_dict())
    assert same(weights(checkpoint.load_generator(str(tmp_path / "served"))), weights(gan.ema.module))
    photo = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    ours = predict.colorize(G, photo, None, None)
    with torch.no_grad():
        gan.ema.module.eval()
        expected = predict.colorize(gan.ema.module, photo, None, None)
        raw = predict.colorize(gan.G.eval(), photo, None, None)
    assert np.array_equal(ours, expected) and not np.array_equal(ours, raw)


# What may build the networks, their optimisers and the EMA: the builder alone (checkpoint
# rebuilds a served generator through cgan.build_generator). bench/quality.py's pix2pix
# baseline keeps its own published Adam settings; its networks are pix2pix's, not ours.
BUILDS = re.compile(r"\b(Generator|PatchDiscriminator|EMA)(\.from_config)?\(|torch\.optim\.Adam\(")


@pytest.mark.parametrize(
    "path",
    [
        "pipeline/train/trainer.py",
        "tune/sweep.py",
        "pipeline/gan/checkpoint.py",
        "bench/model.py",
        "bench/train_throughput.py",
        "bench/quality.py",
        "tests/e2e/test_learning.py",
    ],
)
def test_training_tune_and_benches_build_through_the_builder(path):
    source = (ROOT / path).read_text()
    if path == "bench/quality.py":  # the pix2pix baseline's own optimisers
        source = re.sub(r"def pix2pix_trainer.*?\n(?=def )", "", source, flags=re.S)
    assert not BUILDS.findall(source), f"{path} builds G/D/Adam/EMA itself: use pipeline.gan.cgan"
    assert "cgan" in source or path == "tune/sweep.py"  # sweep trains through train.launch
