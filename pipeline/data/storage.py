"""Where data lives: local folders, list files, ``s3://`` prefixes, the built-in sample photos.

No Ray here. Filesystems are pyarrow's (what Ray Data reads with); without pyarrow (the light
install) local files go through ``local_files``, the same interface, and ``s3://`` asks for it.
``S3Settings`` (endpoint, region, timeouts) are built once at an entry point and passed down: every
function here takes them, and an ``s3://`` URI that arrives with ``s3=None`` raises
``MissingS3Settings`` (a forgotten argument must not quietly fall back to the environment and drop
a configured region). Credentials come from the standard AWS chain: this module never sees, prints or stores them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import posixpath
import re
import shutil
import stat
import tempfile
from collections import deque
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from pipeline import credentials
from pipeline.core import split
from pipeline.core.skips import SKIP_BAD_NAME, SKIP_DUPLICATE, SKIP_MISSING, SKIP_SYMLINK_LOOP, SKIP_UNREADABLE, Skips

try:
    import pyarrow.fs as pafs
except ModuleNotFoundError:  # the light install: local files only
    from pipeline.data import local_files as pafs

log = logging.getLogger(__name__)

BUILTIN_SAMPLES = "skimage:"  # the embedded default dataset
# scikit-image's colour photographs (shipped inside the installed package; no download).
_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "color.png",
)
LIST_SUFFIXES = (".txt", ".lst")


class StorageError(RuntimeError):
    """A data or output location that cannot be used; the message names the URI."""


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3: built once at an entry point (a CLI job's ``run``, ``pipeline/run.py``,
    ``colorize tune``) with ``from_env``/``from_config`` and passed down as an argument; into a Ray
    Train worker as ``to_dict()``. Deep code never builds its own (that is how a region got lost)."""

    endpoint: Optional[str] = None  # e.g. http://127.0.0.1:9000 for MinIO/moto; None for AWS
    region: Optional[str] = None
    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    retries: int = 5

    @staticmethod
    def from_env(endpoint: Optional[str] = None, region: Optional[str] = None) -> S3Settings:
        """The given endpoint/region, else ``AWS_ENDPOINT_URL(_S3)`` / ``AWS_REGION`` / ``AWS_DEFAULT_REGION``."""
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        credentials.refuse("the S3 endpoint", endpoint)  # pyarrow quotes it in its errors
        return S3Settings(
            endpoint=endpoint,
            region=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        )

    @staticmethod
    def from_config(data_section) -> S3Settings:
        """From a config's ``data`` section: ``data.s3_endpoint`` and ``data.s3_region``, both."""
        return S3Settings.from_env(endpoint=data_section.s3_endpoint, region=data_section.s3_region)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: Optional[dict]) -> S3Settings:
        return S3Settings(**d) if d else S3Settings()


