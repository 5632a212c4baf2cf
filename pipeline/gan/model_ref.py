"""Find a trained generator from what a user types: a checkpoint folder (``state.pt`` inside), a
model folder (the shipped form), a training run folder (Ray Train's, ``checkpoint_*`` folders
directly inside: its best checkpoint), an MLflow ``runs:/<id>/<path>`` URI or a registered
``models:/name@alias`` (or ``models:/name/<version>``).

A local reference is looked at, not searched: the folder itself, then the ``checkpoint_*`` folders
directly inside it. A folder holding more than that (an output folder with MLflow's copies of
models inside) is refused with the run folders it holds named, never guessed from.

The best checkpoint of a run is the one training kept as best: the highest ``score`` its
``meta.json`` records (the validation objective, less a penalty when a fine-tune's checkpoint is
worse than its start: ``pipeline.core.metrics.checkpoint_score``), else its ``objective``
(higher is better); checkpoints with neither rank below, by step. Every load says in one line
which checkpoint it used (``describe``).

MLflow references are downloaded and read as plain checkpoint files with ``weights_only=True``:
nothing pickled runs, whatever the registry holds.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from models import Generator
from pipeline.config import check_prior_correction
from pipeline.gan import checkpoint


class ModelNotFound(ValueError):
    """The model reference does not lead to a checkpoint; the message says what was tried."""


SHIPPED = "shipped"  # the model that ships inside the package (pipeline/assets/model): every --model's default


def is_mlflow_ref(ref: str) -> bool:
    return ref.startswith(("runs:/", "models:/"))


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


RUN_CHECKPOINT_PREFIX = "checkpoint_"  # Ray Train's checkpoint folders inside a run folder
MAX_NAMED = 3  # run folders named in the message for a folder that holds runs


def _number(value) -> Optional[float]:
    """A finite int or float from meta.json (bools, strings, NaN and the rest: None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _meta_or_empty(directory: str) -> dict:
    try:
        return checkpoint.load_meta(directory)
    except checkpoint.NotACheckpoint:  # an unreadable meta.json ranks like one that says nothing
        return {}


def rank(directory: str) -> tuple:
    """How good a checkpoint is, for ``max``: a recorded score, else objective, first (higher is
    better; one without ranks below all with one), then the step (a step that is not a number
    counts as none)."""
    meta = _meta_or_empty(directory)
    score = _number(meta.get("score"))
    objective = score if score is not None else _number(meta.get("objective"))
    step = _number(meta.get("step"))
    return (objective is not None, objective or 0.0, step if step is not None else -math.inf)


def run_checkpoints(folder: str) -> List[str]:
    """The ``checkpoint_*`` folders directly inside ``folder`` that hold a ``state.pt``."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = [os.path.join(folder, n) for n in names if n.startswith(RUN_CHECKPOINT_PREFIX)]
    return [d for d in found if os.path.isfile(os.path.join(d, checkpoint.STATE))]


def best_checkpoint(folders: List[str]) -> str:
    """The best of ``folders`` by ``rank`` (the later name wins a tie: Ray names them in order)."""
    return max(reversed(folders), key=rank)


def checkpoint_in(folder: str) -> Optional[str]:
    """The checkpoint ``folder`` names: itself when it holds ``state.pt``, else the best of the run
    checkpoints directly inside it; None when it is neither."""
    if os.path.isfile(os.path.join(folder, checkpoint.STATE)):
        return folder
    found = run_checkpoints(folder)
    return best_checkpoint(found) if found else None


def _runs_inside(folder: str) -> List[str]:
    """Run folders one level below ``folder`` (for the message when ``folder`` is not one itself)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    subs = [os.path.join(folder, n) for n in names]
    return [d for d in subs if os.path.isdir(d) and checkpoint_in(d)]


def _not_a_model(ref: str, root: str) -> ModelNotFound:
    runs = _runs_inside(root)
    more = f" and {len(runs) - MAX_NAMED} more" if len(runs) > MAX_NAMED else ""
    named = f"; give one of those inside it: {', '.join(runs[:MAX_NAMED])}{more}" if runs else ""
    return ModelNotFound(
        f"model {ref}: no checkpoint in {root}: it is not a checkpoint folder ({checkpoint.STATE} inside), "
        f"a model folder or a training run folder ({RUN_CHECKPOINT_PREFIX}* folders inside){named}"
    )


def _download_checkpoint(root: str) -> Optional[str]:
    """The checkpoint inside an MLflow download (our own temporary folder, a few files deep)."""
    found = [d for d, _, files in os.walk(root) if checkpoint.STATE in files]
    return best_checkpoint(found) if found else None


MORE = ("step", "epoch", "objective")  # what describe says of a checkpoint, when known


def describe(info: dict) -> str:
    """One line naming the checkpoint a command uses: where, step, epoch, objective when known."""
    known = [
        f"{key} {info[key]:.4g}" if key == "objective" else f"{key} {info[key]}"
        for key in MORE
        if info.get(key) is not None
    ]
    return f"model: {info['checkpoint']}" + (f" ({', '.join(known)})" if known else "")


def _announce(info: dict) -> None:
    print(describe(info), file=sys.stderr)


def _registry_source(ref: str, uri: str) -> str:
    """models:/name@alias, models:/name/<version> or models:/name/latest -> the version's artifact URI,
    resolved against ``uri`` (MLflow's own models:/ resolution reads the process-global registry)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    body = ref[len("models:/") :].strip("/")
    if "@" in body:
        name, alias = body.split("@", 1)
        version = client.get_model_version_by_alias(name, alias).version
    else:
        name, _, version = body.rpartition("/")
        if not name:
            raise ModelNotFound(f"model {ref}: use models:/name@alias or models:/name/<version>")
        if version == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise ModelNotFound(f"model {ref}: no versions of {name} in MLflow at {uri}")
            version = max(versions, key=lambda v: int(v.version)).version
    return client.get_model_version_download_uri(name, version)


DOWNLOAD_PREFIX = "colorize-model-"  # temporary copies of MLflow models, removed once loaded


def _check_sqlite_store(uri: str) -> None:
    """A ``sqlite:///path`` that does not exist is a typo, not an empty registry: reading through it
    would create an empty store and then report the model missing."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        path = path if path.startswith("/") else os.path.abspath(path)
        if not os.path.isfile(path):
            raise ModelNotFound(f"no MLflow store at {uri}: {path} does not exist (check --tracking-uri)")


def local_checkpoint(ref: str, tracking_uri: Optional[str] = None) -> str:
    """A local folder with ``state.pt`` + ``config.json`` for ``ref`` (downloaded if from MLflow:
    then a temporary folder named ``DOWNLOAD_PREFIX*`` that the caller removes)."""
    if ref == SHIPPED:
        from pipeline import assets

        try:
            return assets.shipped_model_dir()
        except FileNotFoundError as e:
            raise ModelNotFound(str(e)) from None
    if is_mlflow_ref(ref):
        import mlflow
        from mlflow.exceptions import MlflowException

        uri = tracking_uri or mlflow.get_tracking_uri()
        _check_sqlite_store(uri)
        try:  # explicit URIs: never mlflow.set_tracking_uri, which would change this process's (and its env's) default
            source = _registry_source(ref, uri) if ref.startswith("models:/") else ref
            dst = tempfile.mkdtemp(prefix=DOWNLOAD_PREFIX)
            root = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=dst, tracking_uri=uri)
        except (MlflowException, OSError) as e:
            raise ModelNotFound(f"model {ref} not found in MLflow at {uri}: {_short(e)}") from None
        found = _download_checkpoint(root)
        if found is None:
            shutil.rmtree(dst, ignore_errors=True)
            raise ModelNotFound(f"model {ref}: no checkpoint ({checkpoint.STATE}) in what MLflow holds for it")
        return found
    root = os.path.abspath(os.path.expanduser(ref))
    if not os.path.isdir(root):
        why = "not a folder" if os.path.exists(root) else "no such folder"
        raise ModelNotFound(
            f"model {ref} not found: {why} (give a checkpoint, model or training run folder, runs:/... or models:/...)"
        )
    found = checkpoint_in(root)
    if found is None:
        raise _not_a_model(ref, root)
    return found


