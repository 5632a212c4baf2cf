"""``colorize video``: round trip of a generated pan (frame count, timestamps, fps, odd size, rotation,
audio copied), L kept, temporal consistency measured on the known motion, bad inputs, bounded memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core import color
from pipeline.gan import model_ref
from pipeline.video import codec, temporal
from pipeline.video import colorize as job
from support import ROOT
from support.video import DX, DY, pan_frames, probe, write_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """40 frames, odd size 65x47, 12 fps, rotation 90, AAC audio."""
    p = tmp_path_factory.mktemp("clip") / "pan.mp4"
    return write_video(p, pan_frames(40, 65, 47), fps=12, rotation=90, pix_fmt="yuv444p")


def _L(rgb):
    return color.rgb_to_lab(rgb)[..., 0]


def test_round_trip_keeps_frames_times_size_rotation_audio_and_L(clip, ckpt, tmp_path, capsys):
    out = tmp_path / "out" / "pan.mp4"
    assert main(["video", "--model", str(ckpt), "--input", str(clip), "--output", str(out), "--size", "32"]) == 0
    said = capsys.readouterr().out
    assert "wrote" in said and "40 frames 65x47" in said and "audio" in said
    a, b = probe(clip), probe(out)
    assert b["n"] == a["n"] == 40
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)
    assert b["fps"] == pytest.approx(a["fps"]) and b["size"] == (65, 47)
    assert b["rotation"] == 90 and b["codec"] == "h264"
    assert b["audio"] == a["audio"] and len(a["audio"]) > 10  # same packets: copied, not re-encoded
    assert [p.name for p in out.parent.iterdir()] == ["pan.mp4"]  # no temp file left
    # colour was added, lightness kept (up to the encoder's loss: 4:4:4 at CRF 17)
    sat = np.mean([np.abs(color.rgb_to_lab(f)[..., 1:]).mean() for f in b["frames"]])
    assert sat > 2
    dL = np.mean([np.abs(_L(x) - _L(y)).mean() for x, y in zip(a["frames"], b["frames"], strict=True)])
    assert dL < 1.5, dL
    # before the encoder: L equals the input's up to 8-bit rounding
    G, _ = model_ref.resolve_generator(str(ckpt))
    f = job.FrameColorizer(G, 32, None, "flow")
    for rgb in a["frames"][:3]:
        assert np.abs(_L(f(rgb)) - _L(rgb)).max() < 1.0


def test_existing_output_is_kept_and_input_never_overwritten(clip, ckpt, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep")
    assert main(["video", "--model", str(ckpt), "--input", str(clip), "--output", str(out)]) == 0
    assert out.read_bytes() == b"keep" and "exists" in capsys.readouterr().out
    assert main(["video", "--model", str(ckpt), "--input", str(clip), "--output", str(clip)]) == 2
    assert "is the input itself" in capsys.readouterr().err


def test_rerun_rule_beside_the_input(clip, ckpt, tmp_path, capsys):
    """No --output: VIDEO-colour.EXT beside it, recording its settings; the same settings again keep
    it (exit 0), other settings say what differs (exit 1), --overwrite redoes it."""
    src = tmp_path / "film.mp4"
    src.write_bytes(clip.read_bytes())
    argv = ["video", str(src), "--model", str(ckpt), "--size", "16", "--temporal", "none"]
    assert main(argv) == 0
    out = tmp_path / "film-colour.mp4"
    first = out.read_bytes()
    with av.open(str(out)) as c:
        assert '"temporal": "none"' in c.metadata["comment"]
    assert main(argv) == 0 and "kept" in capsys.readouterr().out and out.read_bytes() == first
    assert main([*argv, "--temperature", "0.9"]) == 1
    err = capsys.readouterr().err
    assert "temperature" in err and "--overwrite" in err and out.read_bytes() == first
    assert main([*argv, "--temperature", "0.9", "--overwrite"]) == 0 and out.read_bytes() != first


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    pts = [0, 10, 30, 35, 70, 80, 100, 101, 140]
    src = write_video(tmp_path / "vfr.mp4", pan_frames(len(pts), 64, 48), pts=pts, audio=False)
    r = codec.transcode(str(src), str(tmp_path / "o.mp4"), lambda x: x)
    assert r.frames == len(pts) and r.pix_fmt == "yuv420p"
    assert probe(tmp_path / "o.mp4")["times"] == pytest.approx(probe(src)["times"], abs=1e-6)


def _model_with_noise(ckpt):
    """The tiny model with its dropout noise left on: every frame's prediction varies as an
    unsure model's does (an untrained tiny model is otherwise nearly constant, so it could not
    flicker, and the test would pass with any smoother). The flicker that --temporal flow must
    remove is then real, not staged: same input content, different per-frame guesses."""
    import torch

    from models.layers import NoiseDropout

    G, _ = model_ref.resolve_generator(str(ckpt))
    for m in G.modules():
        if isinstance(m, NoiseDropout):
            m.always_on = True
    torch.manual_seed(0)
    return G


def test_flow_lowers_the_warping_error_on_a_known_pan(ckpt, tmp_path):
    """Warping error (Lai et al. 2018) with the *true* motion of the pan, on the frames the
    colorizer hands the encoder (the encoder's own chroma noise is the round trip's business)."""
    src = write_video(tmp_path / "pan.mp4", pan_frames(16, 96, 72), audio=False)
    frames = probe(src)["frames"]
    G = _model_with_noise(ckpt)
    errs = {}
    for mode in ("none", "flow"):
        f = job.FrameColorizer(G, 32, None, mode)
        ab = [color.rgb_to_lab(f(x))[..., 1:] for x in frames]
        h, w = ab[0].shape[:2]
        back = np.zeros((h, w, 2), np.float32)
        back[..., 0], back[..., 1] = DX, DY  # the true motion: pixel x of frame t was at x + (DX, DY) in t-1
        mask = np.zeros((h, w), bool)
        mask[4 : h - 4 - DY, 4 : w - 4 - DX] = True
        errs[mode] = temporal.warping_error(ab, [back] * (len(ab) - 1), [mask] * (len(ab) - 1))
    assert errs["none"] > 0.5  # the noisy model does flicker
    assert errs["flow"] < 0.5 * errs["none"], errs  # measured: ~0.2x


def test_smoother_resets_at_a_scene_cut():
    rng = np.random.default_rng(0)
    s = temporal.TemporalSmoother()
    L1 = np.full((32, 32), 20.0, np.float32) + rng.normal(0, 2, (32, 32)).astype(np.float32)
    ab1 = np.full((32, 32, 2), 30.0, np.float32)
    s.step(L1, ab1)
    same = s.step(L1, np.zeros_like(ab1))
    assert same.mean() > 20  # a still frame keeps most of the carried colour
    L2 = np.full((32, 32), 80.0, np.float32)
    cut = s.step(L2, np.full_like(ab1, -10.0))
    assert s.cuts == 1 and np.allclose(cut, -10.0)  # a new shot is its own prediction


# ------------------------------------------------------------------------------------------ colour hints

BLUE = "#0000ff"
HINT_AT = (30, 30)  # a light part (L ~ 77) of the grey pan below, where a strong blue is in reach
HINT_FRAMES = 8


def _grey(rgb):
    return np.repeat((_L(rgb)[..., None] * 2.55).round().clip(0, 255).astype(np.uint8), 3, -1)


def _ab_distance(frames, hint_rgb):
    """Per frame, the ab distance from the hint's colour to the output's around the hinted point,
    which moves as the pan's content does (left/up by DX, DY per frame)."""
    from pipeline.core.hints import Hint

    ha, hb = Hint(0, 0, hint_rgb).ab()
    out = []
    for t, rgb in enumerate(frames):
        x, y = HINT_AT[0] - DX * t, HINT_AT[1] - DY * t
        a, b = color.rgb_to_lab(rgb[y - 1 : y + 2, x - 1 : x + 2])[..., 1:].reshape(-1, 2).mean(0)
        out.append(float(np.hypot(a - ha, b - hb)))
    return np.array(out)


