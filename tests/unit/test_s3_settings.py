"""One S3Settings, built at the entry point from the config, reaches every consumer with its region
(issue 15 item 13: training and Tune dropped ``data.s3_region``)."""

from pipeline import config, storage, train


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
    path, fs = train.storage_for("s3://bucket/runs", s3)
    assert fs is not None and fs.region == "eu-north-1" and path == "bucket/runs"
    # a custom endpoint keeps the region too
    s3e = storage.S3Settings.from_config(cfg.replace({"data.s3_endpoint": "http://127.0.0.1:9"}).data)
    assert train.storage_for("s3://bucket/runs", s3e)[1].region == "eu-north-1"


def test_settings_from_the_environment_fill_only_what_the_config_leaves_open(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert storage.S3Settings.from_env() == storage.S3Settings(endpoint="http://minio:9000", region="us-west-2")
    assert storage.S3Settings.from_env(region="eu-north-1").region == "eu-north-1"
