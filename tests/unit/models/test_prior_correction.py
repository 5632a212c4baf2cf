"""Prior correction: decoding divides the class-rebalancing weights a generator was trained with
back out of its distribution (``model.prior_correction``), the weights travel with its checkpoint,
and every command that decodes takes ``--prior-correction``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models import Generator, generator_config
from pipeline import cli
from pipeline.config import ConfigError, ExperimentConfig, check_prior_correction
from pipeline.core import color
from pipeline.gan import cgan, checkpoint, model_ref, predict
from pipeline.runtime import made_with
from pipeline.train.trainer import with_model_of

BINS = color.ab_bins()
Q = len(BINS)


def tiny(**kw) -> Generator:
    torch.manual_seed(0)
    return Generator(BINS, generator_config("tiny", **kw)).eval()


def weights() -> torch.Tensor:
    """Rebalancing weights of a real prior: rare, saturated bins weigh up to tens of times more."""
    prior = np.load(color_prior_path())
    return torch.tensor(color.prior_weights(prior, 0.5, 5.0), dtype=torch.float32)


def color_prior_path():
    from pipeline.data import priors

    return priors.resolve_prior_path("prior_probs.npy")


def test_full_correction_of_a_distribution_made_of_the_weights_decodes_the_uniform_mean():
    g = tiny().set_rebalance_weights(weights())
    logits = weights().log().view(1, Q, 1, 1) + 3.0  # p proportional to w: all of it is rebalancing
    g.prior_correction = 1.0
    ab = g.decode(logits, 1.0)  # (1,2,1,1)
    assert torch.allclose(ab[0, :, 0, 0], torch.tensor(BINS, dtype=torch.float32).mean(0), atol=1e-4)
    g.prior_correction = 0.0
    assert not torch.allclose(g.decode(logits, 1.0), ab, atol=1.0)


def test_the_correction_is_log_weights_times_a_subtracted_before_the_annealed_mean():
    g = tiny().set_rebalance_weights(weights())
    torch.manual_seed(1)
    logits = torch.randn(2, Q, 3, 4) * 3
    for a, T in ((0.3, 0.38), (1.0, 0.6)):
        g.prior_correction = a
        want = tiny().decode(logits - a * weights().log().view(1, Q, 1, 1), T)  # an uncorrected twin
        assert torch.allclose(g.decode(logits, T), want, atol=1e-5)


def test_the_correction_moves_colour_towards_the_common_bins_and_greys():
    g = tiny().set_rebalance_weights(weights())
    torch.manual_seed(2)
    logits = torch.randn(4, Q, 8, 8) * 2
    chroma = []
    for a in (0.0, 0.5, 1.0):
        g.prior_correction = a
        chroma.append(g.decode(logits, 0.38).norm(dim=1).mean().item())
    assert chroma[0] > chroma[1] > chroma[2]  # the rare bins are the saturated ones


def test_without_recorded_weights_it_changes_nothing_bit_for_bit():
    g = tiny()
    x = torch.randn(1, 1, 37, 53)
    with torch.no_grad():
        plain = g(x)[1]
        g.prior_correction = 0.7
        assert torch.equal(g(x)[1], plain)


def test_the_weights_are_saved_exactly_and_old_checkpoints_load_with_none(tmp_path):
    cfg = ExperimentConfig().replace({"model.preset": "tiny"})
    gan = cgan.build(cfg, torch.device("cpu"))
    cgan.record_rebalancing(gan, weights())
    assert torch.equal(gan.generator().rebalance_weights, weights())
    assert torch.equal(gan.G.rebalance_weights, weights())
    checkpoint.save_shipped(str(tmp_path / "m"), gan.generator(), cfg.to_dict())  # fp16 weights
    G = checkpoint.load_generator(str(tmp_path / "m"))
    assert torch.equal(G.rebalance_weights, weights())  # exact: not rounded to fp16
    old = {k: v for k, v in gan.generator().state_dict().items() if k != "rebalance_weights"}
    G = checkpoint.generator_from_state(old, cfg.to_dict())  # saved before generators recorded them
    assert torch.equal(G.rebalance_weights, torch.ones(Q))


def test_a_run_that_recorded_its_weights_keeps_them_when_it_restores_weights_saved_without_any():
    g = tiny().set_rebalance_weights(weights())
    old = {k: v for k, v in tiny().state_dict().items() if k != "rebalance_weights"}
    g.load_state_dict(old)  # a resume from a checkpoint of an earlier version
    assert torch.equal(g.rebalance_weights, weights())
    g.load_state_dict(tiny().state_dict())  # one that recorded its own: those
    assert torch.equal(g.rebalance_weights, torch.ones(Q))


def test_a_run_decodes_with_its_own_correction_not_that_of_the_model_it_starts_from():
    start = ExperimentConfig().replace({"model.preset": "tiny", "model.prior_correction": 0.3}).to_dict()
    run = ExperimentConfig().replace({"model.preset": "tiny"})
    for given in (None, frozenset({"train.epochs"}), frozenset({"model.prior_correction"})):
        assert with_model_of(run, start, given).model.prior_correction == 0.0
    asked = run.replace({"model.prior_correction": 0.1})
    assert with_model_of(asked, start, frozenset({"model.prior_correction"})).model.prior_correction == 0.1


def test_the_shipped_model_records_the_weights_of_its_training_prior():
    G, info = model_ref.resolve_generator("shipped")
    from pipeline.data import priors

    loss = info["config"]["loss"]  # the prior it was trained with, as its config names it in this checkout
    prior = np.load(priors.resolve_prior_path(loss["prior"]))
    want = color.prior_weights(prior, loss["prior_lambda"], loss["prior_sigma"])
    assert np.allclose(G.rebalance_weights.numpy(), want, rtol=1e-6)


@pytest.mark.parametrize("value", ["nan", "-0.1", "1.5", "x"])
def test_values_outside_0_to_1_are_refused_by_name(value):
    with pytest.raises(ConfigError, match="--prior-correction must be"):
        check_prior_correction(value, "--prior-correction")
    with pytest.raises(ValueError, match="prior_correction"):
        generator_config("tiny", prior_correction=float(value) if value != "x" else 2.0).check()


def _model_with_weights(tmp_path):
    cfg = ExperimentConfig().replace({"model.preset": "tiny"})
    G = tiny().set_rebalance_weights(weights())
    with torch.no_grad():  # all of its preference is the rebalancing: vivid as trained, the bins' mean without
        G.head.weight.zero_()
        G.head.bias.copy_(weights().log())
    folder = tmp_path / "model"
    checkpoint.save_generator(str(folder), G, step=3, epoch=0, config=cfg.to_dict())
    return folder


def test_infer_decodes_with_the_correction_given_and_records_it(tmp_path, capsys):  # the single-photo path
    folder = _model_with_weights(tmp_path)
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8)).save(photo)
    base = ["infer", str(photo), "--model", str(folder), "--size", "32"]
    assert cli.main([*base, "--output", str(tmp_path / "a.png")]) == 0
    assert cli.main([*base, "--prior-correction", "1", "--output", str(tmp_path / "b.png")]) == 0
    a, b = (color.rgb_to_lab(np.asarray(Image.open(tmp_path / n)))[..., 1:] for n in ("a.png", "b.png"))
    # undone, nothing is left of its preference: every pixel the uniform mean of the bins
    assert np.abs(np.median(b.reshape(-1, 2), 0) - BINS.mean(0)).max() < 2
    assert np.abs(np.median(a.reshape(-1, 2), 0) - BINS.mean(0)).max() > 3  # as trained: elsewhere
    settings = json.loads(Image.open(tmp_path / "b.png").info[made_with.KEY])
    assert settings["prior_correction"] == 1.0
    assert "prior_correction" not in json.loads(Image.open(tmp_path / "a.png").info[made_with.KEY])
    capsys.readouterr()
    assert cli.main([*base, "--prior-correction", "2", "--output", str(tmp_path / "c.png")]) == 2
    assert "--prior-correction must be in 0..1" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_a_model_without_weights_says_the_correction_changes_nothing(tmp_path, capsys):
    folder = _model_with_weights(tmp_path)
    state = torch.load(folder / "state.pt", weights_only=True)
    del state["generator"]["rebalance_weights"]  # as saved before generators recorded them
    torch.save(state, folder / "state.pt")
    photo = tmp_path / "p.png"
    Image.new("RGB", (24, 16), (90, 120, 30)).save(photo)
    base = ["infer", str(photo), "--model", str(folder)]
    assert cli.main([*base, "--output", str(tmp_path / "a.png")]) == 0
    assert cli.main([*base, "--prior-correction", "0.5", "--output", str(tmp_path / "b.png")]) == 0
    assert "records no class weights (trained before they were recorded" in capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


def test_export_ships_the_correction_as_the_models_own(tmp_path):
    folder = _model_with_weights(tmp_path)
    out = tmp_path / "shipped"
    assert cli.main(["export", "--model", str(folder), "--ship", str(out), "--prior-correction", "0.25"]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["prior_correction"] == 0.25
    assert "prior correction 0.25" in (out / "MODEL_CARD.md").read_text()
    G = checkpoint.load_generator(str(out))
    assert G.prior_correction == 0.25 and torch.equal(G.rebalance_weights, weights())
    # its results record the correction it decodes with, though no flag gave it
    photo = tmp_path / "p.png"
    Image.new("RGB", (24, 16), (90, 120, 30)).save(photo)
    assert cli.main(["infer", str(photo), "--model", str(out), "--output", str(tmp_path / "o.png")]) == 0
    assert json.loads(Image.open(tmp_path / "o.png").info[made_with.KEY])["prior_correction"] == 0.25


def test_the_palette_is_the_distribution_as_the_model_decodes_it(tmp_path):
    G = checkpoint.load_generator(str(_model_with_weights(tmp_path)))
    L = np.linspace(20, 80, 32 * 32, dtype=np.float32).reshape(32, 32)
    as_trained = predict.suggest_colours(G, L, 10, 10, size=32, k=3)
    G.prior_correction = 1.0  # its whole preference was the rebalancing: nothing is left
    undone = predict.suggest_colours(G, L, 10, 10, size=32, k=3)
    assert as_trained[0]["p"] > 1.1 / Q  # p proportional to w: the rarest bin first
    assert all(abs(s["p"] - 1 / Q) < 1e-4 for s in undone)  # p rounded to 4 places


def test_a_correction_given_per_call_decodes_as_the_model_would_with_it_as_its_own():
    """forward / predict_ab_batch / the palette take A per call (the service's per-request A); the
    model's own A stays as it was, and A outside 0..1 is refused."""
    g = tiny().set_rebalance_weights(weights())
    x = torch.linspace(-1, 1, 2 * 32 * 32).view(2, 1, 32, 32)
    with torch.no_grad():
        own = predict.predict_ab_batch(g, x, 0.5)
        per_call = predict.predict_ab_batch(g, x, 0.5, prior_correction=0.7)
        assert g.prior_correction == 0.0  # a per-call A never becomes the model's own
        g.prior_correction = 0.7
        as_own = predict.predict_ab_batch(g, x, 0.5)
        back_to_none = predict.predict_ab_batch(g, x, 0.5, prior_correction=0.0)
    assert torch.equal(per_call, as_own) and torch.equal(back_to_none, own)
    assert not torch.allclose(per_call, own, atol=0.5)
    L = np.linspace(20, 80, 32 * 32, dtype=np.float32).reshape(32, 32)
    assert predict.suggest_colours(g, L, 10, 10, size=32, k=3, prior_correction=0.0) != predict.suggest_colours(
        g, L, 10, 10, size=32, k=3
    )
    g.prior_correction = 0.0
    with pytest.raises(ValueError, match="prior_correction"):
        g(x, 0.5, prior_correction=1.5)


def test_only_unequal_weights_count_as_something_to_correct():
    """Equal weights, 1 or any other, shift every logit alike: the model says A changes nothing."""
    g = tiny()
    assert not g.corrects  # none recorded
    assert not g.set_rebalance_weights(torch.full((Q,), 3.7)).corrects
    assert g.set_rebalance_weights(weights()).corrects


def test_export_ship_records_the_class_weights_a_checkpoint_saved_before_them_was_trained_with(tmp_path, capsys):
    cfg = ExperimentConfig().replace({"model.preset": "tiny", "loss.prior_lambda": 0.25})
    old = tmp_path / "old"
    checkpoint.save_shipped(str(old), tiny(), cfg.to_dict())  # weights all 1: none recorded
    assert cli.main(["export", "--model", str(old), "--ship", str(tmp_path / "m")]) == 0
    assert "recorded those of its config's loss.prior, /" in capsys.readouterr().out, "the file, in full"
    G = checkpoint.load_generator(str(tmp_path / "m"))
    want = color.prior_weights(np.load(color_prior_path()), 0.25, cfg.loss.prior_sigma)
    assert G.corrects and np.allclose(G.rebalance_weights.numpy(), want, rtol=1e-6), "its config's lambda, not 0.5"
    # a checkpoint that recorded its own keeps them, and says nothing
    checkpoint.save_shipped(str(tmp_path / "new"), tiny().set_rebalance_weights(weights()), cfg.to_dict())
    assert cli.main(["export", "--model", str(tmp_path / "new"), "--ship", str(tmp_path / "n")]) == 0
    assert "class weights" not in capsys.readouterr().out
    assert torch.equal(checkpoint.load_generator(str(tmp_path / "n")).rebalance_weights, weights())
    # a prior that is not there: shipped as it was, and the user is told
    lost = tmp_path / "lost"
    checkpoint.save_shipped(str(lost), tiny(), cfg.replace({"loss.prior": str(tmp_path / "gone.npy")}).to_dict())
    assert cli.main(["export", "--model", str(lost), "--ship", str(tmp_path / "l")]) == 0
    assert "gone.npy cannot be read" in capsys.readouterr().out
    assert not checkpoint.load_generator(str(tmp_path / "l")).corrects
    # nor one that is not a .npy prior: told, not a traceback
    (tmp_path / "empty.npy").write_bytes(b"")
    checkpoint.save_shipped(str(lost), tiny(), cfg.replace({"loss.prior": str(tmp_path / "empty.npy")}).to_dict())
    assert cli.main(["export", "--model", str(lost), "--ship", str(tmp_path / "e")]) == 0
    assert "empty.npy is not a .npy prior" in capsys.readouterr().out


def test_export_of_an_older_checkpoint_at_a_prior_correction_applies_it(tmp_path, capsys):
    cfg = ExperimentConfig().replace({"model.preset": "tiny"})
    checkpoint.save_shipped(str(tmp_path / "old"), tiny(), cfg.to_dict())  # weights all 1: none recorded
    argv = ["export", "--model", str(tmp_path / "old"), "--ship", str(tmp_path / "m"), "--prior-correction", "0.4"]
    assert cli.main(argv) == 0
    said = capsys.readouterr()
    assert "changes nothing" not in said.err and "recorded those of its config's loss.prior" in said.out
    G = checkpoint.load_generator(str(tmp_path / "m"))
    assert G.corrects and G.prior_correction == pytest.approx(0.4)
