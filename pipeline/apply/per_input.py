"""Jobs that write one output per input (``colorize infer``, ``colorize video``): is the input one
file or many, where does each result go (``pipeline.core.outputs`` rules checked against what storage
already holds), and the summary every such job prints. No Ray.
"""

from __future__ import annotations

import os
import posixpath
from typing import Callable, List, Optional, Set

from pipeline.core import made_with, outputs
from pipeline.core.skips import Skips
from pipeline.data import storage
from pipeline.data.storage import pafs  # pyarrow's, or its local stand-in in the light install


def list_inputs(uri: str, s3: storage.S3Settings):
    """(filesystem, input paths, what the listing skipped); StorageError when nothing is left."""
    skipped = Skips()
    fs, paths = storage.list_inputs(uri, s3, skipped)
    if not paths:
        counts = f" (skipped {skipped.counts})" if skipped else ""
        raise storage.StorageError(f"no input files at {storage.redact(uri)}{counts}")
    return fs, paths, skipped


def is_single_file(uri: str, paths: List[str]) -> bool:
    named = posixpath.basename(uri.rstrip("/")) == posixpath.basename(paths[0])
    return len(paths) == 1 and not uri.endswith(storage.LIST_SUFFIXES) and named


def default_output(input_uri: str, single: bool, name, suffix: str) -> str:
    """Where results go without ``--output``: ``old.jpg`` -> ``old-colour.jpg`` beside it, a folder or
    prefix ``photos/`` -> ``photos-colour/`` beside it. A list file names no place: ValueError."""
    if single:
        folder, base = posixpath.split(input_uri)
        return posixpath.join(folder, name(base, suffix))
    if input_uri.endswith(storage.LIST_SUFFIXES):
        raise ValueError(f"{storage.redact(input_uri)} is a list file: give --output, a folder for the results")
    root = input_uri.rstrip("/")
    if not posixpath.basename(root) or root.endswith(":"):
        raise ValueError(f"no folder name to put {suffix} after in {storage.redact(input_uri)}: give --output")
    return root + suffix


def photo_settings_at(fs, path: str) -> Optional[dict]:
    """The settings recorded in a stored photo (``made_with``), read from its first bytes."""
    return made_with.read_photo_settings(made_with.read_head(fs, path))


def _recorded(uri: str, s3: storage.S3Settings, read: Callable) -> Optional[dict]:
    fs, path = storage.resolve(uri, s3)
    try:
        return read(fs, path)
    except OSError:  # unreadable: it cannot show that it was made with these settings
        return None


def check_kept(
    planned: List[outputs.Target], settings: dict, s3: storage.S3Settings, read: Callable = photo_settings_at
) -> List[outputs.Target]:
    """The plan with every kept result (``exists``) that was made with other settings marked
    ``other_settings`` instead: the rerun rule of ``pipeline.made_with``. ``read(fs, path)`` gives
    a stored result's recorded settings (each kept result is read once)."""
    checked = []
    for t in planned:
        if t.skip == outputs.EXISTS and t.kept and made_with.differences(_recorded(t.kept, s3, read), settings):
            t = outputs.Target(t.path, skip=outputs.OTHER_SETTINGS, kept=t.kept)
        checked.append(t)
    return checked


def report_kept(job: str, out: str, settings: dict, s3: storage.S3Settings, read: Callable = photo_settings_at) -> int:
    """One result that exists: kept when it was made with ``settings`` (exit 0), else one line that
    says what differs (exit 1). ``--overwrite`` is the way past either."""
    return made_with.report(job, storage.redact(out), _recorded(out, s3, read), settings)


def canonical(uri: str) -> str:
    """A local path with links resolved, or an S3 ``bucket/key`` normalised: what two spellings of
    one place share (StorageError for an S3 key that climbs out of its bucket)."""
    if storage.is_s3(uri):
        key = outputs.normalise(uri[len("s3://") :], s3=True)
        if key is None:
            raise storage.StorageError(f"unsafe S3 location {storage.redact(uri)}: no empty, '.' or '..' parts allowed")
        return "s3://" + key
    return os.path.realpath(os.path.expanduser(uri))


def output_root(uri: str) -> str:
    """``--output`` as ``outputs.plan`` wants it: a normalised absolute folder or ``bucket/prefix``."""
    if storage.is_s3(uri):
        return canonical(uri)[len("s3://") :]
    return os.path.normpath(os.path.abspath(os.path.expanduser(uri)))


def existing(output: str, s3: storage.S3Settings) -> Set[str]:
    """Files already below ``--output``, in ``outputs.plan``'s form (listed once, before work)."""
    fs, path = storage.resolve(output, s3)
    path = output_root(output)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise storage.StorageError(
                f"--output {storage.redact(output)} is a file: a folder of inputs needs an output folder"
            )
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise storage.StorageError(f"cannot list --output {storage.redact(output)}: {storage.redact(why)}") from None
    return {i.path for i in infos if i.type == pafs.FileType.File}


def plan(
    input_uri: str,
    output_uri: str,
    paths: List[str],
    s3: storage.S3Settings,
    overwrite: bool,
    name=outputs.output_name,
    suffix: str = "",
) -> List[outputs.Target]:
    """Every input's output (or why it gets none), decided before any work starts: refuses an
    output folder that is the input folder, lists what the output already holds, checks that it
    can be written."""
    s3_in, s3_out = storage.is_s3(input_uri), storage.is_s3(output_uri)
    a_folder = not input_uri.endswith(storage.LIST_SUFFIXES)
    if s3_in == s3_out and a_folder and canonical(input_uri) == canonical(output_uri):
        raise storage.StorageError(
            f"--output {storage.redact(output_uri)} is the input folder: colorize never writes "
            "over its inputs; give another folder"
        )
    held = existing(output_uri, s3)
    storage.check_writable_parent(posixpath.join(output_uri, "x"), s3)  # fail before the work, not after
    return outputs.plan(
        paths,
        output_root(output_uri),
        s3_inputs=s3_in,
        s3_output=s3_out,
        existing=held,
        overwrite=overwrite,
        name=name,
        suffix=suffix,
    )


def print_skips(skipped: Skips) -> None:
    """One line per skip reason with up to three examples (redacted)."""
    for reason, n in skipped.counts.items():
        hint = " (--overwrite replaces them)" if reason in (outputs.EXISTS, outputs.OTHER_SETTINGS) else ""
        examples = ", ".join(storage.redact(p) for p in skipped.examples.get(reason, [])[:3])
        print(f"  skipped {n} ({reason}){hint}" + (f", e.g. {examples}" if examples else ""))


def exit_code(written: int, skipped: Skips, write_failed: str) -> int:
    """1 when a write failed, a result exists made with other settings, or no input has its result;
    0 when some input has one, written now or kept from before (a rerun answers as the first run did)."""
    if skipped.counts.get(write_failed) or skipped.counts.get(outputs.OTHER_SETTINGS):
        return 1
    return 0 if written + skipped.counts.get(outputs.EXISTS, 0) else 1
