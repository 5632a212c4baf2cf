"""The Tune search space: a YAML of dotted config keys -> distributions, checked against the config.

Pure (no Ray until ``to_tune`` builds the Tune domains), so a bad key or range fails before any
trial starts, with a message naming the key.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

from pipeline import assets
from pipeline.config import ConfigError, ExperimentConfig, read_yaml

FORMS = ("loguniform", "uniform", "choice", "randint")


def default_space_path() -> str:
    """The default search space, ``tune/space.yaml`` as shipped with the package (checkout or installed)."""
    return assets.packaged_path("tune", "space.yaml")


def load_space(path: Optional[str] = None, base: Optional[ExperimentConfig] = None) -> Dict[str, Dict[str, Any]]:
    """{dotted key: {form: args}} from YAML, validated: keys exist, forms known, ranges sane, and
    every bound is a value the config accepts for that key."""
    path = path or default_space_path()
    spec = read_yaml(path, "search space") or {}
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"search space {path} must map config keys to distributions")
    base = base or ExperimentConfig()
    keys = base.flat()
    for key, dist in spec.items():
        if key not in keys:
            raise ConfigError(f"search space: unknown config key {key!r}")
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in FORMS:
            forms = ", ".join(f + ": [...]" for f in FORMS)
            raise ConfigError(f"search space: {key} must be one of {{{forms}}}, got {dist!r}")
        form, args = next(iter(dist.items()))
        if not isinstance(args, list) or not args:
            raise ConfigError(f"search space: {key}.{form} needs a list, got {args!r}")
        if form in ("loguniform", "uniform", "randint"):
            if len(args) != 2 or not all(_finite_number(a) for a in args) or not args[0] < args[1]:
                raise ConfigError(
                    f"search space: {key}.{form} needs [low, high]: finite numbers with low < high, got {args!r}"
                )
            if form == "loguniform" and args[0] <= 0:
                raise ConfigError(f"search space: {key}.loguniform needs low > 0, got {args[0]}")
        for value in args if form == "choice" else args[:2]:
            base.replace({key: value})  # raises ConfigError naming the key if a bound is invalid
    return spec


def _finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def to_tune(spec: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The Tune param space for a validated spec."""
    from ray import tune

    out = {}
    for key, dist in spec.items():
        form, args = next(iter(dist.items()))
        out[key] = {
            "loguniform": lambda a: tune.loguniform(*a),
            "uniform": lambda a: tune.uniform(*a),
            "choice": lambda a: tune.choice(a),
            "randint": lambda a: tune.randint(*a),
        }[form](args)
    return out
