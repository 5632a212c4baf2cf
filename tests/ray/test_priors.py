"""The priors job on Ray Data: exact histograms from a folder and a list file, clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data import priors, storage
from support.reference_prior import count_reasons, direct_histogram


def test_priors_from_folder_equal_direct_numpy(ray_local, corpus_dir, tmp_path):
    root, info = corpus_dir
    result = priors.compute_prior(str(root), size=48, s3=None)
    assert np.array_equal(result.counts, direct_histogram(root, info["good"]))
    assert result.images == len(info["good"])
    assert result.skipped == count_reasons(info["skip"])
    assert set(result.skipped_examples["corrupt"]) == {str(root / n) for n, r in info["skip"].items() if r == "corrupt"}
    out = tmp_path / "p" / "prior_probs.npy"
    meta = priors.provenance(result, str(root), 48, True, None)
    written = priors.write_prior(result, str(out), meta, None)
    p = np.load(out)
    assert p.dtype == np.float64 and p.shape == (323,) and abs(p.sum() - 1) < 1e-12
    side = json.loads((tmp_path / "p" / "prior_probs.json").read_text())
    assert side["Q"] == 323 and side["images_used"] == result.images and side["size"] == 48
    assert side["images_skipped"] == result.skipped and side["pixels"] == int(result.counts.sum())
    assert Image.open(tmp_path / "p" / "prior_probs.png").size[0] > 400
    assert not [f for f in (tmp_path / "p").iterdir() if f.name.endswith(".tmp")]
    assert priors.load_prior(str(out), None).shape == (323,) and len(written) == 3


def test_limit_list_file_and_missing_entries(ray_local, corpus_dir, tmp_path):
    root, info = corpus_dir
    lst = tmp_path / "list.txt"
    rel = [str(Path("..") / root.name / n) for n in info["good"][:3]]
    lst.write_text("\n".join(["# three good files and one that is gone", *rel, f"{root}/gone.png"]) + "\n")
    # relative entries resolve against the list's folder: copy the list next to the corpus' parent
    lst2 = root.parent / "sub" / "list.txt"
    lst2.parent.mkdir(exist_ok=True)
    lst2.write_text(lst.read_text())
    result = priors.compute_prior(str(lst2), size=48, s3=None)
    assert result.images == 3 and result.skipped == {"missing": 1}
    assert np.array_equal(result.counts, direct_histogram(root, info["good"][:3]))
    limited = priors.compute_prior(str(root), size=48, limit=8, s3=None)  # sorted: 7 bad files, then good_0
    assert limited.listed == 8 and limited.images == 1


def test_empty_or_unreadable_dataset_is_a_clear_error(ray_local, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(storage.StorageError, match="no input files"):
        priors.compute_prior(str(tmp_path / "empty"), s3=None)
    with pytest.raises(storage.StorageError, match="does not exist"):
        priors.compute_prior(str(tmp_path / "nope"), s3=None)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="no usable image"):
        priors.compute_prior(str(bad), s3=None)
