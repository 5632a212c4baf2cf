"""The train/val split: one rule for raw photos and prepared shards. Pure (no Ray, no I/O).

A photo's **id** is its path relative to the dataset root (``photo_ids``). The root is the folder
or ``s3://`` prefix the data URI names (``pipeline.data.storage.dataset_root``), so adding photos
anywhere below it, or reading only the first ``--limit`` of them, changes no other photo's id; only
for a list file or ``skimage:`` is it the deepest folder holding every listed file
(``common_folder``). ``colorize prepare`` stores exactly this id in each shard row (and the root
in its manifest), so a dataset read raw or as shards, moved or mounted elsewhere, has the same ids.

The rule (``val_threshold``, ``Part``): hash each id with the seed to a number in [0, 1)
(``id_hash``); a photo is validation when its number is below a threshold ``t``:

- ``t = val_fraction``: on average that fraction of photos, each one's side fixed by its own id,
  so a stream of shards is split row by row without reading anything else;
- raised until at least ``min_val`` photos fall below it (a tiny dataset, e.g. the demo's 10
  photos with val_fraction 0.2, still validates on something), and lowered so that at least one
  photo stays in training (never all).

``t`` is computed once from all ids (raw: the listing; shards: their ``id`` column) and then
applied per row.

Stability, precisely: while at least ``min_val`` ids (the jobs use 1), but not all of them, hash
below ``val_fraction`` (among the ids at hand: the listed files raw, the photos that decoded in
shards), ``t`` is ``val_fraction`` itself and each photo's side depends on its id and
the seed alone: adding photos never moves one from validation to training, and raw photos and
their shards validate on the same photos. The chance that no id hashes below is
``(1 - val_fraction) ** n`` (0.1% for 30 photos at 0.2), so this fails only for tiny datasets,
where the fallback (kept: the demo needs a validation photo) sets ``t`` from the ids at hand:

- adding a photo with a smaller hash can move the photo the fallback chose back into training;
- it chooses among the listed files, before decoding, so it may choose one that then fails to
  decode (or is skipped as grey) and validation has no usable photo;
- shards hold only the photos that decoded, so a tiny dataset read raw and the same dataset read
  as shards can compute different thresholds and validate on different photos.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

TRAIN, VAL, ALL = "train", "val", "all"


def common_folder(paths: Sequence[str]) -> str:
    """The deepest folder holding every path (local absolute paths or ``bucket/key`` paths): the
    dataset root of a list file or ``skimage:``, which name no folder of their own."""
    return posixpath.commonpath([posixpath.dirname(p) for p in paths]) if paths else ""


def photo_id(path: str, root: str) -> str:
    """A path's id: relative to the dataset root (the path itself when there is no root)."""
    return posixpath.relpath(path, root) if root else path


def photo_ids(paths: Sequence[str], root: Optional[str] = None) -> List[str]:
    """Each path relative to the dataset root (default: ``common_folder(paths)``): the id that
    names a photo everywhere."""
    root = common_folder(paths) if root is None else root
    return [photo_id(p, root) for p in paths]


def id_hash(photo_id: str, seed: int) -> float:
    """A stable number in [0, 1) for an id (blake2b of ``"seed:id"``, 53 bits)."""
    digest = hashlib.blake2b(f"{seed}:{photo_id}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53


def id_hashes(ids: Sequence[str], seed: int) -> np.ndarray:
    return np.array([id_hash(str(i), seed) for i in ids], np.float64)


def val_threshold(ids: Sequence[str], val_fraction: float, seed: int, min_val: int = 1) -> float:
    """The threshold ``t`` of the rule above (0.0: no validation part)."""
    n = len(ids)
    if val_fraction <= 0 or n < 2:
        return 0.0
    h = np.sort(id_hashes(ids, seed))
    t = float(val_fraction)
    k = min(max(1, min_val), n - 1)
    if int((h < t).sum()) < k:  # too few: just above the k-th smallest
        t = math.nextafter(float(h[k - 1]), math.inf)
    if int((h < t).sum()) >= n:  # all of them: keep the largest for training
        t = float(h[-1])
    return t


@dataclass(frozen=True)
class Part:
    """One side of a split: ``side`` is "train", "val" or "all" (no split: another URI validates)."""

    side: str = ALL
    seed: int = 0
    threshold: float = 0.0

    def keep(self, ids: Sequence[str]) -> np.ndarray:
        """(n,) bool: which of ``ids`` belong to this part."""
        if self.side == ALL:
            return np.ones(len(ids), bool)
        is_val = id_hashes(ids, self.seed) < self.threshold
        return is_val if self.side == VAL else ~is_val


WHOLE = Part()  # every photo: when another URI holds the validation set


def split_parts(ids: Sequence[str], val_fraction: float, seed: int, min_val: int = 1) -> Tuple[Part, Part]:
    """(train part, val part) of a dataset with these ids."""
    t = val_threshold(ids, val_fraction, seed, min_val)
    return Part(TRAIN, seed, t), Part(VAL, seed, t)


def split_ids(ids: Sequence[str], val_fraction: float, seed: int = 0, min_val: int = 1) -> Tuple[List[str], List[str]]:
    """(train ids, val ids) in their given order."""
    train, _ = split_parts(ids, val_fraction, seed, min_val)
    keep = train.keep(ids)
    return [i for i, k in zip(ids, keep, strict=True) if k], [i for i, k in zip(ids, keep, strict=True) if not k]
