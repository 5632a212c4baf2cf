"""The jobs: one module per ``colorize`` command, each with its typed ``Options``, ``add_args(parser)``
and one ``run``; below them everything is a library that knows nothing of argparse. A job never
imports another job; what they share is in ``common``."""

__all__ = ["common", "config", "eval", "export", "infer", "prepare", "priors", "serve", "train", "tune", "video"]
