"""Find a trained generator from what a user types: a checkpoint folder, a Ray Train run folder
(its newest checkpoint), an MLflow ``runs:/<id>/<path>`` URI or a registered ``models:/name@alias``
(or ``models:/name/<version>``).

MLflow references are downloaded and read as plain checkpoint files with ``weights_only=True``:
nothing pickled runs, whatever the registry holds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional, Tuple

from models import Generator
from pipeline.gan import checkpoint


class ModelNotFound(ValueError):
    """The model reference does not lead to a checkpoint; the message says what was tried."""


SHIPPED = "shipped"  # the model that ships inside the package (pipeline/assets/model): every --model's default


def is_mlflow_ref(ref: str) -> bool:
    return ref.startswith(("runs:/", "models:/"))


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def _newest_checkpoint(root: str) -> Optional[str]:
    """The folder holding ``state.pt`` under ``root`` with the highest saved step."""
    found = []
    for d, _, files in os.walk(root):
        if checkpoint.STATE in files:
            step = checkpoint.load_meta(d).get("step", -1)
            ordered = isinstance(step, (int, float)) and not isinstance(step, bool) and step == step
            found.append((step if ordered else -1, d))  # a step that is no number ranks last
    return max(found)[1] if found else None


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
    else:
        root = os.path.abspath(os.path.expanduser(ref))
        if not os.path.exists(root):
            raise ModelNotFound(
                f"model {ref} not found: no such folder (give a checkpoint folder, runs:/... or models:/...)"
            )
    found = _newest_checkpoint(root)
    if found is None:
        raise ModelNotFound(f"model {ref}: no checkpoint ({checkpoint.STATE}) under {root}")
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
    shown = ref if is_mlflow_ref(ref) else path
    info = {"ref": ref, "checkpoint": shown, "config": config, "step": meta.get("step"), "temperature": G.temperature}
    return G, info


def load_init(ref: str, tracking_uri: Optional[str] = None) -> Tuple[dict, dict, str]:
    """What ``train.init_from`` starts a run from: (``checkpoint.init_weights`` of ``ref``'s
    checkpoint, its config dict, where it was found), read tensors-only."""
    path = local_checkpoint(ref, tracking_uri)
    try:
        init = checkpoint.init_weights(checkpoint.load_state(path))
        config = checkpoint.load_config(path)
        checkpoint.generator_from_state(init[checkpoint.EMA_KEY], config)  # the weights fit their config
    except checkpoint.NotACheckpoint as e:
        raise ModelNotFound(f"train.init_from {ref}: {e}") from None
    except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as e:
        raise ModelNotFound(f"train.init_from {ref}: weights do not fit its config.json ({type(e).__name__})") from None
    finally:
        download = _download_root(path) if is_mlflow_ref(ref) else None
        if download:
            shutil.rmtree(download, ignore_errors=True)
    return init, config, (ref if is_mlflow_ref(ref) or ref == SHIPPED else path)


def _download_root(path: str) -> Optional[str]:
    """The ``DOWNLOAD_PREFIX*`` temporary folder that holds ``path`` (None if there is none)."""
    while os.path.basename(path):
        if os.path.basename(path).startswith(DOWNLOAD_PREFIX):
            return path
        path = os.path.dirname(path)
    return None
