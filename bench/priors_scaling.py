"""The priors job with 1 vs 2 concurrent decode tasks on a local Ray (target: >= 1.6x on 2 cores).

    python bench/priors_scaling.py [--images 400]

Both runs use the same Ray runtime (started once, 2 CPUs) and the same files from
../shared/data/splits/train.txt; the first, untimed pass warms the page cache and the bin table.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    import ray

    from pipeline.data import priors

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    data = str(common.SHARED_DATA / "splits" / "train.txt")
    priors.compute_prior(data, limit=args.images, workers=args.cpus, s3=None)  # warm-up (local data)
    rows = []
    for workers in (1, args.cpus, 1, args.cpus):  # interleaved: drift hits both alike
        t = time.perf_counter()
        r = priors.compute_prior(data, limit=args.images, workers=workers, s3=None)
        rows.append((workers, r.images / (time.perf_counter() - t)))
    best = {w: max(v for ww, v in rows if ww == w) for w, _ in rows}
    print(f"priors job, {args.images} photos from train.txt, short side 256, local Ray with {args.cpus} CPUs")
    for w, v in rows:
        print(f"  workers={w}: {v:6.1f} img/s")
    print(
        f"best: 1 worker {best[1]:.1f} img/s, {args.cpus} workers {best[args.cpus]:.1f} img/s, "
        f"speed-up {best[args.cpus] / best[1]:.2f}x"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
