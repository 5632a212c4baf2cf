"""Where data lives: local folders, list files, ``s3://`` prefixes, the built-in sample photos.

No Ray here. Filesystems are pyarrow's (what Ray Data reads with). S3 settings are read lazily from
arguments or the environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``), and credentials come from the
standard AWS chain: this module never sees, prints or stores them.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pyarrow.fs as pafs

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
    endpoint: Optional[str] = None  # e.g. http://127.0.0.1:9000 for MinIO/moto; None for AWS
    region: Optional[str] = None
    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    retries: int = 5

    @staticmethod
    def from_env(endpoint: Optional[str] = None, region: Optional[str] = None) -> "S3Settings":
        return S3Settings(
            endpoint=endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            region=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        )


def redact(uri: str) -> str:
    """``uri`` without credentials (``user:secret@``) or a query string (tokens, signatures): the
    form in which a URI may reach a log line, an error, MLflow or a sidecar file."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        rest = rest.split("@", 1)[-1].split("?", 1)[0]
        return f"{scheme}://{rest}"
    return uri


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def s3_filesystem(settings: S3Settings) -> pafs.S3FileSystem:
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


def resolve(uri: str, s3: Optional[S3Settings] = None) -> Tuple[pafs.FileSystem, str]:
    """URI -> (pyarrow filesystem, path inside it)."""
    if is_s3(uri):
        return s3_filesystem(s3 or S3Settings.from_env()), uri[len("s3://") :].rstrip("/")
    if "://" in uri:
        raise StorageError(f"unsupported URI scheme in {uri!r}: use a local path or s3://bucket/prefix")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def skimage_photos() -> List[str]:
    """Absolute paths of scikit-image's bundled colour photos (the embedded default data)."""
    import skimage.data

    root = os.path.dirname(skimage.data.__file__)
    return [os.path.join(root, n) for n in _SKIMAGE_PHOTOS if os.path.exists(os.path.join(root, n))]


def list_inputs(uri: str, s3: Optional[S3Settings] = None) -> Tuple[pafs.FileSystem, List[str]]:
    """Expand a data URI into (filesystem, file paths), sorted.

    - ``skimage:``: the built-in sample photos;
    - a folder or ``s3://bucket/prefix``: every file below it, recursively (hidden files skipped);
    - a ``.txt``/``.lst`` list file (local or S3): one path per line, relative to the list's folder
      unless absolute or ``s3://``.
    Raises StorageError naming the URI when it does not exist or cannot be reached.
    """
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


def check_writable_parent(uri: str, s3: Optional[S3Settings] = None) -> None:
    """Fail early (before hours of work) when an output location's bucket or folder is unusable."""
    fs, path = resolve(uri, s3)
    if isinstance(fs, pafs.S3FileSystem):
        bucket = path.split("/", 1)[0]
        if _info(fs, bucket, uri).type == pafs.FileType.NotFound:
            raise StorageError(f"cannot write {uri}: bucket {bucket!r} does not exist")
    else:
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        if not os.access(parent, os.W_OK):
            raise StorageError(f"cannot write {uri}: {parent} is not writable")


def write_bytes_atomic(uri: str, data: bytes, s3: Optional[S3Settings] = None) -> None:
    """Write a whole file so that readers see the old content or the new, never a partial one.

    Local: temp file in the same folder, fsync, rename. S3: a single PUT (an object appears only
    when its upload completes).
    """
    fs, path = resolve(uri, s3)
    if isinstance(fs, pafs.LocalFileSystem):
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    try:
        with fs.open_output_stream(path) as f:
            f.write(data)
    except OSError as e:
        raise StorageError(f"cannot write {uri}: {_short(e)}") from None


def read_bytes(uri: str, s3: Optional[S3Settings] = None) -> bytes:
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
