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


# ----------------------------------------------------------------------------- fine-tuning that only improves


def test_a_fine_tune_keeps_the_starting_models_temperature_and_scale_unless_the_run_sets_them():
    start = ExperimentConfig.from_dict({"model": {**TINY["model"], "temperature": 0.85}, "data": {"resize": 128}})
    run = ExperimentConfig.from_dict({"model": {"preset": "small"}})  # temperature 0.38 and resize 256 by default
    got = with_model_of(run, start.to_dict(), given=frozenset())
    assert (got.model.temperature, got.data.resize) == (0.85, 128)
    asked = run.replace({"model.temperature": 0.5, "data.resize": 192})
    got = with_model_of(asked, start.to_dict(), given=frozenset({"model.temperature", "data.resize"}))
    assert (got.model.temperature, got.data.resize) == (0.5, 192)


def test_the_average_of_a_fine_tune_goes_on_from_the_trained_weights_at_full_decay(tmp_path):
    """After init_from, the EMA (what validation, checkpoints and infer use) moves by (1 - decay)
    of G's change per step, not by the warm-up's ~80 % that made a few small-batch steps of the
    live generator the shipped result."""
    src = trained()
    checkpoint.save(str(tmp_path), src, step=3, epoch=0, config=src.cfg.to_dict())
    init, _, _ = model_ref.load_init(str(tmp_path))
    dst = gan(seed=1)
    checkpoint.apply_init(dst, init)
    assert dst.ema.rate() == pytest.approx(dst.cfg.train.ema_decay)
    before = {k: v.clone() for k, v in dst.ema.module.state_dict().items() if v.is_floating_point()}
    g_before = {k: v.clone() for k, v in dst.G.state_dict().items() if v.is_floating_point()}
    rgb = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    dst.train_step(batches.batch_from_rgb(rgb, logits_stride=2), 0, torch.ones(dst.G.num_bins))
    g_after = dst.G.state_dict()
    for k, v in dst.ema.module.state_dict().items():
        if k in before:
            moved, g_moved = (v - before[k]).abs().max(), (g_after[k] - g_before[k]).abs().max()
            assert moved <= (1 - dst.cfg.train.ema_decay) * g_moved + 1e-6, k


