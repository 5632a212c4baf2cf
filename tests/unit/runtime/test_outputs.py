"""Output naming (pipeline.runtime.outputs): every result lands under the output root, under its own name,
never on an input, never on an existing file unless asked."""

from __future__ import annotations

import pytest

from pipeline.runtime import outputs
from pipeline.runtime.outputs import DUPLICATE, EXISTS, IN_OUTPUT, UNSAFE_NAME, plan, safe_join


def _by_input(targets):
    return {t.path: (t.out, t.skip) for t in targets}


def test_inputs_are_normalised_before_names_are_made():
    # The case that once escaped: a list line /x/data/../victim/keep.jpg used to be named ../victim/keep.jpg
    got = _by_input(plan(["/x/data/a.png", "/x/data/../victim/keep.jpg"], "/out"))
    assert got == {"/x/data/a.png": ("/out/data/a.png", ""), "/x/data/../victim/keep.jpg": ("/out/victim/keep.jpg", "")}


def test_every_target_stays_under_the_root():
    inputs = ["/a/../../../etc/passwd.png", "/x/./y/../../z.png", "/x/b.png"]
    for t in plan(inputs, "/out"):
        assert t.out.startswith("/out/") and ".." not in t.out.split("/"), t


def test_s3_keys_that_climb_out_of_their_bucket_are_unsafe():
    # s3://photos/in/../../evil/ESCAPED.jpg used to be written into bucket "evil"
    got = _by_input(
        plan(
            ["photos/in/a.jpg", "photos/in/../../evil/ESCAPED.jpg", "photos/in/./b.jpg"],
            "out/pre",
            s3_inputs=True,
            s3_output=True,
        )
    )
    assert got["photos/in/../../evil/ESCAPED.jpg"] == ("", UNSAFE_NAME)
    assert got["photos/in/./b.jpg"] == ("", UNSAFE_NAME)  # S3 keys are literal: a '.' part is not normalised away
    assert got["photos/in/a.jpg"] == ("s3://out/pre/a.jpg", "")


def test_s3_inputs_to_a_local_folder_and_back():
    got = plan(["b1/x/a.jpg", "b2/y/b.jpg"], "/out", s3_inputs=True)
    assert [t.out for t in got] == ["/out/b1/x/a.jpg", "/out/b2/y/b.jpg"]  # two buckets: names keep the bucket
    got = plan(["/data/p/a.tif"], "bucket/res", s3_output=True)
    assert got[0].out == "s3://bucket/res/a.png"


@pytest.mark.parametrize(
    "name", ["", "/abs.png", "../up.png", "a/../../up.png", "a//b.png", "./a.png", "a\\..\\b.png", "nul\x00.png"]
)
def test_safe_join_refuses_names_that_are_not_plain(name):
    assert safe_join("/out", name) is None


def test_safe_join_accepts_plain_names():
    assert safe_join("/out", "sub/a.png") == "/out/sub/a.png"
    assert safe_join("bucket/pre", "a.png") == "bucket/pre/a.png"


def test_collisions_get_distinct_names_and_the_own_name_wins():
    # a.tif and a.png both wanted a.png: one result was lost while the summary said all were written
    targets = plan(["/in/a.tif", "/in/a.png", "/in/a.bmp", "/in/b.webp"], "/out")
    got = _by_input(targets)
    assert got["/in/a.png"] == ("/out/a.png", "")  # keeps its own name
    assert got["/in/a.tif"] == ("/out/a.tif.png", "")
    assert got["/in/a.bmp"] == ("/out/a.bmp.png", "")
    assert got["/in/b.webp"] == ("/out/b.png", "")
    outs = [t.out for t in targets]
    assert len(set(o.casefold() for o in outs)) == len(outs)


def test_names_that_differ_only_in_case_are_distinct_too():
    outs = [t.out for t in plan(["/in/A.PNG", "/in/a.png", "/in/a.jpg.png", "/in/a.jpg"], "/out")]
    assert len({o.casefold() for o in outs}) == 4, outs


def test_names_are_stable_across_reruns_whatever_the_listing_order():
    inputs = ["/in/a.tif", "/in/a.png", "/in/a.bmp", "/in/A.png"]
    first = _by_input(plan(inputs, "/out"))
    assert _by_input(plan(list(reversed(inputs)), "/out")) == first


def test_the_same_file_listed_twice_is_colorized_once():
    got = plan(["/in/a.png", "/in/./a.png", "/in/x/../a.png"], "/out")
    assert [t.skip for t in got] == ["", DUPLICATE, DUPLICATE]


def test_existing_outputs_are_kept_unless_overwrite():
    inputs = ["/in/a.png", "/in/b.png"]
    kept = plan(inputs, "/out", existing={"/out/a.png"})
    assert [(t.out, t.skip) for t in kept] == [("", EXISTS), ("/out/b.png", "")]
    replaced = plan(inputs, "/out", existing={"/out/a.png"}, overwrite=True)
    assert [t.out for t in replaced] == ["/out/a.png", "/out/b.png"]


def test_nothing_is_written_over_an_input():
    # --output equal to the input folder: every input is under the output root, so none is a target
    got = plan(["/in/a.png", "/in/b.tif"], "/in", overwrite=True)
    assert [t.skip for t in got] == [IN_OUTPUT, IN_OUTPUT]
    # earlier results under the output root are not colorized again, and never named as targets
    got = _by_input(plan(["/d/a.png", "/d/out/a.png"], "/d/out", overwrite=True))
    assert got == {"/d/a.png": ("/d/out/a.png", ""), "/d/out/a.png": ("", IN_OUTPUT)}
    got = plan(["/d/x/a.png", "/d/y/b.png", "/d/out/x/a.png"], "/d/out", overwrite=True)
    assert [(t.out, t.skip) for t in got] == [("/d/out/x/a.png", ""), ("/d/out/y/b.png", ""), ("", IN_OUTPUT)]


def test_output_name_keeps_png_and_jpeg():
    assert [outputs.output_name(n) for n in ("a.PNG", "b.jpeg", "c.tif", "d")] == ["a.PNG", "b.jpeg", "c.png", "d.png"]
