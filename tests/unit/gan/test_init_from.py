"""train.init_from: a run starts from another model's weights (G, its EMA, D when saved) with fresh
optimisers; the checkpoint's model section fixes the architecture."""

import numpy as np
import pytest
import torch

from models import unwrap
from pipeline.config import ExperimentConfig
from pipeline.gan import batches, cgan, checkpoint, model_ref
from pipeline.train.trainer import with_model_of

TINY = {"model": {"preset": "tiny", "d_base_channels": 8, "d_layers": 2}, "loss": {"lambda_adv": 0.1}}


def gan(seed: int, cfg=None) -> cgan.GAN:
    torch.manual_seed(seed)
    return cgan.build(cfg or ExperimentConfig.from_dict(TINY), torch.device("cpu"))


def trained(seed: int = 0) -> cgan.GAN:
    g = gan(seed)
    rgb = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    b = batches.batch_from_rgb(rgb, logits_stride=2)
    for i in range(3):
        g.train_step(b, i, torch.ones(g.G.num_bins))
    return g


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


def test_training_checkpoint_starts_g_ema_and_d_with_fresh_optimisers(tmp_path):
    src = trained()
    checkpoint.save(str(tmp_path), src, step=3, epoch=0, config=src.cfg.to_dict())
    init, config, shown = model_ref.load_init(str(tmp_path))
    dst = gan(seed=1)
    assert not same(dst.G, src.G)
    assert checkpoint.apply_init(dst, init) is True
    assert same(dst.G, src.G) and same(dst.D, src.D)
    assert same(dst.ema.module, src.ema.module) and not same(dst.ema.module, src.G)  # the EMA, not raw G
    assert dst.opt_g.state_dict()["state"] == {} and dst.opt_d.state_dict()["state"] == {}
    assert config["model"]["preset"] == "tiny" and shown == str(tmp_path)


def test_generator_checkpoint_in_fp16_starts_g_and_leaves_d_fresh(tmp_path):
    src = trained()
    served = src.generator()
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in served.state_dict().items()}
    torch.save({"generator": half, "step": 3, "epoch": 0}, tmp_path / "state.pt")
    (tmp_path / "config.json").write_text(__import__("json").dumps(src.cfg.to_dict()))
    init, _, _ = model_ref.load_init(str(tmp_path))
    dst = gan(seed=1)
    d_before = {k: v.clone() for k, v in unwrap(dst.D).state_dict().items()}
    assert checkpoint.apply_init(dst, init) is False
    assert all(torch.equal(d_before[k], v) for k, v in unwrap(dst.D).state_dict().items())
    for k, v in dst.G.state_dict().items():
        assert v.dtype == served.state_dict()[k].dtype  # cast back to the model's dtype
        torch.testing.assert_close(v.float(), served.state_dict()[k].float(), atol=2e-3, rtol=1e-3)
    assert same(dst.ema.module, dst.G)


def test_the_checkpoint_fixes_the_shape_and_the_run_keeps_its_temperature_and_dropout():
    asked = ExperimentConfig.from_dict({"model": {"preset": "small", "temperature": 0.5, "dropout": 0.1}})
    shipped = ExperimentConfig.from_dict({"model": {**TINY["model"], "temperature": 0.85}}).to_dict()
    got = with_model_of(asked, shipped)
    assert got.model.preset == "tiny" and got.model.d_base_channels == 8 and got.train == asked.train
    assert (got.model.temperature, got.model.dropout) == (0.5, 0.1)


def test_weights_that_do_not_fit_their_config_are_refused_on_the_driver(tmp_path):
    src = trained()
    checkpoint.save(str(tmp_path), src, step=3, epoch=0, config=src.cfg.to_dict())
    wrong = ExperimentConfig.from_dict({"model": {"preset": "small"}}).to_dict()
    (tmp_path / "config.json").write_text(__import__("json").dumps(wrong))
    with pytest.raises(model_ref.ModelNotFound, match="do not fit"):
        model_ref.load_init(str(tmp_path))


def test_missing_reference_is_one_clear_error(tmp_path):
    with pytest.raises(model_ref.ModelNotFound, match="not found"):
        model_ref.load_init(str(tmp_path / "nothing"))
    (tmp_path / "state.pt").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(model_ref.ModelNotFound, match="not a colorize checkpoint"):
        model_ref.load_init(str(tmp_path))


def test_the_ema_averages_batchnorm_statistics_and_copies_counts():
    from models import EMA

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    ema = EMA(net, decay=0.9)
    ema.updates = 1000  # past the warm-up: the rate is the decay
    net.train()
    net(torch.randn(8, 1, 8, 8) * 5 + 3)
    before = ema.module[1].running_mean.clone()
    ema.update(net)
    live = net[1].running_mean
    torch.testing.assert_close(ema.module[1].running_mean, before + 0.1 * (live - before))
    assert int(ema.module[1].num_batches_tracked) == int(net[1].num_batches_tracked) == 1