# scheme://[userinfo@]rest[?query]: userinfo runs to the first "@" (secrets may hold "/" and "+"),
# each URI ends at whitespace or a quote, so a URI inside an error message is found too.
_URI = re.compile(r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s@'"]*@)?(?P<rest>[^\s?'"]*)(?:\?[^\s'"]*)?""")


def redact(uri: str, *sources: str) -> str:
    """``uri`` without credentials (``user:secret@``) or a query string (tokens, signatures): the
    form in which a URI may reach a log line, an error, MLflow or a sidecar file. Also takes a
    whole message and redacts every URI in it; with ``sources`` (the URIs an error may quote in
    pieces, as an HTTP error quotes a query without its host), their secret parts go wherever found."""
    out = _URI.sub(lambda m: m["scheme"] + m["rest"], uri) if "://" in uri else uri
    for secret in sorted({x for src in sources for x in _secrets(src)}, key=len, reverse=True):
        out = out.replace(secret, "***")
    return credentials.scrub(out)  # what a message quotes without the scheme: KEY:SECRET@bucket, ?secret_key=


def _secrets(uri: str) -> List[str]:
    """The parts of a URI that must not be shown: user:password, the password, the query and its values."""
    m = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://(?:(?P<user>[^\s@]*)@)?[^\s?]*(?:\?(?P<query>\S*))?", uri or "")
    if not m:
        return []
    found = []
    if m["user"]:
        found += [m["user"], m["user"].split(":", 1)[-1]]
    if m["query"]:
        found += [m["query"]] + [kv.split("=", 1)[-1] for kv in m["query"].split("&")]
    return [x for x in found if len(x) >= 3]  # never blank out single letters all over a message


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def s3_filesystem(settings: S3Settings) -> pafs.S3FileSystem:
    import pyarrow.fs as pafs  # named here: without pyarrow, a ModuleNotFoundError that asks for it

    kwargs = dict(
        connect_timeout=settings.connect_timeout,
        request_timeout=settings.request_timeout,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=settings.retries),
    )
    if settings.region:
        kwargs["region"] = settings.region
    if settings.endpoint:
        ep = settings.endpoint
        scheme = "http" if ep.startswith("http://") else "https"
        kwargs.update(
            endpoint_override=ep.split("://", 1)[-1].rstrip("/"),
            scheme=scheme,
            force_virtual_addressing=False,  # path-style: what MinIO, Ceph and moto expect
        )
        kwargs.setdefault("region", "us-east-1")
    return pafs.S3FileSystem(**kwargs)


class MissingS3Settings(ValueError):
    """A programming error: an ``s3://`` URI reached storage without the entry point's settings."""


def resolve(uri: str, s3: Optional[S3Settings]) -> Tuple[pafs.FileSystem, str]:
    """URI -> (pyarrow filesystem, path inside it). ``s3``: the settings the entry point built;
    None only where no ``s3://`` URI can arrive (one that does raises ``MissingS3Settings`` rather
    than quietly reading the environment and losing a configured region)."""
    if is_s3(uri):
        if s3 is None:
            raise MissingS3Settings(
                f"S3 settings must be passed down from the entry point (resolving {redact(uri)} without them)"
            )
        return s3_filesystem(s3), path_inside(uri)
    if "://" in uri:
        raise StorageError(f"unsupported URI scheme in {uri!r}: use a local path or s3://bucket/prefix")
    return pafs.LocalFileSystem(), path_inside(uri)


def path_inside(uri: str) -> str:
    """The path ``resolve`` gives for a URI, without building a filesystem: ``bucket/key`` for
    ``s3://``, an absolute path for a local one."""
    if is_s3(uri):
        return uri[len("s3://") :].rstrip("/")
    return os.path.abspath(os.path.expanduser(uri))


def dataset_root(uri: str, paths: Sequence[str]) -> str:
    """The folder photo ids are relative to (``pipeline.core.split``), for the ``paths`` listed from ``uri``.

    A folder or ``s3://`` prefix: that folder itself, as the user named it, so adding a photo in a
    new subfolder or listing only the first ``--limit`` files leaves every other id (and thus its
    train/val side) as it was; the deepest common folder of the files would move with them. A list
    file, ``skimage:`` or a single file names no folder of photos: the deepest folder holding them.
    """
    if uri in (BUILTIN_SAMPLES, "skimage") or uri.endswith(LIST_SUFFIXES):
        return split.common_folder(paths)
    named = path_inside(uri)
    if list(paths) == [named]:  # the URI is the one file
        return posixpath.dirname(named)
    return named


def skimage_photos() -> List[str]:
    """Absolute paths of scikit-image's bundled colour photos (the embedded default data)."""
    import skimage.data

    root = os.path.dirname(skimage.data.__file__)
    return [os.path.join(root, n) for n in _SKIMAGE_PHOTOS if os.path.exists(os.path.join(root, n))]


