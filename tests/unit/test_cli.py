"""The command line, in-process: clear one-line errors, the train subcommand's forwarding, one
`add_args`/`run` pair per job, and a `--help` that imports no job."""

import subprocess
import sys

import pytest

from pipeline import cli
from support import ROOT


def test_missing_data_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["priors", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.npy")]) == 2
    err = capsys.readouterr().err
    assert f"no data at {tmp_path / 'nowhere'}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_arguments_exit_nonzero(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["priors", "--size", "abc"])
    assert exit_.value.code == 2 and "--size" in capsys.readouterr().err


def test_train_subcommand_forwards_to_run_py(capsys):
    assert cli.main(["train", "--set", "train.epochs=0"]) == 2  # run.py's own config check answers
    assert "train.epochs must be >= 1" in capsys.readouterr().err


def test_every_job_module_holds_add_args_and_run():
    import importlib

    for name, module in cli.COMMANDS.items():
        job = importlib.import_module(module)
        assert callable(job.main if name in cli.FORWARDED else job.run), module
        assert name in cli.FORWARDED or callable(job.add_args), module
    sub = cli.build_parser()._subparsers._group_actions[0].choices
    assert list(sub) == list(cli.COMMANDS)
    flags = {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.items()}
    assert {"--model", "--saturation", "--tracking-uri", "--s3-endpoint", "--input", "--output"} <= flags["infer"]
    assert {"--input", "--output", "--data", "--out", "--s3-region", "--keep-grey"} <= flags["priors"] & flags[
        "prepare"
    ]


def test_help_imports_no_job():
    """`colorize --help` stays instant: no job module (torch, Ray) is imported to print it."""
    code = (
        "import sys\nfrom pipeline import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m in ('torch', 'ray', 'pyarrow') or m in "
        "list(cli.COMMANDS.values()))\nprint('HEAVY', heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "infer" in r.stdout and "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_serve_with_a_missing_model_says_so_in_one_line_before_ray_starts(tmp_path, capsys, monkeypatch):
    from pipeline.data import sources

    def no_ray(*a, **k):
        raise AssertionError("Ray started before the model was found")

    monkeypatch.setattr(sources, "ensure_ray", no_ray)
    assert cli.main(["serve", "--model", str(tmp_path / "no" / "such"), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found" in err and "Traceback" not in err, err


# ----------------------------------------------------------------------------- help a new user reads


@pytest.fixture(autouse=True)
def terminal_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # help as an ordinary terminal shows it


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_command_in_one_line(capsys):
    from pipeline.jobs.common import command_help

    text = _help([], capsys)
    assert "Thin" not in text and "``" not in text  # no developer note, no RST
    for name in cli.COMMANDS:
        lines = [ln for ln in text.splitlines() if ln.strip().startswith(name + " ")]
        assert len(lines) == 1, name
        assert command_help.COMMANDS[name].summary.split()[0] in lines[0], name


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_has_its_usage_description_and_examples(name, capsys):
    from support.commands import colorize_commands

    text = _help([name], capsys)
    assert text.startswith(f"usage: colorize {name} "), text[:80]
    assert "``" not in text and "examples:" in text
    examples = colorize_commands(text.split("examples:", 1)[1])
    assert 2 <= len(examples) <= 4, examples
    parser = cli.build_parser()
    for argv in examples:  # every example parses with the real parser (train: run.py's own)
        if argv[0] in cli.FORWARDED:
            from pipeline import run

            run.parse_args(argv[1:])
        else:
            parser.parse_args(argv)


def test_defaults_are_shown_and_old_names_hidden(capsys):
    priors = " ".join(_help(["priors"], capsys).split())  # wrapped lines joined
    assert "(default: skimage:)" in priors and "(default: prior_probs.npy)" in priors
    assert "--resize" in priors and "--tasks" in priors and "--overwrite" in priors
    for old in ("--data", "--out ", "--size", "--workers"):
        assert old not in priors, old
    assert "(default: out/eval)" in " ".join(_help(["eval"], capsys).split())
    assert "(default: out/tune)" in " ".join(_help(["tune"], capsys).split())
    infer = _help(["infer"], capsys)
    assert "--saturation" not in infer and "--input" not in infer and "the model that ships" in infer


def test_old_names_still_work():
    p = cli.build_parser()
    old = p.parse_args(["priors", "--data", "d/", "--out", "o.npy", "--size", "64", "--workers", "2"])
    new = p.parse_args(["priors", "--input", "d/", "--output", "o.npy", "--resize", "64", "--tasks", "2"])
    assert vars(old) == vars(new) and (new.data, new.out, new.size, new.workers) == ("d/", "o.npy", 64, 2)
    a = p.parse_args(["infer", "--input", "x.jpg", "--saturation", "0.3"])
    b = p.parse_args(["infer", "x.jpg", "--temperature", "0.3"])
    assert (a.input_flag, a.temperature, b.input, b.temperature) == ("x.jpg", 0.3, "x.jpg", 0.3)
    assert p.parse_args(["export", "--onnx", "g.onnx"]).onnx == "g.onnx"
    for argv in (["infer"], ["video"], ["eval", "--input", "x"], ["export", "--output", "x"], ["serve"]):
        assert p.parse_args(argv).model == "shipped", argv


def test_train_help_names_its_command(capsys):
    text = _help(["train"], capsys)
    assert text.startswith("usage: colorize train ") and "--output" in text and "--set" in text
    assert "``" not in text and "examples:" in text


def test_version_names_the_package_and_the_revision(capsys):
    from pipeline import version

    with pytest.raises(SystemExit):
        cli.main(["--version"])
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"colorize {version.package_version()}")
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if rev.returncode == 0:  # a checkout: the revision is named
        assert f"(git {rev.stdout.strip()}" in out
    assert version.git_revision(str(ROOT / "pipeline")) == ""  # not a checkout's root: nothing claimed


def test_input_is_one_positional_or_the_old_flag(capsys):
    assert cli.main(["infer", "a.jpg", "--input", "b.jpg"]) == 2
    assert "two inputs" in capsys.readouterr().err
    assert cli.main(["infer"]) == 2
    err = capsys.readouterr().err
    assert "no input" in err and len(err.strip().splitlines()) == 1
