"""Images/s into the training loop (no model) at 256² crops: raw JPEGs vs prepared shards, from a
folder and from S3 (moto's server on 127.0.0.1), with 1 and 2 CPUs for Ray Data; plus bytes per
pixel stored and delivered. Targets: shards >= 3x raw JPEGs from S3; >= 1.7x from 1 to 2 CPUs.

    python bench/ingest.py [--images 300]

One local Ray runtime (2 CPUs) for all runs; each run reads one epoch through the same dataset
code training uses (pipeline.data.sources.Source) and counts rows at the consumer. The CPU
count is Ray Data's resource limit for that dataset. Runs are interleaved and repeated; best kept.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
os.environ.setdefault("AWS_REGION", "us-east-1")

import common  # noqa: E402


def start_moto():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto_server did not start")


def dataset(source: str, data_cfg, s3):
    from pipeline.core.split import WHOLE
    from pipeline.data import sources

    return sources.Source.open(source, s3).crops(data_cfg, WHOLE, train=True, cpus_per_task=1)


def epoch(ds, cpus: int):
    from ray.data import ExecutionResources

    ds.context.execution_options.resource_limits = ExecutionResources(cpu=cpus)
    t = time.perf_counter()
    rows = nbytes = pixels = 0
    for b in ds.iter_batches(batch_size=32, batch_format="numpy"):
        planes = [v for k, v in b.items() if k in ("rgb", "L", "ab")]
        n = len(planes[0])
        rows += n
        nbytes += sum(v.nbytes for v in planes)
        pixels += n * planes[0].shape[1] * planes[0].shape[2]
    return rows / (time.perf_counter() - t), nbytes / max(pixels, 1), rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import boto3
    import ray

    from pipeline.config import ExperimentConfig
    from pipeline.data import prepare, storage

    tmp = Path(tempfile.mkdtemp(prefix="ingest"))
    moto, endpoint = start_moto()
    try:
        raw = tmp / "raw"
        raw.mkdir()
        for p in common.split_paths("train", args.images):
            shutil.copy(p, raw / p.name)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        for p in raw.iterdir():
            client.put_object(Bucket="bench", Key=f"raw/{p.name}", Body=p.read_bytes())
        s3 = storage.S3Settings(endpoint=endpoint, region="us-east-1")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        # Shards of ~8 MB: a few hundred photos make several files, as millions make thousands of
        # 256 MB ones; Ray Data reads files in parallel, so one big file would serialise the bench.
        local = prepare.prepare(str(raw), str(tmp / "shards"), size=256, s3=s3, skip_grey=False, shard_mb=8)
        prepare.prepare("s3://bench/raw/", "s3://bench/shards", size=256, s3=s3, skip_grey=False, shard_mb=8)
        data_cfg = ExperimentConfig().replace({"data.resize": 256, "data.crop": 256, "data.skip_grey": False}).data
        sources = {
            "raw JPEG, folder": str(raw),
            "raw JPEG, S3": "s3://bench/raw/",
            "shards, folder": str(tmp / "shards"),
            "shards, S3": "s3://bench/shards",
        }
        jpeg_bytes = sum(p.stat().st_size for p in raw.iterdir())
        best, delivered = {}, {}
        for _ in range(args.repeats):
            for name, src in sources.items():
                for cpus in (1, 2):
                    rate, bpp, rows = epoch(dataset(src, data_cfg, s3), cpus)
                    best[(name, cpus)] = max(best.get((name, cpus), 0), rate)
                    delivered[name] = bpp
        print(
            f"ingest into the training loop, {local['images']} photos, 256² crops, local Ray with 2 CPUs "
            f"(best of {args.repeats})"
        )
        print(f"{'source':18s} {'1 CPU':>9s} {'2 CPUs':>9s} {'1->2':>6s} {'B/px delivered':>15s}")
        for name in sources:
            a, b = best[(name, 1)], best[(name, 2)]
            print(f"{name:18s} {a:7.1f}/s {b:7.1f}/s {b / a:5.2f}x {delivered[name]:15.2f}")
        px = sum(256 * 256 * 4 / 3 for _ in range(local["images"]))
        print(
            f"stored bytes per pixel at short side 256: raw JPEG {jpeg_bytes / px:.2f}, "
            f"shards {local['bytes'] / px:.2f}"
        )
        for cpus in (1, 2):
            ratio = best[("shards, S3", cpus)] / best[("raw JPEG, S3", cpus)]
            print(f"shards S3 / raw JPEG S3 at {cpus} CPU(s): {ratio:.2f}x")
    finally:
        moto.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            ray.shutdown()
        except Exception:
            pass


if __name__ == "__main__":
    main()
