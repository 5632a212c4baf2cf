"""What each configuration key means, in a sentence a user can act on: printed by
``colorize config`` and rendered into docs/configuration.md (``reference_markdown``). The keys and
their defaults live in ``pipeline.config`` (the generator's keys and their help in
``models.generator``); a test keeps this table and the dataclasses in step."""

from __future__ import annotations

from dataclasses import fields
from typing import Dict, List

from pipeline import config as config_mod

SECTIONS: Dict[str, str] = {
    "data": "which photos to train on and how they are cut",
    "model": "the generator's and discriminator's shape, and the decoding temperature",
    "loss": "the generator's loss: adversarial, rebalanced cross-entropy, L1",
    "optim": "the Adam optimisers of G and D",
    "train": "Ray Train: workers, batches, checkpoints, precision",
    "tracking": "MLflow: where runs go, which model is registered",
}

HELP: Dict[str, str] = {
    "data.train": "the photos to train on: a folder, a list file (.txt), an s3:// prefix, prepared shards, "
    "or skimage: (scikit-image's bundled photos)",
    "data.val": "photos to validate on (same forms); null: hold out data.val_fraction of data.train by photo id",
    "data.val_fraction": "share of data.train held out for validation when data.val is null",
    "data.val_guard": "a second set validation scores too (same forms as data.val), at every temperature: a "
    "fine-tune's checkpoint whose objective there falls more than 0.5 below its start's ranks below the start, and "
    "a temperature whose purple share there is over 1.3x the truth's is not chosen (unless none is within on both); "
    "logged as val/guard_<figure>. Tune reports it but ranks trials by data.val alone. null: none",
    "data.resize": "each photo's short side is resized to this once, before cropping",
    "data.crop": "side of the random square crop trained on",
    "data.val_crop": "side of the centre square validation scores; null: the working size (data.resize, or the "
    "shards' prepared size), where inference colours, so a model trained on small crops is judged where it is used",
    "data.flip": "flip training crops left-right at random",
    "data.skip_grey": "leave out photos that are already grey (they teach nothing about colour)",
    "data.limit": "use only the first N photos (quick runs); null: all",
    "data.seed": "seed of the split, the file order and the crops: the same seed repeats a run",
    "data.shuffle_buffer": "rows in each worker's local shuffle buffer (0: off); file order is shuffled too",
    "data.s3_endpoint": "S3-compatible endpoint URL (MinIO, Ceph); null: AWS_ENDPOINT_URL or AWS",
    "data.s3_region": "S3 region; null: AWS_REGION",
    "model.preset": "the generator's size: tiny, small or full; the keys below override parts of it",
    "model.d_base_channels": "channels of the discriminator's first layer",
    "model.d_layers": "strided layers of the PatchGAN discriminator (its patch size grows with them)",
    "model.d_spectral_norm": "spectral normalisation in the discriminator (steadier GAN training)",
    "loss.gan": "adversarial loss: hinge, lsgan or bce",
    "loss.lambda_adv": "weight of the adversarial term",
    "loss.lambda_ce": "weight of the class-rebalanced cross-entropy over colour bins",
    "loss.lambda_l1": "weight of the L1 loss on ab",
    "loss.prior": "colour prior (.npy) the rebalancing weights come from; relative paths resolve against "
    "the project (an installed package carries its own copy)",
    "loss.rebalance": "weight rare colours up by the prior (false: unit weights, the ablation)",
    "loss.prior_lambda": "mix of the smoothed prior with uniform in the weights (Zhang et al.: 0.5)",
    "loss.prior_sigma": "Gaussian smoothing of the prior, in ab units",
    "loss.soft_k": "nearest colour bins each pixel's target is spread over",
    "loss.soft_sigma": "width of that spread, in ab units",
    "loss.mask_grey": "leave grey photos out of the loss",
    "loss.adv_warmup_steps": "steps before the adversarial term is whole: the cross-entropy alone, then over the "
    "last 200 (all of fewer) D learns and the term ramps in from 0",
    "optim.lr_g": "generator learning rate",
    "optim.lr_d": "discriminator learning rate",
    "optim.beta1": "Adam's beta1: decay of the running mean of gradients",
    "optim.beta2": "Adam's beta2: decay of the running mean of squared gradients",
    "optim.weight_decay": "Adam's weight decay (0: none)",
    "optim.grad_clip": "largest gradient norm of G and D; null: no clipping",
    "train.epochs": "passes over the training photos",
    "train.batch_size": "photos per step on each worker (the global batch is this times the workers)",
    "train.num_workers": "Ray Train workers; null: fit the cluster (one per GPU with use_gpu, else one per node)",
    "train.use_gpu": "one GPU per worker",
    "train.cpus_per_worker": "CPUs each worker reserves; null: fit the cluster, leaving Ray Data a quarter of "
    "each node (at least half a CPU); a layout that leaves the data no CPU is refused before training",
    "train.placement_strategy": "where workers go: PACK (few nodes) or SPREAD (one per node), or STRICT_ forms",
    "train.storage_path": "where checkpoints go: a folder or s3://bucket/prefix (runs in <run name>/)",
    "train.run_name": "the run's name; the same name again resumes it from its latest checkpoint; "
    "null: colorize-<date>-<time>",
    "train.num_to_keep": "checkpoints kept per run (the newest)",
    "train.max_failures": "times lost workers are restarted from the last checkpoint (-1: always)",
    "train.amp": "mixed precision: auto (bf16 on GPUs, fp32 on CPUs), bf16 (also on CPUs with AMX or "
    "AVX512-BF16: ~2x; fp32 on other CPUs, where bf16 is emulated and slow) or off",
    "train.threads": "torch threads per CPU worker; null: the worker's CPUs",
    "train.init_from": "start from these weights: shipped, a checkpoint or run folder, runs:/ or models:/; "
    "null: from scratch",
    "train.log_every": "steps between logged training metrics",
    "train.max_steps_per_epoch": "cap on steps per epoch (quick runs); null: every photo once",
    "train.audit_ids_dir": "folder or s3:// prefix where each worker writes the photo ids it trained on",
    "train.ema_decay": "moving average of G's weights, the model validation and infer use (0: off)",
    "train.freeze_bn": "G's BatchNorm statistics frozen: auto (when fine-tuning with init_from on batches "
    "under 8), on or off",
    "train.compile": "torch.compile G and D: auto (on with CUDA), on or off",
    "train.hint_stop": "hints of a hint model are drawn from each photo's true colours: a geometric number "
    "of points, stopping after each with this probability (Zhang et al. 2017: 1/8)",
    "train.hint_none": "share of photos trained with no hints at all (the no-hint colours must hold)",
    "train.val_temperatures": "decoding temperatures validation scores besides the model's own, all from one "
    "forward pass; each checkpoint is scored at the best of them whose purple share is within 1.3x the truth's "
    "(the best of all when none is; val/temperature), each held to the start at the same T: the T it would ship "
    "with; []: the model's own only",
    "train.val_prior": "the prior validation's rebalanced AuC weighs pixels by (prior_probs.npy: figures comparable "
    "across models trained on other data); null: loss.prior",
    "tracking.uri": "MLflow tracking URI; null: MLFLOW_TRACKING_URI, else sqlite under --output",
    "tracking.experiment": "MLflow experiment name",
    "tracking.register_as": "register the final generator under this model name (models:/NAME@alias)",
    "tracking.register_alias": "alias set on the new version, e.g. champion (needs register_as)",
    "tracking.sample_images": "photos in the sample grid logged each epoch",
}
# The generator's keys are explained where they are named, in models.generator.GeneratorConfig.
HELP.update(
    {
        f"model.{f.name}": f.metadata["help"] + ("; null: the preset's" if f.metadata["by_preset"] else "")
        for f in fields(config_mod.GeneratorConfig)
    }
)


