"""The online service's pure half (pipeline/serve/handling.py): request rules and statuses, and the batched
model call, checked against the one-photo path (pipeline/gan/predict.py) it must agree with."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from models.scaling import input_to_L
from pipeline.core import color, hint_spread
from pipeline.core import hints as hints_module
from pipeline.core.hints import Hint
from pipeline.gan import predict
from pipeline.gan.model_ref import resolve_generator
from pipeline.serve import handling
from support import ROOT


def png(rgb_or_grey: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb_or_grey).save(buf, "PNG")
    return buf.getvalue()


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


class CountingG(torch.nn.Module):
    """The real generator, counting its forward passes and their batch sizes."""

    def __init__(self, G):
        super().__init__()
        self.G, self.calls = G, []

    def forward(self, x, temperature=None, hints=None, prior_correction=None):
        self.calls.append(tuple(x.shape))
        return self.G(x, temperature, hints=hints, prior_correction=prior_correction)


def test_batch_matches_one_photo_path_and_groups_by_working_shape(ckpt):
    G, _ = resolve_generator(str(ckpt))
    cG = CountingG(G)
    photos = [photo(60, 80, 0), photo(90, 120, 1), photo(50, 50, 2), photo(120, 160, 3)]
    prepared = [handling.prepare(png(p), 32, handling.DEFAULT_MAX_PIXELS) for p in photos]
    temps = [0.38, 0.38, 0.38, 0.2]
    abs_ = handling.colorize_batch(cG, [p.x for p in prepared], temps, torch.device("cpu"))
    # 60x80 and 90x120 share the working shape 32x43 at T 0.38; 50x50 is alone; 120x160 at T 0.2 is alone.
    assert sorted(cG.calls) == sorted([(2, 1, 32, 43), (1, 1, 32, 32), (1, 1, 32, 43)])
    for p, pr, ab, t in zip(photos, prepared, abs_, temps, strict=True):
        encoded, far = handling.finish(pr, ab, "png")
        assert far == []  # no hints, no distances
        out = np.asarray(Image.open(io.BytesIO(encoded)))
        ref = predict.colorize(G, p, 32, t)
        assert out.shape == p.shape
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 2  # same maths, batched
        dL = np.abs(color.rgb_to_lab(out)[..., 0] - color.rgb_to_lab(p)[..., 0]).max()
        assert dL < 1.0


@pytest.mark.parametrize(
    "data, status",
    [
        (b"", 400),
        (b"GIF89a but not really", 400),
        (png(np.zeros((2000, 1500), np.uint8)), 413),
    ],
)
def test_prepare_refuses_with_status(data, status):
    with pytest.raises(handling.RequestError) as e:
        handling.prepare(data, 64, max_pixels=1_000_000)
    assert e.value.status == status


def test_request_rules():
    assert handling.check_content_type("image/PNG; charset=binary") == "image/png"
    assert handling.check_content_type("image/jpg") == "image/jpeg"
    for bad in (None, "", "text/plain", "image/gif", "application/octet-stream"):
        with pytest.raises(handling.RequestError) as e:
            handling.check_content_type(bad)
        assert e.value.status == 415
    handling.check_length(10, 10)
    with pytest.raises(handling.RequestError) as e:
        handling.check_length(11, 10)
    assert e.value.status == 413
    assert handling.parse_params(None, None, None, 0.38) == (0.38, handling.DEFAULT_SIZE, "png")
    assert handling.parse_params("0.2", "128", "JPG", 0.38) == (0.2, 128, "jpeg")
    for t, s, f in [("x", None, None), ("0", None, None), ("nan", None, None), (None, "8", None), (None, "1.5", None)]:
        with pytest.raises(handling.RequestError) as e:
            handling.parse_params(t, s, f, 0.38)
        assert e.value.status == 400
    with pytest.raises(handling.RequestError):
        handling.parse_params(None, None, "gif", 0.38)
    assert handling.parse_prior_correction(None, 0.1) == 0.1 and handling.parse_prior_correction("", 0.0) == 0.0
    assert handling.parse_prior_correction("0.25", 0.0) == 0.25
    for bad in ("x", "-0.1", "1.01", "nan", "inf"):
        with pytest.raises(handling.RequestError, match="prior_correction") as e:
            handling.parse_prior_correction(bad, 0.0)
        assert e.value.status == 400


def test_batch_groups_by_prior_correction_and_decodes_each_at_its_own():
    from models import Generator, generator_config

    torch.manual_seed(0)
    G = Generator(color.ab_bins(), generator_config("tiny")).eval()
    G.set_rebalance_weights(torch.linspace(-3, 3, G.num_bins).exp())
    cG = CountingG(G)
    prepared = handling.prepare(png(photo(60, 80, 0)), 32, handling.DEFAULT_MAX_PIXELS)
    corrections = [None, 0.0, 1.0, 1.0]
    abs_ = handling.colorize_batch(cG, [prepared.x] * 4, [0.38] * 4, torch.device("cpu"), None, corrections)
    assert sorted(cG.calls) == [(2, 1, 32, 43), (2, 1, 32, 43)]  # None is the model's own A, 0
    x = torch.from_numpy(prepared.x)[None, None]
    for a, ab in zip(corrections, abs_, strict=True):
        want = predict.predict_ab_batch(G, x, 0.38, prior_correction=a)[0].numpy()
        np.testing.assert_allclose(ab, want, atol=1e-3)  # batched or alone: float rounding only
    assert np.abs(abs_[2] - abs_[1]).mean() > 1  # the correction changed the colours


def test_serve_config_file_matches_the_app_builder():
    """cluster/serve.yaml names the real builder and only the arguments it takes."""
    from pipeline.serve import app as serve_app

    cfg = yaml.safe_load((ROOT / "cluster" / "serve.yaml").read_text())
    (app,) = cfg["applications"]
    module, name = app["import_path"].split(":")
    assert module == "pipeline.serve.app" and getattr(serve_app, name) is serve_app.app_builder
    s = serve_app.settings(app["args"])
    assert s["max_bytes"] == handling.DEFAULT_MAX_BYTES and s["max_pixels"] == handling.DEFAULT_MAX_PIXELS
    assert cfg["http_options"]["host"] == "127.0.0.1"
    with pytest.raises(ValueError, match="unknown"):
        serve_app.settings({"model": "m", "max_batch": 3})
    assert serve_app.settings({})["model"] == "shipped"  # the model that ships, unless args.model says
    with pytest.raises(ValueError, match="model"):
        serve_app.settings({"model": ""})
    with pytest.raises(ValueError, match="max_batch_size"):
        serve_app.settings({"model": "m", "max_batch_size": 0})


def test_replicas_are_fixed_or_autoscaled_between_the_two_bounds():
    from pipeline.serve import app

    fixed = app.settings({"model": "m", "replicas": 2})
    assert app.replica_options(fixed) == {"num_replicas": 2}
    scaled = app.settings({"model": "m", "replicas": 1, "max_replicas": 4, "max_batch_size": 8})
    auto = app.replica_options(scaled)["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["target_ongoing_requests"]) == (1, 4, 8)
    with pytest.raises(ValueError, match="max_replicas"):
        app.settings({"model": "m", "replicas": 3, "max_replicas": 2})


def hint_generator():
    """A tiny hint model whose hint channels matter (a fresh one starts by ignoring them)."""
    from pipeline.config import ExperimentConfig
    from pipeline.gan import cgan

    cfg = ExperimentConfig().replace({"model.preset": "tiny", "model.hints": True})
    torch.manual_seed(0)
    G = cgan.build_generator(cfg.model).eval()
    with torch.no_grad():
        G.stem[0].weight[:, 1:].normal_(0, 1.0)
    return G


def test_batch_with_and_without_hints_matches_one_photo_path():
    """Requests with and without hints share a group (zeros for no hints): each answer is what the
    one-photo path gives with its own hints, and the hints change it."""
    G = hint_generator()
    photos = [photo(60, 80, 0), photo(90, 120, 1), photo(60, 80, 2)]  # one working shape: 32x43
    hints = [[Hint(10, 20, (220, 30, 30)), Hint(70, 50, (30, 30, 220))], [], [Hint(5, 5, (30, 200, 30))]]
    prepared = [
        handling.prepare(png(p), 32, handling.DEFAULT_MAX_PIXELS, h) for p, h in zip(photos, hints, strict=True)
    ]
    assert prepared[0].hints.shape == (3, 32, 43) and prepared[1].hints is None
    cG = CountingG(G)
    abs_ = handling.colorize_batch(
        cG, [p.x for p in prepared], [0.38] * 3, torch.device("cpu"), [p.hints for p in prepared]
    )
    assert cG.calls == [(3, 1, 32, 43)]  # one forward for all three
    for p, pr, ab, h in zip(photos, prepared, abs_, hints, strict=True):
        ref = predict.predict_ab(G, predict.photo_L(p), 32, 0.38, hints=h)  # (H, W, 2)
        got = predict.upsample_ab(handling.with_hints(pr, ab).transpose(1, 2, 0), *p.shape[:2])
        assert np.abs(got - ref).max() < 1e-2  # the network batched, then each request's hints spread
        _, far = handling.finish(pr, ab, "png", h)
        network = hints_module.distances(h, ab, *p.shape[:2], L=input_to_L(pr.x))  # the network's, as shown
        assert len(far) == len(h) and all(f < n - 1 for f, n in zip(far, network, strict=True)), (far, network)
    bare = handling.colorize_batch(G, [prepared[0].x], [0.38], torch.device("cpu"))[0]
    assert np.abs(bare - abs_[0]).max() > 1.0  # the hints were used


def test_the_hint_spread_parameter_sets_how_far_hints_carry():
    """``hint_spread``: the default reach when absent, 0 the network alone, a bad one 400."""
    assert handling.parse_hint_spread(None) == handling.parse_hint_spread("") == hint_spread.REACH
    assert handling.parse_hint_spread("0") == 0 and handling.parse_hint_spread("2.5") == 2.5
    assert str(handling.parse_hint_spread("-0")) == "0.0"  # recorded and shown as 0, not -0
    for bad in ("-0.1", "nan", "inf", "10.5", "far"):
        with pytest.raises(handling.RequestError) as e:
            handling.parse_hint_spread(bad)
        assert e.value.status == 400 and "hint_spread: must be in 0..10" in e.value.message, e.value.message
    G = hint_generator()
    p = photo(60, 80, 0)
    hints = [Hint(10, 20, (30, 30, 220))]
    pr = handling.prepare(png(p), 32, handling.DEFAULT_MAX_PIXELS, hints)
    (ab,) = handling.colorize_batch(G, [pr.x], [0.38], torch.device("cpu"), [pr.hints])
    assert np.array_equal(handling.with_hints(pr, ab, 0), ab)  # reach 0: the network's own colours
    near, far = (handling.with_hints(pr, ab, r) for r in (0.05, 5.0))
    corner = (slice(None), slice(-8, None), slice(-8, None))  # bottom right, far from the hint
    assert np.abs(far - ab)[corner].mean() > 5 * np.abs(near - ab)[corner].mean() + 1  # a long reach colours it
    got = [handling.finish(pr, ab, "png", hints, r)[1][0] for r in (0.0, hint_spread.REACH)]
    assert got[1] < got[0] - 1, got  # the default spread puts the colour on its point; the network alone less so


@pytest.mark.parametrize(
    "text, takes, says",
    [
        ("not json", True, "not JSON"),
        ('{"x": 1}', True, "JSON list"),
        ('[{"x": 1, "y": 2, "color": "red"}]', True, "not a colour"),
        ('[{"x": "a", "y": 2, "color": "#ff0000"}]', True, "must be a number"),
        ('[{"x": 1, "y": 2}]', True, "hint 0"),
        (json.dumps([{"x": 1, "y": 1, "color": "#f00"}] * 257), True, "at most 256"),
        ("[" * 20000, True, "nested too deeply"),
        ("[" + " " * handling.MAX_HINTS_CHARS + "]", True, "characters"),
        ('[{"x": 1, "y": 2, "color": "#ff0000"}]', False, "takes no colour hints"),
    ],
)
def test_bad_hints_are_400_saying_why(text, takes, says):
    with pytest.raises(handling.RequestError) as e:
        handling.parse_hints(text, takes)
    assert e.value.status == 400 and says in e.value.message, e.value.message


def test_hints_are_checked_against_the_photo_and_scaled_for_suggest():
    assert handling.parse_hints(None, False) == [] and handling.parse_hints("[]", False) == []
    hints = handling.parse_hints('[{"x": 79.5, "y": 0, "color": "#ff0000"}]', True)
    with pytest.raises(handling.RequestError) as e:
        handling.prepare(png(photo(60, 80)), 32, handling.DEFAULT_MAX_PIXELS, [Hint(80, 10, (1, 2, 3))])
    assert e.value.status == 400 and "outside the photo" in e.value.message
    p = handling.prepare(png(photo(60, 80)), 32, handling.DEFAULT_MAX_PIXELS, hints)
    s = handling.suggest_input(p, 79.9, 59.9, hints)
    assert s.L.shape == (32, 43) and 42 < s.x < 43 and 31 < s.y < 32 and 42 < s.hints[0].x < 43
    assert np.allclose(s.L, predict.working_L(p.L, 32), atol=1e-3)
    for x, y in [(80, 10), (-1, 10), (10, 60), (float("nan"), 1)]:
        with pytest.raises(handling.RequestError) as e:
            handling.suggest_input(p, x, y, [])
        assert e.value.status == 400 and "outside the photo" in e.value.message
    assert handling.parse_point("1.5", "2", None) == (1.5, 2.0, 8)
    for x, y, k in [(None, "1", None), ("a", "1", None), ("1", "1", "0"), ("1", "1", "33"), ("1", "1", "2.5")]:
        with pytest.raises(handling.RequestError) as e:
            handling.parse_point(x, y, k)
        assert e.value.status == 400
