"""The priors job on Ray Data against a real S3 endpoint (moto's server): the same histogram as from
the folder, the prior written to S3, errors that name the URI."""

import io
import json

import numpy as np
import pytest

from pipeline.data import priors, storage
from support.reference_prior import count_reasons, direct_histogram
from support.servers import upload_dir


def test_priors_from_s3_equal_folder_and_write_to_s3(ray_local, s3_server, s3_client, corpus_dir):
    root, info = corpus_dir
    s3_client.create_bucket(Bucket="photos")
    upload_dir(s3_client, "photos", "set1", root)
    s3 = storage.S3Settings(endpoint=s3_server)
    result = priors.compute_prior("s3://photos/set1", size=48, s3=s3)
    assert np.array_equal(result.counts, direct_histogram(root, info["good"]))
    assert result.skipped == count_reasons(info["skip"])
    meta = priors.provenance(result, "s3://photos/set1", 48, True, None)
    priors.write_prior(result, "s3://photos/priors/prior_probs.npy", meta, s3)
    body = s3_client.get_object(Bucket="photos", Key="priors/prior_probs.npy")["Body"].read()
    assert np.allclose(np.load(io.BytesIO(body)), result.prior)
    side = json.loads(s3_client.get_object(Bucket="photos", Key="priors/prior_probs.json")["Body"].read())
    assert side["data_uri"] == "s3://photos/set1"
    assert "testing-secret" not in json.dumps(side)


def test_s3_errors_name_the_uri(ray_local, s3_server):
    s3 = storage.S3Settings(endpoint=s3_server)
    with pytest.raises(storage.StorageError, match="s3://no-such-bucket/x"):
        priors.compute_prior("s3://no-such-bucket/x", s3=s3)
    dead = storage.S3Settings(endpoint="http://127.0.0.1:9", connect_timeout=1, retries=1)
    with pytest.raises(storage.StorageError, match="s3://photos/set1"):
        priors.compute_prior("s3://photos/set1", s3=dead)
    with pytest.raises(storage.StorageError, match="bucket 'nobucket' does not exist"):
        storage.check_writable_parent("s3://nobucket/p.npy", s3)
