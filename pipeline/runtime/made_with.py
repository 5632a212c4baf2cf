"""The settings that made a result, recorded inside it, and the rule every job follows on a rerun.

The rule: a result that exists is never replaced without ``--overwrite``. A rerun with the same
settings keeps it (nothing to redo); a rerun with other settings stops, says in one line what
differs, and exits non-zero, so a changed knob never silently leaves the old picture in place. A
file there that records no settings (edited by hand, made by another tool) is kept as it is.
Photos carry their settings in their own metadata (a PNG text chunk, a JPEG comment): no extra
files appear beside them.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Dict, List, Optional

from PIL import Image, PngImagePlugin

KEY = "colorize"  # the PNG text key, and the first word of a JPEG's or a video's comment


def photo_settings(model: str, temperatures: List[float], size: int, **more) -> Dict[str, object]:
    """What decides a colorized photo's (or video's) pixels: one temperature, or a --grid's list."""
    t = [round(float(x), 6) for x in temperatures]
    return {"model": str(model), "temperature": t[0] if len(t) == 1 else t, "size": int(size), **more}


def save_options(pil_format: str, settings: Optional[Dict[str, object]]) -> dict:
    """Extra ``Image.save`` options that record ``settings`` in a PNG or JPEG."""
    if not settings:
        return {}
    if pil_format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(KEY, json.dumps(settings, sort_keys=True))
        return {"pnginfo": info}
    if pil_format == "JPEG":
        return {"comment": comment(settings).encode()}
    return {}


def comment(settings: Dict[str, object]) -> str:
    """``settings`` as one comment line (a JPEG comment, a video container's comment tag)."""
    return f"{KEY} {json.dumps(settings, sort_keys=True)}"


def from_comment(text) -> Optional[Dict[str, object]]:
    """The settings in a ``comment`` line (str or bytes); None for any other text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.startswith(KEY + " "):
        return None
    return _parse(text[len(KEY) + 1 :])


def _parse(text: Optional[str]) -> Optional[Dict[str, object]]:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_photo_settings(data: bytes) -> Optional[Dict[str, object]]:
    """The settings recorded in a photo's bytes (only its header is parsed); None when it has none."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            text = im.info.get(KEY)
            jpeg_comment = im.info.get("comment", b"")
    except Exception:  # not an image we can open: it records nothing we wrote
        return None
    return _parse(text) if text is not None else from_comment(jpeg_comment)


SHOWN_CHARS = 60  # a recorded value longer than this (a list of hints) is cut short in a message


def differences(old: Optional[Dict[str, object]], new: Dict[str, object]) -> List[str]:
    """What differs between the settings a result was made with and the ones asked for now, one
    phrase each (``temperature 0.38 (now 0.25)``); empty when they agree, and when ``old`` is None:
    a file that records no settings (made by hand, or by another tool) is kept, never judged. A
    setting recorded only when used (colour hints) counts on either side: a rerun without the
    hints a result was made with differs from it."""
    if old is None:
        return []
    keys = sorted(set(old) | set(new))
    return [f"{k} {_shown(old, k)} (now {_shown(new, k)})" for k in keys if old.get(k) != new.get(k)]


def _shown(settings: Dict[str, object], key: str) -> str:
    """A setting's value in a message; "none" when it is not recorded at all."""
    if key not in settings:
        return "none"
    value = settings[key]
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def report(job: str, where: str, recorded: Optional[Dict[str, object]], asked: Dict[str, object]) -> int:
    """The rerun rule for one result that exists at ``where`` (already redacted): kept when it was
    made with ``asked`` or records nothing (a line on stdout, exit 0), else one line on stderr saying
    what differs (exit 1)."""
    diff = differences(recorded, asked)
    if not diff:
        how = "made with the same settings" if recorded else "and records no colorize settings"
        print(f"{job}: kept {where}: it exists, {how} (--overwrite replaces it)")
        return 0
    print(
        f"{job}: {where} exists, made with {', '.join(diff)}: --overwrite replaces it, or give --output another name",
        file=sys.stderr,
    )
    return 1


HEADER_BYTES = 1 << 16  # PNG text chunks written before the pixels and JPEG comments sit in the first KiB


def read_head(fs, path: str) -> bytes:
    """The first bytes of a stored result: enough to read its recorded settings."""
    with fs.open_input_stream(path) as f:
        return f.read(HEADER_BYTES)