def list_inputs(uri: str, s3: Optional[S3Settings], skips: Optional[Skips] = None) -> Tuple[pafs.FileSystem, List[str]]:
    """Expand a data URI into (filesystem, file paths), sorted.

    - ``skimage:``: the built-in sample photos;
    - a folder or ``s3://bucket/prefix``: every file below it, recursively (hidden files skipped).
      A local folder is walked following links, each real file and folder once: a link back to a
      folder above it (``symlink_loop``), a second name for a file or folder already listed
      (``duplicate``), an unreadable file or subfolder (``unreadable``) and a dangling link
      (``missing``) are skipped, not fatal;
    - a ``.txt``/``.lst`` list file (local or S3): one path per line, relative to the list's folder
      unless absolute or ``s3://``.
    Paths with a control character (newline, tab ...) or non-UTF-8 bytes are skipped as ``bad_name``
    (Ray's file reader loses them). Skips go into ``skips`` when given, else into a log warning.
    Raises StorageError naming the URI when it does not exist or cannot be reached.
    """
    found = Skips()
    fs, listed = _list(uri, s3, found)
    paths = []
    for p in listed:
        if _good_name(p):
            paths.append(p)
        else:
            found.add(SKIP_BAD_NAME, _printable(p))
    if skips is not None:
        skips.merge(found)
    elif found:
        log.warning("listing %s skipped %s, e.g. %s", redact(uri), found.counts, found.examples)
    return fs, paths


def _list(uri: str, s3: Optional[S3Settings], skips: Skips) -> Tuple[pafs.FileSystem, List[str]]:
    if uri == BUILTIN_SAMPLES or uri == "skimage":
        return pafs.LocalFileSystem(), skimage_photos()
    fs, path = resolve(uri, s3)
    info = _info(fs, path, uri)
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"no data at {uri}: it does not exist")
    if info.type == pafs.FileType.File and path.endswith(LIST_SUFFIXES):
        return fs, _read_list_file(fs, path, uri)
    if info.type == pafs.FileType.File:
        return fs, [path]
    if isinstance(fs, pafs.LocalFileSystem):
        return fs, _walk_local(path, uri, skips)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except OSError as e:
        raise StorageError(f"cannot list {uri}: {_short(e)}") from None
    files = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and not any(part.startswith(".") for part in posixpath.relpath(i.path, path).split("/"))
    )
    return fs, files


def _walk_local(root: str, uri: str, skips: Skips) -> List[str]:
    """Every regular, readable, non-hidden file below ``root``, following links, each real file and
    folder once (by device and inode). A file or folder reached both directly and through a link
    is listed under its direct name: the real tree is walked first, linked folders after it."""
    try:
        top = os.stat(root)
    except OSError as e:
        raise StorageError(f"cannot list {uri}: {_short(e)}") from None
    top_key = (top.st_dev, top.st_ino)
    real, linked = [(root, top_key, frozenset([top_key]))], deque()  # (folder, its key, the folders above and itself)
    seen_dirs = set()
    chosen = {}  # file key -> (reached through a link, path)
    while real or linked:
        via_link = not real
        folder, key, above = real.pop() if real else linked.popleft()
        if key in seen_dirs:
            skips.add(SKIP_DUPLICATE, folder)
            continue
        seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as e:
            if folder == root:
                raise StorageError(f"cannot list {uri}: {_short(e)}") from None
            skips.add(SKIP_UNREADABLE, folder)
            continue
        subfolders = []
        for entry in entries:
            try:
                st = os.stat(entry.path)  # follows links
            except OSError as e:  # a dangling link, or a link to itself (ELOOP)
                skips.add(SKIP_SYMLINK_LOOP if e.errno == errno.ELOOP else SKIP_MISSING, entry.path)
                continue
            entry_key, is_link = (st.st_dev, st.st_ino), via_link or entry.is_symlink()
            if stat.S_ISDIR(st.st_mode):
                if entry_key in above:
                    skips.add(SKIP_SYMLINK_LOOP, entry.path)
                else:
                    (linked.append if is_link else subfolders.append)((entry.path, entry_key, above | {entry_key}))
            elif stat.S_ISREG(st.st_mode):  # FIFOs, sockets and devices are never read
                _choose(chosen, entry_key, is_link, entry.path, skips)
        real.extend(reversed(subfolders))  # popped in name order
    files = []
    for _, path in chosen.values():
        if os.access(path, os.R_OK):
            files.append(path)
        else:
            skips.add(SKIP_UNREADABLE, path)
    return sorted(files)


