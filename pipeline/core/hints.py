"""Colour hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization with Learned Deep
Priors"): a user's points, what they mean to the generator, and how training simulates them.

A hint is a point of the photo (pixel coordinates of the photo at its own size, x to the right,
y down) and an sRGB colour; only the colour's ab is used (the photo keeps its own lightness).
The generator sees hints as a (3, h, w) map at its working size: a/AB_SCALE, b/AB_SCALE and a
0/1 mask, each hint a small square patch; all zero means no hints.

Training draws hints from the true colours as the paper does: a geometric number of points
(after each one, stop with probability ``stop``; so often none), each at a 2-D Gaussian around
the image centre (sigma a quarter of each side), revealing the mean ab of a square patch 1-9 px.
Pure numpy/torch.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from models.generator import HINT_CHANNELS
from models.scaling import AB_SCALE
from pipeline.core import color

MAX_HINTS = 256  # more points than anyone places by hand: a bigger list is a mistake or an abuse
PATCH = 7  # side in working-size pixels of a user's hint: training patches are 1..MAX_PATCH px, and
# the model follows the larger ones much more (at 1-3 px it mostly keeps its own guess)
MAX_PATCH = 9

_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


class HintError(ValueError):
    """A hint that cannot be used; the message says which one and why."""


@dataclass(frozen=True)
class Hint:
    """A point (x, y) of the photo at its own size and the colour the user says it has."""

    x: float
    y: float
    rgb: Tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)

    def ab(self) -> Tuple[float, float]:
        """The colour's a, b in Lab units."""
        lab = color.rgb_to_lab(np.array([[self.rgb]], np.uint8))[0, 0]
        return float(lab[1]), float(lab[2])

    def to_json(self) -> dict:
        return {"x": self.x, "y": self.y, "color": self.hex}