def keys() -> List[str]:
    """Every dotted key of the configuration, in the dataclasses' order."""
    cfg = config_mod.ExperimentConfig()
    return [f"{s.name}.{f.name}" for s in fields(cfg) for f in fields(getattr(cfg, s.name))]


def reference_markdown() -> str:
    """docs/configuration.md: every section and key with its default and help."""
    defaults = config_mod.ExperimentConfig().flat()
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python docs/make_config_reference.py` from pipeline/config.py and "
        "pipeline/jobs/common/config_help.py; do not edit by hand. -->",
        "",
        "`colorize train`, `colorize tune` and `colorize config` read one configuration: these defaults,",
        "then a YAML file of overrides (`--config`, see `pipeline/configs/`), then `--set section.key=value`",
        "(repeatable). `colorize config` prints the result. A bad value stops the job at once with one line",
        "naming the key.",
    ]
    for section, about in SECTIONS.items():
        lines += ["", f"## {section}: {about}", "", "| key | default | meaning |", "|---|---|---|"]
        for key in (k for k in keys() if k.startswith(section + ".")):
            lines.append(f"| `{key}` | `{_yaml_value(defaults[key])}` | {HELP[key]} |")
    return "\n".join(lines) + "\n"


def _yaml_value(value) -> str:
    import yaml

    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()
