"""Help reads as one voice: examples use the flags usage shows, every dataset job takes its input
as INPUT or --input (as infer and video do), options wrap at the descriptions' width, and the
hints JSON takes colorize's own spelling of colour."""

from __future__ import annotations

import re

import pytest

from pipeline import cli
from pipeline.core import hints


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["export", "tune", "eval", "prepare", "priors", "infer"])
def test_help_names_only_the_flags_usage_shows(command, capsys):
    text = _help(command, capsys)
    usage = text.split("\n\n", 1)[0]
    for flag in set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text)):
        assert flag in usage or flag in ("--help", "--set") or f"{flag} " in text.split("options:")[1], flag
    assert not re.search(r"--(onnx|out|data)\b", text.replace("--output", "")), text
    assert "already exist " not in text and "already exist (" not in text


@pytest.mark.parametrize("command", ["eval", "prepare", "priors"])
def test_dataset_jobs_take_input_as_a_plain_argument_or_a_flag(command):
    p = cli.build_parser([command])
    out = ["--output", "o"]
    plain, flag = p.parse_args([command, "photos/", *out]), p.parse_args([command, "--input", "photos/", *out])
    for args in (plain, flag):
        cli.flags.settle_data(args)
        assert args.data == "photos/"
    two = p.parse_args([command, "a/", "--input", "b/", *out])
    with pytest.raises(ValueError, match="two inputs"):
        cli.flags.settle_data(two)


def test_priors_keeps_its_default_input():
    args = cli.build_parser(["priors"]).parse_args(["priors"])
    cli.flags.settle_data(args)
    assert args.data == "skimage:"


def test_options_wrap_at_the_descriptions_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # what a pipe (`| less`) reports
    text = _help("infer", capsys)
    longest = max(len(line) for line in text.split("options:")[1].splitlines())
    assert 88 < longest <= 100


def test_hints_take_colour_as_well_as_color():
    assert hints.hints_from_json('[{"x": 1, "y": 2, "colour": "#ff0000"}]') == hints.hints_from_json(
        '[{"x": 1, "y": 2, "color": "#ff0000"}]'
    )
    with pytest.raises(hints.HintError, match="not both"):
        hints.hints_from_json('[{"x": 1, "y": 2, "colour": "#ff0000", "color": "#00ff00"}]')
