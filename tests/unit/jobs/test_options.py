"""Every job takes its flags as typed options: each flag its ``add_args`` defines is a field of its
``Options``, and parsing its defaults gives the dataclass's own defaults (the two never drift)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib

import pytest

from pipeline import cli
from pipeline.jobs.common import flags

REQUIRED = {
    "eval": ["--data", "photos/"],
    "prepare": ["--data", "photos/", "--output", "shards/"],
    "export": ["--ship", "x"],
}


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_flag_of_a_job_is_one_of_its_typed_options(name):
    job = importlib.import_module(cli.COMMANDS[name])
    p = argparse.ArgumentParser()
    job.add_args(p)
    settled = {flags.DATA_POSITIONAL, flags.DATA_DEFAULT}  # flags.settle_data makes them ``data``
    dests = {a.dest for a in p._actions if a.dest != "help"} - settled
    fields = {f.name: f for f in dataclasses.fields(job.Options)}
    assert dests <= set(fields), f"{name}: flags without an option: {sorted(dests - set(fields))}"
    namespace = p.parse_args(REQUIRED.get(name, []))
    flags.settle_data(namespace)
    parsed = flags.options(job.Options, namespace)
    for dest in dests:
        f = fields[dest]
        if f.default is not dataclasses.MISSING and dest not in ("ship",):
            assert getattr(parsed, dest) == f.default, f"{name}: --{dest} defaults differ from Options.{dest}"
