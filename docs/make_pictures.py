"""Make the pictures the project ships, from scikit-image's bundled photos only (their licences allow
it): the grey example photos the web page offers, and the README's before/after picture made by
`colorize infer` with the default model.

    python docs/make_pictures.py examples       # pipeline/assets/examples/*.jpg
    python docs/make_pictures.py before-after   # docs/images/before-after.jpg (needs the shipped model)
    python docs/make_pictures.py model-card     # docs/images/shipped-examples.jpg: grey | shipped | truth
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from skimage import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "pipeline", "assets", "examples")
BEFORE_AFTER = os.path.join(ROOT, "docs", "images", "before-after.jpg")
# scikit-image's photos: name in skimage.data -> file name. Public domain or CC0 (skimage.data's docs).
PHOTOS = {"astronaut": "astronaut.jpg", "coffee": "coffee.jpg", "chelsea": "cat.jpg", "rocket": "rocket.jpg"}
SHORT_SIDE = 320  # small enough to keep the package light, big enough to judge colour


def grey(rgb: np.ndarray, short_side: int) -> Image.Image:
    im = Image.fromarray(rgb).convert("L")
    scale = short_side / min(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)


def examples() -> None:
    os.makedirs(EXAMPLES, exist_ok=True)
    for name, file in PHOTOS.items():
        path = os.path.join(EXAMPLES, file)
        grey(getattr(data, name)(), SHORT_SIDE).save(path, "JPEG", quality=85, optimize=True)
        print(f"wrote {path} ({os.path.getsize(path) // 1024} KiB)")


def before_after(photo: str = "coffee") -> None:
    """grey | colour side by side, the colour side made by `colorize infer` as a user runs it."""
    with tempfile.TemporaryDirectory() as work:
        src = os.path.join(work, "photo.jpg")
        grey(getattr(data, photo)(), 400).save(src, "JPEG", quality=95)
        cmd = [sys.executable, "-m", "pipeline.cli", "infer", src]
        subprocess.run(cmd, check=True, cwd=ROOT)
        before = Image.open(src).convert("RGB")
        after = Image.open(os.path.join(work, "photo-colour.jpg")).convert("RGB")
        sheet = Image.new("RGB", (before.width + 8 + after.width, before.height), "white")
        sheet.paste(before, (0, 0))
        sheet.paste(after, (before.width + 8, 0))
        os.makedirs(os.path.dirname(BEFORE_AFTER), exist_ok=True)
        sheet.save(BEFORE_AFTER, "JPEG", quality=88, optimize=True)
        print(f"wrote {BEFORE_AFTER}")


CARD = os.path.join(ROOT, "docs", "images", "shipped-examples.jpg")
CARD_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "coins", "retina")  # coins: grey truth


def model_card(short_side: int = 192) -> None:
    """One row per scikit-image photo: grey input | the shipped model's colour | the true colour:
    what it gets right and where it fails, for the model card."""
    sys.path.insert(0, ROOT)
    from pipeline.gan import model_ref, predict

    G, _ = model_ref.resolve_generator(model_ref.SHIPPED)
    rows = []
    for name in CARD_PHOTOS:
        truth = getattr(data, name)()
        truth = np.repeat(truth[..., None], 3, -1) if truth.ndim == 2 else truth[..., :3]
        g = np.asarray(grey(truth, short_side).convert("RGB"))
        t = np.asarray(Image.fromarray(truth).resize(g.shape[1::-1], Image.Resampling.LANCZOS))
        rows.append(np.concatenate([g, predict.colorize(G, g, predict.working_size(G)), t], 1))
    width = max(r.shape[1] for r in rows)
    sheet = Image.new("RGB", (width, sum(r.shape[0] + 6 for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(Image.fromarray(r), (0, y))
        y += r.shape[0] + 6
    os.makedirs(os.path.dirname(CARD), exist_ok=True)
    sheet.save(CARD, "JPEG", quality=85, optimize=True)
    print(f"wrote {CARD}")


if __name__ == "__main__":
    what = sys.argv[1:] or ["examples"]
    for w in what:
        {"examples": examples, "before-after": before_after, "model-card": model_card}[w]()
