"""Where a sweep lives, without Ray running: Tune's storage follows ``train.storage_for`` (the S3
endpoint and region reach it through an explicit filesystem), the sweep folder is what
``Tuner.can_restore`` finds again under that filesystem (so an S3 sweep resumes by ``--name`` like a
local one), and paths Ray reports get their ``s3://`` back when shown."""

from __future__ import annotations

import pyarrow.fs as pafs
from ray import tune as ray_tune

from pipeline.data import storage
from pipeline.train import trainer
from tune import sweep


def test_local_sweep_folder_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root, folder, fs = sweep.sweep_storage("runs", "sw", storage.S3Settings())
    assert (root, folder, fs) == (str(tmp_path / "runs"), str(tmp_path / "runs" / "sw"), None)


def test_s3_without_endpoint_or_region_keeps_the_uri(monkeypatch):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    assert sweep.sweep_storage("s3://bucket/runs/", "sw", storage.S3Settings()) == (
        "s3://bucket/runs/",
        "s3://bucket/runs/sw",
        None,
    )


def test_s3_endpoint_and_region_reach_tune_through_the_filesystem():
    s3 = storage.S3Settings(endpoint="http://127.0.0.1:9", region="eu-north-1")
    root, folder, fs = sweep.sweep_storage("s3://bucket/runs", "sw", s3)
    assert (root, folder) == ("bucket/runs", "bucket/runs/sw"), "scheme-less, inside the explicit filesystem"
    assert isinstance(fs, pafs.S3FileSystem) and fs.region == "eu-north-1"
    options = fs.__reduce__()[1][0]  # what the filesystem pickles (and Tune's saved state carries)
    assert options["endpoint_override"] == "127.0.0.1:9" and options["scheme"] == "http"
    only_region = sweep.sweep_storage("s3://bucket/runs", "sw", storage.S3Settings(region="eu-north-1"))
    assert only_region[1] == "bucket/runs/sw" and only_region[2].region == "eu-north-1"


def test_can_restore_finds_a_sweep_inside_a_custom_filesystem(tmp_path):
    """A scheme-less folder inside an explicit filesystem, as for S3 with an endpoint: here a local
    subtree stands in for the bucket (Ray's own check; no Ray started)."""
    bucket = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    assert not ray_tune.Tuner.can_restore("runs/sw", storage_filesystem=bucket)
    (tmp_path / "runs" / "sw").mkdir(parents=True)
    (tmp_path / "runs" / "sw" / "tuner.pkl").write_bytes(b"")
    assert ray_tune.Tuner.can_restore("runs/sw", storage_filesystem=bucket)


def test_paths_ray_reports_are_shown_with_their_scheme():
    assert trainer.storage_uri("bucket/runs/r1/checkpoint_000001", "s3://bucket/runs") == (
        "s3://bucket/runs/r1/checkpoint_000001"
    )
    assert trainer.storage_uri("s3://bucket/runs/r1", "s3://bucket/runs") == "s3://bucket/runs/r1"
    assert trainer.storage_uri("/data/runs/r1", "/data/runs") == "/data/runs/r1"
