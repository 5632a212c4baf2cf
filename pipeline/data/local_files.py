"""Local files through the part of ``pyarrow.fs``'s interface that ``storage`` uses: what storage
reads and writes with when pyarrow is not installed (the light install colours photos and folders
on one machine; ``s3://`` and Ray Data come with the ``train`` extra, which brings pyarrow).

Same names, same meanings: ``FileType``, ``FileInfo``, ``FileSelector``, ``LocalFileSystem`` with
``get_file_info``, ``open_input_stream`` / ``open_input_file`` / ``open_output_stream``,
``create_dir`` and ``delete_file``. There is no ``S3FileSystem`` to build (``storage.resolve``
asks for pyarrow first); the class exists so that ``isinstance`` checks answer False.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import List, Union


class FileType(enum.IntEnum):
    NotFound = 0
    Unknown = 1
    File = 2
    Directory = 3


@dataclass(frozen=True)
class FileInfo:
    path: str
    type: FileType


@dataclass(frozen=True)
class FileSelector:
    base_dir: str
    allow_not_found: bool = False
    recursive: bool = False


def _info(path: str) -> FileInfo:
    try:
        if os.path.isdir(path):
            return FileInfo(path, FileType.Directory)
        if os.path.isfile(path):
            return FileInfo(path, FileType.File)
        return FileInfo(path, FileType.Unknown if os.path.lexists(path) else FileType.NotFound)
    except (OSError, ValueError):  # a name the OS refuses (NUL byte, too long): nothing is there
        return FileInfo(path, FileType.NotFound)


class LocalFileSystem:
    """This machine's files (paths absolute, as ``storage.path_inside`` gives them)."""

    def get_file_info(self, what: Union[str, FileSelector, List[str]]):
        if isinstance(what, list):
            return [_info(p) for p in what]
        if not isinstance(what, FileSelector):
            return _info(what)
        if not os.path.isdir(what.base_dir):
            if what.allow_not_found and not os.path.exists(what.base_dir):
                return []
            raise FileNotFoundError(f"{what.base_dir}: no such folder")
        if not what.recursive:
            return [_info(os.path.join(what.base_dir, n)) for n in sorted(os.listdir(what.base_dir))]
        found = []
        for folder, dirs, files in os.walk(what.base_dir):
            found += [FileInfo(os.path.join(folder, d), FileType.Directory) for d in dirs]
            found += [_info(os.path.join(folder, f)) for f in files]
        return found

    def open_input_stream(self, path: str):
        return open(path, "rb")

    open_input_file = open_input_stream

    def open_output_stream(self, path: str):
        return open(path, "wb")

    def create_dir(self, path: str, recursive: bool = True) -> None:
        if recursive:
            os.makedirs(path, exist_ok=True)
        else:
            os.mkdir(path)

    def delete_file(self, path: str) -> None:
        os.unlink(path)


class S3FileSystem:
    """Never built here (see the module's docstring): only for ``isinstance``."""

    def __init__(self, *args, **kwargs):
        raise ModuleNotFoundError("s3:// locations need pyarrow", name="pyarrow")
