"""The ``colorize`` command: one subcommand per job."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from pipeline.jobs.common import command_help, extras, flags
from pipeline.jobs.common.flags import HelpFormatter

# subcommand -> job module, in the order `colorize --help` lists them (what people do first, first).
# Each job module (pipeline/jobs/) holds ``add_args(parser)`` and ``run(args) -> exit code``. Only the
# chosen command's module is imported (torch, Ray: seconds), so `colorize --help` stays instant. `train`
# is forwarded whole: its own parser, so `python pipeline/run.py` reads the same.
COMMANDS = {name: f"pipeline.jobs.{name}" for name in command_help.COMMANDS}
FORWARDED = {"train"}  # their module's main(argv, prog) parses the arguments itself


class _Version(argparse.Action):
    """--version, worked out only when asked (it may call git)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from pipeline import version

        print(version.text())
        parser.exit()


def command_parser(sub, name: str) -> argparse.ArgumentParser:
    """The subparser of ``name``, with its description and examples (no arguments yet)."""
    text = command_help.COMMANDS[name]
    p = sub.add_parser(
        name,
        help=text.summary,
        description=text.description,
        epilog="examples:\n" + text.examples,
        formatter_class=HelpFormatter,
        add_help=name not in FORWARDED,
    )
    return p


def build_parser(commands=None) -> argparse.ArgumentParser:
    """The parser; the arguments of ``commands`` only (default: every command, importing every job)."""
    parser = argparse.ArgumentParser(
        prog="colorize",
        description=command_help.PROGRAM,
        epilog=command_help.PROGRAM_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version (and git revision in a checkout)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for name, module in COMMANDS.items():
        p = command_parser(sub, name)
        if name not in FORWARDED and (commands is None or name in commands):
            importlib.import_module(module).add_args(p)
            flags.add_verbose_arg(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    flags.set_verbosity(flags.wants_verbose(argv))  # before any job's imports: Ray reads it then
    from pipeline.runtime import stops

    stops.install()  # SIGTERM unwinds like Ctrl-C: every cleanup runs
    command = "colorize " + argv[0] if argv else "colorize"
    try:
        return _main(argv)
    except (KeyboardInterrupt, stops.Stopped) as e:
        print(stops.message(command, e), file=sys.stderr)
        return stops.EXIT_CODES[stops.signal_of(e)]
    except ModuleNotFoundError as e:  # the light install: a command (or a kind of input) needs an extra
        line = extras.missing(argv[0] if argv else "", e)
        if line is None:
            raise
        print(f"{command}: error: {line}", file=sys.stderr)
        return 2


def _main(argv: List[str]) -> int:
    if argv[:1] and argv[0] in FORWARDED:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:], prog=f"colorize {argv[0]}")
    args = build_parser(commands=argv[:1]).parse_args(flags.attach_values(argv))
    from pipeline import credentials
    from pipeline.config import ConfigError, check_prior_correction, check_temperature
    from pipeline.data.storage import StorageError, redact  # here, not at the top: `colorize --help` imports no job

    try:  # before any input is listed or model loaded
        if getattr(args, "temperature", None) is not None:
            check_temperature(args.temperature, "--temperature")
        if getattr(args, "prior_correction", None) is not None:
            check_prior_correction(args.prior_correction, "--prior-correction")
    except ConfigError as e:
        print(f"colorize {args.command}: error: {e}", file=sys.stderr)
        return 2
    try:
        flags.settle_data(args)
        credentials.refuse_in_args(args)
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except (StorageError, ValueError) as e:  # ConfigError and ModelNotFound are ValueErrors
        print(f"colorize {args.command}: error: {redact(str(e))}", file=sys.stderr)  # no user:secret@ or ?token
        return 2


if __name__ == "__main__":
    sys.exit(main())
