"""The registered model takes images: ``mlflow models serve -m models:/NAME@ALIAS`` (a real scoring
server on 127.0.0.1, against a real MLflow tracking server) answers ``POST /invocations`` with a
photo and gives back a colour image of the same size and lightness."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.config import ExperimentConfig
from pipeline.core import color
from pipeline.gan import checkpoint, model_io
from pipeline.train.tracking import Tracker, log_generator
from support import corpus
from support.servers import free_port, stop_group, wait_for_port


def _post(url: str, body: dict, timeout: float = 60.0):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _wait_healthy(base: str, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "mlflow models serve exited"
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base}/ping not healthy after {timeout}s")


def test_registry_model_serves_images(ckpt, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    run_id = client.create_run(client.create_experiment("serve-images")).info.run_id
    cfg = ExperimentConfig().replace(
        {"model.preset": "tiny", "tracking.register_as": "colorizer-serve", "tracking.register_alias": "live"}
    )
    G = checkpoint.load_generator(str(ckpt))
    G.set_rebalance_weights(torch.linspace(-3, 3, G.num_bins).exp())  # class weights: A has an effect
    log_generator(Tracker(mlflow_server, run_id), G, cfg, step=7)
    version = client.get_model_version_by_alias("colorizer-serve", "live")
    assert version.run_id == run_id

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # the scoring server runs the environment's uvicorn by name
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    argv = [os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", "models:/colorizer-serve@live"]
    argv += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(port, 120, proc)
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, proc, 60)
            rgb = corpus.photo(11, 45, 70)
            photo = base64.b64encode(model_io.png(rgb)).decode()
            body = {
                "dataframe_split": {"columns": ["image"], "data": [[photo], [rgb[..., 0].tolist()]]},
                "params": {"temperature": 0.2, "size": 32, "format": "png"},
            }
            status, answer = _post(f"{base}/invocations", body)
            assert status == 200, answer
            outs = [np.asarray(Image.open(io.BytesIO(base64.b64decode(p)))) for p in answer["predictions"]]
            grey_L = color.rgb_to_lab(np.repeat(rgb[..., :1], 3, -1))[..., 0]
            for out, L in zip(outs, [color.rgb_to_lab(rgb)[..., 0], grey_L], strict=True):
                assert out.shape == rgb.shape and out.dtype == np.uint8
                assert np.abs(color.rgb_to_lab(out)[..., 0] - L).max() < 1.0  # L kept (8-bit rounding)
                assert np.linalg.norm(color.rgb_to_lab(out)[..., 1:], axis=-1).mean() > 2  # and coloured
            # the prior correction param: the model's own (0) unless asked, another when asked
            body["params"]["prior_correction"] = 1.0
            status, answer = _post(f"{base}/invocations", body)
            assert status == 200, answer
            corrected = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["predictions"][0]))))
            assert np.abs(corrected.astype(int) - outs[0].astype(int)).mean() > 1, "prior_correction ignored"

            status, answer = _post(
                f"{base}/invocations", {"dataframe_split": {"columns": ["image"], "data": [["aGk="]]}}
            )
            assert status == 400 and "not a usable image" in answer.get("message", ""), answer
            ragged = [[1, 2, 3]] * 8 + [[1, 2]]
            strip = np.full((8, 3000), 128).tolist()  # 375:1: refused by shape, before any work
            for row, why in [(ragged, "unequal length"), (strip, "too thin")]:
                body = {"dataframe_split": {"columns": ["image"], "data": [[row]]}, "params": {"size": 16}}
                status, answer = _post(f"{base}/invocations", body)
                assert status == 400 and why in answer.get("message", ""), answer
                assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer), answer
        finally:
            stop_group(proc)