def _choose(chosen: dict, key, is_link: bool, path: str, skips: Skips) -> None:
    """Keep one name per real file: the first direct one, else the first through a link."""
    if key not in chosen:
        chosen[key] = (is_link, path)
        return
    kept_is_link, kept = chosen[key]
    if kept_is_link and not is_link:
        chosen[key] = (is_link, path)
        path = kept
    skips.add(SKIP_DUPLICATE, path)


def _good_name(path: str) -> bool:
    """False for a path that Ray's reader would lose: a control character or non-UTF-8 bytes."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return False
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's surrogate escapes of undecodable bytes
        return False
    return True


def _printable(path: str) -> str:
    """A bad name as one readable line: ``a\\nb.jpg``, ``\\udcff`` for an undecodable byte."""
    return path.encode("unicode_escape").decode("ascii")


def _read_list_file(fs: pafs.FileSystem, path: str, uri: str) -> List[str]:
    """Entries of a list file. Relative entries resolve against the list's folder, or against the
    nearest of its two parents where the first relative entry exists (split lists often sit in a
    ``splits/`` folder beside the data and name paths relative to the data root)."""
    with fs.open_input_stream(path) as f:
        lines = [ln.strip() for ln in f.read().decode("utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    base = posixpath.dirname(path)
    first_rel = next((ln for ln in lines if not is_s3(ln) and not ln.startswith("/")), None)
    if first_rel is not None:
        for cand in (base, posixpath.dirname(base), posixpath.dirname(posixpath.dirname(base))):
            if _info(fs, posixpath.join(cand, first_rel), uri).type != pafs.FileType.NotFound:
                base = cand
                break
    out = []
    for line in lines:
        if is_s3(line):
            if not isinstance(fs, pafs.S3FileSystem):
                raise StorageError(f"{uri} lists an s3:// path but is itself local: {line}")
            out.append(line[len("s3://") :])
        elif line.startswith("/"):
            out.append(line)
        else:
            out.append(posixpath.normpath(posixpath.join(base, line)))
    return out


def _info(fs: pafs.FileSystem, path: str, uri: str) -> pafs.FileInfo:
    try:
        return fs.get_file_info(path)
    except OSError as e:
        raise StorageError(f"cannot reach {uri}: {_short(e)}") from None


def _short(e: BaseException) -> str:
    """The first line of an error, which for pyarrow/AWS errors names the failure, not secrets."""
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__


def check_writable_parent(uri: str, s3: Optional[S3Settings]) -> None:
    """Fail early (before hours of work) when an output location's bucket or folder is unusable.
    Nothing is created here: a job that fails later leaves no empty folder (writers make theirs)."""
    fs, path = resolve(uri, s3)
    if isinstance(fs, pafs.S3FileSystem):
        bucket = path.split("/", 1)[0]
        if _info(fs, bucket, uri).type == pafs.FileType.NotFound:
            raise StorageError(f"cannot write {uri}: bucket {bucket!r} does not exist")
    else:
        parent = os.path.dirname(path) or "."
        existing = parent
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)  # the folder that the missing ones would be made in
        if not os.path.isdir(existing):
            raise StorageError(f"cannot write {redact(uri)}: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StorageError(f"cannot write {redact(uri)}: {existing} is not writable")


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set straight back
    os.umask(mask)
    return mask


def write_bytes_atomic(uri: str, data: bytes, s3: Optional[S3Settings], exclusive: bool = False) -> None:
    """Write a whole file so that readers see the old content or the new, never a partial one.

    Local: temp file in the same folder, fsync, then into place (``local_file_in_place``). S3: a
    single PUT (an object appears only when its upload completes). ``exclusive``: FileExistsError
    when something is at ``uri`` by the time the file is complete (two runs at once: the second one
    follows the rerun rule instead of replacing the first one's result); local files only.
    """
    fs, path = resolve(uri, s3)
    if isinstance(fs, pafs.LocalFileSystem):
        with local_file_in_place(path, exclusive) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return
    try:
        with fs.open_output_stream(path) as f:
            f.write(data)
    except OSError as e:
        raise StorageError(f"cannot write {uri}: {_short(e)}") from None


@contextlib.contextmanager
def local_file_in_place(path: str, exclusive: bool = False) -> Iterator[str]:
    """A temporary name beside ``path`` for the block to write; when the block completes, the file
    becomes ``path`` in one step, with the permissions a plain open() gives. Replaced when there,
    unless ``exclusive``: then placed with link(2), which fails (FileExistsError) when anything is
    at ``path``, so two writers never replace each other. On any failure the temporary file goes."""
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() would honour the umask
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def local_folder_in_place(path: str, overwrite: bool = False) -> Iterator[str]:
    """A fresh temporary folder beside ``path`` for the block to fill; when the block completes it
    becomes ``path`` in one step: readers never see a half-written folder, and a failure leaves
    nothing behind. FileExistsError when ``path`` exists by then (a file, or a folder holding
    anything) unless ``overwrite`` (then what was there is replaced, a file never)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(os.path.abspath(path)) + ".", suffix=".tmp")
    old = None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if os.path.isdir(path) and not os.path.islink(path) and (overwrite or not os.listdir(path)):
            old = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=".old")
            os.replace(path, os.path.join(old, "was"))  # out of the way; removed once the new one is in
        try:
            os.rename(tmp, path)  # fails when anything is (still) at path: never merged or replaced
        except OSError as e:
            if old:  # put back what was there
                os.replace(os.path.join(old, "was"), path)
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR) or os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "exists", path) from None
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)


