"""Colour hints: parsing and checking a user's points, the hint map, the hints training draws, the
hint generator (an L-only model widened to take hints computes the same), and a tiny hint model
that learns through ``GAN.train_step`` to follow them, used through infer and the MLflow model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models import Generator
from models.scaling import AB_SCALE
from pipeline import cli
from pipeline.apply import infer
from pipeline.config import ExperimentConfig
from pipeline.core import color, hints
from pipeline.core.hints import Hint, HintError
from pipeline.gan import batches, cgan, checkpoint, model_io, model_ref, predict
from pipeline.runtime import made_with
from pipeline.train.trainer import with_model_of

HINTED = {
    "model": {"preset": "tiny", "hints": True, "d_base_channels": 8, "d_layers": 2},
    "loss": {"lambda_adv": 0.0},
    "optim": {"lr_g": 3e-3},
    "train": {"hint_stop": 0.3, "hint_none": 0.2, "ema_decay": 0.0},
    "data": {"resize": 32, "crop": 32},
}


# -- parsing and checking


@pytest.mark.parametrize(
    "text, rgb",
    [("#aa3300", (170, 51, 0)), ("AA3300", (170, 51, 0)), ("#f0a", (255, 0, 170)), (" #000000 ", (0, 0, 0))],
)
def test_colours_parse(text, rgb):
    assert hints.parse_colour(text) == rgb


@pytest.mark.parametrize("text", ["red", "#12345", "#1234567", "#gg0000", "", None, 12])
def test_what_is_not_a_colour_is_refused_by_name(text):
    with pytest.raises(HintError, match="not a colour"):
        hints.parse_colour(text)


def test_flag_form_and_json_form_read_the_same():
    a = hints.parse_hint("10,20.5,#aa3300")
    (b,) = hints.hints_from_json('[{"x": 10, "y": 20.5, "color": "#aa3300"}]')
    assert a == b == Hint(10.0, 20.5, (170, 51, 0))
    assert hints.hints_from_json(hints.hints_to_json([a])) == [a]


@pytest.mark.parametrize(
    "doc, says",
    [
        ("not json", "not JSON"),
        ('{"x": 1}', "JSON list"),
        ('[{"x": 1, "y": 2}]', "hint 0"),
        ('[{"x": 1, "y": 2, "color": "#fff"}, {"x": "a", "y": 2, "color": "#fff"}]', "hint 1: x must be a number"),
        ('[{"x": 1, "y": NaN, "color": "#fff"}]', "finite"),
        ('[{"x": true, "y": 2, "color": "#fff"}]', "x must be a number"),
        ('[{"x": ' + "9" * 400 + ', "y": 1, "color": "#fff"}]', "hint 0: x must be a finite number"),
        ('[{"x": 1, "y": -' + "9" * 400 + ', "color": "#fff"}]', "hint 0: y must be a finite number"),
        ('[{"x": 1, "y": 2, "color": "#fff", "size": 3}]', "unknown keys"),
        (json.dumps([{"x": 0, "y": 0, "color": "#fff"}] * 257), "at most 256"),
    ],
)
def test_bad_hint_lists_say_which_entry_and_why(doc, says):
    with pytest.raises(HintError, match=says):
        hints.hints_from_json(doc)


@pytest.mark.parametrize("x, y", [(-1, 5), (40, 5), (5, 30), (5, 30.5)])
def test_points_outside_the_photo_are_refused(x, y):
    with pytest.raises(HintError, match="outside the photo"):
        hints.check_hints([Hint(x, y, (1, 2, 3))], width=40, height=30)
    assert hints.check_hints([Hint(39.9, 29.9, (1, 2, 3))], 40, 30)


# -- the generator's view of hints


def test_hint_map_puts_the_colour_at_the_scaled_point():
    red = Hint(x=300, y=100, rgb=(255, 0, 0))  # a 400 x 600 (H x W) photo seen at 40 x 60
    m = hints.hint_map([red], H=400, W=600, h=40, w=60, patch=3)
    assert m.shape == (3, 40, 60) and m.dtype == np.float32
    ys, xs = np.nonzero(m[2])
    assert set(ys) == {9, 10, 11} and set(xs) == {29, 30, 31}  # a 3-px patch around (30, 10)
    a, b = color.rgb_to_lab(np.array([[[255, 0, 0]]], np.uint8))[0, 0, 1:]
    np.testing.assert_allclose(m[:2, 10, 30], [a / AB_SCALE, b / AB_SCALE], rtol=1e-5)
    assert not m[:, m[2] == 0].any()  # nothing outside the mask
    edge = hints.hint_map([Hint(599.9, 399.9, (0, 0, 255))], 400, 600, 40, 60, patch=3)
    assert edge[2, 39, 59] == 1 and edge[2].sum() == 4  # clipped at the corner


def test_training_hints_follow_zhang_2017():
    H = W = 64
    ab = torch.randn(1, 2, H, W) * 30
    rng = np.random.default_rng(0)
    draws = [hints.sample_hints(ab, rng, stop=0.125, none=0.25) for _ in range(600)]
    masks = torch.cat(draws)[:, 2]  # (600, H, W)
    empty = (masks.flatten(1).sum(1) == 0).float().mean().item()
    assert 0.30 < empty < 0.40  # 0.25 + 0.75 * 1/8 = 0.34 with no hints at all
    centre, border = masks[:, 16:48, 16:48].mean(), masks.mean()
    assert centre > 1.5 * border  # points gather around the centre
    one = hints.sample_hints(ab, np.random.default_rng(1), count=1)[0]
    ys, xs = torch.nonzero(one[2], as_tuple=True)
    patch = ab[0, :, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert len(ys) == patch[0].numel() and 1 <= ys.max() - ys.min() + 1 <= hints.MAX_PATCH  # one square
    torch.testing.assert_close(one[:2, ys[0], xs[0]], patch.mean((1, 2)) / AB_SCALE)  # revealing its mean
    assert not hints.sample_hints(ab, rng, count=0).any()


def test_an_l_only_model_widened_to_take_hints_computes_the_same():
    torch.manual_seed(0)
    cfg = ExperimentConfig.from_dict({"model": {"preset": "tiny"}}).model.generator()
    plain = Generator(color.ab_bins(), cfg).eval()
    wide = Generator(color.ab_bins(), cfg.__class__(**{**cfg.__dict__, "hints": True})).eval()
    assert wide.stem[0].weight.shape[1] == 4 and not wide.stem[0].weight[:, 1:].any()  # zero at the start
    wide.load_state_dict(wide.widen_state(plain.state_dict()))
    L = torch.rand(2, 1, 24, 40) * 2 - 1
    m = torch.from_numpy(np.stack([hints.hint_map([Hint(5, 5, (255, 0, 0))], 24, 40, 24, 40)] * 2))
    with torch.no_grad():
        assert torch.equal(plain(L)[1], wide(L)[1]) and torch.equal(plain(L)[1], wide(L, hints=m)[1])
        wide.stem[0].weight[:, 1:] = 0.5
        assert not torch.equal(plain(L)[1], wide(L, hints=m)[1])  # the channels are wired in
    with pytest.raises(ValueError, match="takes no colour hints"):
        plain(L, hints=m)
    with pytest.raises(ValueError, match="hints must be"):
        wide(L, hints=m[:, :2])


def test_init_from_an_l_only_model_gives_a_hint_model_that_starts_where_it_was(tmp_path):
    torch.manual_seed(0)
    src = ExperimentConfig.from_dict({"model": {"preset": "tiny", "d_base_channels": 8, "d_layers": 2}})
    G = cgan.build_generator(src.model)
    checkpoint.save_generator(str(tmp_path), G, step=1, epoch=0, config=src.to_dict())
    init, config, _ = model_ref.load_init(str(tmp_path))
    asked = ExperimentConfig.from_dict({"model": {"hints": True}})
    cfg = with_model_of(asked, config)
    assert cfg.model.hints and cfg.model.preset == "tiny"
    gan = cgan.build(cfg, torch.device("cpu"))
    checkpoint.apply_init(gan, init)
    L = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(gan.generator().eval()(L)[1], G.eval()(L)[1])


# -- a tiny hint model that learnt to follow hints


def _flat_colour_batch(rng, n: int, s: int = 32) -> torch.Tensor:
    """uint8 (n, s, s, 3): each photo one random colour with a little texture. Its L says little
    about its colour: only hints can tell the model which it is."""
    base = rng.integers(0, 256, (n, 1, 1, 3))
    return torch.from_numpy(np.clip(base + rng.integers(-20, 21, (n, s, s, 1)), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def hint_model(tmp_path_factory):
    """(generator checkpoint folder, final batch error without hints, with 5 hints)."""
    cfg = ExperimentConfig.from_dict(HINTED)
    torch.manual_seed(0)
    gan = cgan.build(cfg, torch.device("cpu"))
    rng = np.random.default_rng(0)
    weights = torch.ones(gan.G.num_bins)
    for i in range(200):
        gan.train_step(batches.batch_from_rgb(_flat_colour_batch(rng, 16), 2), i, weights)
    G = gan.generator().eval()
    b = batches.batch_from_rgb(_flat_colour_batch(np.random.default_rng(1), 64), 2)
    with torch.no_grad():
        plain = (G(b["L"])[1] - b["ab"]).abs().mean().item()
        m = hints.sample_hints(b["ab"], np.random.default_rng(2), count=5)
        hinted = (G(b["L"], hints=m)[1] - b["ab"]).abs().mean().item()
    folder = tmp_path_factory.mktemp("hint-model") / "generator"
    checkpoint.save_generator(str(folder), G, step=200, epoch=0, config=cfg.to_dict())
    return folder, plain, hinted


def test_training_teaches_the_model_to_follow_hints(hint_model):
    _, plain, hinted = hint_model  # a hint pathway that learnt nothing keeps its zero start: equal errors
    assert hinted < 0.9 * plain, f"ab error {hinted:.1f} with 5 hints vs {plain:.1f} without"


def _photo(tmp_path, rgb=(90, 140, 60)):
    p = tmp_path / "flat.png"
    rng = np.random.default_rng(3)
    Image.fromarray(np.clip(np.array(rgb) + rng.integers(-20, 21, (48, 64, 1)), 0, 255).astype(np.uint8)).save(p)
    return p


def _mean_ab(path) -> np.ndarray:
    return color.rgb_to_lab(np.asarray(Image.open(path).convert("RGB")))[..., 1:].mean((0, 1))


def test_infer_follows_hints_and_records_them(hint_model, tmp_path, capsys):
    folder, _, _ = hint_model
    photo = _photo(tmp_path)
    base = ["infer", str(photo), "--model", str(folder), "--size", "32"]
    assert cli.main([*base, "--output", str(tmp_path / "plain.png")]) == 0
    spec = tmp_path / "h.json"
    spec.write_text(json.dumps([{"x": 40, "y": 30, "color": "#2060ff"}]))
    args = ["--hint", "10,10,#2060ff", "--hint", "50,20,#2060ff", "--hints", str(spec)]
    assert cli.main([*base, *args, "--output", str(tmp_path / "blue.png")]) == 0
    blue = color.rgb_to_lab(np.array([[[0x20, 0x60, 0xFF]]], np.uint8))[0, 0, 1:]
    plain, hinted = _mean_ab(tmp_path / "plain.png"), _mean_ab(tmp_path / "blue.png")
    assert np.linalg.norm(hinted - blue) < 0.6 * np.linalg.norm(plain - blue)  # the whole flat photo turns blue
    settings = made_with.read_photo_settings((tmp_path / "blue.png").read_bytes())
    assert [h["color"] for h in settings["hints"]] == ["#2060ff"] * 3 and settings["hints"][0]["x"] == 10


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--hint", "64,10,#ff0000"], "outside the photo"),  # x in [0, 64)
        (["--hint", "-1,10,#ff0000"], "outside the photo"),  # a value starting with "-" is still the flag's
        (["--hint", "10,10,crimson"], "not a colour"),
        (["--hint", "10,10"], "X,Y,#rrggbb"),
        (["--hints", "missing.json"], "No such file"),
        (["--hints", "big.json"], "too large, over 1 MiB"),
    ],
)
def test_bad_hints_are_one_clear_line(hint_model, tmp_path, capsys, flags, says):
    folder, _, _ = hint_model
    photo = _photo(tmp_path)
    # valid JSON, one hint, padded past the limit: refused by size, not as "not JSON" from a cut read
    (tmp_path / "big.json").write_text('[{"x": 1, "y": 1, "color": "#fff"}' + " " * (1 << 20) + "]")
    flags = [str(tmp_path / f) if f.endswith(".json") else f for f in flags]
    assert _exit_code(["infer", str(photo), "--model", str(folder), *flags, "--output", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_hint_spread_sets_how_far_a_hint_carries_and_is_recorded(hint_model, tmp_path, capsys):
    """--hint-spread 0 leaves the network's own answer to a corner hint; the default carries the
    colour farther and a long reach farther still. Only a reach other than the default is recorded."""
    folder, _, _ = hint_model
    photo = _photo(tmp_path)
    base = ["infer", str(photo), "--model", str(folder), "--size", "32", "--hint", "2,2,#2060ff"]
    blue = color.rgb_to_lab(np.array([[[0x20, 0x60, 0xFF]]], np.uint8))[0, 0, 1:]
    away = {}
    for reach in ("0", None, "5"):
        out = tmp_path / f"spread-{reach}.png"
        assert cli.main([*base, *(["--hint-spread", reach] if reach else []), "--output", str(out)]) == 0
        away[reach] = np.linalg.norm(_mean_ab(out) - blue)
        recorded = made_with.read_photo_settings(out.read_bytes())
        assert recorded.get("hint_spread") == (float(reach) if reach else None), recorded
    assert away["5"] < away[None] < away["0"] - 1, away
    hint = Hint(2, 2, (0x20, 0x60, 0xFF))
    G = model_ref.resolve_generator(str(folder))[0]
    rgb, _ = infer.colorize_file(G, photo.read_bytes(), 32, None, hints=[hint], hint_spread=0)
    assert np.array_equal(rgb, np.asarray(Image.open(tmp_path / "spread-0.png").convert("RGB")))  # the API agrees
    # a --grid sheet follows the reach too: its colour panel at 0 is the network alone again
    for reach, name in (("0", "grid-0.png"), ("5", "grid-5.png")):
        assert cli.main([*base, "--grid", "0.38", "--hint-spread", reach, "--output", str(tmp_path / name)]) == 0
    g0, g5 = (np.asarray(Image.open(tmp_path / n).convert("RGB")) for n in ("grid-0.png", "grid-5.png"))
    assert g0.shape == g5.shape and np.abs(g0.astype(int) - g5.astype(int)).max() > 20
    rerun = [*base, "--output", str(tmp_path / "spread-0.png")]
    assert cli.main(rerun) == 1  # made with another reach: not kept silently
    said = capsys.readouterr()
    assert "made with hint_spread 0.0 (now none)" in said.out + said.err, said


@pytest.mark.parametrize("reach", ["-1", "nan", "10.5", "far"])
def test_a_bad_hint_spread_is_one_clear_line(hint_model, tmp_path, capsys, reach):
    folder, _, _ = hint_model
    argv = ["infer", str(_photo(tmp_path)), "--model", str(folder), "--hint", "2,2,#fff", "--hint-spread", reach]
    assert _exit_code([*argv, "--output", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "--hint-spread" in err and "must be in 0..10" in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_a_hint_written_with_minus_zero_is_a_hint(hint_model, tmp_path):
    folder, _, _ = hint_model
    out = tmp_path / "o.png"
    assert (
        cli.main(["infer", str(_photo(tmp_path)), "--model", str(folder), "--hint", "-0,-0,#000", "--output", str(out)])
        == 0
    )
    assert made_with.read_photo_settings(out.read_bytes())["hints"] == [{"x": 0.0, "y": 0.0, "color": "#000000"}]


def _exit_code(argv) -> int:
    """What ``colorize ARGV`` exits with: argparse refuses a malformed flag by exiting itself."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code


