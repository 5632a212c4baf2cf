"""Tune's saved state is unpickled by ``Tuner.restore``: a sweep restores only a state whose every
file its own driver recorded (``tune.state_guard``). A real tiny Tune run writes
the state and the record; tampering with any file Tune restores from (or adding one) is refused
by ``colorize tune`` in one line with exit 2 before Ray starts, ``--trust-storage`` lets it through,
and an untouched state passes the check and really restores."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.fs as pafs
import pytest

from pipeline import cli
from pipeline.config import ExperimentConfig
from pipeline.data import storage
from tune import state_guard
from tune import sweep as sweep_mod


def make_trial():
    """A trial function defined in a closure: cloudpickle ships it by value (workers cannot import tests)."""

    def tiny_trial(config):
        from ray import tune

        for i in range(3):
            tune.report({"score": config["x"] * i})

    return tiny_trial


@pytest.fixture(scope="module")
def saved_sweep(ray_local, tmp_path_factory):
    """A finished 2-trial Tune run named ``sw`` under ``runs/`` with its record under ``out/``."""
    from ray import tune

    tmp = tmp_path_factory.mktemp("guard")
    runs, out = tmp / "runs", tmp / "out"
    record = state_guard.record_path(str(out), "sw")
    tuner = tune.Tuner(
        make_trial(),
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(name="sw", storage_path=str(runs), callbacks=[state_guard.StateRecorder(record)]),
    )
    state_guard.add_to_record(record, pafs.LocalFileSystem(), str(runs / "sw"), ["tuner.pkl"])
    tuner.fit()
    return tmp, runs / "sw", record


def check(folder, record):
    state_guard.check(pafs.LocalFileSystem(), str(folder), record, "sw")


def copy_of(saved, tmp_path):
    import shutil

    tmp, folder, record = saved
    shutil.copytree(tmp, tmp_path / "c")
    return tmp_path / "c", tmp_path / "c" / "runs" / "sw", str(tmp_path / "c" / "out" / "sw" / state_guard.RECORD_NAME)


def tune_cli(root, *extra):
    return cli.main(
        ["tune", "--name", "sw", "--out", str(root / "out"), "--set", f"train.storage_path={root / 'runs'}", *extra]
    )


def test_the_record_covers_every_restored_file_and_an_untouched_state_restores(saved_sweep, tmp_path):
    from ray import tune

    root, folder, record = copy_of(saved_sweep, tmp_path)
    names = state_guard.restored_files(pafs.LocalFileSystem(), str(folder))
    assert "tuner.pkl" in names and any(n.startswith("experiment_state-") for n in names)
    assert set(names) <= set(state_guard.load_record(record))
    check(folder, record)  # untouched: accepted
    restored = tune.Tuner.restore(str(folder), trainable=make_trial()).fit()  # and Tune really restores it
    assert sorted(r.metrics["score"] for r in restored) == [2, 4]


@pytest.mark.parametrize("target", ["tuner.pkl", "experiment_state", "new file"])
def test_a_tampered_state_is_refused_unless_trusted(saved_sweep, tmp_path, capsys, target):
    root, folder, record = copy_of(saved_sweep, tmp_path)
    if target == "new file":
        (folder / "experiment_state-2099-01-01_00-00-00.json").write_text("{}")  # "newest": restore would read it
    else:
        (path,) = [p for p in folder.iterdir() if p.name.startswith(target)]
        path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(state_guard.UntrustedState):
        check(folder, record)
    assert tune_cli(root) == 2  # refused before Ray starts or an MLflow run opens
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to restore" in err[0] and "--trust-storage" in err[0]
    base = ExperimentConfig().replace({"train.storage_path": str(root / "runs")})
    s3 = storage.S3Settings()
    where = sweep_mod.sweep_storage(str(root / "runs"), "sw", s3)
    sw = sweep_mod.Sweep("sw", str(root / "out"), base, {}, where, "", s3, np.ones(1))
    assert sw.record == record
    assert sweep_mod._may_resume(sw, trust=True) is True


def test_no_record_is_refused(saved_sweep, tmp_path, capsys):
    root, folder, record = copy_of(saved_sweep, tmp_path)
    os.remove(record)
    with pytest.raises(state_guard.UntrustedState, match="no local record"):
        check(folder, record)
    assert tune_cli(root) == 2
    assert "no local record" in capsys.readouterr().err
