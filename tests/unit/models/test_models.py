"""The cGAN in pure torch: shapes, gradients, receptive field, noise, losses, steps, learning."""

import dataclasses
import re

import numpy as np
import pytest
import torch

from models import GENERATOR_PRESETS, Generator, GeneratorConfig, PatchDiscriminator, generator_config, losses
from models.generator import ABPredictor
from pipeline.config import ExperimentConfig
from pipeline.core import color
from pipeline.gan import batches, cgan

BINS = color.ab_bins()
Q = len(BINS)


def tiny(**kw):
    torch.manual_seed(0)
    return Generator(BINS, generator_config("tiny", **kw))


# (1, 1): one pixel works too
@pytest.mark.parametrize("hw", [(32, 32), (67, 93), (8, 8), (120, 40), (1, 1), (17, 255)])
def test_generator_shapes_any_size(hw):
    g = tiny().eval()
    H, W = hw
    logits, ab = g(torch.randn(2, 1, H, W))
    s = g.logits_stride
    assert logits.shape == (2, Q, -(-H // s), -(-W // s))
    assert ab.shape == (2, 2, H, W)
    assert torch.isfinite(ab).all() and ab.abs().max() <= 130


def test_preset_parameter_counts():
    counts = {p: sum(x.numel() for x in Generator(BINS, c).parameters()) for p, c in GENERATOR_PRESETS.items()}
    assert counts["tiny"] < 300_000
    assert 5e6 < counts["small"] < 20e6
    assert 20e6 < counts["full"] < 60e6
    assert sum(p.numel() for p in Generator(BINS).parameters()) == counts["full"], "the defaults are the full preset"
    d = sum(p.numel() for p in PatchDiscriminator().parameters())
    assert 2e6 < d < 4e6  # pix2pix's 70x70 PatchGAN is 2.77M


def test_from_config_follows_preset_and_overrides():
    cfg = ExperimentConfig.from_dict({"model": {"preset": "tiny", "base_channels": 4, "temperature": 0.5}})
    g = Generator.from_config(cfg.model, BINS)
    assert g.temperature == 0.5 and g.stem[0].out_channels == 4
    assert torch.equal(g.bins, torch.tensor(BINS, dtype=torch.float32)), "the bins given are the classes"
    d = PatchDiscriminator.from_config(cfg.model)
    assert d(torch.zeros(1, 1, 64, 64), torch.zeros(1, 2, 64, 64)).shape[1] == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"logits_stride": 3}, "logits_stride must be a power of 2, got 3"),
        ({"depth": 2, "logits_stride": 8}, "logits_stride must be <= 2**depth = 4, got 8"),
        ({"norm": "layer"}, "norm must be group, batch, instance or none, got 'layer'"),
        ({"base_channels": 0}, "base_channels must be in [1, 1024], got 0"),
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
    ],
)
def test_a_shape_that_cannot_be_built_is_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Generator(BINS, GeneratorConfig(**changes))


def test_generator_config_is_a_preset_with_overrides():
    tiny_preset = GENERATOR_PRESETS["tiny"]
    assert generator_config("tiny", depth=None, dilations=[1, 2]) == dataclasses.replace(tiny_preset, dilations=(1, 2))
    with pytest.raises(ValueError, match="preset must be full, small, tiny, got 'huge'"):
        generator_config("huge")
    with pytest.raises(ValueError, match="unknown generator keys"):
        generator_config("tiny", width=3)