@pytest.fixture(scope="module")
def hinted(tmp_path_factory):
    """A grey pan colorized by the shipped model with --temporal flow, without and with a blue hint
    on the first frame, and with it at --hint-spread 0 (the CLI, the real codec): per frame, how far
    the colour at the hinted point is from the hint's."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("hinted")
    src = write_video(tmp / "grey.mp4", (_grey(f) for f in pan_frames(HINT_FRAMES, 96, 72, scale=0.25)), audio=False)
    dist = {}
    try:
        hint = ["--hint", f"{HINT_AT[0]},{HINT_AT[1]},{BLUE}"]
        for name, more in (("without", []), ("with", hint), ("network alone", [*hint, "--hint-spread", "0"])):
            out = tmp / f"{name}.mp4"
            code = main(["video", str(src), "--output", str(out), "--size", "72", *more])
            assert code == 0, "the shipped model must take colour hints (its error is in the captured stderr)"
            frames = probe(out)["frames"]
            assert len(frames) == HINT_FRAMES
            dist[name] = _ab_distance(frames, (0, 0, 255))
    finally:
        torch.set_num_threads(n)
    return dist


def test_a_hint_moves_the_first_frames_colour_toward_it(hinted):
    """Needs a model that follows hints (the shipped one)."""
    assert hinted["with"][0] < hinted["without"][0] - 8, (hinted["with"][0], hinted["without"][0])


def test_hint_spread_reaches_the_video(hinted):
    """--hint-spread 0 leaves the model's own answer to the hint: less of the hint's colour on its
    point than the default spread puts there."""
    assert hinted["with"][0] < hinted["network alone"][0] - 2, (hinted["with"][0], hinted["network alone"][0])


def test_with_flow_a_later_frame_keeps_the_hinted_colour(hinted):
    """The hint travels with the motion: its pull on the last frame is most of what it was on the
    first. Measured with a hint model in training (step 1,800): the pull held (26 -> 26 over the 8
    frames); with the first frame alone hinted and the blend carrying its colours, it fell to 12."""
    pull = hinted["without"] - hinted["with"]  # (HINT_FRAMES,): how much closer to the hint
    assert pull[-1] > 5 and pull[-1] >= 0.7 * pull[0], pull


@pytest.fixture(scope="module")
def hint_ckpt(tmp_path_factory):
    """A tiny untrained hint model: it takes hints (following them needs training)."""
    from support.training import tiny_generator_checkpoint

    return tiny_generator_checkpoint(tmp_path_factory.mktemp("hint-ckpt"), hints=True)


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("short") / "short.mp4", pan_frames(4, 64, 48), audio=False)


def _hints_file(path, entries):
    import json

    path.write_text(json.dumps(entries))
    return str(path)


def test_hints_are_points_of_the_first_frame_as_a_player_shows_it(clip, hint_ckpt, tmp_path, capsys):
    """The clip is stored 65x47 and shown turned a quarter (47x65): points are checked against the
    frame shown, before any frame is written."""
    out = tmp_path / "o.mp4"
    argv = ["video", str(clip), "--model", str(hint_ckpt), "--output", str(out), "--size", "16"]
    assert main([*argv, "--hint", "50,10,#ff0000"]) == 2  # inside the stored frame, not the one shown
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("model: ") and len(err) == 2  # the model it loaded, then the one error line
    assert err[1] == (
        "colorize video: error: hint at (50, 10) lies outside the first frame (47x65 as shown): "
        "x must be in [0, 47), y in [0, 65)"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert main([*argv, "--hint", "40,60,#ff0000"]) == 0  # outside the stored frame, inside the one shown
    with av.open(str(out)) as c:
        assert '"hints": [{"color": "#ff0000", "x": 40.0, "y": 60.0}]' in c.metadata["comment"]


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda tmp: ["--hints", _hints_file(tmp / "h.json", [{"x": 1, "y": 2, "color": "red"}])], "is not a colour"),
        (
            lambda tmp: ["--hints", _hints_file(tmp / "h.json", [{"x": 1, "y": 2, "color": "#ff0000"}] * 257)],
            "257 hints: at most 256",
        ),
        (lambda tmp: ["--hint", "1,2,#ff0000"] * 257, "257 hints: at most 256"),
        (lambda tmp: ["--hints", str(tmp / "missing.json")], "--hints"),
    ],
    ids=["bad-colour-in-file", "too-many-in-file", "too-many-flags", "missing-file"],
)
def test_bad_hints_are_one_clear_line_and_no_output(make_args, message, short, hint_ckpt, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    argv = ["video", str(short), "--model", str(hint_ckpt), "--output", str(out), *make_args(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("colorize video: error: ") and message in err, err
    assert not out.exists()


def test_a_bad_hint_flag_is_refused_by_the_parser(short, hint_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["video", str(short), "--model", str(hint_ckpt), "--hint", "1,2,#ff00zz"])
    assert e.value.code == 2 and "'#ff00zz' is not a colour" in capsys.readouterr().err


def test_hints_to_a_model_without_them_are_refused(short, ckpt, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    assert main(["video", str(short), "--model", str(ckpt), "--output", str(out), "--hint", "1,2,#ff0000"]) == 2
    assert "this model takes no colour hints" in capsys.readouterr().err and not out.exists()


def test_hints_with_several_videos_are_refused(short, hint_ckpt, tmp_path, capsys):
    """Before Ray starts or anything is read: hints are points of one video."""
    films = tmp_path / "films"
    films.mkdir()
    (films / "a.mp4").write_bytes(short.read_bytes())
    out = tmp_path / "out"
    assert main(["video", str(films), "--model", str(hint_ckpt), "--output", str(out), "--hint", "1,2,#ff0000"]) == 2
    assert "colour hints are points of one video" in capsys.readouterr().err and not out.exists()


def test_rerun_with_other_hints_or_none_says_what_differs(short, hint_ckpt, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    argv = ["video", str(short), "--model", str(hint_ckpt), "--output", str(out), "--size", "16"]
    assert main([*argv, "--hint", "10,5,#ff0000"]) == 0
    first = out.read_bytes()
    assert main([*argv, "--hint", "10,5,#ff0000"]) == 0 and "kept" in capsys.readouterr().out
    for other in (["--hint", "10,5,#00ff00"], []):
        assert main([*argv, *other]) == 1
        err = capsys.readouterr().err
        assert "hints" in err and "--overwrite" in err and out.read_bytes() == first, err


# ------------------------------------------------------------------------------------------ bad inputs


def _no_video_stream(p: Path) -> Path:
    out = av.open(str(p), "w")
    a = out.add_stream("aac", rate=16000)
    a.layout = "mono"
    fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    fr.sample_rate, fr.pts = 16000, 0
    for pk in [*a.encode(fr), *a.encode(None)]:
        out.mux(pk)
    out.close()
    return p


def _zero_frames(p: Path) -> Path:
    out = av.open(str(p), "w", format="matroska")
    v = out.add_stream("libx264", rate=12)
    v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()  # the header, then no frame
    out.close()
    return p


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), codec.NOT_VIDEO),
        (lambda p: p.write_text("just some text, not a video\n" * 50), codec.NOT_VIDEO),
        (_no_video_stream, codec.NO_VIDEO_STREAM),
        (_zero_frames, codec.NO_FRAMES),
    ],
    ids=["empty", "random-bytes", "text", "audio-only", "zero-frames"],
)
def test_bad_input_is_one_clear_line_and_no_output(make, reason, ckpt, tmp_path, capsys):
    src = tmp_path / "bad.mp4"
    make(src)
    out = tmp_path / "out"
    assert main(["video", "--model", str(ckpt), "--input", str(src), "--output", str(out)]) == 1
    said = capsys.readouterr().out.strip()
    assert len(said.splitlines()) == 1 and f"skipped {src}: {reason}" in said, said
    assert not out.exists() or not any(out.iterdir())


def test_huge_resolution_is_refused_with_the_photo_pixel_limit(tmp_path):
    src = write_video(tmp_path / "big.mp4", pan_frames(2, 64, 48), audio=False)
    with pytest.raises(codec.VideoError, match="over the 3,000-pixel limit") as e:
        codec.transcode(str(src), str(tmp_path / "o.mp4"), lambda x: x, max_pixels=3000)
    assert e.value.reason == codec.TOO_LARGE and list(tmp_path.iterdir()) == [src]
    assert codec.DEFAULT_MAX_PIXELS == 64_000_000  # the photos' limit (pipeline.core.transforms)


def test_corrupt_tail_keeps_the_frames_before_it(ckpt, tmp_path, capsys):
    full = write_video(tmp_path / "full.mkv", pan_frames(60, 64, 48), audio=False)
    data = full.read_bytes()
    src = tmp_path / "cut.mkv"
    src.write_bytes(data[: len(data) * 6 // 10] + b"\xde\xad\xbe\xef" * 300)
    out = tmp_path / "o.mkv"
    assert main(["video", "--model", str(ckpt), "--input", str(src), "--output", str(out), "--size", "16"]) == 0
    said = capsys.readouterr().out
    assert "corrupt tail" in said, said
    n = probe(out)["n"]
    assert 10 < n < 60


# ------------------------------------------------------------------------------------------ memory

MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from pipeline.gan import model_ref
    from pipeline.video import colorize as video
    G, _ = model_ref.resolve_generator(sys.argv[1])
    r = video.colorize_video(G, sys.argv[2], sys.argv[3], 16, None, "flow")
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak (pytest's) into a child's ru_maxrss
    print(r.frames, int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) // 1024)
    """
)
MEMORY_BOUND_MB = (
    40  # extra peak RSS of 2,000 frames over 100; keeping every frame (RGB in, L, ab, RGB out) would take ~200 MB
)