def test_hints_to_a_model_without_them_or_to_a_folder_are_refused(ckpt, hint_model, tmp_path, capsys):
    photo = _photo(tmp_path)
    assert (
        cli.main(["infer", str(photo), "--model", str(ckpt), "--hint", "1,1,#fff", "--output", str(tmp_path / "a.png")])
        == 2
    )
    assert "takes no colour hints" in capsys.readouterr().err
    folder, _, _ = hint_model
    assert cli.main(["infer", str(tmp_path), "--model", str(folder), "--hint", "1,1,#fff"]) == 2
    assert "points of one photo" in capsys.readouterr().err


def test_the_mlflow_model_takes_a_hints_column(hint_model, tmp_path):
    import pandas as pd

    folder, _, _ = hint_model
    G = checkpoint.load_generator(str(folder))
    rgb = np.asarray(Image.open(_photo(tmp_path)))
    blue = json.dumps([{"x": 32, "y": 24, "color": "#2060ff"}])
    plain, hinted = model_io.colorize_rows(G, pd.DataFrame({"image": [rgb, rgb], "hints": [None, blue]}), {"size": 32})
    target = color.rgb_to_lab(np.array([[[0x20, 0x60, 0xFF]]], np.uint8))[0, 0, 1:]
    d = [np.linalg.norm(color.rgb_to_lab(o)[..., 1:].mean((0, 1)) - target) for o in (plain, hinted)]
    assert d[1] < 0.6 * d[0]
    bad = json.dumps([{"x": 999, "y": 1, "color": "#fff"}])
    with pytest.raises(model_io.BadImage, match="row 1: hint at .* outside the photo"):
        model_io.colorize_rows(G, pd.DataFrame({"image": [rgb, rgb], "hints": ["", bad]}))
    sig = model_io.signature(0.38).inputs.to_dict()
    assert [c["name"] for c in sig] == ["image", "hints"] and sig[1].get("required") is False
    # hint_spread, as --hint-spread: 0 the network's own answer, a long reach colours the whole image
    corner = pd.DataFrame({"image": [rgb], "hints": [json.dumps([{"x": 2, "y": 2, "color": "#2060ff"}])]})
    far = {r: model_io.colorize_rows(G, corner, {"size": 32, "hint_spread": r})[0] for r in (0, 5.0)}
    d = {r: np.linalg.norm(color.rgb_to_lab(o)[..., 1:].mean((0, 1)) - target) for r, o in far.items()}
    assert d[5.0] < d[0] - 1, d
    with pytest.raises(model_io.BadImage, match="hint_spread must be in 0..10"):
        model_io.colorize_rows(G, corner, {"hint_spread": -1})


