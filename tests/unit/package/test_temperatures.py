"""One rule for temperatures wherever one enters (flags of every command, --grid, configs and
checkpoints' config.json, MLflow params, requests to the service): a number in 0.01..10. A NaN or
a tiny one (1e-300) decodes every pixel to NaN, a black picture reported as a success."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline import cli
from pipeline.config import ConfigError, ExperimentConfig, check_temperature
from pipeline.gan import checkpoint, model_io
from pipeline.serve import handling

BAD = ["nan", "inf", "-inf", "1e-300", "0", "-1", "0.009", "10.5"]


@pytest.mark.parametrize("value", BAD)
def test_the_rule_refuses_what_decodes_badly(value):
    with pytest.raises(ConfigError, match="must be in 0.01..10"):
        check_temperature(float(value), "--temperature")
    assert check_temperature("0.01") == 0.01 and check_temperature(10) == 10.0


@pytest.mark.parametrize("value", ["nan", "1e-300"])
def test_every_entry_point_refuses_it(ckpt, tmp_path, capsys, value):
    src = tmp_path / "astro.png"
    Image.new("RGB", (24, 16), (90, 120, 30)).save(src)
    for argv in (
        ["infer", str(src), "--model", str(ckpt), "--output", str(tmp_path / "o.png")],
        ["video", str(tmp_path / "small.mp4"), "--model", str(ckpt), "--output", str(tmp_path / "o.mp4")],
        ["export", "--model", str(ckpt), "--ship", str(tmp_path / "m")],
    ):
        assert cli.main([*argv, "--temperature", value]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "--temperature must be in 0.01..10" in err and len(err.splitlines()) == 1, err
    assert not any(p.name in ("o.png", "o.mp4", "m") for p in tmp_path.iterdir())
    with pytest.raises(model_io.BadImage, match="temperature must be in 0.01..10"):
        model_io.options({"temperature": float(value)}, 0.38)
    with pytest.raises(handling.RequestError, match="temperature must be in 0.01..10"):
        handling.parse_params(value, None, None, 0.38)
    with pytest.raises(ConfigError, match="model.temperature must be (in 0.01..10|a finite number)"):
        ExperimentConfig.from_dict({"model": {"temperature": float(value)}})


def test_a_checkpoint_whose_config_has_such_a_temperature_is_refused(ckpt, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(ckpt, d)
    config = json.loads((d / "config.json").read_text())
    config["model"]["temperature"] = 1e-300
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(checkpoint.NotACheckpoint, match="model.temperature must be in 0.01..10"):
        checkpoint.load_generator(str(d))


def test_the_floor_still_gives_a_picture(ckpt):
    G = checkpoint.load_generator(str(ckpt))
    rgb = np.full((16, 16, 3), 120, np.uint8)
    out = model_io.colorize_rows(G, {"image": [rgb]}, {"temperature": 0.01, "size": 16})[0]
    assert np.isfinite(out.astype(float)).all() and out.mean() > 50  # its lightness kept, not black
