"""The training workers' layout: fitted to the cluster when unset, refused in one line (naming the
setting) when the cluster cannot run it. Workers holding every CPU leave Ray Data none, and the
job then hangs forever without a word."""

import pytest

from pipeline.config import ExperimentConfig
from pipeline.train import layout

LAPTOP = [{"CPU": 2.0}]


def cfg(**train):
    return ExperimentConfig.from_dict({"train": train})


def test_an_unset_layout_on_a_two_cpu_laptop_leaves_the_data_a_cpu_and_trains_on_both_cores():
    got = layout.fit(cfg(), LAPTOP)
    assert (got.train.num_workers, got.train.cpus_per_worker, got.train.threads) == (1, 1.0, 2)
    assert layout.problem(got, LAPTOP) is None
    assert layout.fit(cfg(threads=1), LAPTOP).train.threads == 1  # a set thread count stays


def test_a_one_cpu_machine_still_trains():
    one = [{"CPU": 1.0}]
    got = layout.fit(cfg(), one)
    assert (got.train.num_workers, got.train.cpus_per_worker) == (1, 0.25) and layout.problem(got, one) is None


def test_an_unset_layout_fits_bigger_nodes_and_gpu_clusters():
    cpu = layout.fitted(cfg(), [{"CPU": 16.0}, {"CPU": 16.0}])
    assert (cpu.train.num_workers, cpu.train.cpus_per_worker, cpu.train.threads) == (2, 12.0, 16)
    gpu = layout.fitted(cfg(use_gpu=True), [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 4.0}])
    assert (gpu.train.num_workers, gpu.train.cpus_per_worker) == (8, 1.0)
    assert layout.problem(gpu, [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 4.0}]) is None
    two = layout.fitted(cfg(num_workers=2), LAPTOP)  # workers given, CPUs fitted: they share the node
    assert (two.train.cpus_per_worker, two.train.threads) == (0.5, 1) and layout.problem(two, LAPTOP) is None


def test_workers_that_take_every_cpu_are_refused_naming_the_setting():
    """The layout that hung the README's command: 2 workers x 1 CPU on 2 CPUs."""
    with pytest.raises(layout.LayoutError) as e:
        layout.fit(cfg(num_workers=2, cpus_per_worker=1.0), LAPTOP)
    msg = str(e.value)
    assert "train.cpus_per_worker" in msg and "leave 0 of" in msg and "\n" not in msg
    with pytest.raises(layout.LayoutError, match="leave 0.5 of"):  # starved Ray Data's reads, measured
        layout.fit(cfg(num_workers=1, cpus_per_worker=1.5), LAPTOP)


def test_workers_that_do_not_fit_at_all_are_refused():
    with pytest.raises(layout.LayoutError, match="only 0 worker"):
        layout.fit(cfg(num_workers=1, cpus_per_worker=4.0), LAPTOP)
    with pytest.raises(layout.LayoutError, match="1 GPU"):
        layout.fit(cfg(num_workers=1, cpus_per_worker=1.0, use_gpu=True), LAPTOP)


def test_on_a_cluster_that_may_grow_a_misfit_is_only_a_warning(caplog):
    got = layout.fit(cfg(num_workers=4, cpus_per_worker=1.0, use_gpu=True), [{"CPU": 4.0}], strict=False)
    assert got.train.num_workers == 4
    assert any("waiting for the cluster to grow" in r.getMessage() for r in caplog.records)


def test_steps_per_epoch_for_the_progress_lines():
    c = layout.fit(cfg(batch_size=16), LAPTOP)
    assert layout.steps_per_epoch(c, 100) == 7
    assert layout.steps_per_epoch(c.replace({"train.max_steps_per_epoch": 5}), 100) == 5
    assert layout.steps_per_epoch(c, None) is None
