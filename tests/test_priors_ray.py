"""The priors job on Ray Data: exact histograms from a folder and from a real S3 endpoint."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import corpus
from conftest import upload_dir
from pipeline import color, priors, storage

pytestmark = pytest.mark.ray


def direct_histogram(root: Path, names):
    """The prior computed straight in numpy: PIL decode, white-composite alpha, our Lab, brute-force
    nearest bin. Independent of the job's per-colour lookup table and of Ray."""
    bins = color.ab_bins().astype(np.float64)
    hist = np.zeros(len(bins), np.int64)
    for n in names:
        img = Image.open(root / n)
        if img.mode in ("RGBA", "P"):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        rgb = np.asarray(img.convert("RGB"))
        ab = color.rgb_to_lab(rgb)[..., 1:].reshape(-1, 2).astype(np.float64)
        d = ((ab[:, None, :] - bins[None]) ** 2).sum(-1)
        hist += np.bincount(d.argmin(1), minlength=len(bins))
    return hist


def expected_skips(skip):
    out = {}
    for reason in skip.values():
        out[reason] = out.get(reason, 0) + 1
    return out


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    info = corpus.write_corpus(root)
    return root, info


def test_priors_from_folder_equal_direct_numpy(ray_local, corpus_dir, tmp_path):
    root, info = corpus_dir
    result = priors.compute_prior(str(root), size=48)
    assert np.array_equal(result.counts, direct_histogram(root, info["good"]))
    assert result.images == len(info["good"])
    assert result.skipped == expected_skips(info["skip"])
    assert set(result.skipped_examples["corrupt"]) == {str(root / n) for n, r in info["skip"].items() if r == "corrupt"}
    out = tmp_path / "p" / "prior_probs.npy"
    meta = priors.provenance(result, str(root), 48, True, None)
    written = priors.write_prior(result, str(out), meta)
    p = np.load(out)
    assert p.dtype == np.float64 and p.shape == (323,) and abs(p.sum() - 1) < 1e-12
    side = json.loads((tmp_path / "p" / "prior_probs.json").read_text())
    assert side["Q"] == 323 and side["images_used"] == result.images and side["size"] == 48
    assert side["images_skipped"] == result.skipped and side["pixels"] == int(result.counts.sum())
    assert Image.open(tmp_path / "p" / "prior_probs.png").size[0] > 400
    assert not [f for f in (tmp_path / "p").iterdir() if f.name.endswith(".tmp")]
    assert priors.load_prior(str(out)).shape == (323,) and len(written) == 3


def test_limit_list_file_and_missing_entries(ray_local, corpus_dir, tmp_path):
    root, info = corpus_dir
    lst = tmp_path / "list.txt"
    rel = [str(Path("..") / root.name / n) for n in info["good"][:3]]
    lst.write_text("\n".join(["# three good files and one that is gone", *rel, f"{root}/gone.png"]) + "\n")
    # relative entries resolve against the list's folder: copy the list next to the corpus' parent
    lst2 = root.parent / "sub" / "list.txt"
    lst2.parent.mkdir(exist_ok=True)
    lst2.write_text(lst.read_text())
    result = priors.compute_prior(str(lst2), size=48)
    assert result.images == 3 and result.skipped == {"missing": 1}
    assert np.array_equal(result.counts, direct_histogram(root, info["good"][:3]))
    limited = priors.compute_prior(str(root), size=48, limit=8)  # sorted: 7 bad files, then good_0
    assert limited.listed == 8 and limited.images == 1


def test_empty_or_unreadable_dataset_is_a_clear_error(ray_local, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(storage.StorageError, match="no input files"):
        priors.compute_prior(str(tmp_path / "empty"))
    with pytest.raises(storage.StorageError, match="does not exist"):
        priors.compute_prior(str(tmp_path / "nope"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="no usable image"):
        priors.compute_prior(str(bad))


@pytest.mark.services
def test_priors_from_s3_equal_folder_and_write_to_s3(ray_local, s3_server, s3_client, corpus_dir):
    root, info = corpus_dir
    s3_client.create_bucket(Bucket="photos")
    upload_dir(s3_client, "photos", "set1", root)
    s3 = storage.S3Settings(endpoint=s3_server)
    result = priors.compute_prior("s3://photos/set1", size=48, s3=s3)
    assert np.array_equal(result.counts, direct_histogram(root, info["good"]))
    assert result.skipped == expected_skips(info["skip"])
    meta = priors.provenance(result, "s3://photos/set1", 48, True, None)
    priors.write_prior(result, "s3://photos/priors/prior_probs.npy", meta, s3)
    body = s3_client.get_object(Bucket="photos", Key="priors/prior_probs.npy")["Body"].read()
    assert np.allclose(np.load(io.BytesIO(body)), result.prior)
    side = json.loads(s3_client.get_object(Bucket="photos", Key="priors/prior_probs.json")["Body"].read())
    assert side["data_uri"] == "s3://photos/set1"
    assert "testing-secret" not in json.dumps(side)


@pytest.mark.services
def test_s3_errors_name_the_uri(ray_local, s3_server):
    s3 = storage.S3Settings(endpoint=s3_server)
    with pytest.raises(storage.StorageError, match="s3://no-such-bucket/x"):
        priors.compute_prior("s3://no-such-bucket/x", s3=s3)
    dead = storage.S3Settings(endpoint="http://127.0.0.1:9", connect_timeout=1, retries=1)
    with pytest.raises(storage.StorageError, match="s3://photos/set1"):
        priors.compute_prior("s3://photos/set1", s3=dead)
    with pytest.raises(storage.StorageError, match="bucket 'nobucket' does not exist"):
        storage.check_writable_parent("s3://nobucket/p.npy", s3)