def resolve_generator(ref: str, tracking_uri: Optional[str] = None, device: str = "cpu") -> Tuple[Generator, dict]:
    """(the generator ``ref`` leads to, in eval mode on ``device``; info {"ref", "checkpoint",
    "step", "temperature"}). The generator is the one the product uses: the EMA of G when the run
    kept one (``checkpoint.load_generator``)."""
    path = local_checkpoint(ref, tracking_uri)
    try:
        G = checkpoint.load_generator(path, map_location="cpu").to(device)
        config, meta = checkpoint.load_config(path), checkpoint.load_meta(path)
    except checkpoint.NotACheckpoint as e:  # its message says which file and why (never torch's own advice)
        raise ModelNotFound(f"model {ref}: {e}") from None
    finally:
        download = _download_root(path) if is_mlflow_ref(ref) else None
        if download:  # the download served its purpose: G, its config and meta are in memory
            shutil.rmtree(download, ignore_errors=True)
    info = {
        "ref": ref,
        "checkpoint": _shown(ref, path),
        "config": config,
        **_meta_info(meta),
        "temperature": G.temperature,
    }
    _announce(info)
    return G, info


def with_prior_correction(G: Generator, info: dict, value: Optional[float]) -> Tuple[Generator, dict]:
    """``G`` and its ``info`` decoding with ``model.prior_correction`` ``value`` (None: the model's
    own): set on ``G`` and in the config that Ray workers rebuild it from. ConfigError for a value
    out of 0..1; a note on stderr when ``G`` records no class weights, where it changes nothing."""
    if value is None:
        return G, info
    value = check_prior_correction(value, "--prior-correction")
    if value and not G.corrects:
        print(
            f"model {info['checkpoint']} records no class weights (trained before they were recorded, or "
            "without rebalancing): --prior-correction changes nothing",
            file=sys.stderr,
        )
    G.prior_correction = value
    config = info["config"]
    return G, {**info, "config": {**config, "model": {**config["model"], "prior_correction": value}}}


