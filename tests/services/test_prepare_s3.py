"""Prepared shards (``colorize prepare``) against moto's S3 server on 127.0.0.1: S3 -> S3 with a
bad-object corpus, priors from shards equal priors from raw photos, training reads the shards with
every image exactly once per epoch across two workers, reruns never mix shards."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.fs as pafs
import pytest
from PIL import Image

from pipeline import cli
from pipeline import run as run_job
from pipeline.core import color, split
from pipeline.data import prepare, priors, shards, storage
from support import corpus
from support.reference_prior import count_reasons
from support.servers import upload_dir
from support.training import set_args, tiny_settings


@pytest.fixture(scope="module")
def bucket(s3_server, tmp_path_factory):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket="prep")
    root = tmp_path_factory.mktemp("photos")
    info = corpus.write_corpus(root)  # good, odd-but-valid and bad objects
    for i in range(5):  # a few more photos, so two workers and a val split have rows
        (root / f"extra{i}.png").write_bytes(corpus.encode(Image.fromarray(corpus.photo(50 + i, 48, 64)), "PNG"))
    upload_dir(client, "prep", "raw", root)
    return client, root, info


def test_prepare_s3_to_s3_then_priors_and_training(ray_local, bucket, s3_server, tmp_path, monkeypatch):
    client, root, info = bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    out = "s3://prep/shards"
    assert cli.main(["prepare", "--data", "s3://prep/raw/", "--out", out, "--size", "48", "--shard-mb", "1"]) == 0
    s3 = storage.S3Settings.from_env()
    manifest = shards.read_manifest(out, s3)
    good = len(info["good"]) + 5
    assert manifest["images"] == good and manifest["skipped"] == count_reasons(info["skip"])
    corrupt = {f"prep/raw/{n}" for n, r in info["skip"].items() if r == "corrupt"}
    assert set(manifest["skipped_examples"]["corrupt"]) == corrupt
    assert manifest["size"] == 48 and manifest["Q"] == color.num_bins() and manifest["source"] == "s3://prep/raw/"
    assert sum(s["rows"] for s in manifest["shards"]) == good

    # the prior from shards equals the prior from the raw photos, exactly
    from_raw = priors.compute_prior("s3://prep/raw/", size=48, s3=s3)
    from_shards = priors.compute_prior(out, size=48, s3=s3)
    assert from_shards.source.startswith("prepared shards")
    assert np.array_equal(from_raw.counts, from_shards.counts) and from_raw.images == from_shards.images

    # training reads the shards; each epoch every training image exactly once across 2 workers
    audit = tmp_path / "ids"
    sets = tiny_settings(
        "train.epochs=2",
        "tracking.sample_images=1",
        f"data.train={out}",
        "data.val_fraction=0.25",
        f"data.s3_endpoint={s3_server}",
        f"train.storage_path={tmp_path / 'runs'}",
        "train.run_name=shards",
        f"train.audit_ids_dir={audit}",
        without=["train.log_every"],
    )
    argv = [*set_args(sets), "--out", str(tmp_path / "out")]
    assert run_job.main(argv) == 0
    all_ids = sorted(r["id"] for r in shards.shards_dataset(out, s3, columns=["id"]).take_all())
    train_ids, val = split.split_ids(all_ids, 0.25, seed=0)  # the one rule, as for raw photos
    assert val and train_ids
    for epoch in range(2):
        seen = []
        for rank in range(2):
            f = audit / f"epoch{epoch:04d}-rank{rank:03d}.txt"
            seen += [x for x in f.read_text().splitlines() if x]
        assert sorted(seen) == train_ids, f"epoch {epoch}: not exactly once"


def test_rerun_never_mixes_shards_and_cleans_up(ray_local, bucket, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    s3 = storage.S3Settings.from_env()
    out = "s3://prep/rerun"
    first = prepare.prepare("s3://prep/raw/", out, size=32, s3=s3)
    # an interrupted run: shards of its own folder, no manifest switch -> readers never see them
    client = bucket[0]
    client.put_object(Bucket="prep", Key="rerun/20990101T000000Z-dead/part-0.parquet", Body=b"partial")
    assert shards.read_manifest(out, s3)["run"] == first["run"]
    assert all(s["path"].startswith(first["run"]) for s in shards.read_manifest(out, s3)["shards"])
    second = prepare.prepare("s3://prep/raw/", out, size=32, s3=s3)
    fs, root = storage.resolve(out, s3)
    files = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    names = {i.path.split("/")[2] for i in files if i.type == pafs.FileType.File}
    assert second["run"] in names and first["run"] not in names, "the old run's shards are deleted after the switch"
    assert shards.shards_dataset(out, s3, columns=["id"]).count() == second["images"]


def test_listing_a_prefix_with_thousands_of_objects(s3_server, bucket):
    client = bucket[0]
    client.create_bucket(Bucket="many")
    for i in range(2100):  # > 2 pages of ListObjectsV2
        client.put_object(Bucket="many", Key=f"p/{i // 100:02d}/{i:05d}.jpg", Body=b"x")
    t = time.perf_counter()
    _, paths = storage.list_inputs("s3://many/p/", storage.S3Settings(endpoint=s3_server, region="us-east-1"))
    took = time.perf_counter() - t
    assert len(paths) == 2100 and len(set(paths)) == 2100
    assert took < 30, f"listing took {took:.1f}s"


def test_prepare_with_nothing_usable_is_a_clear_error(ray_local, bucket, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    with pytest.raises(ValueError, match="no usable image"):
        # limit=3: the first three files are bad_* only
        prepare.prepare("s3://prep/raw/", "s3://prep/none", size=32, s3=storage.S3Settings.from_env(), limit=3)


def test_bad_prepare_inputs_are_clear_errors(s3_server, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    assert cli.main(["prepare", "--data", "s3://nobucket/raw/", "--out", "s3://prep/x"]) == 2
    assert "s3://nobucket/raw/" in capsys.readouterr().err
    assert cli.main(["prepare", "--data", "s3://prep/raw/", "--out", "s3://nobucket/x"]) == 2
    assert "nobucket" in capsys.readouterr().err
