"""One typed configuration: ``ExperimentConfig``, a tree of frozen dataclasses.

Read from YAML (``load``) plus ``--set a.b=value`` overrides, validated on construction with
errors that name the key. The same object becomes the Ray Train loop config (``to_dict`` /
``from_dict``), the MLflow params (``flat``: dotted keys) and the Tune search-space keys.
Defaults live here and only here. No Ray, no I/O beyond reading the YAML file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import yaml

from models.generator import GeneratorConfig, generator_config
from pipeline import credentials


class ConfigError(ValueError):
    """A bad configuration value; the message names the dotted key."""


@dataclass(frozen=True)
class DataSection:
    train: str = "skimage:"  # folder, list file, s3:// prefix, or skimage:
    val: Optional[str] = None  # None: hold out about val_fraction of the train photos (by photo id: core/split.py)
    val_fraction: float = 0.2
    # a second set validation scores too (same forms as val): a fine-tune's checkpoint whose objective
    # there falls below the start's (metrics.NO_WORSE_THAN_START) ranks below every one that does not,
    # so a run selected on one kind of photo cannot buy it with another kind's colours
    val_guard: Optional[str] = None
    resize: int = 256  # short side after decode (every epoch reuses this working size)
    crop: int = 128  # random crop for training
    # validation's centre square; None: the working size (resize, or the shards' prepared size),
    # the scale inference colours at: a model trained on small crops is judged where it is used
    val_crop: Optional[int] = None
    flip: bool = True
    skip_grey: bool = True
    limit: Optional[int] = None  # first N files only (quick runs)
    seed: int = 0  # split, file order and crops are repeatable for a given seed
    shuffle_buffer: int = 256  # rows in each worker's local shuffle buffer (0: off); file order is shuffled too
    s3_endpoint: Optional[str] = None
    s3_region: Optional[str] = None

    def validate(self, p: str) -> None:
        _check(0.0 <= self.val_fraction < 1.0, f"{p}.val_fraction must be in [0, 1), got {self.val_fraction}")
        _check(16 <= self.resize <= 8192, f"{p}.resize must be in [16, 8192], got {self.resize}")
        _check(8 <= self.crop <= self.resize, f"{p}.crop must be in [8, {p}.resize={self.resize}], got {self.crop}")
        _check(
            self.val_crop is None or 8 <= self.val_crop <= self.resize,
            f"{p}.val_crop must be null or in [8, {p}.resize={self.resize}], got {self.val_crop}",
        )
        _check(self.limit is None or self.limit > 0, f"{p}.limit must be > 0, got {self.limit}")
        _check(self.val_guard is None or self.val_guard.strip() != "", f"{p}.val_guard must be a path or null")
        _check(self.shuffle_buffer >= 0, f"{p}.shuffle_buffer must be >= 0, got {self.shuffle_buffer}")


def _model_generator(self) -> GeneratorConfig:
    """The generator's shape: the preset, then each generator key set here (not None)."""
    return generator_config(self.preset, **{f.name: getattr(self, f.name) for f in fields(GeneratorConfig)})


def _model_validate(self, p: str) -> None:
    try:  # the shape's rules live with the model
        self.generator().check()
    except ValueError as e:
        raise ConfigError(f"{p}.{e}") from None
    check_temperature(self.temperature, f"{p}.temperature")
    _check(1 <= self.d_base_channels <= 1024, f"{p}.d_base_channels must be in [1, 1024], got {self.d_base_channels}")
    _check(1 <= self.d_layers <= 6, f"{p}.d_layers must be in [1, 6], got {self.d_layers}")


def _generator_keys() -> List[Tuple[str, Any, Any]]:
    """The generator's keys, named and explained once (``models.generator.GeneratorConfig``), as keys
    of the model section: one the presets set is null unless given, so its preset's value holds."""
    types = typing.get_type_hints(GeneratorConfig)
    keys = []
    for f in fields(GeneratorConfig):
        by_preset = f.metadata["by_preset"]
        default = field(default=None if by_preset else f.default, metadata=f.metadata)
        keys.append((f.name, Optional[types[f.name]] if by_preset else types[f.name], default))
    return keys


# The model section: a preset name (GENERATOR_PRESETS: full | small | tiny), the generator's keys over
# it, and the discriminator's shape.
ModelSection = dataclasses.make_dataclass(
    "ModelSection",
    [("preset", str, "full"), *_generator_keys(), ("d_base_channels", int, 64), ("d_layers", int, 3)]
    + [("d_spectral_norm", bool, True)],
    frozen=True,
    namespace={"__module__": __name__, "generator": _model_generator, "validate": _model_validate},
)