def discriminator_state(ref: str, tracking_uri: Optional[str] = None) -> Dict[str, Any]:
    """The discriminator's weights saved in ``ref``'s checkpoint (a training checkpoint or a resume
    point), read tensors-only; ModelNotFound when it has none."""
    path = local_checkpoint(ref, tracking_uri)
    try:
        saved = checkpoint.load_state(path).get("discriminator")
    except checkpoint.NotACheckpoint as e:
        raise ModelNotFound(f"model {ref}: {e}") from None
    finally:
        download = _download_root(path) if is_mlflow_ref(ref) else None
        if download:
            shutil.rmtree(download, ignore_errors=True)
    if not isinstance(saved, dict):
        raise ModelNotFound(f"model {ref}: {_shown(ref, path)} holds no discriminator (a training checkpoint does)")
    return saved


def _shown(ref: str, path: str) -> str:
    return ref if is_mlflow_ref(ref) else path


def _meta_info(meta: dict) -> dict:
    """step, epoch, objective and the temperature validation scored it at (``val_temperature``) of a
    checkpoint's meta.json, as recorded (None when absent)."""
    val = meta.get("val") if isinstance(meta.get("val"), dict) else {}
    return {
        "step": meta.get("step"),
        "epoch": meta.get("epoch"),
        "objective": _number(meta.get("objective")),
        "val_temperature": _number(val.get("temperature")),
    }


def load_init(ref: str, tracking_uri: Optional[str] = None) -> Tuple[dict, dict, str]:
    """What ``train.init_from`` starts a run from: (``checkpoint.init_weights`` of ``ref``'s
    checkpoint, its config dict, where it was found), read tensors-only."""
    path = local_checkpoint(ref, tracking_uri)
    try:
        init = checkpoint.init_weights(checkpoint.load_state(path))
        config, meta = checkpoint.load_config(path), _meta_or_empty(path)
        checkpoint.generator_from_state(init[checkpoint.EMA_KEY], config)  # the weights fit their config
        init[checkpoint.HINT_GAIN_KEY] = checkpoint.hint_gain_of(config)
    except checkpoint.NotACheckpoint as e:
        raise ModelNotFound(f"train.init_from {ref}: {e}") from None
    except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as e:
        raise ModelNotFound(f"train.init_from {ref}: weights do not fit its config.json ({type(e).__name__})") from None
    finally:
        download = _download_root(path) if is_mlflow_ref(ref) else None
        if download:
            shutil.rmtree(download, ignore_errors=True)
    _announce({"checkpoint": _shown(ref, path), **_meta_info(meta)})
    return init, config, (ref if is_mlflow_ref(ref) or ref == SHIPPED else path)


def _download_root(path: str) -> Optional[str]:
    """The ``DOWNLOAD_PREFIX*`` temporary folder that holds ``path`` (None if there is none)."""
    while os.path.basename(path):
        if os.path.basename(path).startswith(DOWNLOAD_PREFIX):
            return path
        path = os.path.dirname(path)
    return None
