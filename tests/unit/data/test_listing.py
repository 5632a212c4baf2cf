"""Listing a local folder (``storage.list_inputs``): each real file once, odd entries skipped and
counted by reason, never fatal."""

import json
import os
import shutil
import tempfile

import pytest

from pipeline.core.skips import Skips
from pipeline.data import storage


def listing(root):
    skips = Skips()
    _, paths = storage.list_inputs(str(root), None, skips)
    return [os.path.relpath(p, root) for p in paths], skips


def test_links_are_followed_but_each_real_file_is_listed_once(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.jpg").write_bytes(b"a")
    (tmp_path / "d" / "sub" / "b.jpg").write_bytes(b"b")
    (tmp_path / "d" / "sub" / "loop").symlink_to("..")  # a loop: made every photo count ~41x
    (tmp_path / "d" / "sub" / "loop2").symlink_to("../..")  # two loops: the listing never ended
    (tmp_path / "alias.jpg").symlink_to("d/a.jpg")  # a second name for a listed file
    (tmp_path / "a_link").symlink_to("elsewhere")  # a linked folder outside the root: followed
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "c.jpg").write_bytes(b"c")
    (tmp_path / "dangling.jpg").symlink_to("gone.jpg")
    (tmp_path / "self").symlink_to("self")
    paths, skips = listing(tmp_path)
    assert paths == ["d/a.jpg", "d/sub/b.jpg", "elsewhere/c.jpg"], "each file once, under its direct name"
    assert skips.counts == {"symlink_loop": 3, "duplicate": 2, "missing": 1}
    assert str(tmp_path / "alias.jpg") in skips.examples["duplicate"]
    assert str(tmp_path / "a_link") in skips.examples["duplicate"]


def test_names_with_control_characters_are_skipped_with_a_reason_that_says_so(tmp_path):
    for name in ["ok.jpg", "new\nline.jpg", "tab\there.jpg", "cr\r.jpg", "space and ü.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    paths, skips = listing(tmp_path)
    assert paths == ["ok.jpg", "space and ü.jpg"]  # Ray's reader would report the others "missing"
    assert skips.counts == {"bad_name": 3}
    assert str(tmp_path / "new") + "\\nline.jpg" in skips.examples["bad_name"], "one printable line per name"


def _as_unprivileged_user(fn):
    """``fn()`` in a forked child running as ``nobody`` (tests run as root, where chmod 000 does not
    stop a read): its JSON result, or the child's error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            out = json.dumps(fn())
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = json.dumps({"error": repr(e)})
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to drop privileges")
def test_an_unreadable_subfolder_or_file_is_skipped_not_fatal():
    # A world-traversable folder outside pytest's root-only tmp_path, owned by the unprivileged user.
    root = tempfile.mkdtemp(prefix="colorize-listing-")
    try:
        if os.geteuid() == 0:
            os.chown(root, 65534, 65534)

        def scenario():
            for d in ("ok", "locked"):
                os.makedirs(os.path.join(root, d))
                with open(os.path.join(root, d, "p.jpg"), "wb") as f:
                    f.write(b"x")
            with open(os.path.join(root, "secret.jpg"), "wb") as f:
                f.write(b"x")
            os.chmod(os.path.join(root, "locked"), 0)
            os.chmod(os.path.join(root, "secret.jpg"), 0)
            try:
                skips = Skips()
                _, paths = storage.list_inputs(root, None, skips)
                return {"paths": paths, "skips": skips.to_dict()}
            finally:
                os.chmod(os.path.join(root, "locked"), 0o700)

        got = _as_unprivileged_user(scenario)
        assert "error" not in got, got.get("error")
        assert got["paths"] == [os.path.join(root, "ok", "p.jpg")]
        assert got["skips"]["counts"] == {"unreadable": 2}
        assert sorted(got["skips"]["examples"]["unreadable"]) == [
            os.path.join(root, "locked"),
            os.path.join(root, "secret.jpg"),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_missing_root_is_still_a_clear_error(tmp_path):
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.list_inputs(str(tmp_path / "nope"), None)
