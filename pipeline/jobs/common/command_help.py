"""What ``colorize --help`` and ``colorize COMMAND --help`` say: one line per command, a paragraph
on what it does and where its results go, and examples that run as shown. Plain text, no imports:
printing help loads no job."""

from __future__ import annotations

from typing import Dict, NamedTuple


class CommandHelp(NamedTuple):
    summary: str  # one line in `colorize --help`
    description: str  # the paragraph under the usage line
    examples: str  # shown under "examples:" at the end


PROGRAM = """\
Colour grey photos and videos with a conditional GAN, and train, tune and serve it on Ray.

Every command works out of the box with the model that ships with colorize; give --model to use
one you trained. Nothing that exists is replaced unless you pass --overwrite."""

PROGRAM_EPILOG = """\
examples:
  colorize infer old.jpg                    writes old-colour.jpg next to it
  colorize serve                            web page on http://127.0.0.1:8000
  colorize train --config pipeline/configs/demo.yaml

Run `colorize COMMAND --help` for a command's options and examples."""

COMMANDS: Dict[str, CommandHelp] = {
    "infer": CommandHelp(
        "colour a photo, a folder of photos or an s3:// prefix",
        """\
Colour grey (or colour) photos: any size, EXIF orientation honoured, the photo's own lightness
kept exactly. One photo runs in this process; a folder, a list file (.txt, one path per line) or
an s3:// prefix runs on Ray with a progress bar.

Results: PHOTO-colour.EXT next to a photo, or a FOLDER-colour/ folder beside a folder, unless
--output says otherwise. Each result records the settings that made it: a rerun with the same
settings keeps it, a rerun with other settings stops and says so; --overwrite replaces.""",
        """\
  colorize infer old.jpg                                  -> old-colour.jpg
  colorize infer old.jpg --temperature 0.25 --overwrite   more vivid, replacing the last try
  colorize infer old-photos/ --output coloured/            every photo below old-photos/
  colorize infer old.jpg --grid 0.2,0.38,0.7              one sheet comparing three temperatures""",
    ),
    "video": CommandHelp(
        "colour a video (or a folder of videos) without flicker",
        """\
Colour every frame of a video; colour follows the motion (optical flow) so it does not flicker.
Frame rate, timestamps, rotation and audio are kept. One video runs in this process with a
progress bar (frames, frames/s, time left); a folder or s3:// prefix runs one video per Ray task.

Colour hints (--hint, --hints; a model that takes them, as the shipped one does) name the colour
of points of the first frame of one video; with --temporal flow they follow the motion until a
scene cut, with --temporal none they colour the first frame only.

Results: VIDEO-colour.EXT next to a video (MP4, MOV and MKV keep their container, others become
MKV), or a FOLDER-colour/ folder beside a folder, unless --output says otherwise.""",
        """\
  colorize video old-film.mp4                             -> old-film-colour.mp4
  colorize video old-film.mp4 --hint 120,80,#b03020       the point 120,80 of the first frame is red
  colorize video old-film.mp4 --temporal none --output flickery.mp4
  colorize video reels/ --output reels-colour/ --workers 2""",
    ),
    "serve": CommandHelp(
        "a web page and an HTTP API that colour photos (Ray Serve)",
        """\
Start a web page (drop, paste or pick a photo; compare grey and colour; change the temperature)
and an HTTP API, POST /colorize, on Ray Serve. Listens on 127.0.0.1 (this machine only) unless
--host says otherwise. Stop it with Ctrl-C.""",
        """\
  colorize serve                                          then open http://127.0.0.1:8000
  curl -sf --data-binary @old.jpg -H 'Content-Type: image/jpeg' \\
       'http://127.0.0.1:8000/colorize?temperature=0.3' -o old-colour.png
  colorize serve --model out/runs/my-run --port 8080""",
    ),
    "eval": CommandHelp(
        "score models on colour photos beside the all-grey baseline",
        """\
Turn colour photos grey, colour them with each model, and score the result against the truth
beside the all-grey baseline: AuC of the colour error (raw and rebalanced), colourfulness and its
gap, PSNR, SSIM. Writes metrics.json and report.html (examples side by side) to --output.""",
        """\
  colorize eval my-colour-photos/
  colorize eval photos/ --compare out/runs/my-run --output out/eval-mine
  colorize eval --input s3://bucket/test-photos/ --limit 200 --size 256""",
    ),
    "export": CommandHelp(
        "export the model as ONNX (checked against PyTorch)",
        """\
Write the generator as an ONNX file (L in, ab out, any batch and size) and check it with
onnxruntime against PyTorch. Needs the `export` extra: pip install 'colorize[export]'.""",
        """\
  colorize export --output colorizer.onnx
  colorize export --model out/runs/my-run --output my-run.onnx --temperature 0.3""",
    ),
    "train": CommandHelp(
        "train a model on your photos (Ray Train, MLflow)",
        """\
Train the colorizer on Ray Train: make sure a colour prior exists, train with validation every
epoch, checkpoint to train.storage_path (default out/runs/<run name>/), log metrics and sample
grids to MLflow (default: a sqlite store under --output). Settings come from the defaults, then
--config, then each --set; `colorize config` prints them all with their help. The same job runs
on a cluster as `python pipeline/run.py` under `ray job submit`.""",
        """\
  colorize train --config pipeline/configs/demo.yaml --output out/demo      what `make demo` runs
  colorize train --set data.train=my-photos/ --set train.run_name=my-run     -> out/runs/my-run/
  colorize train --set data.train=s3://bucket/photos/ --set train.init_from=shipped""",
    ),
    "tune": CommandHelp(
        "search the loss weights with Ray Tune; the best config as YAML",
        """\
Run a Ray Tune sweep: each trial is a training run with loss weights drawn from the search space
(tune/space.yaml unless --space), ASHA stops the weak ones early. The best config is written to
--output/best_config.yaml; every trial is an MLflow child run of the sweep's run. The same --name
again resumes the sweep.""",
        """\
  colorize tune --config pipeline/configs/demo.yaml --num-samples 4
  colorize tune --set data.train=my-photos/ --num-samples 16 --max-concurrent 2 --name loss-sweep""",
    ),
    "prepare": CommandHelp(
        "decode photos once into shards that training reads fast",
        """\
Decode every photo once, resize its short side to --resize, and write Parquet shards (L, ab and
colour bins per photo) plus manifest.json to --output. Train many epochs on them with
--set data.train=OUTPUT; `colorize priors --input OUTPUT` counts colours without decoding.
Unreadable files are skipped and counted, never fatal.""",
        """\
  colorize prepare photos/ --output prepared/
  colorize prepare --input s3://bucket/photos/ --output s3://bucket/prepared/ --resize 256""",
    ),
    "priors": CommandHelp(
        "count a dataset's colours: the prior training rebalances with",
        """\
Count how often each quantized ab colour occurs in a dataset (Ray Data, any size, local or S3) and
write the prior (.npy), its provenance (.json) and a picture of it on the ab plane (.png) beside
--output. Train with it through --set loss.prior=OUTPUT. The project's own prior is never replaced
unless you pass --overwrite.""",
        """\
  colorize priors my-photos/ --output out/my-prior.npy
  colorize priors --input s3://bucket/photos/ --output s3://bucket/priors/prior_probs.npy --resize 256""",
    ),
    "config": CommandHelp(
        "print the training settings in effect, each with its help",
        """\
Print the configuration that `colorize train` and `colorize tune` would use, given the same
--config and --set: every key with its value and what it means, as YAML you can save and edit.
Keys that differ from the defaults say so.""",
        """\
  colorize config
  colorize config --config pipeline/configs/demo.yaml --set train.epochs=3
  colorize config > my-run.yaml && colorize train --config my-run.yaml""",
    ),
}
