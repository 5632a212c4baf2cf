"""ExperimentConfig: YAML + --set, validation errors that name the key, conversions."""

import dataclasses

import pytest

from models import GENERATOR_PRESETS, GeneratorConfig
from pipeline import config
from pipeline import run as run_job
from pipeline.config import ConfigError, ExperimentConfig
from support import ROOT


def test_defaults_round_trip_and_flat():
    cfg = ExperimentConfig()
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    flat = cfg.flat()
    assert flat["loss.lambda_ce"] == 1.0 and flat["train.num_workers"] is None  # fitted to the cluster at launch
    assert all(k.count(".") == 1 for k in flat)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 4\nmodel:\n  preset: tiny\n  dilations: [2, 4]\n")
    cfg = config.load(str(p), ["train.epochs=7", "loss.gan=lsgan", "data.limit=null", "optim.grad_clip=1.5"])
    assert cfg.train.epochs == 7 and cfg.model.preset == "tiny" and cfg.model.dilations == (2, 4)
    assert cfg.loss.gan == "lsgan" and cfg.data.limit is None and cfg.optim.grad_clip == 1.5
    back = tmp_path / "back.yaml"
    back.write_text(config.dump(cfg))
    assert config.load(str(back)) == cfg
    for f in (ROOT / "pipeline" / "configs").glob("*.yaml"):
        config.load(str(f))  # every shipped config validates


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epochs=0"], "train.epochs must be >= 1"),
        (["train.epohcs=3"], "unknown key 'train.epohcs' (did you mean 'train.epochs'?)"),
        (["trian.epochs=3"], "unknown section 'trian'"),
        (["train.epochs=three"], "train.epochs must be an integer"),
        (["loss.gan=wgan"], "loss.gan must be hinge, lsgan or bce"),
        (["data.crop=512"], "data.crop must be in [8, data.resize=256]"),
        (["loss.lambda_adv=-1"], "loss.lambda_adv must be >= 0"),
        (["train.use_gpu=maybe"], "train.use_gpu must be true or false"),
        (["model.logits_stride=3"], "model.logits_stride must be a power of 2"),
        # checked on the preset's shape with the overrides, at load: tiny's depth is 3
        (["model.preset=tiny", "model.logits_stride=16"], "model.logits_stride must be <= 2**depth = 8, got 16"),
        (["model.preset=huge"], "model.preset must be full, small, tiny, got 'huge'"),
        (["epochs=3"], "must look like section.name"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        config.load(None, overrides)
    assert message in str(e.value)


def test_the_model_section_has_a_key_for_every_generator_setting():
    """One spelling of the generator's shape (models.GeneratorConfig): the config offers each of
    its settings as a key that overrides the preset, and resolves to it."""
    keys = {f.name for f in dataclasses.fields(config.ModelSection)}
    assert {f.name for f in dataclasses.fields(GeneratorConfig)} <= keys
    section = ExperimentConfig.from_dict({"model": {"preset": "small", "depth": 5, "norm": "batch"}}).model
    assert section.generator() == dataclasses.replace(GENERATOR_PRESETS["small"], depth=5, norm="batch")


def test_unknown_key_in_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  widht: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'model.widht'"):
        config.load(str(p))


def test_run_py_prints_one_line_config_error(capsys):
    assert run_job.main(["--set", "train.batch_size=-2"]) == 2
    assert capsys.readouterr().err.strip() == "config error: train.batch_size must be >= 1, got -2"