def parse_colour(text) -> Tuple[int, int, int]:
    """``#rrggbb`` or ``#rgb`` (the ``#`` optional) -> (r, g, b); HintError otherwise."""
    m = _HEX.fullmatch(str(text).strip()) if isinstance(text, str) else None
    if not m:
        raise HintError(f"{text!r} is not a colour: give #rrggbb, e.g. #aa3300")
    h = m.group(1)
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _coordinate(value, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise HintError(f"{where}: {name} must be a number, got {value!r}")
    try:
        v = float(value)
    except ValueError:
        raise HintError(f"{where}: {name} must be a number, got {value!r:.40}") from None
    except OverflowError:  # an integer of hundreds of digits: no float holds it
        v = math.inf
    if not math.isfinite(v):
        raise HintError(f"{where}: {name} must be a finite number, got {value!r:.40}")
    return v


def parse_hint(text: str) -> Hint:
    """``X,Y,#rrggbb`` (the ``--hint`` flag) -> a Hint; HintError for anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 3:
        raise HintError(f"hint {text!r}: give X,Y,#rrggbb (pixel coordinates of the photo and a colour)")
    return Hint(
        _coordinate(parts[0], "x", f"hint {text!r}"),
        _coordinate(parts[1], "y", f"hint {text!r}"),
        parse_colour(parts[2]),
    )


def hints_from_json(doc) -> List[Hint]:
    """A JSON list (text or parsed) of ``{"x": .., "y": .., "color": "#rrggbb"}`` (or ``"colour"``)
    -> Hints; HintError naming the first bad entry. At most ``MAX_HINTS``."""
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except RecursionError:  # nested deeper than Python's stack: no list of points
            raise HintError("hints are not a JSON list of points: nested too deeply") from None
        except ValueError as e:
            raise HintError(f"hints are not JSON: {e}") from None
    if not isinstance(doc, list):
        raise HintError('hints must be a JSON list like [{"x": 10, "y": 20, "color": "#aa3300"}]')
    if len(doc) > MAX_HINTS:
        raise HintError(f"{len(doc)} hints: at most {MAX_HINTS}")
    out = []
    for i, item in enumerate(doc):
        where = f"hint {i}"
        if isinstance(item, dict) and "colour" in item:  # colorize's own spelling elsewhere
            if "color" in item:
                raise HintError(f'{where}: give "color" or "colour", not both')
            item = {("color" if k == "colour" else k): v for k, v in item.items()}
        if not isinstance(item, dict) or not {"x", "y", "color"} <= set(item):
            raise HintError(f'{where}: give {{"x": .., "y": .., "color": "#rrggbb"}}, got {item!r:.80}')
        unknown = sorted(set(item) - {"x", "y", "color"})
        if unknown:
            raise HintError(f"{where}: unknown keys {unknown}")
        try:
            rgb = parse_colour(item["color"])
        except HintError as e:
            raise HintError(f"{where}: {e}") from None
        out.append(Hint(_coordinate(item["x"], "x", where), _coordinate(item["y"], "y", where), rgb))
    return out


def hints_to_json(hints: Iterable[Hint]) -> str:
    return json.dumps([h.to_json() for h in hints])


def check_hints(hints: Sequence[Hint], width: int, height: int, what: str = "the photo") -> List[Hint]:
    """``hints`` if every point lies inside a ``width`` x ``height`` photo (``what`` the message
    calls it) and there are at most ``MAX_HINTS``; HintError naming the first that does not."""
    hints = list(hints)
    if len(hints) > MAX_HINTS:
        raise HintError(f"{len(hints)} hints: at most {MAX_HINTS}")
    for h in hints:
        if not (0 <= h.x < width and 0 <= h.y < height):
            raise HintError(
                f"hint at ({h.x:g}, {h.y:g}) lies outside {what}: x must be in [0, {width}), y in [0, {height})"
            )
    return hints


def hint_map(hints: Sequence[Hint], H: int, W: int, h: int, w: int, patch: int = PATCH) -> np.ndarray:
    """Hints on an H x W photo -> the generator's (3, h, w) float32 hint map at its working size
    h x w: each point a ``patch``-px square (clipped at the border); a later hint overwrites an
    earlier one where they overlap. Points must lie inside the photo (``check_hints``)."""
    out = np.zeros((HINT_CHANNELS, h, w), np.float32)
    for hint in hints:
        rows, cols = _patch(hint, H, W, h, w, patch)
        a, b = hint.ab()
        out[0, rows, cols] = a / AB_SCALE
        out[1, rows, cols] = b / AB_SCALE
        out[2, rows, cols] = 1.0
    return out


def _patch(hint: Hint, H: int, W: int, h: int, w: int, patch: int) -> Tuple[slice, slice]:
    """The rows and columns of ``hint``'s square at the working size h x w of an H x W photo."""
    cy, cx = min(h - 1, int(hint.y * h / H)), min(w - 1, int(hint.x * w / W))
    y0, x0 = max(0, cy - patch // 2), max(0, cx - patch // 2)
    return slice(y0, cy + patch - patch // 2), slice(x0, cx + patch - patch // 2)


def distances(
    hints: Sequence[Hint], ab: np.ndarray, H: int, W: int, patch: int = PATCH, L: Optional[np.ndarray] = None
) -> List[float]:
    """How far a result is from each hint: the distance in the ab plane between the hint's colour
    and the mean ab of the result over the hint's patch. ``ab`` (2, h, w) in Lab units at the
    working size of an H x W photo (the model's output, before upsampling). With ``L`` (h, w), the
    lightness there, the result is first fitted to sRGB as the output photo is (L kept, chroma
    giving way): a colour that pixels of that lightness cannot show stays far. A followed hint is
    a few units away; one the model ignored keeps the distance it had without hints."""
    _, h, w = ab.shape
    out = []
    for hint in hints:
        rows, cols = _patch(hint, H, W, h, w, patch)
        got = ab[:, rows, cols]  # (2, ph, pw)
        if L is not None:  # only the patch through the gamut fit: the working image may be large
            lab = np.concatenate([np.asarray(L[rows, cols], np.float32)[None], got], 0).astype(np.float32)
            rgb = color.lab_to_rgb_u8(torch.from_numpy(lab), dim=0).permute(1, 2, 0).numpy()  # what it shows
            got = color.rgb_to_lab(rgb)[..., 1:].transpose(2, 0, 1)
        got = got.reshape(2, -1).mean(1)
        out.append(float(np.hypot(*(got - np.array(hint.ab())))))
    return out


def _point_count(stop: float, rng: np.random.Generator) -> int:
    """Geometric from 0: P(n) = (1 - stop)^n * stop, capped at MAX_HINTS."""
    if stop >= 1.0:
        return 0
    return min(MAX_HINTS, int(rng.geometric(stop)) - 1)


def sample_hints(
    ab: torch.Tensor,
    rng: np.random.Generator,
    stop: float = 0.125,
    none: float = 0.0,
    max_patch: int = MAX_PATCH,
    count: Optional[int] = None,
) -> torch.Tensor:
    """True-colour hints for a batch, as training simulates a user: ab (B,2,H,W) in Lab units ->
    (B,3,H,W) hint maps on ab's device. Per photo: no hints with probability ``none``, else a
    geometric number of points (``stop``; or exactly ``count`` when given), each the mean ab of a
    square patch of 1..``max_patch`` px whose corner is drawn from a Gaussian around the centre."""
    B, _, H, W = ab.shape
    out = torch.zeros(B, HINT_CHANNELS, H, W, device=ab.device, dtype=torch.float32)
    for i in range(B):
        if count is None and rng.random() < none:
            continue
        n = _point_count(stop, rng) if count is None else count
        for _ in range(n):
            p = int(rng.integers(1, min(max_patch, H, W) + 1))
            y = int(np.clip(rng.normal((H - p + 1) / 2, (H - p + 1) / 4), 0, H - p))
            x = int(np.clip(rng.normal((W - p + 1) / 2, (W - p + 1) / 4), 0, W - p))
            mean = ab[i, :, y : y + p, x : x + p].float().mean((1, 2))  # (2,)
            out[i, :2, y : y + p, x : x + p] = (mean / AB_SCALE)[:, None, None]
            out[i, 2, y : y + p, x : x + p] = 1.0
    return out
