"""``colorize config``: the training configuration in effect, every key with its value and its help,
as YAML that ``colorize train --config`` reads back. Reads the same --config and --set as train."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import List, Optional

from pipeline import config as config_mod
from pipeline.data.storage import redact  # a tracking URI or endpoint may carry user:password@
from pipeline.jobs.common import config_help, flags


@dataclass(kw_only=True)
class Options:
    config: Optional[str] = None
    overrides: List[str] = field(default_factory=list)


def add_args(p: argparse.ArgumentParser) -> None:
    flags.add_config_args(p)


def render(cfg: config_mod.ExperimentConfig) -> str:
    """YAML of ``cfg``: one line per key, its help as a comment; changed keys name their default."""
    defaults = config_mod.ExperimentConfig().flat()
    values = cfg.flat()
    lines = []
    for section, about in config_help.SECTIONS.items():
        lines.append(f"{section}:  # {about}")
        for key in (k for k in config_help.keys() if k.startswith(section + ".")):
            value = config_help._yaml_value(redact(values[key]) if isinstance(values[key], str) else values[key])
            note = "" if values[key] == defaults[key] else f" [default: {config_help._yaml_value(defaults[key])}]"
            lines.append(f"  {key.split('.', 1)[1]}: {value}  # {config_help.HELP[key]}{note}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    o = flags.options(Options, args)
    cfg = config_mod.load(o.config, o.overrides)  # ConfigError: one line from the CLI
    sys.stdout.write(render(cfg))
    return 0
