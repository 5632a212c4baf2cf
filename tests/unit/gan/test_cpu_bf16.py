"""bf16 autocast on CPU (``train.amp``): the product's training step gives the losses of fp32.

Where the CPU multiplies bf16 in hardware (AMX, AVX512-BF16), ``train.amp=bf16`` gives ~2x the
fp32 step of the small and full presets (the shipped model's recipe asks for it).
bf16 keeps 8 bits of mantissa (~0.4 % per rounding), so losses are not equal
bit for bit; what must hold is that training follows the same path: the same batches from the
same weights give losses within 3 % at the first step and, over 40 steps of a GAN (where
rounding feeds back through Adam), a mean within 3 % and no step more than 10 % off. A wrong
autocast region (e.g. colour conversion or the annealed mean in bf16, a loss in bf16 that
should be fp32) moves them by tens of percent from the first batches.
"""

from __future__ import annotations

import pytest
import torch

from pipeline.config import ExperimentConfig
from pipeline.gan import batches, cgan

STEPS = 40
LOSSES = ("d_loss", "g_loss", "g_ce", "g_l1")


def _cfg(amp: str) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "model": {"preset": "tiny", "d_base_channels": 8, "d_layers": 2, "dropout": 0},
            "loss": {"lambda_adv": 0.1, "lambda_l1": 1.0, "adv_warmup_steps": 0},
            "train": {"amp": amp, "compile": "off"},
        }
    )


def _losses(amp: str):
    torch.manual_seed(0)
    gan = cgan.build(_cfg(amp), torch.device("cpu"))
    data = torch.Generator().manual_seed(1)
    w = torch.ones(gan.G.num_bins)
    out = []
    for i in range(STEPS):
        rgb = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8, generator=data)
        out.append(gan.train_step(batches.batch_from_rgb(rgb, gan.G.logits_stride), i, w, sync=True))
    return out


@pytest.fixture
def bf16_hardware(monkeypatch):
    """This CPU taken as one with bf16 hardware: the numerics of the bf16 path are the same where
    it is emulated, only slower."""
    monkeypatch.setattr(batches, "cpu_has_fast_bf16", lambda: True)


def test_amp_settings_on_cpu(bf16_hardware):
    cpu = torch.device("cpu")
    assert batches.uses_bf16(cpu, "bf16") and not batches.uses_bf16(cpu, "off")
    assert not batches.uses_bf16(cpu, "auto")  # a CPU run is fp32 unless asked
    assert batches.uses_bf16(torch.device("cuda"), "auto")


def test_bf16_asked_on_a_cpu_without_bf16_hardware_trains_in_fp32(monkeypatch, caplog):
    """Emulated bf16 is ~40x slower than fp32 (an AVX2 CPU): the step stays fp32 and the run says why, once."""
    monkeypatch.setattr(batches, "cpu_has_fast_bf16", lambda: False)
    batches._say_fp32_once.cache_clear()
    with caplog.at_level("WARNING"):
        assert not batches.uses_bf16(torch.device("cpu"), "bf16")
        assert not batches.uses_bf16(torch.device("cpu"), "bf16")
    said = [r.getMessage() for r in caplog.records if "no bf16 hardware" in r.getMessage()]
    assert len(said) == 1 and "fp32" in said[0]
    assert batches.uses_bf16(torch.device("cuda"), "bf16")  # GPUs are not affected


def test_bf16_step_matches_fp32_on_cpu(bf16_hardware):
    fp32, bf16 = _losses("off"), _losses("bf16")
    for k in LOSSES:
        e, b = [s[k] for s in fp32], [s[k] for s in bf16]
        assert abs(e[0] - b[0]) <= 0.03 * abs(e[0]), f"step 0 {k}: fp32 {e[0]} vs bf16 {b[0]}"
        mean_e, mean_b = sum(e) / STEPS, sum(b) / STEPS
        assert abs(mean_e - mean_b) <= 0.03 * abs(mean_e), f"{k}: mean fp32 {mean_e} vs bf16 {mean_b}"
        worst = max(abs(x - y) / max(abs(x), 1e-6) for x, y in zip(e, b, strict=True))
        assert worst <= 0.10, f"{k}: a step {worst:.1%} off"
        print(f"{k}: step 0 {e[0]:.4f} / {b[0]:.4f}, mean {mean_e:.4f} / {mean_b:.4f}, worst step {worst:.2%}")


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_the_step_really_runs_in_the_asked_precision(amp, bf16_hardware):
    torch.manual_seed(0)
    gan = cgan.build(_cfg(amp), torch.device("cpu"))
    seen = []
    hook = gan.G.register_forward_hook(lambda m, i, o: seen.append(o[0].dtype))
    rgb = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    gan.train_step(batches.batch_from_rgb(rgb, gan.G.logits_stride), 0, torch.ones(gan.G.num_bins))
    hook.remove()
    assert seen == [torch.bfloat16 if amp == "bf16" else torch.float32]  # the logits
