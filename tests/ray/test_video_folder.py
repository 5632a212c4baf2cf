"""``colorize video`` on a folder: one video per Ray Data task, names kept (AVI -> MKV), a bad file
counted as a skip, frame counts and audio kept."""

from pipeline import cli
from support.video import pan_frames, probe, write_video


def test_folder_of_two_videos_on_ray(ckpt, tmp_path, ray_local, capsys):
    src = tmp_path / "videos"
    (src / "sub").mkdir(parents=True)
    write_video(src / "a.mp4", pan_frames(12, 64, 48), audio=True)
    write_video(src / "sub" / "b.avi", pan_frames(9, 49, 37), audio=False, pix_fmt="yuv444p")
    (src / "notes.mp4").write_text("not a video")
    out = tmp_path / "out"
    argv = ["video", "--model", str(ckpt), "--input", str(src), "--output", str(out), "--size", "16", "--workers", "1"]
    assert cli.main(argv) == 0
    said = capsys.readouterr().out
    assert "2 of 3 written" in said and "skipped 1 (not_video)" in said, said
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.mp4", "sub/b.mkv"]
    a, b = probe(out / "a.mp4"), probe(out / "sub" / "b.mkv")
    assert a["n"] == 12 and len(a["audio"]) == len(probe(src / "a.mp4")["audio"]) > 0
    assert b["n"] == 9 and b["size"] == (49, 37)
    # a rerun keeps what is there
    assert cli.main(argv) == 0
    assert "skipped 2 (exists)" in capsys.readouterr().out