@dataclass(frozen=True)
class LossSection:
    gan: str = "hinge"  # hinge | lsgan | bce
    lambda_adv: float = 0.01
    lambda_ce: float = 1.0
    lambda_l1: float = 0.0
    prior: str = "prior_probs.npy"  # relative paths resolve against the project root
    rebalance: bool = True  # False: unit class weights (the ablation)
    prior_lambda: float = 0.5  # mixing with uniform in Zhang's weights
    prior_sigma: float = 5.0
    soft_k: int = 5
    soft_sigma: float = 5.0
    mask_grey: bool = True
    adv_warmup_steps: int = 0  # train on the CE alone first, then ramp the adversarial term in

    def validate(self, p: str) -> None:
        _check(self.gan in ("hinge", "lsgan", "bce"), f"{p}.gan must be hinge, lsgan or bce, got {self.gan!r}")
        for k in ("lambda_adv", "lambda_ce", "lambda_l1"):
            _check(getattr(self, k) >= 0, f"{p}.{k} must be >= 0, got {getattr(self, k)}")
        _check(self.lambda_ce + self.lambda_l1 + self.lambda_adv > 0, f"{p}: at least one loss weight must be > 0")
        _check(0 <= self.prior_lambda <= 1, f"{p}.prior_lambda must be in [0, 1], got {self.prior_lambda}")
        _check(self.soft_k >= 1, f"{p}.soft_k must be >= 1")
        _check(self.soft_sigma > 0, f"{p}.soft_sigma must be > 0 (the soft-encoding width), got {self.soft_sigma}")
        _check(self.prior_sigma > 0, f"{p}.prior_sigma must be > 0 (the prior's smoothing), got {self.prior_sigma}")
        _check(self.adv_warmup_steps >= 0, f"{p}.adv_warmup_steps must be >= 0, got {self.adv_warmup_steps}")


