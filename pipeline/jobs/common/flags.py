"""Argument groups that several ``colorize`` subcommands share, and the help formatter they all use.
Pure argparse: the job modules' ``add_args`` use these, so a flag is defined once and reads the same
in every command.

One vocabulary across commands: ``--input`` is what a job reads (infer and video take it as a
positional too), ``--output`` what it writes, ``--size`` the short side the model works at,
``--resize`` the short side photos are stored or counted at, ``--workers`` model actors,
``--overwrite`` the only way to replace something that exists. Older spellings stay accepted as
hidden aliases (``hide``), so scripts written for them keep working.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import List, Optional

from pipeline.runtime.progress import VERBOSE_ENV  # its one home (Ray reads it too)

SHIPPED = "shipped"  # --model's default: the model that ships inside the package


HELP_WIDTH = 100  # the descriptions' and examples' own width (they keep their line breaks)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their line breaks; options wrap at the same width; every
    option with a meaningful default shows it; option names marked hidden (old spellings) do not
    appear."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 26, width=None):
        super().__init__(prog, indent_increment, max_help_position, width=HELP_WIDTH)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text  # the help says it in its own words
            or text.startswith("default:")
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return text
        return f"{text} (default: {str(default).replace('%', '%%')})"

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_names", ())
        if not hidden:
            return super()._format_action_invocation(action)
        shown = action.option_strings
        action.option_strings = [o for o in shown if o not in hidden]
        try:
            return super()._format_action_invocation(action)
        finally:
            action.option_strings = shown


def hide(action: argparse.Action, *names: str) -> argparse.Action:
    """Accept ``names`` (older spellings) for ``action`` without showing them in ``--help``."""
    assert action.option_strings[0] not in names, "the first name is the one help and usage show"
    action.hidden_names = tuple(names)
    return action


@dataclass(kw_only=True)
class S3Options:
    """What ``add_s3_args`` gives: where s3:// URIs go."""

    s3_endpoint: Optional[str] = None
    s3_region: Optional[str] = None


@dataclass(kw_only=True)
class ModelOptions:
    """What ``add_model_args`` gives: the generator to load and its temperature (None: its own)."""

    model: str = SHIPPED
    tracking_uri: Optional[str] = None
    temperature: Optional[float] = None
    prior_correction: Optional[float] = None


