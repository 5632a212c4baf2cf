"""The command line, in-process: clear one-line errors, the train subcommand's forwarding, one
`add_args`/`run` pair per job, and a `--help` that imports no job."""

import subprocess
import sys

import pytest

from pipeline import cli


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

    for name, (module, _) in cli.COMMANDS.items():
        job = importlib.import_module(module)
        assert callable(job.main if name in cli.FORWARDED else job.run), module
        assert name in cli.FORWARDED or callable(job.add_args), module
    sub = cli.build_parser()._subparsers._group_actions[0].choices
    assert list(sub) == list(cli.COMMANDS)
    flags = {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.items()}
    assert {"--model", "--saturation", "--tracking-uri", "--s3-endpoint", "--input", "--output"} <= flags["infer"]
    assert {"--data", "--out", "--s3-region", "--keep-grey"} <= flags["priors"] & flags["prepare"]


def test_help_imports_no_job():
    """`colorize --help` stays instant: no job module (torch, Ray) is imported to print it."""
    code = (
        "import sys\nfrom pipeline import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m in ('torch', 'ray', 'pyarrow') or m in "
        "[mod for mod, _ in cli.COMMANDS.values()])\nprint('HEAVY', heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "infer" in r.stdout and "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_serve_with_a_missing_model_says_so_in_one_line_before_ray_starts(tmp_path, capsys, monkeypatch):
    from pipeline import data

    def no_ray(*a, **k):
        raise AssertionError("Ray started before the model was found")

    monkeypatch.setattr(data, "ensure_ray", no_ray)
    assert cli.main(["serve", "--model", str(tmp_path / "no" / "such"), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found" in err and "Traceback" not in err, err
