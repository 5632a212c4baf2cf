"""Where ``colorize video`` writes one video: a .mp4/.m4v/.mov/.mkv name is the file, a folder takes the
input's name inside it, and any other name is refused rather than becoming a folder (``x.gif/``) or a
file whose contents do not match its name (Matroska under ``x.avi``)."""

from __future__ import annotations

import pytest

from pipeline.data import storage
from pipeline.jobs import video


@pytest.mark.parametrize("name", ["x.gif", "x.txt", "x.avi", "s3://b/x.webm"])
def test_a_name_that_is_no_video_container_is_refused(name, tmp_path):
    out = name if name.startswith("s3://") else str(tmp_path / name)
    with pytest.raises(storage.StorageError, match=r"\.mp4, \.m4v, \.mov, \.mkv"):
        video._single_target(str(tmp_path / "in.mp4"), out, str(tmp_path / "in.mp4"))
    assert not (tmp_path / name).exists()


def test_container_names_are_files_and_folders_take_the_input_name(tmp_path):
    src = str(tmp_path / "in.avi")
    assert video._single_target(src, str(tmp_path / "o.mkv"), src) == str(tmp_path / "o.mkv")
    assert video._single_target(src, str(tmp_path / "out"), src) == str(tmp_path / "out" / "in.mkv")
    (tmp_path / "clips.v2").mkdir()  # an existing folder, whatever its name
    assert video._single_target(src, str(tmp_path / "clips.v2"), src) == str(tmp_path / "clips.v2" / "in.mkv")
