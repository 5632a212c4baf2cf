"""The generator as ONNX (L (B,1,H,W) in [-1,1] -> ab (B,2,H,W); dynamic batch,
height and width), checked by onnxruntime against torch on a sample of another size; or, with
``--ship DIR``, in the form a model ships inside the package (fp16 weights, config, meta, a model
card to complete): what ``pipeline/assets/model`` holds."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from typing import Optional, Tuple

import numpy as np
import torch

from models.generator import ABPredictor
from pipeline.config import check_temperature
from pipeline.data import storage
from pipeline.gan import checkpoint, model_ref
from pipeline.runtime import made_with, outputs, progress

log = logging.getLogger(__name__)


def check_output(path: str) -> None:
    """ValueError (one line) unless ``path`` is a local ``.onnx`` file name in a writable folder that exists."""
    if "://" in path:
        problem = "must be a local file (copy it to object storage afterwards)"
    elif os.path.isdir(path):
        problem = "is a folder; give a file name ending in .onnx"
    else:
        problem = outputs.output_file_problem(path, ".onnx")
    folder = os.path.dirname(os.path.abspath(path))
    if not problem and not os.path.isdir(folder):
        problem = f"folder {os.path.dirname(path) or '.'} does not exist"
    elif not problem and not os.access(folder, os.W_OK):
        problem = f"folder {os.path.dirname(path) or '.'} is not writable"
    if problem:
        raise ValueError(f"--output {path}: {problem}")


@contextlib.contextmanager
def _exporter_quiet():
    """The exporter's own chatter (skipped torchvision ops, deprecations) unless --verbose."""
    if os.environ.get(progress.VERBOSE_ENV) == "1":
        yield
        return
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter.setLevel(level)


def export_onnx(
    G, path: str, temperature: Optional[float] = None, opset: int = 18, settings: Optional[dict] = None
) -> None:
    """``G`` as ONNX at ``path``; ``settings`` (``made_with``) recorded in its metadata."""
    model = ABPredictor(G.cpu().eval(), temperature).eval()
    dims = {
        0: torch.export.Dim("batch", max=4096),
        2: torch.export.Dim("height", min=16, max=16384),
        3: torch.export.Dim("width", min=16, max=16384),
    }
    with _exporter_quiet():
        torch.onnx.export(
            model,
            (torch.randn(1, 1, 64, 96),),
            path,
            input_names=["L"],
            output_names=["ab"],
            dynamic_shapes={"L": dims},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    if settings:
        import onnx

        graph = onnx.load(path)
        graph.metadata_props.add(key=made_with.KEY, value=made_with.comment(settings))
        onnx.save(graph, path)


def onnx_settings(path: str) -> Optional[dict]:
    """The settings an .onnx file records (``export_onnx``); None when it records none or is no ONNX."""
    import onnx

    try:
        graph = onnx.load(path, load_external_data=False)
    except Exception:  # not an ONNX file: it records nothing we wrote
        return None
    return next((made_with.from_comment(p.value) for p in graph.metadata_props if p.key == made_with.KEY), None)


def check_onnx(G, path: str, temperature: Optional[float] = None, shape=(2, 1, 72, 120), seed: int = 0) -> float:
    """Max |ab_onnx - ab_torch| (Lab units) on a random input of ``shape``; raises if over 0.05."""
    import onnxruntime as ort  # optional dependency: only this check needs it

    x = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))
    with torch.no_grad():
        ref = G.cpu().eval()(x, temperature)[1].numpy()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"L": x.numpy()})[0]
    err = float(np.abs(got - ref).max())
    if got.shape != ref.shape or not err < 0.05:
        raise ValueError(f"ONNX model disagrees with torch: shape {got.shape} vs {ref.shape}, max error {err:.4g}")
    return err


def _export_in_place(G, path: str, temperature: Optional[float], settings: Optional[dict] = None) -> float:
    """``export_onnx`` and ``check_onnx`` in a temporary folder beside ``path``, under its final name
    (the graph names its weights file after itself), then the files moved into place, the graph
    last: a failed export or check leaves nothing. -> the check's error."""
    parent = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(dir=parent, prefix="." + os.path.basename(path) + ".") as work:
        graph = os.path.join(work, os.path.basename(path))
        export_onnx(G, graph, temperature, settings=settings)
        err = check_onnx(G, graph, temperature)
        for name in sorted(os.listdir(work), key=lambda n: n == os.path.basename(path)):
            os.replace(os.path.join(work, name), os.path.join(parent, name))
    return err


