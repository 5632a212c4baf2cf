"""`colorize config` prints every key with its value and help, as YAML train reads back; the
configuration reference in docs/ is generated from the same table and is current."""

import yaml

from pipeline import cli, config
from pipeline.jobs.common import config_help
from support import ROOT


def test_every_key_has_help_and_nothing_else_does():
    assert set(config_help.HELP) == set(config.ExperimentConfig().flat())
    assert all(len(h) > 10 for h in config_help.HELP.values())
    assert list(config_help.SECTIONS) == list(config.ExperimentConfig().to_dict())


def test_config_prints_every_key_its_value_and_help(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  epochs: 5\n")
    assert cli.main(["config", "--config", str(base), "--set", "model.preset=tiny"]) == 0
    text = capsys.readouterr().out
    for key, help_ in config_help.HELP.items():
        name = key.split(".", 1)[1]
        assert any(ln.strip().startswith(f"{name}:") and help_ in ln for ln in text.splitlines()), key
    assert "epochs: 5  #" in text and "[default: 10]" in text and "preset: tiny  #" in text
    saved = tmp_path / "saved.yaml"
    saved.write_text(text)  # what it prints is a config train reads back to the same settings
    assert config.load(str(saved)) == config.load(str(base), ["model.preset=tiny"])
    assert yaml.safe_load(text)["train"]["epochs"] == 5


def test_config_bad_value_is_one_line(capsys):
    assert cli.main(["config", "--set", "train.epochs=0"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs must be >= 1" in err and len(err.strip().splitlines()) == 1


def test_config_refuses_a_password_in_a_uri_without_printing_it(capsys):
    assert cli.main(["config", "--set", "tracking.uri=http://user:s3cret@mlflow:5000"]) == 2
    out, err = capsys.readouterr()
    assert "s3cret" not in out + err and len(err.strip().splitlines()) == 1
    assert "MLFLOW_TRACKING_PASSWORD" in err  # where the secret goes instead


def test_the_configuration_reference_is_current():
    """docs/configuration.md is generated: `python docs/make_config_reference.py` rewrites it."""
    assert (ROOT / "docs" / "configuration.md").read_text() == config_help.reference_markdown()