def test_gradients_reach_every_generator_parameter():
    g = tiny().train()
    logits, ab = g(torch.randn(2, 1, 32, 32))
    (logits.square().mean() + ab.square().mean()).backward()
    named = dict(g.named_parameters())
    gammas = [n for n in named if n.endswith("gamma")]
    assert gammas and all(named[n].grad.abs() > 0 for n in gammas), "attention gain must learn from 0"
    # With gamma = 0 the q/k/v projections are still silent; once it moves, everything learns.
    for n in gammas:
        named[n].data.fill_(0.5)
    g.zero_grad()
    logits, ab = g(torch.randn(2, 1, 32, 32))
    (logits.square().mean() + ab.square().mean()).backward()
    dead = [n for n, p in named.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"no gradient: {dead}"


def test_attention_gives_global_receptive_field():
    def far_effect(attention_levels):
        # norm="none": GroupNorm's image-wide statistics would otherwise link far pixels too
        g = tiny(attention_levels=attention_levels, dropout=0.0, norm="none").double().eval()
        for m in g.modules():
            if hasattr(m, "gamma"):
                m.gamma.data.fill_(1.0)
        x = torch.randn(1, 1, 256, 256, dtype=torch.float64)
        y = x.clone()
        y[..., :8, :8] += 3.0  # change a far corner
        with torch.no_grad():
            a, b = g(x)[0], g(y)[0]
        return (a[..., -1, -1] - b[..., -1, -1]).abs().max().item()

    assert far_effect(()) == 0.0, "without attention the opposite corner is out of reach"
    assert far_effect((3,)) > 1e-10  # float64: far above rounding noise


def test_dropout_is_noise_in_training_only_unless_asked():
    g = tiny()
    x = torch.randn(1, 1, 32, 32)
    g.train()
    assert not torch.allclose(g(x)[1], g(x)[1])
    g.eval()
    assert torch.equal(g(x)[1], g(x)[1])
    g.set_dropout_at_inference(True)
    assert not torch.allclose(g(x)[1], g(x)[1])


def test_temperature_changes_saturation():
    g = tiny().eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        logits, _ = g(x)
        logits = logits * 5  # a peaked distribution
        vivid, dull = g.decode(logits, 0.1), g.decode(logits, 1.0)
    assert vivid.norm(dim=1).mean() > dull.norm(dim=1).mean()


def test_forward_and_predictor_honour_the_temperature_argument():
    g = tiny().eval()
    with torch.no_grad():
        g.head.bias.copy_(torch.linspace(-3, 3, g.num_bins))  # peaked logits, non-zero mean ab
        x = torch.randn(1, 1, 32, 32)
        a, b = g(x, 0.1)[1], g(x, 1.0)[1]
        assert not torch.allclose(a, b)
        assert torch.allclose(a, g(x, 0.1)[1])
        assert torch.allclose(ABPredictor(g, 0.1)(x), a)
        assert torch.allclose(g(x)[1], g(x, g.temperature)[1])


def test_rebalanced_ce_hand_computation():
    torch.manual_seed(1)
    logits = torch.randn(1, 4, 1, 2)  # Q=4, two pixels
    # pixel 0: 0.7 on bin 1, 0.3 on bin 2; pixel 1: 0.6 on bin 3, 0.4 on bin 0
    idx = torch.tensor([[[[1, 2], [3, 0]]]])  # (B,h,w,k), nearest first
    w = torch.tensor([[[[0.7, 0.3], [0.6, 0.4]]]])
    cw = torch.tensor([0.5, 2.0, 1.0, 3.0])
    logp = torch.log_softmax(logits, 1)[0, :, 0]  # (Q, 2 pixels)
    ce0 = -(0.7 * logp[1, 0] + 0.3 * logp[2, 0]) * 2.0
    ce1 = -(0.6 * logp[3, 1] + 0.4 * logp[0, 1]) * 3.0
    assert torch.allclose(losses.rebalanced_ce(logits, (idx, w), cw), (ce0 + ce1) / 2)
    # unit weights = plain soft cross-entropy
    plain = (ce0 / 2.0 + ce1 / 3.0) / 2
    assert torch.allclose(losses.rebalanced_ce(logits, (idx, w), torch.ones(4)), plain)
    assert torch.allclose(losses.rebalanced_ce(logits, (idx, w)), plain)
    # masking an image removes it
    two = torch.cat([logits, logits])
    masked = losses.rebalanced_ce(two, (torch.cat([idx, idx]), torch.cat([w, w])), cw, mask=torch.tensor([1.0, 0.0]))
    assert torch.allclose(masked, (ce0 + ce1) / 2)


def test_gan_losses():
    x = torch.tensor([[2.0, -0.5]])
    assert torch.allclose(losses.gan_loss(x, True, "hinge"), torch.tensor((0 + 1.5) / 2))
    assert torch.allclose(losses.gan_loss(x, False, "hinge"), torch.tensor((3 + 0.5) / 2))
    assert torch.allclose(losses.gan_loss(x, True, "hinge", for_discriminator=False), -x.mean())
    assert torch.allclose(losses.gan_loss(x, True, "lsgan"), ((x - 1) ** 2).mean())
    assert torch.allclose(losses.gan_loss(x, False, "bce"), torch.nn.functional.softplus(x).mean())
    assert losses.gan_loss(x.bfloat16(), True, "bce").dtype == torch.float32
    with pytest.raises(ValueError):
        losses.gan_loss(x, True, "wgan")


def _batch(seed=0, n=2, size=32):
    rng = np.random.default_rng(seed)
    rgb = torch.from_numpy(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    return batches.batch_from_rgb(rgb, logits_stride=2)


def test_batch_from_rgb_matches_colour_core():
    rgb = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    b = batches.batch_from_rgb(rgb, logits_stride=2)
    lab = color.rgb_to_lab(rgb.numpy())
    assert np.allclose(b["L"][:, 0].numpy(), lab[..., 0] / 50 - 1, atol=1e-4)
    assert np.allclose(b["ab"].permute(0, 2, 3, 1).numpy(), lab[..., 1:], atol=1e-3)
    idx, w = b["target"]
    assert idx.shape == (2, 4, 4, 5) and torch.allclose(w.sum(-1), torch.ones(2, 4, 4))
    grey = torch.full((1, 8, 8, 3), 128, dtype=torch.uint8)
    assert batches.batch_from_rgb(grey, 2)["colour_mask"].item() == 0.0


def test_batch_from_lab_reads_shards_like_photos():
    """A prepared-shard batch (stored L, ab) gives the step what the photo itself gives, up to the
    storage rounding; ``step_batch`` picks the reader by the batch's keys."""
    rgb = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    lab = color.rgb_to_lab_torch(rgb)  # (B,H,W,3)
    stored = {"L": color.L_to_u8(lab[..., 0]), "ab": color.ab_to_i8(lab[..., 1:])}
    from_rgb, from_lab = batches.step_batch({"rgb": rgb}, 2), batches.step_batch(stored, 2)
    assert (from_rgb["L"] - from_lab["L"]).abs().max() < 0.01  # L/50: 0.2 L units of rounding
    assert (from_rgb["ab"] - from_lab["ab"]).abs().max() <= 0.5 + 1e-4
    assert torch.equal(from_rgb["colour_mask"], from_lab["colour_mask"])


def test_d_and_g_steps_touch_only_their_own_parameters():
    exp = ExperimentConfig.from_dict(
        {
            "model": {"preset": "tiny", "d_base_channels": 8, "d_layers": 2},
            "loss": {"lambda_adv": 1.0, "lambda_l1": 1.0},
            "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
        }
    )
    torch.manual_seed(0)
    gan = cgan.build(exp, torch.device("cpu"))
    G, D = gan.G, gan.D
    batch = _batch()
    w = torch.ones(Q)

    def snap(m):
        return {k: v.clone() for k, v in m.state_dict().items()}

    g0, d0 = snap(G), snap(D)
    out = gan.d_step(batch)
    assert set(out) == {"d_loss", "d_real", "d_fake"} and all(isinstance(v, float) for v in out.values())
    assert all(torch.equal(g0[k], v) for k, v in G.state_dict().items()), "D step changed G"
    assert any(not torch.equal(d0[k], v) for k, v in D.state_dict().items())
    assert all(p.grad is None for p in G.parameters())
    g1, d1 = snap(G), snap(D)
    d_grads = [p.grad.clone() for p in D.parameters()]
    out = gan.g_step(batch, w)
    assert set(out) == {"g_loss", "g_adv", "g_ce", "g_l1"}
    changed = [k for k, v in D.state_dict().items() if not torch.equal(d1[k], v)]
    assert not changed, f"G step changed D (weights or buffers): {changed}"
    left = [g for g, p in zip(d_grads, D.parameters(), strict=True) if not torch.equal(g, p.grad)]
    assert not left, "G step left gradients on D"
    assert any(not torch.equal(g1[k], v) for k, v in G.state_dict().items())
    assert all(p.requires_grad for p in D.parameters()), "D must be trainable again after the G step"
    both = gan.train_step(batch, 0, w, sync=True)
    assert {"d_loss", "g_loss"} <= set(both)


def test_class_weights_tensor_from_prior(reference):
    prior = color.import_zhang_prior(reference / "prior_probs.npy", reference / "pts_in_hull.npy")
    cfg = ExperimentConfig().loss
    w = batches.class_weights_tensor(prior, cfg)
    assert w.shape == (Q,) and w.dtype == torch.float32
    unit = batches.class_weights_tensor(prior, ExperimentConfig.from_dict({"loss": {"rebalance": False}}).loss)
    assert torch.equal(unit, torch.ones(Q))


def test_bf16_autocast_and_channels_last_work():
    # CUDA is where this matters; CPU autocast runs the same dtype paths (convs, SDPA, softmax).
    g = tiny().to(memory_format=torch.channels_last).eval()
    x = torch.randn(2, 1, 40, 56).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref_logits, ref_ab = tiny().eval()(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, ab = g(x)
    assert ab.dtype == torch.float32, "ab is decoded in fp32 even under autocast"
    assert torch.isfinite(logits).all() and ab.shape == ref_ab.shape
    assert (ab - ref_ab).abs().mean() < 2.0  # bf16 noise, same colours
    D = PatchDiscriminator(base_channels=8, n_layers=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = losses.gan_loss(D(x, ab), True, "hinge")
    assert loss.dtype == torch.float32