def test_the_mlflow_hints_column_is_per_row_for_one_image_as_for_many():
    one = [{"x": 3, "y": 4, "color": "#2060ff"}]
    rgb = np.zeros((8, 8, 3), np.uint8)
    for model_input, n in [
        ({"image": [rgb], "hints": [json.dumps(one)]}, 1),
        ({"image": [rgb, rgb], "hints": [None, one]}, 2),
    ]:
        assert model_io.row_hints(model_input, n)[-1] == hints.hints_from_json(one), model_input
    assert model_io.row_hints({"image": rgb, "hints": one}, 1) == [hints.hints_from_json(one)]  # one image, not rows
    with pytest.raises(model_io.BadImage, match="row 0"):  # a row's hints are a list of points, not one point
        model_io.row_hints({"image": [rgb], "hints": one}, 1)


def test_suggestions_are_the_models_likeliest_colours_at_the_point(hint_model, tmp_path):
    folder, _, _ = hint_model
    G = checkpoint.load_generator(str(folder))
    L = predict.photo_L(np.asarray(Image.open(_photo(tmp_path))))
    plain = predict.suggest_colours(G, L, 20, 20, size=32, k=5)
    assert len(plain) == 5 and all(s["color"].startswith("#") and len(s["color"]) == 7 for s in plain)
    ps = [s["p"] for s in plain]
    assert ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1.0001
    red = predict.suggest_colours(G, L, 20, 20, size=32, k=5, hints=[Hint(22, 20, (255, 0, 0))])
    assert red[0]["color"] != plain[0]["color"]  # the palette listens to the hints placed so far
    with pytest.raises(HintError, match="outside"):
        predict.suggest_colours(G, L, 64, 1, size=32)


