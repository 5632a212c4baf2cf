"""The README a new user reads top to bottom: short, inside the repository, and every command in it
runs as shown. Each `colorize ...` line parses with the real parser; every path it names is in the
repository, made by `make demo` or by a command above it, or is the user's own file (a checked list:
a new path in the README needs a decision here)."""

from __future__ import annotations

import re

import pytest

from pipeline import cli, run
from support import ROOT
from support.commands import colorize_commands

README = (ROOT / "README.md").read_text()
SHOWN = re.sub(r"<!--.*?-->", "", README, flags=re.S)  # what a reader sees (comments are notes)

# Made by `make demo`, or by a command shown above the path (the text that makes it, in the README).
MADE = {
    "out/runs/colorize-<date>-<time>/": "make demo",
    "out/runs/colorize-<date>-<time>": "make demo",
    "out/demo/": "make demo",
    "out/runs/mine": "train.run_name=mine",
    "out/tune/first-sweep/best_config.yaml": "--name first-sweep",
    "out/tune/<name>/best_config.yaml": "colorize tune",
    "out/eval/report.html": "colorize eval",
    "old-photos-colour/": "colorize infer old-photos/",
}
# The user's own files and folders, and what the commands write for them.
USERS = {
    "old.jpg",
    "old-photos/",
    "my-photos/",
    "my-test-photos/",
    "old-film.mp4",
    "hints.json",
    "s3://YOUR-BUCKET/scans/",
    ".venv/bin/activate",  # made by make setup
}
WRITTEN = {
    "old-colour.jpg",
    "old-grid.jpg",
    "colour.png",
    "old-colour.png",
    "old-demo.jpg",
    "old-mine.jpg",
    "old-film-colour.mp4",
    "/tmp/colorize",
    "old-photos-colour/",
    "metrics.json",  # a kind of file eval writes, spoken of in general
}


def _paths(text: str):
    """Tokens that name files or folders: in backticks and in code blocks, URLs and flags left out."""
    spans = re.findall(r"`([^`\n]+)`", text) + re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    tokens = set()
    for span in spans:
        for tok in re.split(r"[\s'\"]+", span):
            tok = tok.split("=", 1)[1] if "=" in tok and not tok.startswith("http") else tok
            tok = tok.rstrip(".,;:)")
            if (
                not tok
                or re.fullmatch(r"\.\w+", tok)
                or tok.startswith(("-", "http", "s3://YOUR-BUCKET/photos", "s3://YOUR-BUCKET/runs", "@", "image/"))
            ):
                continue
            if "/" in tok or re.search(r"\.(jpg|png|mp4|yaml|npy|md|txt|json)$", tok):
                tokens.add(tok)
    return tokens


def test_short_and_inside_the_repository():
    assert len(README.splitlines()) <= 250
    assert "../" not in README and "shared/" not in README
    assert not re.search(r"issue \d|#\d+\b", SHOWN)  # no development history


def test_every_colorize_command_parses():
    commands = colorize_commands(SHOWN)
    assert len(commands) >= 10, commands
    parser = cli.build_parser()
    for argv in commands:
        if "--help" in argv:
            with pytest.raises(SystemExit) as exit_:
                parser.parse_args(argv)
            assert exit_.value.code == 0
        elif argv[0] in cli.FORWARDED:
            run.parse_args(argv[1:])
        else:
            parser.parse_args(argv)


def test_every_path_is_there_or_made_first():
    for path in sorted(_paths(SHOWN)):
        if path in USERS or path in WRITTEN or path.startswith("s3://"):
            continue
        if path in MADE:
            maker = SHOWN.find(MADE[path])
            assert 0 <= maker < SHOWN.find(path), f"{path} is used before {MADE[path]!r} makes it"
            continue
        assert (ROOT / path.split("#")[0]).exists(), f"README names {path}: not in the repository, nor listed here"


def test_links_resolve():
    for target in re.findall(r"\]\(([^)]+)\)", SHOWN):
        if not target.startswith("http"):
            assert (ROOT / target.split("#")[0]).exists(), target


@pytest.mark.parametrize("name", ["demo", "setup", "test", "test-unit"])
def test_make_targets_named_exist(name):
    assert f"make {name}" in README
    assert re.search(rf"^{re.escape(name)}:", (ROOT / "Makefile").read_text(), flags=re.M)
