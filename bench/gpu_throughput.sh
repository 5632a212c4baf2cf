#!/usr/bin/env bash
# GPU throughput in one run (well under 10 minutes): bench/model.py (img/s and MFU of the product's
# step, eager vs train.compile=on, 128² and 256²) and bench/train_throughput.py (bare vs Ray-fed,
# compiled), numbers to $OUT/throughput.json (default /tmp/gpu-throughput) and
# docs/results/<date>-<gpu>/throughput.json. On a GPU machine:
#   bash bench/gpu_throughput.sh
# Wheels in .whl/ (git-ignored) are installed first: a machine without Ray can run the Ray-fed part.
# Without Ray or benchmark photos (COLORIZE_SHARED_DATA / ../shared/data) the Ray-fed part is
# skipped and says so; bench/model.py needs torch only.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH} || echo "wheel install failed: Ray part will fail"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
gpu=$(python3 -c 'import torch; print(torch.cuda.get_device_name().split()[1].lower() if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo cpu)
out=${OUT:-/tmp/gpu-throughput}; mkdir -p "$out"
dest=docs/results/$(date +%F)-$gpu; mkdir -p "$dest"
PRESET=${PRESET:-full}; BATCH=${BATCH:-32}; SIZES=${SIZES:-128,256}
# H100 SXM dense bf16 ~989 TFLOP/s on the datasheet; H200 as measured on one: 792
case "$gpu" in h100) peak=${PEAK:-989} ;; *) peak=${PEAK:-792} ;; esac
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null | tee "$out/gpu.txt"
timeout 300 python3 bench/model.py --preset "$PRESET" --sizes "$SIZES" --batch "$BATCH" --cpu-batch 0 \
  --peak-tflops "$peak" --iters "${ITERS:-20}" --json "$out/model.json" 2>&1 | tee "$out/model.log" | grep -v Warning
timeout 200 python3 bench/train_throughput.py --preset "$PRESET" --crop 128 --batch "${FED_BATCH:-64}" \
  --images "${IMAGES:-1536}" --compile auto --json "$out/fed.json" 2>&1 | tee "$out/fed.log" | tail -5
python3 - "$out" "$gpu" "$peak" <<'PY'
import json, pathlib, sys
out, gpu, peak = pathlib.Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
load = lambda n: json.loads((out / n).read_text()) if (out / n).exists() else None
doc = {"gpu": gpu, "peak_tflops": peak, "model": load("model.json"), "train_throughput": load("fed.json")}
(out / "throughput.json").write_text(json.dumps(doc, indent=1))
print(f"{'size':>5} {'variant':<28} {'img/s':>8} {'MFU':>6}")
for r in doc["model"] or []:
    if "img_s" in r and r.get("device") != "cpu":
        print(f"{r['size']:>5} {r['variant']:<28} {r['img_s']:8.0f} {100 * r['mfu']:5.1f}%")
f = doc["train_throughput"]
print("fed/bare:", f and f"{f['fed_img_s']:.0f} / {f['bare_img_s']:.0f} img/s = {100 * f['fed_over_bare']:.0f}%")
PY
cp "$out"/throughput.json "$out"/*.log "$dest"/ 2>/dev/null; echo "results: $dest/throughput.json"
