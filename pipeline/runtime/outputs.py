"""Where per-input outputs go: one distinct, safe name under the output root for each input. Pure.

Rules (``plan``):

- every target is the output root joined with a normalised relative name that cannot leave it:
  a name that is absolute, contains ``..`` or would land outside the root (or its bucket) is refused
  as ``unsafe_name``;
- relative names come from the inputs' common folder *after* normalising them, so a list file line
  like ``/data/../victim/keep.jpg`` cannot steer an output outside the root;
- an S3 key holding ``..`` is refused (S3 keys are literal: ``a/../b`` is not ``b``, and treating it
  as such is how a name climbs into another bucket);
- nothing is ever written over an input: inputs under the output root (earlier results, or the
  originals when the output is the input folder) are not inputs at all (``in_output``), and every
  target lies under the root;
- two inputs that would share a name (``a.tif`` and ``a.png`` both -> ``a.png``; names compared
  case-insensitively, as macOS and Windows file systems do) get distinct ones: the input that keeps
  its own file name keeps it, the others become ``a.tif.png`` (then ``a~2.png``, ...), in sorted
  order, so a rerun picks the same names;
- an input listed twice (however spelt) is colorized once (``duplicate``);
- an output that already exists is kept (``exists``) unless ``overwrite``.

Paths are in the form the file systems use: local ones absolute (the caller resolves them),
S3 ones ``bucket/key`` (pyarrow's form, no ``s3://``); targets come back as URIs (``s3://...`` for S3).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set

from pipeline.runtime import formats

FORMATS = formats.file_formats()  # kept as they are; anything else -> PNG
VIDEO_SUFFIXES = formats.VIDEO_SUFFIXES  # what `colorize video` takes (and `colorize infer` points to it for)

UNSAFE_NAME = "unsafe_name"
IN_OUTPUT = "in_output"
EXISTS = "exists"
OTHER_SETTINGS = "other_settings"  # exists, made with other settings: a rerun stops (pipeline.made_with)
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Target:
    path: str  # the input, as given
    out: str = ""  # where its result goes ("" when skipped)
    skip: str = ""  # why it is not written ("" when it is)
    kept: str = ""  # the result that exists already (skip EXISTS), in ``out``'s form


def output_name(rel: str, suffix: str = "") -> str:
    """``sub/a.tif`` -> ``sub/a.png``; PNG and JPEG names are kept. ``suffix`` goes before the
    extension (``sub/a.jpg``, ``-grid`` -> ``sub/a-grid.jpg``): a second kind of output per input."""
    root, ext = posixpath.splitext(rel)
    return root + suffix + (ext if ext.lower() in FORMATS else ".png")


def normalise(path: str, s3: bool) -> Optional[str]:
    """The canonical form of an input or output path, or None when it is unsafe: local paths
    lexically normalised (``/a/b/../c`` -> ``/a/c``); S3 ``bucket/key`` with no empty, ``.`` or
    ``..`` part in the bucket or key."""
    if not s3:
        return posixpath.normpath(path) if posixpath.isabs(path) else None
    parts = path.strip("/").split("/")
    if not parts[0] or any(p in (".", "..") for p in parts) or "" in parts[1:-1]:
        return None
    return "/".join(p for p in parts if p)


def safe_join(root: str, name: str) -> Optional[str]:
    """``root/name`` when ``name`` is a plain relative name that stays below ``root``; else None."""
    if not name or posixpath.isabs(name) or "\\" in name or "\x00" in name:
        return None
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    joined = posixpath.join(root, name)
    return joined if is_below(joined, root) else None


def is_below(path: str, root: str) -> bool:
    """``path`` lies strictly inside ``root`` (both normalised, same form)."""
    root = root.rstrip("/")
    return path.startswith(root + "/") if root else bool(path)


def common_folder(paths: Iterable[str]) -> str:
    """The deepest folder holding every path ("" when S3 paths span buckets)."""
    dirs = [posixpath.dirname(p) for p in paths]
    if not dirs:
        return ""
    try:
        return posixpath.commonpath(dirs)
    except ValueError:  # mixed absolute/relative: cannot happen for normalised inputs of one file system
        return ""


def plan(
    inputs: List[str],
    out_root: str,
    *,
    s3_inputs: bool = False,
    s3_output: bool = False,
    existing: Optional[Set[str]] = None,
    overwrite: bool = False,
    name=output_name,
    suffix: str = "",
) -> List[Target]:
    """One ``Target`` per input, in input order (see the module's rules).

    ``suffix``: added to every output's name before its extension (``output_name``).
    ``out_root``: a normalised absolute folder, or ``bucket/prefix`` when ``s3_output``.
    ``existing``: the paths (same form as ``out_root`` joins) already present below the root.
    ``name``: (relative input name, ``suffix``) -> relative output name (default: photos' ``output_name``).
    """
    existing = existing or set()
    same_fs = s3_inputs == s3_output
    result: Dict[int, Target] = {}
    live: Dict[int, str] = {}  # input index -> normalised path, for the inputs that get a name
    seen: Set[str] = set()
    for i, p in enumerate(inputs):
        c = normalise(p, s3_inputs)
        if c is None:
            result[i] = Target(p, skip=UNSAFE_NAME)
        elif same_fs and (c == out_root or is_below(c, out_root)):
            result[i] = Target(p, skip=IN_OUTPUT)
        elif c in seen:  # listed twice (maybe spelt differently): one result
            result[i] = Target(p, skip=DUPLICATE)
        else:
            seen.add(c)
            live[i] = c
    root = common_folder(live.values())
    wanted: Dict[int, str] = {}  # before collisions
    for i, c in live.items():
        joined = safe_join(out_root, name(posixpath.relpath(c, root) if root else c, suffix))
        if joined is None:
            result[i] = Target(inputs[i], skip=UNSAFE_NAME)
        else:
            wanted[i] = joined
    for i, joined in _distinct(wanted, live, suffix).items():
        if joined in existing and not overwrite:
            result[i] = Target(inputs[i], skip=EXISTS, kept=("s3://" + joined) if s3_output else joined)
        else:
            result[i] = Target(inputs[i], out=("s3://" + joined) if s3_output else joined)
    return [result[i] for i in range(len(inputs))]


def _distinct(wanted: Dict[int, str], canon: Dict[int, str], suffix: str = "") -> Dict[int, str]:
    """Give inputs that want the same output (case-insensitively) distinct names. Inputs whose
    output has their own file name (``a.png`` -> ``a.png``) claim it first, then the rest in sorted
    order as ``a.tif.png``, ``a~2.png``, ..."""
    used: Set[str] = set()
    out: Dict[int, str] = {}

    def keeps_name(i: int) -> bool:  # a PNG/JPEG whose output is its own file name (plus the suffix)
        own = output_name(posixpath.basename(canon[i]), suffix)
        return posixpath.basename(wanted[i]) == own and posixpath.splitext(canon[i])[1].lower() in FORMATS

    for i in sorted(wanted, key=lambda i: (not keeps_name(i), canon[i])):
        name = wanted[i]
        if name.casefold() in used:
            name = _free_name(name, posixpath.basename(canon[i]) + suffix, used)
        used.add(name.casefold())
        out[i] = name
    return out


def _free_name(name: str, source: str, used: Set[str]) -> str:
    """A name beside ``name`` not in ``used``: ``a.tif.png`` for a converted ``a.tif``, else ``a~2.png``, ..."""
    folder, base = posixpath.split(name)
    stem, ext = posixpath.splitext(base)
    candidates = [posixpath.join(folder, source + ext)] if source != base else []
    candidates += [posixpath.join(folder, f"{stem}~{n}{ext}") for n in range(2, 1_000_000)]
    return next(c for c in candidates if c.casefold() not in used)


def output_file_problem(uri: str, suffix: str) -> Optional[str]:
    """Why ``uri`` cannot name an output file ending in ``suffix`` (None when it can): a folder
    (a trailing ``/``), a name that is only the extension or hidden (``.npy``: sidecars would
    become ``DIR/.json``), or another extension. Checked before any work starts."""
    if uri.endswith("/") or uri.endswith(("/.", "/..")) or uri in (".", ".."):
        return f"a folder; give a file name ending in {suffix}"
    base = posixpath.basename(uri)
    stem, ext = posixpath.splitext(base)
    if not stem or base.startswith("."):
        return f"{base!r} is not a file name; give one like NAME{suffix}"
    if ext.lower() != suffix:
        return f"the file name must end in {suffix}"
    return None


# Where Ray unpacks a job's --working-dir (runtime_resources/working_dir_files/_ray_pkg_<hash>):
# deleted with the job's files, so nothing meant to last may be written below it.
RAY_WORKING_DIR_MARK = "/runtime_resources/working_dir_files/"


def temporary_outputs(paths: Dict[str, str], cwd: str) -> List[str]:
    """The names in ``paths`` ({what: local path or URI}) whose location lies under ``cwd`` when
    ``cwd`` is a Ray job's unpacked working dir: results that would vanish with the job."""
    if RAY_WORKING_DIR_MARK not in cwd + "/":
        return []
    root = posixpath.normpath(cwd)
    out = []
    for what, path in paths.items():
        local = path[len("sqlite:///") :] if path.startswith("sqlite:///") else path
        if "://" in local:
            continue  # s3://, http(s):// ... live elsewhere
        full = posixpath.normpath(posixpath.join(root, local))
        if full == root or is_below(full, root):
            out.append(what)
    return out