def ship(
    ref: str,
    directory: str,
    tracking_uri: Optional[str] = None,
    temperature: Optional[float] = None,
    overwrite: bool = False,
    with_discriminator: bool = False,
    prior_correction: Optional[float] = None,
) -> Tuple[int, dict]:
    """Write the generator of ``ref`` into ``directory`` as it ships (``checkpoint.save_shipped``)
    with a MODEL_CARD.md that says where it came from; -> (bytes of the weights, what
    ``model_ref.resolve_generator`` said of ``ref``). ``temperature``
    (chosen on validation photos) becomes the model's own default. ``with_discriminator``: D too,
    from a training checkpoint, so that the folder is a resume point the next stage of a long
    training starts from (``train.init_from``). ``prior_correction`` (chosen on validation photos
    too) becomes the model's own ``model.prior_correction``. The folder is filled under a temporary name and
    moved into place complete; one that holds anything is kept unless ``overwrite``."""
    if "://" in directory:
        raise ValueError(f"--ship {directory}: must be a local folder (copy it to object storage afterwards)")
    _check_ship_target(directory, overwrite)  # before the model loads, and again as it moves into place
    G, info = model_ref.resolve_generator(ref, tracking_uri)
    backfilled = backfill_class_weights(G, info["config"])  # first: a prior correction then has weights to use
    G, info = model_ref.with_prior_correction(G, info, prior_correction)
    info = {**info, "backfilled": backfilled}
    D = model_ref.discriminator_state(ref, tracking_uri) if with_discriminator else None
    meta = {"step": info.get("step") or 0, "source": storage.redact(str(info["ref"]))}
    config = info["config"]  # with the prior correction asked for
    if temperature is not None:
        config = {
            **config,
            "model": {**config["model"], "temperature": check_temperature(temperature, "--temperature")},
        }
        info = {**info, "config": config}
    try:
        with storage.local_folder_in_place(directory, overwrite) as tmp:
            size = checkpoint.save_shipped(tmp, G, config, meta, D=D)
            with open(os.path.join(tmp, "MODEL_CARD.md"), "w") as f:
                f.write(model_card(info, size))
    except FileExistsError:  # appeared while the model was written (another run)
        _check_ship_target(directory, overwrite)  # says what is there
        raise ValueError(f"--ship {directory}: something else is there now: give another name") from None
    return size, info


def backfill_class_weights(G: ABPredictor, config: dict) -> Optional[str]:
    """Record in ``G`` the class weights its config's loss trained it with (``loss.prior``,
    ``loss.prior_lambda``, ``loss.prior_sigma``) when its checkpoint was saved before generators
    recorded them (all 1: a prior correction would change nothing), so the shipped folder carries
    them; -> what was done, for the user, or None when nothing was (weights recorded, rebalancing
    off). A prior file that cannot be read leaves the weights as they are and says so."""
    from pipeline.config import ExperimentConfig
    from pipeline.data import priors
    from pipeline.gan import batches

    cfg = ExperimentConfig.from_dict(config)
    loss = cfg.loss
    if getattr(G, "corrects", True) or not loss.rebalance or not torch.all(G.rebalance_weights == 1):
        return None
    where = priors.resolve_prior_path(loss.prior)
    shown = storage.redact(where if storage.is_s3(where) else os.path.abspath(where))  # the file it used
    try:
        s3 = storage.S3Settings.from_config(cfg.data)
        weights = batches.class_weights_tensor(priors.load_prior(where, s3), loss)
        if torch.all(weights == weights[0]):  # equal weights: nothing a correction could divide out
            return None
        G.set_rebalance_weights(weights)
    except (OSError, ValueError, storage.StorageError) as e:  # a prior of another grid is a ValueError
        why = storage.redact(str(e), where)
        return f"its checkpoint predates recorded class weights and {shown} cannot be read ({why}): shipped without"
    # the config names the prior; a run that recomputed its own prior trained with that one instead
    return f"its checkpoint predates recorded class weights: recorded those of its config's loss.prior, {shown}"


def _check_ship_target(directory: str, overwrite: bool) -> None:
    """ValueError when ``--ship DIR`` may not be written: a file, or a folder holding anything
    (without ``overwrite``)."""
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise ValueError(f"--ship {directory}: a file is there, not a folder: give another name")
    if os.path.isdir(directory) and os.listdir(directory) and not overwrite:
        what = "a model is" if os.path.exists(os.path.join(directory, checkpoint.STATE)) else "files are"
        raise ValueError(f"--ship {directory}: {what} already there (--overwrite replaces the folder)")


def model_card(info: dict, size: int) -> str:
    """The facts a model card starts from; data, figures and failure modes are added by hand."""
    cfg = info["config"]
    return (
        "# colorize model\n\n"
        f"- Weights: `state.pt`, fp16, {size / 1e6:.1f} MB, the generator the run served (its EMA when kept); "
        "loads with `weights_only=True`.\n"
        f"- Source: {storage.redact(str(info['ref']))}, step {info.get('step')}.\n"
        f"- Model: preset `{cfg['model']['preset']}`, norm `{cfg['model']['norm']}`, "
        f"default temperature {cfg['model']['temperature']}, prior correction "
        f"{cfg['model'].get('prior_correction') or 0:g}; trained at short side {cfg['data']['resize']} "
        f"(crops of {cfg['data']['crop']}), the working size `colorize infer` uses by default.\n"
        "- Config: `config.json` beside the weights.\n"
    )