def add_s3_args(p: argparse.ArgumentParser) -> None:
    """--s3-endpoint, --s3-region: where s3:// URIs go (the job builds its S3Settings from them)."""
    p.add_argument("--s3-endpoint", default=None, help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--s3-region", default=None, help="S3 region (default: AWS_REGION)")


def add_model_ref_args(p: argparse.ArgumentParser) -> None:
    """--model, --tracking-uri: which trained generator to load."""
    p.add_argument(
        "--model",
        default=SHIPPED,
        help="default: the model that ships with colorize; or a checkpoint folder, a training run "
        "folder, runs:/<id>/generator or models:/name@alias",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI for runs:/ and models:/ (default: MLFLOW_TRACKING_URI)",
    )


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --tracking-uri, --temperature (alias --saturation), --prior-correction: which trained
    generator to load, and how vivid it decodes. The values land in ``args.temperature`` and
    ``args.prior_correction`` (None: the model's own)."""
    add_model_ref_args(p)
    hide(
        p.add_argument(
            "--temperature",
            "--saturation",
            dest="temperature",
            type=float,
            default=None,
            metavar="T",
            help="colour temperature T, 0.01 to 10: lower = more vivid, higher = more muted (default: the model's own)",
        ),
        "--saturation",
    )
    p.add_argument(
        "--prior-correction",
        type=float,
        default=None,
        metavar="A",
        help="how much of the training's colour rebalancing to undo, 0 to 1: higher = more faithful and muted "
        "colours, closer to the photo in PSNR (default: the model's own)",
    )


def add_input_args(p: argparse.ArgumentParser, what: str) -> None:
    """INPUT as a positional (``colorize infer old.jpg``), ``--input`` kept as a hidden alias."""
    p.add_argument("input", nargs="?", default=None, metavar="INPUT", help=what)
    p.add_argument("--input", dest="input_flag", default=None, help=argparse.SUPPRESS)


def input_of(args: argparse.Namespace) -> str:
    """The one input of a job that takes INPUT or --input; ValueError (one line) for none or two."""
    positional, flag = getattr(args, "input", None), getattr(args, "input_flag", None)
    if positional and flag and positional != flag:
        raise ValueError(f"two inputs given ({positional} and --input {flag}): give one")
    if not (positional or flag):
        raise ValueError("no input: give a photo, video, folder, list file or s3:// prefix")
    return positional or flag


def add_output_arg(
    p: argparse.ArgumentParser, help: str, default: Optional[str] = None, required: bool = False, dest: str = "output"
) -> argparse.Action:
    """--output (alias --out, hidden): where a job writes; the value lands in ``args.<dest>``."""
    action = p.add_argument(
        "--output", "--out", dest=dest, default=default, required=required, metavar="OUTPUT", help=help
    )
    return hide(action, "--out")


DATA_POSITIONAL, DATA_DEFAULT = "data_positional", "data_default"  # add_data_arg's, until settle_data


def add_data_arg(p: argparse.ArgumentParser, help: str, default: Optional[str] = None) -> argparse.Action:
    """INPUT as a positional or ``--input`` (alias ``--data``, hidden), as infer and video take it:
    the photos a dataset job reads. ``settle_data`` puts the one given into ``args.data``."""
    p.add_argument(DATA_POSITIONAL, nargs="?", default=None, metavar="INPUT", help=help)
    action = p.add_argument(
        "--input", "--data", dest="data", default=None, metavar="INPUT", help=f"the same as INPUT{_default(default)}"
    )
    p.set_defaults(**{DATA_DEFAULT: default})
    return hide(action, "--data")


def _default(default: Optional[str]) -> str:
    return f" (default: {default})" if default else ""


def settle_data(args: argparse.Namespace) -> None:
    """``args.data`` from INPUT or --input (their default when neither is given); ValueError (one
    line) for two different ones or none where one is needed. Nothing for jobs without them."""
    if not hasattr(args, DATA_POSITIONAL):
        return
    positional, flag = getattr(args, DATA_POSITIONAL), args.data
    if positional and flag and positional != flag:
        raise ValueError(f"two inputs given ({positional} and --input {flag}): give one")
    args.data = positional or flag or getattr(args, DATA_DEFAULT)
    if not args.data:
        raise ValueError("no input: give a folder, list file (.txt) or s3:// prefix of photos")


def add_overwrite_arg(p: argparse.ArgumentParser, what: str = "outputs") -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} already there (default: keep them; a rerun with other settings stops)",
    )


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--config YAML and repeatable --set KEY=VALUE (``args.config``, ``args.overrides``): a run's settings."""
    p.add_argument("--config", default=None, help="YAML of settings over the defaults (see pipeline/configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set train.epochs=3 (repeatable; `colorize config` lists them)",
    )


def add_resize_arg(p: argparse.ArgumentParser, help: str) -> None:
    """--resize N (old name --size, hidden) into ``args.size``: each photo's short side, default 256."""
    resize = p.add_argument("--resize", "--size", dest="size", type=int, default=256, metavar="N", help=help)
    hide(resize, "--size")


def options(cls, args: argparse.Namespace):
    """A job's typed options (the dataclass ``cls``) from its parsed flags: each field from the flag
    of its name, the field's own default where ``args`` lacks it (a namespace built by hand)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


VERBOSE_FLAG = "--verbose"

OWN_LOGGERS = ("pipeline", "models", "tune")  # what colorize itself says at INFO, verbose or not


def add_verbose_arg(p: argparse.ArgumentParser) -> None:
    """--verbose: every command's; ``set_verbosity`` acts on it before the job's imports."""
    p.add_argument(
        VERBOSE_FLAG,
        action="store_true",
        help="also show what the libraries underneath say (Ray, PyTorch, ONNX): for a bug report",
    )


def wants_verbose(argv: List[str]) -> bool:
    """Whether ``argv`` asks for --verbose (read before parsing: Ray reads the setting at import)."""
    return VERBOSE_FLAG in argv[: argv.index("--")] if "--" in argv else VERBOSE_FLAG in argv


def set_verbosity(verbose: bool) -> None:
    """Logging for a command: colorize's own INFO lines always; the libraries' INFO lines (and
    Ray's, through ``VERBOSE_ENV``) only when verbose, else their warnings and errors."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


# Flags whose values may start with "-" (a hint at x = -0): argparse takes such a word for an option.
DASH_VALUED = ("--hint",)


def attach_values(argv: List[str], flags=DASH_VALUED) -> List[str]:
    """``["--hint", "-0,-0,#000"]`` -> ``["--hint=-0,-0,#000"]`` for ``flags``, so that argparse reads a
    value that starts with "-" as the flag's value, not as an unknown option. Words after ``--`` stay."""
    out: List[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return out + argv[i:]
        if word in flags and i + 1 < len(argv):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out
