"""The light install (`pip install colorize`, no extras) colours a photo and a folder in-process,
and a command that needs an extra says which one in a line. Run in a subprocess in which the
packages the extras bring cannot be imported, as in an environment that lacks them."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from support import ROOT, corpus

# What the extras bring (pyproject.toml) and the light install must do without.
LEFT_OUT = ("ray", "mlflow", "cv2", "pyarrow", "av", "onnx", "onnxscript", "onnxruntime", "fastapi", "pandas")

WITHOUT_EXTRAS = """
import json, sys
LEFT_OUT = set(sys.argv[1].split(","))

class LeftOut:  # as if not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LEFT_OUT:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, LeftOut())
from pipeline import cli
codes = [cli.main(argv) for argv in json.loads(sys.argv[2])]
print("RESULT " + json.dumps({"codes": codes, "imported": sorted(m for m in LEFT_OUT if m in sys.modules)}))
"""


def _without_extras(*commands):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, ",".join(LEFT_OUT), json.dumps(commands)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert result, done.stdout + done.stderr
    return json.loads(result[0][len("RESULT ") :]), done.stderr


def test_a_photo_and_a_folder_are_coloured_without_the_extras(ckpt, tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        Image.fromarray(corpus.photo(i, 40, 56)).save(photos / name)
    (photos / "broken.jpg").write_bytes(b"not a picture")

    result, err = _without_extras(
        ["infer", str(photos / "a.png"), "--model", str(ckpt), "--output", str(tmp_path / "one.png")],
        ["infer", str(photos), "--model", str(ckpt), "--output", str(tmp_path / "out")],
    )

    assert result == {"codes": [0, 0], "imported": []}, err
    assert Image.open(tmp_path / "one.png").size == (56, 40)
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*"))
    assert written == ["a.png", "b.jpg", "sub/c.png"]


def test_a_command_that_needs_an_extra_names_it(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"\0" * 64)
    result, err = _without_extras(["video", str(tmp_path / "a.mp4")], ["infer", "s3://bucket/photos/"])

    assert result["codes"] == [2, 2]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("colorize video: error: ") and "pip install 'colorize[video]'" in lines[0], err
    assert lines[1].startswith("colorize infer: error: ") and "pip install 'colorize[train]'" in lines[1], err
    assert len(lines) == 2, err
