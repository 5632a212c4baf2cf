"""The data layer (``pipeline.data.sources``): raw photos and prepared shards behind one interface, one
train/val split (the same photos whichever form is read), skips counted once per file."""

import pyarrow.parquet as pq
import pytest
import ray
from PIL import Image

from pipeline import config
from pipeline.core import split
from pipeline.data import prepare, sources, storage
from support import corpus
from support.reference_prior import count_reasons

VAL_FRACTION = 0.3


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """20 good photos (some in a subfolder) and 10 bad files, raw and prepared at short side 48."""
    root = tmp_path_factory.mktemp("photos")
    info = corpus.write_corpus(root / "raw")
    (root / "raw" / "more").mkdir()
    for i in range(12):
        (root / "raw" / "more" / f"p{i}.png").write_bytes(corpus.encode(Image.fromarray(corpus.photo(70 + i)), "PNG"))
    return root / "raw", root / "shards", info


def cfg_for(train_uri):
    return (
        config.ExperimentConfig()
        .replace({"data.train": str(train_uri), "data.val_fraction": VAL_FRACTION, "data.resize": 48, "data.crop": 32})
        .data
    )


def ids_of(ds):
    return sorted(str(r["id"]) for r in ds.select_columns(["id"]).take_all())


def test_raw_and_shards_give_the_same_train_and_val_photos(ray_local, photos):
    raw_dir, shards_dir, info = photos
    manifest = prepare.prepare(str(raw_dir), str(shards_dir), size=48, s3=None)
    assert manifest["images"] == 20 and manifest["skipped"] == count_reasons(info["skip"])
    assert manifest["id_root"] == str(raw_dir), "the folder the ids are relative to: the one --data names"
    raw, shards = (
        sources.Source.open(str(raw_dir), storage.S3Settings()),
        sources.Source.open(str(shards_dir), storage.S3Settings()),
    )
    assert (raw.kind, shards.kind) == (sources.RAW, sources.SHARDS)
    good = sorted(set(raw.ids()) - set(info["skip"]))
    assert sorted(shards.ids()) == good and "more/p0.png" in good, "one id: the path relative to the dataset root"
    # the plain threshold decides here (no tiny-dataset floor): each photo's side depends on its id alone
    assert (
        split.val_threshold(raw.ids(), VAL_FRACTION, 0)
        == split.val_threshold(shards.ids(), VAL_FRACTION, 0)
        == VAL_FRACTION
    )

    sides = {}
    for name, uri in (("raw", raw_dir), ("shards", shards_dir)):
        train_ds, val_ds, collector, info_ = sources.training_datasets(
            cfg_for(uri), storage.S3Settings(), cpus_per_task=0.5
        )
        sides[name] = ids_of(train_ds), ids_of(val_ds)
        assert info_["source"] == (sources.RAW if name == "raw" else sources.SHARDS)
        if name == "raw":  # bad files are decoded (and skipped) on both sides; two epochs count each once
            ids_of(train_ds)
            assert ray.get(collector.counts.remote()) == count_reasons(info["skip"])
    assert sides["raw"] == sides["shards"], "the same photos in validation whether read raw or as shards"
    train_ids, val_ids = sides["raw"]
    assert val_ids and train_ids and sorted(train_ids + val_ids) == good
    assert val_ids == sorted(split.split_ids(good, VAL_FRACTION, 0)[1])


def test_a_source_says_what_it_holds(ray_local, photos, tmp_path):
    raw_dir, _, _ = photos
    with pytest.raises(storage.StorageError, match="no input files"):
        (tmp_path / "empty").mkdir()
        sources.Source.open(str(tmp_path / "empty"), storage.S3Settings())
    raw = sources.Source.open(str(raw_dir), storage.S3Settings(), limit=5)
    assert len(raw) == 5 and not raw.prepared
    rows = raw.files(files_per_block=2).take_all()
    assert sorted(r["path"] for r in rows) == sorted(raw.paths)
    with pytest.raises(ValueError, match="raw files"):
        raw.rows()


def test_prepare_removes_what_killed_runs_left(ray_local, photos, tmp_path):
    raw_dir, _, _ = photos
    out = tmp_path / "shards"
    killed, other = out / "20200101T000000Z-deadbeef", out / "keep-me"
    for d in (killed, other):
        d.mkdir(parents=True)
        (d / "part-0.parquet").write_bytes(b"half a shard")
    manifest = prepare.prepare(str(raw_dir), str(out), size=48, s3=None)
    assert not killed.exists(), "a killed run's folder outlives the next run"
    assert (other / "part-0.parquet").exists(), "only folders shaped like runs are removed"
    assert all((out / s["path"]).exists() for s in manifest["shards"])


def test_every_shard_is_a_sample_of_the_whole_list_not_a_run_of_one_folder(ray_local, tmp_path):
    """A list of sources one after another (mix-train: large-train, then everyday-train) gave shards
    of one folder each, and training reads a shard or two at a time: prepare writes the photos in a
    seeded random order (a read task takes 16 of them, so a shard of one folder is ~1e-6 likely)."""
    raw = tmp_path / "raw"
    for k, folder in enumerate(("a", "b")):
        (raw / folder).mkdir(parents=True)
        for i in range(24):
            img = Image.fromarray(corpus.photo(100 * k + i))
            (raw / folder / f"p{i:02d}.png").write_bytes(corpus.encode(img, "PNG"))
    out = tmp_path / "shards"
    manifest = prepare.prepare(str(raw), str(out), size=32, s3=None, shard_mb=0.05)  # ~10 rows a shard
    assert manifest["images"] == 48 and len(manifest["shards"]) >= 3, manifest["shards"]
    for s in manifest["shards"]:
        ids = [str(i) for i in pq.read_table(str(out / s["path"]), columns=["id"]).column("id").to_pylist()]
        assert {i.split("/")[0] for i in ids} == {"a", "b"}, f"a shard of one folder: {ids}"


def test_validation_scores_the_working_size_unless_asked(ray_local, photos):
    """Training on small crops is judged where inference colours: validation's centre square is the
    working size (data.resize) unless data.val_crop names another."""
    raw_dir, _, _ = photos
    for val_crop, side in ((None, 48), (40, 40)):
        data_cfg = config.ExperimentConfig().replace({**_data_keys(raw_dir), "data.val_crop": val_crop}).data
        train_ds, val_ds, _, _ = sources.training_datasets(data_cfg, storage.S3Settings(), cpus_per_task=0.5)
        assert {r["rgb"].shape for r in train_ds.take(4)} == {(32, 32, 3)}
        assert {r["rgb"].shape for r in val_ds.take_all()} == {(side, side, 3)}
    with pytest.raises(config.ConfigError, match="val_crop"):
        config.ExperimentConfig().replace({**_data_keys(raw_dir), "data.val_crop": 64})


def _data_keys(train_uri) -> dict:
    return {"data.train": str(train_uri), "data.val_fraction": VAL_FRACTION, "data.resize": 48, "data.crop": 32}