COPY_CHUNK = 8 << 20  # streamed copies between storage and local files, this much at a time


def download(fs: pafs.FileSystem, path: str, local: str) -> None:
    """Copy ``path`` of ``fs`` to the local file ``local``, streamed (OSError when it cannot be read)."""
    with fs.open_input_stream(path) as f, open(local, "wb") as g:
        shutil.copyfileobj(f, g, COPY_CHUNK)


def upload(local: str, uri: str, s3: Optional[S3Settings]) -> None:
    """Copy the local file ``local`` to ``uri``, streamed; on S3 the object appears only when its
    upload completes, never half-written (OSError when it cannot be written)."""
    fs, path = resolve(uri, s3)
    with open(local, "rb") as f, fs.open_output_stream(path) as g:
        shutil.copyfileobj(f, g, COPY_CHUNK)


def read_bytes(uri: str, s3: Optional[S3Settings]) -> bytes:
    fs, path = resolve(uri, s3)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise StorageError(f"{uri} does not exist") from None
    except OSError as e:
        raise StorageError(f"cannot read {uri}: {_short(e)}") from None


def sidecar(uri: str, suffix: str = ".json") -> str:
    """``x/prior_probs.npy`` -> ``x/prior_probs.json``."""
    root, _ = posixpath.splitext(uri)
    return root + suffix


def exists(uri: str, s3: S3Settings) -> bool:
    """Whether anything (a file or a folder) is at ``uri``; StorageError when storage cannot be reached."""
    fs, path = resolve(uri, s3)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError as e:
        raise StorageError(f"cannot reach {redact(uri)}: {str(e).splitlines()[0][:200]}") from None