@dataclass(frozen=True)
class OptimSection:
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 0.0
    grad_clip: Optional[float] = None  # max grad norm for G and D; None: off

    def validate(self, p: str) -> None:
        _check(self.lr_g > 0 and self.lr_d > 0, f"{p}: learning rates must be > 0")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"{p}: betas must be in [0, 1)")
        _check(self.grad_clip is None or self.grad_clip > 0, f"{p}.grad_clip must be > 0 or null")
        _check(self.weight_decay >= 0, f"{p}.weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 10
    batch_size: int = 16  # per worker
    num_workers: Optional[int] = None  # null: fit the cluster (one per GPU; on CPUs one per node)
    use_gpu: bool = False
    cpus_per_worker: Optional[float] = None  # null: fit the cluster, leaving Ray Data its share
    placement_strategy: str = "PACK"  # PACK | SPREAD (one worker per node where possible)
    storage_path: str = "out/runs"  # local folder or s3://bucket/prefix
    run_name: Optional[str] = None  # same name again: resume from its latest checkpoint
    num_to_keep: int = 2
    max_failures: int = 1
    amp: str = "auto"  # auto: bf16 on GPU, fp32 on CPU | bf16 (on CPUs only with AMX/AVX512-BF16) | off
    threads: Optional[int] = None  # torch threads per worker on CPU; null: the worker's CPUs (at least 1)
    init_from: Optional[str] = None  # start G (and D when saved) from: shipped | checkpoint folder | runs:/ | models:/
    log_every: int = 10
    max_steps_per_epoch: Optional[int] = None
    audit_ids_dir: Optional[str] = None  # folder or s3:// prefix: each worker writes the ids it trained on per epoch
    ema_decay: float = 0.999  # EMA of G's weights (what validation, served checkpoints, infer and eval use); 0: off
    freeze_bn: str = "auto"  # auto: G's BatchNorm frozen when fine-tuning on batches < 8 | on | off
    compile: str = "auto"  # torch.compile of G and D (pipeline.gan.cgan): auto = on on CUDA, off on CPU | on | off
    # colour hints of a hint model (model.hints), drawn from each training photo (pipeline.core.hints):
    hint_stop: float = 0.125  # the point count is geometric: after each point, stop with this probability
    hint_none: float = 0.25  # the share of photos trained with no hints at all, besides the count's own zeros
    # validation decodes these temperatures too, from the same logits, and scores each checkpoint at
    # the best of them whose purple share is within 1.3x the truth's, each held to the start at the
    # same T (metrics.best_temperature): the T it would ship with. Empty: the model's own T only.
    val_temperatures: Tuple[float, ...] = ()
    val_prior: Optional[str] = None  # the prior validation's rebalanced AuC weighs pixels by; null: loss.prior

    def validate(self, p: str) -> None:
        _check(self.epochs >= 1, f"{p}.epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"{p}.batch_size must be >= 1, got {self.batch_size}")
        _check(
            self.num_workers is None or self.num_workers >= 1,
            f"{p}.num_workers must be >= 1 or null (fit the cluster), got {self.num_workers}",
        )
        _check(
            self.cpus_per_worker is None or self.cpus_per_worker > 0,
            f"{p}.cpus_per_worker must be > 0 or null (fit the cluster), got {self.cpus_per_worker}",
        )
        _check(self.freeze_bn in ("auto", "on", "off"), f"{p}.freeze_bn must be auto, on or off: {self.freeze_bn!r}")
        _check(
            self.placement_strategy in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
            f"{p}.placement_strategy must be PACK, SPREAD, STRICT_PACK or STRICT_SPREAD",
        )
        _check(self.amp in ("auto", "bf16", "off"), f"{p}.amp must be auto, bf16 or off, got {self.amp!r}")
        _check(self.num_to_keep >= 1, f"{p}.num_to_keep must be >= 1")
        _check(self.max_failures >= -1, f"{p}.max_failures must be >= -1")
        _check(self.log_every >= 1, f"{p}.log_every must be >= 1 (steps between logged metrics), got {self.log_every}")
        _check(
            self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
            f"{p}.max_steps_per_epoch must be >= 1 or null (no cap), got {self.max_steps_per_epoch}",
        )
        _check(self.threads is None or 1 <= self.threads <= 1024, f"{p}.threads must be in [1, 1024] or null")
        _check(self.compile in ("auto", "on", "off"), f"{p}.compile must be auto, on or off, got {self.compile!r}")
        _check(0.0 <= self.ema_decay < 1.0, f"{p}.ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")
        _check(0.0 < self.hint_stop <= 1.0, f"{p}.hint_stop must be in (0, 1], got {self.hint_stop}")
        _check(0.0 <= self.hint_none <= 1.0, f"{p}.hint_none must be in [0, 1], got {self.hint_none}")
        for t in self.val_temperatures:
            check_temperature(t, f"{p}.val_temperatures")
        _check(len(self.val_temperatures) <= 16, f"{p}.val_temperatures: at most 16 (each is scored every epoch)")
        _check(self.val_prior is None or self.val_prior.strip() != "", f"{p}.val_prior must be a path or null")


@dataclass(frozen=True)
class TrackingSection:
    uri: Optional[str] = None  # None: MLFLOW_TRACKING_URI, else sqlite under the output folder
    experiment: str = "colorize"
    register_as: Optional[str] = None  # registered model name for the final generator
    register_alias: Optional[str] = None  # alias set on the new version (e.g. champion): models:/name@alias
    sample_images: int = 4

    def validate(self, p: str) -> None:
        _check(self.sample_images >= 0, f"{p}.sample_images must be >= 0")
        _check(self.register_alias is None or self.register_as is not None, f"{p}.register_alias needs {p}.register_as")
        _check(self.register_alias not in ("latest",), f"{p}.register_alias: 'latest' is reserved by MLflow")


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)

    def __post_init__(self):
        for f in fields(self):
            getattr(self, f.name).validate(f.name)

    # -- conversions
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> ExperimentConfig:
        return _build(cls, d or {}, "")

    def flat(self) -> Dict[str, Any]:
        """Dotted keys -> values: MLflow params and Tune keys."""
        out = {}
        for section, values in self.to_dict().items():
            for k, v in values.items():
                out[f"{section}.{k}"] = v
        return out

    def replace(self, overrides: Dict[str, Any]) -> ExperimentConfig:
        """A copy with dotted-key overrides applied (values already typed or strings to parse)."""
        d = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(d, key, value)
        return ExperimentConfig.from_dict(d)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


# Annealed-mean temperatures anyone may ask for. Below the floor log p / T overflows float32 (at
# 1e-300 every pixel decodes to NaN: a black picture); above 10 the mean is flat grey already.
TEMPERATURE_RANGE = (0.01, 10.0)


def check_temperature(value, what: str = "temperature") -> float:
    """``value`` as a temperature in ``TEMPERATURE_RANGE``, or ConfigError naming ``what``: the one
    rule for every place a temperature enters (flags, configs, checkpoints, MLflow params, requests)."""
    lo, hi = TEMPERATURE_RANGE
    try:
        t = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what} must be a number in {lo:g}..{hi:g}, got {value!r:.40}") from None
    if not lo <= t <= hi:  # also refuses nan and inf
        raise ConfigError(f"{what} must be in {lo:g}..{hi:g}, got {value!r:.40}")
    return t


