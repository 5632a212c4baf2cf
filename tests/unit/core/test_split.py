"""The one train/val split rule (``pipeline.core.split``) and the one skip record (``pipeline.core.skips``)."""

import numpy as np

from pipeline.core import split
from pipeline.core.skips import Skips
from pipeline.data import sources, storage


def test_ids_are_paths_relative_to_the_dataset_root_wherever_it_is_mounted():
    a = [f"/data/a/sub{i % 3}/img{i}.jpg" for i in range(30)]
    b = [p.replace("/data/a", "/mnt/other/place") for p in a]
    s3 = [p.replace("/data/a", "bucket/prefix") for p in a]  # pyarrow's S3 paths: bucket/key
    assert split.photo_ids(a) == split.photo_ids(b) == split.photo_ids(s3)
    assert split.photo_ids(a)[:2] == ["sub0/img0.jpg", "sub1/img1.jpg"]
    assert split.photo_ids(["/x/one.jpg"]) == ["one.jpg"]  # one file: its name, not "."
    assert split.photo_ids(a, "/data") == [p[len("/data/") :] for p in a], "an explicit root (the folder named)"


def test_the_dataset_root_is_the_folder_the_uri_names():
    assert storage.dataset_root("s3://bucket/photos/", ["bucket/photos/a/1.jpg"]) == "bucket/photos"
    assert storage.dataset_root("/d", ["/d/a/1.jpg", "/d/a/2.jpg"]) == "/d", "not /d/a, the files' common folder"
    assert storage.dataset_root("/d/a/1.jpg", ["/d/a/1.jpg"]) == "/d/a", "one file: its folder"
    # a list file or the built-in photos name no folder of photos: the files' common folder
    assert storage.dataset_root("/l/train.txt", ["/x/a/1.jpg", "/x/b/2.jpg"]) == "/x"
    assert storage.dataset_root("skimage:", ["/s/data/a.png", "/s/data/b.png"]) == "/s/data"


def _touch(folder, names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"not decoded here")


def _sides(uri, limit=None):
    """(ids, {id: "train" | "val"}) of the photos at ``uri``, as a training run splits them."""
    ids = sources.Source.open(uri, None, limit).ids()
    train, val = split.split_ids(ids, 0.2, seed=0)
    return ids, {i: split.TRAIN for i in train} | {i: split.VAL for i in val}


def test_a_photo_in_a_new_subfolder_or_a_limit_moves_no_other_photo(tmp_path):
    d = tmp_path / "d"
    _touch(d, [f"a/{i}.jpg" for i in range(40)])
    ids, before = _sides(str(d))
    assert ids[0] == "a/0.jpg", "relative to the folder --data names, not to the files' common folder d/a"
    assert split.VAL in before.values(), "the plain rule decides (no tiny-dataset fallback)"
    _touch(d, ["b/x.jpg"])
    _, after = _sides(str(d))
    assert {i: after.get(i) for i in before} == before, "every old photo keeps its id and its side"
    assert _sides(str(d), limit=5)[0] == ids[:5], "--limit reads the first files under the same ids"


def test_split_is_a_threshold_on_a_stable_hash_of_the_id():
    ids = [f"img{i}.jpg" for i in range(2000)]
    train, val = split.split_ids(ids, 0.2, seed=0)
    assert not set(train) & set(val) and len(train) + len(val) == 2000
    assert 300 < len(val) < 500, "about val_fraction of the photos"
    assert split.split_ids(list(reversed(ids)), 0.2, seed=0)[1] == list(reversed(val)), "order does not matter"
    assert split.split_ids(ids, 0.2, seed=1)[1] != val, "the seed picks another split"
    # row by row (a stream of shards): each id's side needs only the id, the seed and the threshold
    train_part, val_part = split.split_parts(ids, 0.2, seed=0)
    for chunk in (ids[:7], ids[7:500], ids[500:]):
        assert list(np.array(chunk)[val_part.keep(chunk)]) == [i for i in chunk if i in set(val)]
        assert (train_part.keep(chunk) == ~val_part.keep(chunk)).all()
    # growing the dataset never moves a photo from validation to training
    grown_val = set(split.split_ids(ids + [f"new{i}.jpg" for i in range(500)], 0.2, seed=0)[1])
    assert set(val) <= grown_val


def test_tiny_datasets_always_validate_on_something_and_never_on_everything():
    for seed in range(50):
        ids = [f"photo{i}.png" for i in range(10)]  # the demo: 10 photos, val_fraction 0.2
        train, val = split.split_ids(ids, 0.2, seed)
        assert len(val) >= 1 and len(train) >= 1
        assert len(split.split_ids(ids, 0.05, seed, min_val=2)[1]) >= 2
        assert len(split.split_ids(ids[:2], 0.9, seed)[0]) == 1, "never all files to validation"
    assert split.split_ids(["a", "b"], 0.0) == (["a", "b"], []), "val_fraction 0: no split"
    assert split.split_parts(["a"], 0.5, 0)[1].keep(["a"]).tolist() == [False]


def test_skip_record_counts_and_keeps_a_few_examples():
    s = Skips().add_all([(f"p{i}", "corrupt") for i in range(30)] + [("q", "grey")])
    s.add("missing", count=2)
    assert s.counts == {"corrupt": 30, "grey": 1, "missing": 2} and s.total == 33
    assert len(s.examples["corrupt"]) == 20 and s.examples["grey"] == ["q"] and "missing" not in s.examples
    merged = Skips().merge(Skips.from_dict(s.to_dict())).merge(Skips().add("grey", "r"))
    assert merged.counts == {"corrupt": 30, "grey": 2, "missing": 2} and merged.examples["grey"] == ["q", "r"]
    assert not Skips() and not Skips().add("grey", count=0)
