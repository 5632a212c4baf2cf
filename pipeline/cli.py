"""``colorize`` command line: one subcommand per job. Thin: parse, then call the job's ``run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

# subcommand -> (job module, one-line help). Each job module holds ``add_args(parser)`` and
# ``run(args) -> exit code``. Only the chosen command's module is imported (torch, Ray: seconds),
# so `colorize --help` stays instant. `train` is pipeline/run.py, forwarded whole (its own parser).
COMMANDS = {
    "priors": ("pipeline.data.priors", "recompute the ab-bin prior (prior_probs.npy) of a dataset on Ray Data"),
    "train": ("pipeline.run", "the main job, as pipeline/run.py (same arguments: --config, --set, --out, ...)"),
    "prepare": (
        "pipeline.data.prepare",
        "decode raw photos once into Parquet shards (L, ab, bins) that training and priors read",
    ),
    "tune": ("tune.sweep", "Ray Tune sweep over the loss weights (ASHA, MLflow parent/child runs, best config YAML)"),
    "infer": (
        "pipeline.apply.infer",
        "colorize photos with a trained model (one file in-process; folders/prefixes on Ray Data)",
    ),
    "video": (
        "pipeline.video.job",
        "colorize videos without flicker (optical-flow temporal consistency; audio, fps, timestamps kept)",
    ),
    "eval": (
        "pipeline.apply.evaluate",
        "score models on photos beside the all-grey baseline; metrics.json + report.html",
    ),
    "export": ("pipeline.apply.export", "export the generator as ONNX, checked by onnxruntime"),
    "serve": (
        "pipeline.serve.job",
        "HTTP API and web page on Ray Serve (batched model replicas; 127.0.0.1:8000 by default)",
    ),
}
FORWARDED = {"train"}  # their module's main(argv) parses the arguments itself


def build_parser(commands=None) -> argparse.ArgumentParser:
    """The parser; the arguments of ``commands`` only (default: every command, importing every job)."""
    parser = argparse.ArgumentParser(prog="colorize", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, add_help=name not in FORWARDED)
        if name not in FORWARDED and (commands is None or name in commands):
            importlib.import_module(module).add_args(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    from pipeline.core import stops

    stops.install()  # SIGTERM unwinds like Ctrl-C: every cleanup runs
    try:
        return _main(argv)
    except (KeyboardInterrupt, stops.Stopped) as e:
        command = "colorize " + argv[0] if argv else "colorize"
        print(stops.message(command, e), file=sys.stderr)
        return stops.EXIT_CODES[stops.signal_of(e)]


def _main(argv: List[str]) -> int:
    if argv[:1] and argv[0] in FORWARDED:
        return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
    args = build_parser(commands=argv[:1]).parse_args(argv)
    from pipeline import credentials
    from pipeline.data.storage import StorageError, redact  # here, not at the top: `colorize --help` imports no job

    if getattr(args, "temperature", None) is not None and args.temperature <= 0:
        print(f"colorize {args.command}: error: --temperature must be > 0, got {args.temperature}", file=sys.stderr)
        return 2
    try:
        credentials.refuse_in_args(args)
        return importlib.import_module(COMMANDS[args.command][0]).run(args)
    except (StorageError, ValueError) as e:  # ConfigError is a ValueError
        print(f"colorize {args.command}: error: {redact(str(e))}", file=sys.stderr)  # no user:secret@ or ?token
        return 2


if __name__ == "__main__":
    sys.exit(main())