def check_prior_correction(value, what: str = "--prior-correction") -> float:
    """``value`` as a prior correction in 0..1 (the generator's key of that name), or ConfigError naming ``what``."""
    try:
        a = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what} must be a number in 0..1, got {value!r:.40}") from None
    if not 0 <= a <= 1:  # also refuses nan
        raise ConfigError(f"{what} must be in 0..1, got {value!r:.40}")
    return a


def check_range(name: str, value, lo=None, hi=None) -> None:
    """A command-line number within [lo, hi] (either bound optional); ConfigError naming ``name``
    and the range otherwise."""
    ok = value is not None and math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        if lo is not None and hi is not None:
            bounds = f"in [{lo}, {hi}]"
        else:
            bounds = f">= {lo}" if lo is not None else f"<= {hi}"
        raise ConfigError(f"{name} must be {bounds}, got {value}")


def _build(cls, d: Dict[str, Any], prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in d.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {(prefix + '.' if prefix else '') + near[0]!r}?)" if near else ""
            raise ConfigError(f"unknown key {dotted!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{prefix or 'config'}: {e}") from None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a value against a field type; strings (from --set) are parsed as YAML first."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if is_dataclass(tp):
        return _build(tp, value, key)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    if isinstance(value, str) and tp is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{key}: cannot parse {value!r}") from None
    if origin in (tuple, list):
        if value is None:
            raise ConfigError(f"{key} must be a list ([] for none), got null")
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        number = _number(value)
        if number is None or (isinstance(number, float) and not number.is_integer()):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(number)
    if tp is float:
        number = _number(value)
        if number is None:
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(number)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def _number(value: Any):
    """An int or float from a YAML value; YAML 1.1 reads ``1e9`` (no dot) as a string, so strings
    that Python reads as a number count too. None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _set_dotted(d: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(f"override key {key!r} must look like section.name (e.g. train.epochs)")
    section, name = parts
    if section not in d:
        near = difflib.get_close_matches(section, list(d), n=1)
        raise ConfigError(f"unknown section {section!r} in {key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    if name not in d[section]:
        near = difflib.get_close_matches(name, list(d[section]), n=1)
        raise ConfigError(f"unknown key {key!r}" + (f" (did you mean '{section}.{near[0]}'?)" if near else ""))
    d[section][name] = value


def parse_overrides(items: List[str]) -> Dict[str, str]:
    """``["train.epochs=3", "loss.gan=lsgan"]`` -> {"train.epochs": "3", ...}."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load(path: Optional[str] = None, overrides: Optional[List[str]] = None) -> ExperimentConfig:
    """YAML file (sections of overrides; missing keys keep their defaults) plus ``--set`` items."""
    d: Dict[str, Any] = (read_yaml(path, "config file") or {}) if path else {}
    cfg = ExperimentConfig.from_dict(d)
    ov = parse_overrides(overrides or [])
    cfg = cfg.replace(ov) if ov else cfg
    try:  # a config is where URIs with credentials arrive: refuse them before anything quotes them
        credentials.refuse_all(cfg.flat().items())
    except credentials.CredentialsInUri as e:
        raise ConfigError(str(e)) from None
    return cfg


def given_keys(path: Optional[str] = None, overrides: Optional[List[str]] = None) -> FrozenSet[str]:
    """The dotted keys a YAML file and ``--set`` items set (whatever their values): what a run asked
    for, as against the defaults (``train.init_from`` keeps the starting model's own temperature
    and working scale unless the run sets them)."""
    d = (read_yaml(path, "config file") or {}) if path else {}
    keys = {f"{section}.{k}" for section, values in d.items() if isinstance(values, dict) for k in values}
    return frozenset(keys | set(parse_overrides(overrides or [])))


def read_yaml(path: str, what: str) -> Any:
    """The YAML document in ``path`` (None when empty); ConfigError in one line for a missing file,
    a folder, unreadable or binary bytes and bad YAML."""
    if not os.path.exists(path):
        raise ConfigError(f"{what} {path} does not exist")
    if os.path.isdir(path):
        raise ConfigError(f"{what} {path} is a folder, not a YAML file")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a YAML file (not UTF-8 text)") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or type(e).__name__}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {problem}") from None


def dump(cfg: ExperimentConfig) -> str:
    """YAML that ``load`` reads back to an equal config."""
    d = cfg.to_dict()
    for section in d.values():
        for k, v in section.items():
            if isinstance(v, tuple):
                section[k] = list(v)
    return yaml.safe_dump(d, sort_keys=False)