def test_batchnorm_statistics_are_frozen_when_fine_tuning_on_small_batches():
    cfg = ExperimentConfig.from_dict(
        {"model": {**TINY["model"], "norm": "batch"}, "train": {"batch_size": 2, "init_from": "shipped"}}
    )
    assert cgan.freezes_batchnorm(cfg)
    assert not cgan.freezes_batchnorm(cfg.replace({"train.batch_size": 16}))
    assert not cgan.freezes_batchnorm(cfg.replace({"train.init_from": None}))  # from scratch: BN learns
    assert cgan.freezes_batchnorm(cfg.replace({"train.batch_size": 16, "train.freeze_bn": "on"}))
    g = gan(0, cfg)
    bns = [m for m in g.G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    stats = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
    rgb = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    g.train_step(batches.batch_from_rgb(rgb, logits_stride=2), 0, torch.ones(g.G.num_bins))
    for m, (mean, var) in zip(bns, stats, strict=True):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
    assert g.G.training  # the rest of G trains (dropout on)


def test_the_discriminator_learns_before_the_generator_hears_from_it():
    cfg = ExperimentConfig.from_dict({**TINY, "loss": {"lambda_adv": 0.1, "adv_warmup_steps": 600}})
    g = gan(0, cfg)
    assert g.adv_scale(0) == 0 and not g.d_learns(0)
    start = 600 - cgan.D_LEAD_STEPS
    assert not g.d_learns(start - 1) and g.adv_scale(start - 1) == 0  # the cross-entropy alone before
    assert g.d_learns(start) and g.adv_scale(start) == 0  # D learns first, G hears nothing yet
    assert g.adv_scale(500) == 0.5 and g.adv_scale(600) == 1
    short = gan(0, cfg.replace({"loss.adv_warmup_steps": 20}))
    assert short.d_learns(0)  # a warm-up shorter than the lead: D trains from the first step
    d_before = {k: v.clone() for k, v in unwrap(short.D).state_dict().items()}
    rgb = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    stats = short.train_step(batches.batch_from_rgb(rgb, logits_stride=2), 0, torch.ones(short.G.num_bins))
    assert "d_loss" in stats and float(stats["g_adv"]) == 0.0
    assert any(not torch.equal(d_before[k], v) for k, v in unwrap(short.D).state_dict().items())


def test_a_resume_point_carries_the_discriminator_and_a_new_stage_starts_from_it(tmp_path):
    """A long training in stages: each commits its generator and D in fp16 (the shipped form plus
    D), the next starts from both with train.init_from."""
    src = trained()
    size = checkpoint.save_shipped(str(tmp_path), src.generator(), src.cfg.to_dict(), {"step": 3}, D=unwrap(src.D))
    assert size == (tmp_path / "state.pt").stat().st_size
    init, _, _ = model_ref.load_init(str(tmp_path))
    dst = gan(seed=1)
    assert checkpoint.apply_init(dst, init) is True  # D loaded, cast back from fp16
    for k, v in unwrap(dst.D).state_dict().items():
        torch.testing.assert_close(v.float(), unwrap(src.D).state_dict()[k].float(), atol=2e-3, rtol=1e-3)


# ----------------------------------------------------------------------------- hint channels that learn


def hint_gan(seed: int, gain: float) -> cgan.GAN:
    return gan(seed, ExperimentConfig.from_dict({**TINY, "model": {**TINY["model"], "hints": True, "hint_gain": gain}}))


def some_hints(seed: int = 0) -> torch.Tensor:
    """(2,3,32,32): a few true-looking ab points and their mask."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(2, 1, 32, 32, generator=g) < 0.05).float()
    return torch.cat([(torch.rand(2, 2, 32, 32, generator=g) - 0.5) * mask, mask], 1)


def test_weights_learnt_at_one_hint_gain_start_a_run_at_another_computing_the_same(tmp_path):
    src = hint_gan(0, gain=1.0)
    with torch.no_grad():
        unwrap(src.G).stem[0].weight[:, 1:] = torch.randn_like(unwrap(src.G).stem[0].weight[:, 1:]) * 0.05
    src.ema.module.load_state_dict(unwrap(src.G).state_dict())
    checkpoint.save(str(tmp_path), src, step=3, epoch=0, config=src.cfg.to_dict())
    init, config, _ = model_ref.load_init(str(tmp_path))
    assert init[checkpoint.HINT_GAIN_KEY] == 1.0
    asked = ExperimentConfig.from_dict({**TINY, "model": {**TINY["model"], "hints": True, "hint_gain": 10.0}})
    assert with_model_of(asked, config, given=frozenset()).model.hint_gain == 1.0  # the checkpoint's unless set
    assert with_model_of(asked, config, given=frozenset({"model.hint_gain"})).model.hint_gain == 10.0
    dst = hint_gan(1, gain=10.0)
    checkpoint.apply_init(dst, init)
    L, h = torch.rand(2, 1, 32, 32) * 2 - 1, some_hints()
    with torch.no_grad():
        for a, b in ((unwrap(src.G), unwrap(dst.G)), (src.ema.module, dst.ema.module)):
            a.eval(), b.eval()
            torch.testing.assert_close(a(L, hints=h)[1], b(L, hints=h)[1], atol=1e-4, rtol=1e-4)
    stem = unwrap(dst.G).stem[0].weight
    torch.testing.assert_close(stem[:, 1:] * 10, unwrap(src.G).stem[0].weight[:, 1:])


def test_the_hint_gain_is_the_hint_weights_learning_rate_under_adam():
    """Adam moves every weight by about lr per step, whatever its gradient's size: hint weights that
    start at zero can reach only steps x lr. Ten times the gain: ten times the change in what the
    hint channels contribute after the same steps."""
    L, h = torch.rand(2, 1, 32, 32) * 2 - 1, some_hints()
    moved = {}
    for gain in (1.0, 10.0):
        g = hint_gan(0, gain)
        G = unwrap(g.G)
        opt = torch.optim.Adam([G.stem[0].weight], lr=1e-3)
        for _ in range(5):
            opt.zero_grad()
            G(L, hints=h)[0].square().mean().backward()
            opt.step()
        moved[gain] = (G.stem[0].weight[:, 1:] * gain).abs().mean().item()  # what the hint inputs are multiplied by
    assert moved[1.0] > 0 and 7 < moved[10.0] / moved[1.0] < 13, moved


def test_export_with_the_discriminator_makes_a_resume_point_the_next_stage_starts_from(tmp_path, capsys):
    """``colorize export --ship DIR --with-discriminator`` from a training checkpoint: the served G and
    D in fp16, which ``train.init_from`` loads whole; a folder without D is refused in one line."""
    from pipeline import cli

    src = trained()
    run = tmp_path / "ckpt"
    checkpoint.save(str(run), src, step=3, epoch=0, config=src.cfg.to_dict())
    point = tmp_path / "stage-1"
    assert cli.main(["export", "--model", str(run), "--ship", str(point), "--with-discriminator"]) == 0
    assert "discriminator" in torch.load(point / "state.pt", weights_only=True)
    init, _, _ = model_ref.load_init(str(point))
    dst = gan(seed=1)
    assert checkpoint.apply_init(dst, init) is True
    for k, v in unwrap(dst.D).state_dict().items():
        torch.testing.assert_close(v.float(), unwrap(src.D).state_dict()[k].float(), atol=2e-3, rtol=1e-3)
    capsys.readouterr()
    shipped_only = tmp_path / "shipped"
    assert cli.main(["export", "--model", str(point), "--ship", str(shipped_only)]) == 0  # G alone: no D
    assert "discriminator" not in torch.load(shipped_only / "state.pt", weights_only=True)
    capsys.readouterr()
    refused = ["export", "--model", str(shipped_only), "--ship", str(tmp_path / "x"), "--with-discriminator"]
    assert cli.main(refused) == 2
    err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("model: ")]
    assert len(err) == 1 and "holds no discriminator" in err[0], err
    assert not (tmp_path / "x").exists()


def test_export_says_which_temperature_validation_scored_the_checkpoint_at(tmp_path, capsys):
    """A checkpoint of a run that validated several temperatures records the one it scored best at;
    ``--ship`` keeps the model's own T unless told, and says so; ``--temperature`` ships it at that T."""
    from pipeline import cli

    src = trained()
    own = src.cfg.model.temperature
    run = tmp_path / "ckpt"
    checkpoint.save(str(run), src, step=3, epoch=0, config=src.cfg.to_dict(), meta={"val": {"temperature": 0.7}})
    capsys.readouterr()
    assert cli.main(["export", "--model", str(run), "--ship", str(tmp_path / "kept")]) == 0
    said = capsys.readouterr().out
    assert f"best at T 0.7; it keeps its model's T {own:g}" in said and "--temperature 0.7" in said
    assert model_ref.resolve_generator(str(tmp_path / "kept"))[0].temperature == own
    assert cli.main(["export", "--model", str(run), "--ship", str(tmp_path / "at-val"), "--temperature", "0.7"]) == 0
    assert "best at T" not in capsys.readouterr().out
    assert model_ref.resolve_generator(str(tmp_path / "at-val"))[0].temperature == 0.7
