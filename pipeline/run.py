"""The end-to-end job: ``python pipeline/run.py`` or ``ray job submit --working-dir . -- python pipeline/run.py``.

Today it makes sure a colour prior exists for the data (recomputing it on Ray Data) and reports it;
training, evaluation and MLflow tracking plug in here as they land.
"""

from __future__ import annotations

import argparse
import os
import sys

# Run as a script, pipeline/ is first on sys.path; make the project root importable too
# (``ray job submit --working-dir .`` already puts it on PYTHONPATH).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pipeline import cli  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="skimage:", help="folder, list file, s3:// prefix, or skimage: (built-in photos)")
    p.add_argument("--out", default="out/demo", help="output folder (local or s3://)")
    p.add_argument("--size", type=int, default=256)
    args, rest = p.parse_known_args(argv)
    prior = args.out.rstrip("/") + "/prior_probs.npy"
    return cli.main(["priors", "--data", args.data, "--out", prior, "--size", str(args.size), *rest])


if __name__ == "__main__":
    sys.exit(main())