def test_distances_say_how_far_the_result_is_from_each_hint():
    red, grey = hints.Hint(10, 10, (255, 0, 0)), hints.Hint(70, 30, (128, 128, 128))
    ab = np.zeros((2, 20, 40), np.float32)  # the working size of an 80 x 40 photo: grey everywhere
    a, b = red.ab()
    ab[0, :10, :10], ab[1, :10, :10] = a, b  # red around the red hint's point (5, 5 at working size)
    far = hints.distances([red, grey], ab, 40, 80)
    assert far[0] < 1e-3 and far[1] < 0.5  # both followed
    assert hints.distances([hints.Hint(70, 30, (255, 0, 0))], ab, 40, 80)[0] == pytest.approx(np.hypot(a, b), rel=1e-5)
    # as the photo shows it: red at its own lightness is shown, red on a near-white pixel cannot be
    own_L = color.rgb_to_lab(np.array([[red.rgb]], np.uint8))[0, 0, 0]
    assert hints.distances([red], ab, 40, 80, L=np.full((20, 40), own_L, np.float32))[0] < 2
    assert hints.distances([red], ab, 40, 80, L=np.full((20, 40), 97.0, np.float32))[0] > 40


def test_a_hint_spread_without_hints_is_said_to_change_nothing(hint_model, tmp_path, capsys):
    folder, _, _ = hint_model
    photo = _photo(tmp_path)
    base = ["infer", str(photo), "--model", str(folder), "--size", "32"]
    assert cli.main([*base, "--hint-spread", "0.2", "--output", str(tmp_path / "a.png")]) == 0
    assert "--hint-spread changes nothing without --hint or --hints" in capsys.readouterr().err
    assert cli.main([*base, "--hint", "2,2,#2060ff", "--hint-spread", "0.2", "--output", str(tmp_path / "b.png")]) == 0
    assert "changes nothing" not in capsys.readouterr().err
    assert cli.main([*base, "--output", str(tmp_path / "c.png")]) == 0  # the default reach: nothing to say
    assert "changes nothing" not in capsys.readouterr().err
