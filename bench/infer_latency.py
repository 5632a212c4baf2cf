"""Where the time of ``colorize infer PHOTO`` goes on this CPU, warm, for a 1 MP and a 12 MP photo:
decode, lightness (L at full resolution), model (working-size input + G), join (ab upsampled and
joined with the full-resolution L into sRGB), encode; and the total. Side by side in one run:
the model in fp32 and under bf16 autocast, the join in row chunks (``predict.join_l_ab``, what
``colorize infer`` runs: bounded memory) and over the whole image at once (``predict.join_full``).

    python bench/infer_latency.py [--model shipped] [--size 128] [--repeat 3]

The photos are scikit-image's astronaut upscaled (JPEG, quality 95); the model is ``--model``
(default: the shipped one) or, with ``--untrained PRESET``, an untrained generator of that shape
(the same cost). Numbers are medians of ``--repeat`` warm runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skdata  # noqa: E402

from pipeline.apply import infer  # noqa: E402
from pipeline.config import ExperimentConfig  # noqa: E402
from pipeline.core import transforms  # noqa: E402
from pipeline.gan import cgan, model_ref, predict  # noqa: E402


def photo(megapixels: float) -> bytes:
    """A JPEG of about ``megapixels`` MP (3:2), from scikit-image's astronaut."""
    w = int((megapixels * 1e6 * 1.5) ** 0.5)
    h = int(w / 1.5)
    img = Image.fromarray(skdata.astronaut()).resize((w, h), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def timed(fn, out: dict, key: str):
    t = time.perf_counter()
    r = fn()
    out[key] = out.get(key, 0.0) + time.perf_counter() - t
    return r


def one(G, data: bytes, size: int, bf16: bool, join: str) -> dict:
    t: dict = {}
    d = timed(lambda: transforms.decode_image(data), t, "decode")
    L = timed(lambda: predict.photo_L(d.rgb), t, "lightness")
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def model():
        x = torch.from_numpy(predict.working_input(L, size))[None]
        with torch.no_grad(), amp:
            return G(x)[1].float()

    ab = timed(model, t, "model")
    if join == "chunked":
        H, W = L.shape
        rgb = timed(lambda: predict.join_l_ab(L, predict.upsample_ab(ab[0].permute(1, 2, 0).numpy(), H, W)), t, "join")
    else:
        rgb = timed(lambda: predict.join_full(L, ab[0]), t, "join")
    timed(lambda: infer.encode(rgb, "out.jpg"), t, "encode")
    t["total"] = sum(t.values())
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=model_ref.SHIPPED)
    ap.add_argument("--untrained", default=None, metavar="PRESET", help="time an untrained generator instead")
    ap.add_argument("--norm", default="batch", help="with --untrained: its norm layer")
    ap.add_argument("--size", type=int, default=128, help="working size (short side the model sees)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--megapixels", default="1,12")
    a = ap.parse_args()
    if a.untrained:
        cfg = ExperimentConfig.from_dict({"model": {"preset": a.untrained, "norm": a.norm}})
        G = cgan.build_generator(cfg.model).eval()
    else:
        G = model_ref.resolve_generator(a.model)[0]
    print(f"{torch.get_num_threads()} threads; model {a.untrained or a.model}; working size {a.size}")
    for mp in (float(x) for x in a.megapixels.split(",")):
        data = photo(mp)
        W, H = Image.open(io.BytesIO(data)).size
        print(f"\n{W}x{H} ({W * H / 1e6:.1f} MP), JPEG {len(data) / 1e6:.1f} MB")
        print(
            f"  {'variant':<22}"
            + "".join(f"{k:>10}" for k in ("decode", "lightness", "model", "join", "encode", "total"))
        )
        for bf16 in (False, True):
            for join in ("chunked", "whole"):
                one(G, data, a.size, bf16, join)  # warm
                runs = [one(G, data, a.size, bf16, join) for _ in range(a.repeat)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                name = f"{'bf16' if bf16 else 'fp32'} model, {join} join"
                print(
                    f"  {name:<22}"
                    + "".join(f"{med[k]:>9.3f}s" for k in ("decode", "lightness", "model", "join", "encode", "total"))
                )


if __name__ == "__main__":
    main()
