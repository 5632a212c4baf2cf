"""Write docs/configuration.md from the config dataclasses and their help
(tests/unit/test_config_docs.py fails when it is out of date): python docs/make_config_reference.py"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline.jobs.common import config_help  # noqa: E402

if __name__ == "__main__":
    path = os.path.join(ROOT, "docs", "configuration.md")
    with open(path, "w") as f:
        f.write(config_help.reference_markdown())
    print(f"wrote {path}")
