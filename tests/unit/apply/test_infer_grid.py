"""``--temperature`` (alias ``--saturation``) and ``colorize infer --grid``: one sheet per photo, L and
each temperature side by side, named by the output rules with a suffix."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline import cli
from pipeline.apply import infer
from pipeline.core import color
from pipeline.runtime import outputs
from support import corpus


def test_temperature_and_its_alias_are_one_knob():
    p = cli.build_parser(["infer"])
    base = ["infer", "--model", "m", "--input", "i", "--output", "o"]
    assert p.parse_args([*base, "--temperature", "0.2"]).temperature == 0.2
    assert p.parse_args([*base, "--saturation", "0.3"]).temperature == 0.3
    help_text = p._subparsers._group_actions[0].choices["infer"].format_help()
    assert "lower = more vivid" in help_text and "--saturation" not in help_text  # the old name works, unshown


def test_grid_writes_one_labelled_sheet_per_photo(ckpt, tmp_path, capsys):
    rgb = corpus.photo(7, 40, 56)
    src = tmp_path / "in" / "p.jpg"
    src.parent.mkdir()
    Image.fromarray(rgb).save(src, quality=95)
    argv = ["infer", "--model", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o"), "--size", "32"]
    assert cli.main([*argv, "--grid", "0.1,1.0"]) == 0
    sheet = np.asarray(Image.open(tmp_path / "o" / "p-grid.jpg").convert("RGB"))
    band = sheet.shape[0] - 40
    assert band > 0 and sheet.shape[1] == 3 * 56 + 2 * 4  # L | T=0.1 | T=1.0, 4 px apart
    panels = [sheet[band:, i * 60 : i * 60 + 56] for i in range(3)]
    chroma = [np.linalg.norm(color.rgb_to_lab(p)[..., 1:], axis=-1).mean() for p in panels]
    assert chroma[0] < 3 < chroma[2] < chroma[1]  # grey L, then more vivid at the lower temperature
    assert (sheet[:band] < 128).any()  # a label is drawn above the panels
    assert not (tmp_path / "o" / "p.jpg").exists()
    for bad in ("0,1", "0.3,nan", "1e-300"):  # argparse refuses a temperature outside the shared range
        with pytest.raises(SystemExit):
            cli.main([*argv, "--grid", bad])
        assert "--grid temperatures must be in 0.01..10" in capsys.readouterr().err


def test_grid_names_follow_the_output_rules_with_a_suffix():
    plan = outputs.plan(["/d/a.png", "/d/a.tif", "/d/b.jpeg"], "/o", suffix=infer.GRID_SUFFIX)
    assert [t.out for t in plan] == ["/o/a-grid.png", "/o/a.tif-grid.png", "/o/b-grid.jpeg"]
    kept = outputs.plan(["/d/a.png"], "/o", existing={"/o/a-grid.png"}, suffix=infer.GRID_SUFFIX)
    assert kept[0].skip == outputs.EXISTS
