"""Skipped inputs, counted one way by every job that reads photos. Pure (no Ray, no I/O).

A ``Skips`` record holds, per reason, how many inputs were skipped and the first few of their
paths (so a user can find them). Per-file steps return ``[(path, reason), ...]``; the listing adds
its own reasons; ``pipeline.data.sources.SkipCollector`` is the one Ray-side place that gathers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

# Found by decoding a file (pipeline.core.transforms).
SKIP_EMPTY = "empty"  # zero-byte file or object
SKIP_NOT_IMAGE = "not_image"  # not a format PIL recognises
SKIP_CORRUPT = "corrupt"  # recognised but fails to decode (truncated, broken)
SKIP_TOO_LARGE = "too_large"  # over max_pixels (decompression-bomb guard)
SKIP_TOO_SMALL = "too_small"  # fewer than 8 pixels on a side
SKIP_GREY = "grey"  # no colour: would only teach grey (skipped where colour is the target)
SKIP_REASONS = (SKIP_EMPTY, SKIP_NOT_IMAGE, SKIP_CORRUPT, SKIP_TOO_LARGE, SKIP_TOO_SMALL, SKIP_GREY)

# Found by listing or reading (pipeline.data.storage, pipeline.data.sources).
SKIP_MISSING = "missing"  # listed, but gone (or a dangling link) by read time
SKIP_UNREADABLE = "unreadable"  # a file or folder this process may not read
SKIP_SYMLINK_LOOP = "symlink_loop"  # a link back to a folder above it: not followed
SKIP_DUPLICATE = "duplicate"  # a file or folder already listed under another name (links)
SKIP_BAD_NAME = "bad_name"  # a control character (newline, tab ...) or bytes that are not UTF-8 in the path
LISTING_REASONS = (SKIP_MISSING, SKIP_UNREADABLE, SKIP_SYMLINK_LOOP, SKIP_DUPLICATE, SKIP_BAD_NAME)
# Jobs with one output per input (infer, video): the result could not be written.
SKIP_WRITE_FAILED = "write_failed"

MAX_EXAMPLES = 20  # paths kept per reason


@dataclass
class Skips:
    """reason -> count, and reason -> up to ``MAX_EXAMPLES`` example paths."""

    counts: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, List[str]] = field(default_factory=dict)

    def add(self, reason: str, path: Optional[str] = None, count: int = 1) -> Skips:
        if count <= 0:
            return self
        self.counts[reason] = self.counts.get(reason, 0) + count
        if path is not None:
            kept = self.examples.setdefault(reason, [])
            if len(kept) < MAX_EXAMPLES:
                kept.append(path)
        return self

    def add_all(self, items: Iterable[Tuple[str, str]]) -> Skips:
        """``items``: (path, reason) pairs, as the per-file steps return them."""
        for path, reason in items:
            self.add(reason, path)
        return self

    def merge(self, other: Skips) -> Skips:
        for reason, n in other.counts.items():
            examples = other.examples.get(reason, [])
            for path in examples:
                self.add(reason, path)
            self.add(reason, None, n - len(examples))
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def to_dict(self) -> dict:
        """JSON-able form (what crosses process boundaries)."""
        return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()}}

    @staticmethod
    def from_dict(d: dict) -> Skips:
        return Skips(dict(d.get("counts", {})), {k: list(v) for k, v in d.get("examples", {}).items()})
