"""What the light install (``pip install colorize``: photos and folders on one machine) leaves out,
and the one line that says which extra brings it back when a command needs it.

The extras (pyproject.toml): ``train`` (Ray Train/Data, pyarrow, MLflow: training, ``s3://``,
``runs:/`` and ``models:/``, Ray Data folders), ``tune``, ``serve``, ``video``, ``export``; ``all``.
"""

from __future__ import annotations

from typing import Optional

# package a ModuleNotFoundError names -> the extra that installs it
EXTRA_OF_PACKAGE = {
    "ray": "train",
    "pyarrow": "train",
    "mlflow": "train",
    "pandas": "train",
    "av": "video",
    "cv2": "video",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
    "fastapi": "serve",
    "starlette": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
}
# a command whose extra is its own (what it needs at all comes with that one)
EXTRA_OF_COMMAND = {
    "train": "train",
    "tune": "tune",
    "serve": "serve",
    "video": "video",
    "export": "export",
    "prepare": "train",
    "priors": "train",
}


def missing(command: str, error: ModuleNotFoundError) -> Optional[str]:
    """The line for ``error`` when it is a package an extra brings (None for anything else: a bug)."""
    package = (error.name or "").split(".")[0]
    if package not in EXTRA_OF_PACKAGE:
        return None
    extra = EXTRA_OF_COMMAND.get(command, EXTRA_OF_PACKAGE[package])
    return (
        f"this needs {package}, which this install leaves out: pip install 'colorize[{extra}]' "
        "(or colorize[all] for everything)"
    )
