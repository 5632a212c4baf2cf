"""One S3Settings, built at the entry point from the config, reaches every consumer with its region
(training and Tune once dropped ``data.s3_region``)."""

import inspect

import pytest

from pipeline import config
from pipeline.apply import evaluate
from pipeline.data import prepare, priors, shards, sources, storage
from pipeline.train import trainer


def test_region_from_the_config_reaches_every_consumer(monkeypatch):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)  # the region can only come from the config
    cfg = config.ExperimentConfig().replace({"data.s3_region": "eu-north-1"})
    s3 = storage.S3Settings.from_config(cfg.data)
    assert s3.region == "eu-north-1"
    assert storage.S3Settings.from_dict(s3.to_dict()) == s3, "what a Ray Train worker and a Tune trial rebuild"
    # the data layer (raw listing, shards, priors) and every read/write resolve through storage.resolve
    assert storage.resolve("s3://bucket/photos", s3)[0].region == "eu-north-1"
    # Ray Train's checkpoint storage
    path, fs = trainer.storage_for("s3://bucket/runs", s3)
    assert fs is not None and fs.region == "eu-north-1" and path == "bucket/runs"
    # a custom endpoint keeps the region too
    s3e = storage.S3Settings.from_config(cfg.replace({"data.s3_endpoint": "http://127.0.0.1:9"}).data)
    assert trainer.storage_for("s3://bucket/runs", s3e)[1].region == "eu-north-1"


def test_settings_from_the_environment_fill_only_what_the_config_leaves_open(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert storage.S3Settings.from_env() == storage.S3Settings(endpoint="http://minio:9000", region="us-west-2")
    assert storage.S3Settings.from_env(region="eu-north-1").region == "eu-north-1"


def test_an_s3_uri_without_the_entry_points_settings_is_a_programming_error(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-west-2")  # what a silent fallback would read instead of the config
    calls = [
        lambda: storage.resolve("s3://bucket/photos", None),
        lambda: storage.list_inputs("s3://bucket/photos", None),
        lambda: storage.read_bytes("s3://bucket/prior.npy", None),
        lambda: storage.write_bytes_atomic("s3://bucket/prior.npy", b"x", None),
        lambda: storage.check_writable_parent("s3://bucket/prior.npy", None),
        lambda: shards.is_prepared("s3://bucket/shards", None),
    ]
    for call in calls:
        with pytest.raises(storage.MissingS3Settings, match="S3 settings must be passed down from the entry point"):
            call()
    assert issubclass(storage.MissingS3Settings, ValueError)
    assert storage.resolve("/tmp/photos", None)[1] == "/tmp/photos", "local URIs need no S3 settings"


# Below the entry points every reader and writer takes the S3 settings, with no default to forget.
TAKES_S3 = [
    storage.resolve,
    storage.list_inputs,
    storage.read_bytes,
    storage.write_bytes_atomic,
    storage.check_writable_parent,
    shards.is_prepared,
    shards.read_manifest,
    shards.shard_files,
    shards.shards_dataset,
    shards.read_ids,
    sources.Source.open,
    sources.image_dataset,
    sources.training_datasets,
    priors.compute_prior,
    priors.write_prior,
    priors.load_prior,
    prepare.prepare,
    evaluate.load_truth,
]


@pytest.mark.parametrize("fn", TAKES_S3, ids=lambda f: f.__qualname__)
def test_s3_settings_are_a_required_argument_below_the_entry_points(fn):
    assert inspect.signature(fn).parameters["s3"].default is inspect.Parameter.empty