def _peak_mb(ckpt, src, out):
    r = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(ckpt), str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    n, mb = map(int, r.stdout.split()[-2:])
    return n, mb


def test_memory_is_bounded_on_a_long_video(ckpt, tmp_path):
    short = write_video(tmp_path / "short.mp4", pan_frames(100, 64, 48), fps=25, audio=True)
    long_ = write_video(tmp_path / "long.mp4", pan_frames(2000, 64, 48), fps=25, audio=True)
    n1, mb1 = _peak_mb(ckpt, short, tmp_path / "o1.mp4")
    n2, mb2 = _peak_mb(ckpt, long_, tmp_path / "o2.mp4")
    assert (n1, n2) == (100, 2000)
    assert mb2 - mb1 < MEMORY_BOUND_MB, (mb1, mb2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_stop_leaves_no_partial_output_no_temporary_folder_and_says_so_in_one_line(sig, ckpt, tmp_path):
    src = write_video(tmp_path / "long.mp4", pan_frames(3000, 64, 48), fps=25, audio=False)
    out_dir, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    argv = [sys.executable, "-m", "pipeline.cli", "video", "--model", str(ckpt), "--input", str(src)]
    argv += ["--output", str(out_dir / "o.mp4"), "--size", "16", "--temporal", "none"]
    env = {**os.environ, "TMPDIR": str(tmp)}  # the job's temporary folders land where this test can see them
    # SIGINT as a terminal sends it: a suite started in the background (`cmd &`) ignores SIGINT, and
    # a child that inherits the ignoring would rightly run on
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    p = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out_dir.glob(".o.mp4.*.tmp")):  # mid-transcode: the half-written output exists
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "no partial output after 120 s"
            time.sleep(0.02)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + sig, (p.returncode, err[-2000:])
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(f"colorize video: stopped by {sig.name}")
    assert list(out_dir.iterdir()) == [] and list(tmp.iterdir()) == []
