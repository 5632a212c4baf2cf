"""The cGAN in pure torch: ``Generator`` (L -> ab-bin logits and ab) and ``PatchDiscriminator``."""

from models.discriminator import PatchDiscriminator
from models.ema import EMA, unwrap
from models.generator import GENERATOR_PRESETS, Generator, GeneratorConfig, generator_config

__all__ = [
    "Generator",
    "GeneratorConfig",
    "generator_config",
    "PatchDiscriminator",
    "GENERATOR_PRESETS",
    "EMA",
    "unwrap",
]
