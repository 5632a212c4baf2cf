"""A completed ``colorize prepare`` removes the folders that killed runs left under its output
: only folders named as prepare names its runs, started before the run whose
manifest was just written; that run, later (still running) runs and anything else stay."""

from __future__ import annotations

import pyarrow.fs as pafs

from pipeline.data import prepare

CURRENT = "20261126T120000Z-0123abcd"


def test_only_older_run_folders_are_removed(tmp_path):
    keep = [
        CURRENT,  # the manifest's run
        "20261126T130000Z-89abcdef",  # started after: maybe still running
        "notes",  # not a run folder
        "20261126T110000Z-XYZ",  # not shaped like one
        "manifest.json",
        "20261126T110000Z-00000000.parquet",  # a file, not a folder
    ]
    killed = ["20261126T110000Z-deadbeef", "20250101T000000Z-00ff00ff"]
    for name in keep + killed:
        if "." in name:
            (tmp_path / name).write_text("x")
        else:
            (tmp_path / name).mkdir()
            (tmp_path / name / "part-0.parquet").write_bytes(b"shard")
    gone = prepare.remove_orphan_runs(pafs.LocalFileSystem(), str(tmp_path), CURRENT)
    assert gone == sorted(killed)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    assert (tmp_path / CURRENT / "part-0.parquet").read_bytes() == b"shard"


def test_an_unrecognised_current_run_deletes_nothing(tmp_path):
    (tmp_path / "20200101T000000Z-deadbeef").mkdir()
    assert prepare.remove_orphan_runs(pafs.LocalFileSystem(), str(tmp_path), "odd") == []
    assert (tmp_path / "20200101T000000Z-deadbeef").is_dir()
