"""The training job's script entry: ``python pipeline/run.py --config FILE [--set a.b=v ...]``, locally
or as ``ray job submit --working-dir . -- python pipeline/run.py ...`` against a cluster; also
``python -m pipeline.run``. The job itself is ``pipeline.jobs.train`` (``colorize train``)."""

from __future__ import annotations

import os
import sys

# Run as a script, pipeline/ is first on sys.path; make the project root importable too
# (``ray job submit --working-dir .`` already puts it on PYTHONPATH).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pipeline.jobs.train import main, parse_args  # noqa: E402, F401  (the entry's parser, as `colorize train`'s)

if __name__ == "__main__":
    sys.exit(main())
