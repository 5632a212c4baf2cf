"""Which checkpoint `--model FOLDER` loads: the folder itself, or the best checkpoint of a training
run folder (the highest recorded objective), never one found by searching below; every load names it."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from pipeline import cli
from pipeline.gan import checkpoint, model_ref


def _checkpoint(ckpt, folder, **meta):
    """A copy of the tiny checkpoint ``ckpt`` at ``folder`` whose meta.json says ``meta``."""
    shutil.copytree(ckpt, folder)
    (folder / checkpoint.META).write_text(json.dumps(meta))
    return folder


def test_a_run_folder_gives_its_best_checkpoint_by_objective(ckpt, tmp_path, capsys):
    run = tmp_path / "runs" / "colorize-demo"
    _checkpoint(ckpt, run / "checkpoint_000000", step=0, epoch=-1, objective=0.20)  # the starting point
    _checkpoint(ckpt, run / "checkpoint_000001", step=40, epoch=0, objective=0.55)
    _checkpoint(ckpt, run / "checkpoint_000002", step=80, epoch=1, objective=0.31)
    _checkpoint(ckpt, run / "checkpoint_000003", step=120, epoch=2)  # none recorded: ranks below

    _, info = model_ref.resolve_generator(str(run))

    assert info["checkpoint"] == str(run / "checkpoint_000001")
    assert (info["step"], info["epoch"], info["objective"]) == (40, 0, 0.55)
    said = capsys.readouterr().err
    assert f"model: {run / 'checkpoint_000001'} (step 40, epoch 0, objective 0.55)" in said


def test_the_score_training_kept_by_wins_over_a_higher_raw_objective(ckpt, tmp_path):
    """A fine-tune's epoch that bought its objective with oversaturation scores below its start
    (metrics.checkpoint_score): the run folder gives the start, as training kept it."""
    run = tmp_path / "run"
    _checkpoint(ckpt, run / "checkpoint_000000", step=0, epoch=-1, objective=16.5, score=16.5)
    _checkpoint(ckpt, run / "checkpoint_000001", step=40, epoch=0, objective=28.6, score=28.6 - 1000)
    _, info = model_ref.resolve_generator(str(run))
    assert info["checkpoint"] == str(run / "checkpoint_000000")


def test_without_objectives_the_highest_numeric_step_wins_and_odd_steps_are_no_traceback(ckpt, tmp_path):
    run = tmp_path / "run"
    _checkpoint(ckpt, run / "checkpoint_a", step=5, epoch=0)
    _checkpoint(ckpt, run / "checkpoint_b", step="abc", epoch=1)
    _checkpoint(ckpt, run / "checkpoint_c", step=None, objective="high")
    _checkpoint(ckpt, run / "checkpoint_d", step=3, objective=float("nan"))
    (run / "checkpoint_e").mkdir()  # no state.pt: not a checkpoint

    assert model_ref.local_checkpoint(str(run)) == str(run / "checkpoint_a")


def test_a_folder_is_looked_at_not_searched(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    deep = out / "demo" / "mlartifacts" / "1" / "abc" / "artifacts" / "code" / "model"
    _checkpoint(ckpt, deep, step=10**6)  # a copy of some model far below: never picked up
    _checkpoint(ckpt, out / "runs" / "r1" / "checkpoint_000001", step=3)

    with pytest.raises(model_ref.ModelNotFound, match="is not a checkpoint folder") as e:
        model_ref.local_checkpoint(str(out))
    assert "mlartifacts" not in str(e.value)

    src = tmp_path / "a.png"
    _grey_photo(src)
    assert cli.main(["infer", str(src), "--model", str(out / "runs"), "--output", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / "runs" / "r1") in err[0]  # the run folder it holds is named


def test_model_root_of_the_file_system_answers_at_once(tmp_path, capsys):
    src = tmp_path / "a.png"
    _grey_photo(src)
    started = time.monotonic()
    assert cli.main(["infer", str(src), "--model", "/", "--output", str(tmp_path / "o.png")]) == 2
    assert time.monotonic() - started < 5
    assert "is not a checkpoint folder" in capsys.readouterr().err


def test_init_from_names_the_checkpoint_it_starts_from(ckpt, tmp_path, capsys):
    run = tmp_path / "run"
    _checkpoint(ckpt, run / "checkpoint_000001", step=7, epoch=0, objective=0.9)
    _checkpoint(ckpt, run / "checkpoint_000002", step=9, epoch=1, objective=0.1)

    _, _, shown = model_ref.load_init(str(run))

    assert shown == str(run / "checkpoint_000001")
    assert f"model: {run / 'checkpoint_000001'} (step 7, epoch 0, objective 0.9)" in capsys.readouterr().err


def _grey_photo(path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((24, 32), 128, np.uint8), "L").save(path)
