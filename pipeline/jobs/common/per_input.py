"""The skeleton of the jobs that write one output per input (``colorize infer``, ``colorize video``):
their shared flags and options, is the input one file or many, where each result goes
(``pipeline.runtime.outputs`` rules checked against what storage already holds), the rerun rule, the
single-file path in-process and the Ray path for many, stops, and the summary. A job gives only what
is its own (a ``PerInputJob``): its target names, settings, one input's work, its Ray stages.

Outputs keep the inputs' names (relative to the inputs' common folder) under ``--output``. Every
name is planned before any work starts (``pipeline.runtime.outputs``): it cannot leave ``--output``,
never replaces an input, two inputs never share one, and an existing output is kept unless
``--overwrite`` (or, made with other settings, reported). An input that does not decode is skipped
and reported by reason; every other input is still written.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set

from pipeline.config import check_range
from pipeline.core import hint_spread as spreading
from pipeline.core import hints as hint_points
from pipeline.core.hints import Hint, HintError
from pipeline.core.skips import SKIP_MISSING, SKIP_WRITE_FAILED, Skips
from pipeline.data import storage
from pipeline.data.storage import pafs  # pyarrow's, or its local stand-in in the light install
from pipeline.gan import model_ref, predict
from pipeline.jobs.common import flags
from pipeline.runtime import made_with, outputs
from pipeline.runtime.stops import remove_partials

MAX_HINTS_FILE = 1 << 20  # bytes of a --hints file: MAX_HINTS points take a few KiB
SIZE_RANGE = (16, 2048)  # working short side: below, nothing to see; above, the model's activations outgrow memory
COLOUR_SUFFIX = "-colour"  # old.jpg -> old-colour.jpg when no --output is given


@dataclass(kw_only=True)
class Options(flags.ModelOptions, flags.S3Options):
    """What every per-input job takes (``add_args``)."""

    input: Optional[str] = None
    input_flag: Optional[str] = None  # --input, the hidden spelling of INPUT
    output: Optional[str] = None
    size: Optional[int] = None
    workers: Optional[int] = None
    hint: List[Hint] = field(default_factory=list)
    hints: Optional[str] = None
    hint_spread: float = spreading.REACH
    overwrite: bool = False


def add_args(p: argparse.ArgumentParser, noun: str, own: Callable, hints_on: str) -> None:
    """The flags of a job on ``noun`` inputs (photo, video); ``own(p)`` adds the job's own."""
    flags.add_input_args(p, f"a {noun}, folder, list file (.txt) or s3://bucket/prefix")
    flags.add_output_arg(
        p,
        f"output file (for one {noun}) or folder / s3:// prefix (default: {noun.upper()}-colour.EXT next to a "
        f"{noun}, FOLDER-colour/ beside a folder)",
    )
    flags.add_model_args(p)
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"working size: the short side the model sees, {SIZE_RANGE[0]} to {SIZE_RANGE[1]} "
        "(default: the size the model was trained at, 128 for the shipped model)",
    )
    p.add_argument("--workers", type=int, default=None, help="model actors (default: one per GPU, else CPUs/2 up to 4)")
    own(p)
    p.add_argument(
        "--hint",
        action="append",
        type=_hint,
        default=[],
        metavar="X,Y,#RRGGBB",
        help=f"a colour hint: the point X,Y (pixels of {hints_on} at its own size, from the top left) has "
        "this colour; repeat for more points",
    )
    p.add_argument(
        "--hints",
        metavar="FILE.json",
        default=None,
        help='colour hints from a JSON file: [{"x": 10, "y": 20, "color": "#aa3300"}, ...]',
    )
    p.add_argument(
        "--hint-spread",
        type=_reach,
        default=spreading.REACH,
        metavar="REACH",
        help="with hints: how far each hint's colour carries along the photo, in short sides of it, where its "
        f"pull falls to 1/e (0 to {spreading.MAX_REACH:g}, default {spreading.REACH:g}); 0: only as far as the "
        "model itself follows the hints",
    )
    flags.add_overwrite_arg(p)
    flags.add_s3_args(p)


def _reach(text: str) -> float:
    try:
        return spreading.parse_reach(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _hint(text: str) -> Hint:
    try:
        return hint_points.parse_hint(text)
    except HintError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def hints_of(o: Options) -> List[Hint]:
    """The hints of --hint and --hints together (HintError for an unreadable file, bad entries, or
    more than ``MAX_HINTS``); [] when neither is given."""
    hints = list(o.hint)
    if o.hints:
        try:
            with open(o.hints, "rb") as f:
                text = f.read(MAX_HINTS_FILE + 1)
        except OSError as e:
            raise HintError(f"--hints {o.hints}: {e.strerror or type(e).__name__}") from None
        if len(text) > MAX_HINTS_FILE:
            raise HintError(
                f"--hints {o.hints}: too large, over {MAX_HINTS_FILE >> 20} MiB (at most {hint_points.MAX_HINTS} hints)"
            )
        try:
            hints += hint_points.hints_from_json(text)
        except HintError as e:
            raise HintError(f"--hints {o.hints}: {e}") from None
    if len(hints) > hint_points.MAX_HINTS:
        raise HintError(f"{len(hints)} hints: at most {hint_points.MAX_HINTS}")
    return hints


class PerInputJob:
    """What a per-input job gives the skeleton: its command, the noun of an input, how its results
    are named and read back, and the work itself."""

    command = ""  # "colorize infer"
    noun = ""  # "photo"
    suffix = ""  # put after a result's name (``outputs.plan``)
    name: Callable = staticmethod(outputs.output_name)  # an input's result name: name(base, suffix)
    read: Callable = None  # the settings a stored result records: read(fs, path)

    def __init__(self, o: Options):
        self.o = o

    def target(self, src: str) -> str:
        """Where one input's result goes (one input, in-process)."""
        raise NotImplementedError

    def settings(self, G, info: dict) -> dict:
        """The settings a result records (``made_with``); the skeleton adds the hints."""
        raise NotImplementedError

    def about(self, G, info: dict) -> str:
        """The run in a few words, for the summary line ("model X, T=0.38")."""
        raise NotImplementedError

    def one(self, G, info: dict, fs, path: str, out: str, s3, settings: dict, hints) -> tuple:
        """One input in-process -> (what was written, "") or ("", why it was skipped);
        FileExistsError when another run wrote ``out`` meanwhile (then the rerun rule answers)."""
        raise NotImplementedError

    def many(self, G, info: dict, todo: List[outputs.Target], fs, s3, settings: dict) -> List[Dict[str, str]]:
        """The planned inputs (on Ray: ``ray_rows``): one row {"path", "out", "skip", ...} per input."""
        raise NotImplementedError

    def report(self, written: List[Dict[str, str]]) -> None:
        """Anything to say about the written results, after the summary line."""


def run(job: PerInputJob) -> int:
    """The job on its input: one file in-process, or a folder / list / prefix on Ray."""
    o = job.o
    if o.size is not None:
        check_range("--size", o.size, *SIZE_RANGE)
    if o.workers is not None:
        check_range("--workers", o.workers, 1, 1024)
    o.input = flags.input_of(o)
    hints = hints_of(o)
    if not hints and o.hint_spread != spreading.REACH:  # said, not refused: a script may always pass a reach
        print(f"{job.command}: --hint-spread changes nothing without --hint or --hints", file=sys.stderr)
    s3 = storage.S3Settings.from_env(endpoint=o.s3_endpoint, region=o.s3_region)
    fs, paths, skipped = list_inputs(o.input, s3)
    single = is_single_file(o.input, paths)
    if hints and not single:
        raise HintError(f"colour hints are points of one {job.noun}: give a single {job.noun} with --hint/--hints")
    o.output = o.output or default_output(o.input, single, job.name, job.suffix or COLOUR_SUFFIX)
    if single:
        return _one(job, fs, paths[0], s3, hints)
    listed = len(paths) + skipped.total
    planned = plan(o.input, o.output, paths, s3, o.overwrite, name=job.name, suffix=job.suffix)
    G, info = model_ref.with_prior_correction(*model_ref.resolve_generator(o.model, o.tracking_uri), o.prior_correction)
    o.size = predict.working_size(G, o.size)
    settings = with_decoding(job.settings(G, info), G)
    planned = check_kept(planned, settings, s3, read=job.read)
    skipped.add_all((t.path, t.skip) for t in planned if not t.out)
    todo = [t for t in planned if t.out]
    rows = job.many(G, info, todo, fs, s3, settings) if todo else []
    written = [r for r in rows if r["out"]]
    skipped.add_all((r["path"], r["skip"].split(":")[0]) for r in rows if not r["out"])
    print(f"{job.command}: {len(written)} of {listed} written to {storage.redact(o.output)} ({job.about(G, info)})")
    job.report(written)
    print_skips(skipped)
    return exit_code(len(written), skipped, SKIP_WRITE_FAILED)


def with_decoding(settings: dict, G) -> dict:
    """``settings`` with the prior correction ``G`` decodes with, when not 0 (outputs made without
    one keep matching): it changes the pixels, whether a flag or the model's own config set it."""
    if not G.prior_correction:
        return settings
    return {**settings, "prior_correction": round(float(G.prior_correction), 6)}


def _one(job: PerInputJob, fs, path: str, s3: storage.S3Settings, hints: Sequence[Hint]) -> int:
    """One input, in-process: its target checked before any work, kept on a rerun with the same settings."""
    o = job.o
    out = job.target(path)
    storage.check_writable_parent(out, s3)
    G, info = model_ref.with_prior_correction(*model_ref.resolve_generator(o.model, o.tracking_uri), o.prior_correction)
    predict.check_takes_hints(G, hints)
    o.size = predict.working_size(G, o.size)
    settings = with_decoding(job.settings(G, info), G)
    if hints:
        settings["hints"] = [h.to_json() for h in hints]
        if o.hint_spread != spreading.REACH:  # recorded only when set, as the hints are
            settings["hint_spread"] = o.hint_spread
    if storage.exists(out, s3) and not o.overwrite:
        return report_kept(job.command, out, settings, s3, read=job.read)
    try:
        written, why = job.one(G, info, fs, path, out, s3, settings, hints)
    except FileExistsError:  # written by another run meanwhile: as if it had been there
        return report_kept(job.command, out, settings, s3, read=job.read)
    if not written:
        print(f"{job.command}: skipped {storage.redact(o.input)}: {why}")
        return 1
    print(f"{job.command}: wrote {storage.redact(out)} ({written})")
    return 0


def single_target(input_uri: str, output: str, src: str, as_file: Callable, name: Callable) -> str:
    """Where one input's result goes: ``as_file(output)`` when that names a file (None: a folder),
    else a file named ``name(basename)`` inside the folder ``output``. Never the input itself."""
    src_uri = ("s3://" + src) if storage.is_s3(input_uri) else src
    out = output
    if canonical(out) != canonical(src_uri):
        out = as_file(out) or posixpath.join(out, name(posixpath.basename(src)))
    if canonical(out) == canonical(src_uri):
        raise storage.StorageError(
            f"--output {storage.redact(out)} is the input itself: colorize never writes over "
            "its input; give another file or folder"
        )
    return out


def ray_rows(
    todo: List[outputs.Target], G, info: dict, workers: Optional[int], stages: Callable, per_block: int = 1
) -> List[dict]:
    """Run ``stages(ray, ds, weights, actors, gpus) -> dataset`` over the planned inputs (rows
    {"path", "out"}, ``per_block`` to a block; ``G``'s weights in the object store): every input's
    row, a missing one counted as ``missing``. A stop or a failure ends the workers first, then
    removes what they half-wrote."""
    # Ray (and pipeline.data.sources, which imports it) here, not at the top: one input runs
    # in-process and never pays the seconds that importing Ray takes.
    import ray

    from pipeline.data import sources

    sources.ensure_ray()
    sources.configure_io_retries()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = workers or (gpus if gpus else max(1, min(4, int(ray.cluster_resources().get("CPU", 2)) // 2)))
    weights = ray.put((G.state_dict(), info["config"]))
    items = [{"path": t.path, "out": t.out} for t in todo]
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(todo) // per_block)))
    try:
        rows = stages(ray, ds, weights, min(len(todo), actors), gpus).take_all()
    except BaseException:  # a stop or a failure: the workers go first, then what they left half-written
        ray.shutdown()
        remove_partials([t.out for t in todo])
        raise
    seen = {r["path"] for r in rows}
    return rows + [{"path": t.path, "out": "", "skip": SKIP_MISSING} for t in todo if t.path not in seen]


def list_inputs(uri: str, s3: storage.S3Settings):
    """(filesystem, input paths, what the listing skipped); StorageError when nothing is left."""
    skipped = Skips()
    fs, paths = storage.list_inputs(uri, s3, skipped)
    if not paths:
        counts = f" (skipped {skipped.counts})" if skipped else ""
        raise storage.StorageError(f"no input files at {storage.redact(uri)}{counts}")
    return fs, paths, skipped


def is_single_file(uri: str, paths: List[str]) -> bool:
    named = posixpath.basename(uri.rstrip("/")) == posixpath.basename(paths[0])
    return len(paths) == 1 and not uri.endswith(storage.LIST_SUFFIXES) and named


def default_output(input_uri: str, single: bool, name, suffix: str) -> str:
    """Where results go without ``--output``: ``old.jpg`` -> ``old-colour.jpg`` beside it, a folder or
    prefix ``photos/`` -> ``photos-colour/`` beside it. A list file names no place: ValueError."""
    if single:
        folder, base = posixpath.split(input_uri)
        return posixpath.join(folder, name(base, suffix))
    if input_uri.endswith(storage.LIST_SUFFIXES):
        raise ValueError(f"{storage.redact(input_uri)} is a list file: give --output, a folder for the results")
    root = input_uri.rstrip("/")
    if not posixpath.basename(root) or root.endswith(":"):
        raise ValueError(f"no folder name to put {suffix} after in {storage.redact(input_uri)}: give --output")
    return root + suffix


def photo_settings_at(fs, path: str) -> Optional[dict]:
    """The settings recorded in a stored photo (``made_with``), read from its first bytes."""
    return made_with.read_photo_settings(made_with.read_head(fs, path))


def _recorded(uri: str, s3: storage.S3Settings, read: Callable) -> Optional[dict]:
    fs, path = storage.resolve(uri, s3)
    try:
        return read(fs, path)
    except OSError:  # unreadable: it cannot show that it was made with these settings
        return None


def check_kept(
    planned: List[outputs.Target], settings: dict, s3: storage.S3Settings, read: Callable = photo_settings_at
) -> List[outputs.Target]:
    """The plan with every kept result (``exists``) that was made with other settings marked
    ``other_settings`` instead: the rerun rule of ``pipeline.made_with``. ``read(fs, path)`` gives
    a stored result's recorded settings (each kept result is read once)."""
    checked = []
    for t in planned:
        if t.skip == outputs.EXISTS and t.kept and made_with.differences(_recorded(t.kept, s3, read), settings):
            t = outputs.Target(t.path, skip=outputs.OTHER_SETTINGS, kept=t.kept)
        checked.append(t)
    return checked


def report_kept(job: str, out: str, settings: dict, s3: storage.S3Settings, read: Callable = photo_settings_at) -> int:
    """One result that exists: kept when it was made with ``settings`` (exit 0), else one line that
    says what differs (exit 1). ``--overwrite`` is the way past either."""
    return made_with.report(job, storage.redact(out), _recorded(out, s3, read), settings)


def canonical(uri: str) -> str:
    """A local path with links resolved, or an S3 ``bucket/key`` normalised: what two spellings of
    one place share (StorageError for an S3 key that climbs out of its bucket)."""
    if storage.is_s3(uri):
        key = outputs.normalise(uri[len("s3://") :], s3=True)
        if key is None:
            raise storage.StorageError(f"unsafe S3 location {storage.redact(uri)}: no empty, '.' or '..' parts allowed")
        return "s3://" + key
    return os.path.realpath(os.path.expanduser(uri))


def output_root(uri: str) -> str:
    """``--output`` as ``outputs.plan`` wants it: a normalised absolute folder or ``bucket/prefix``."""
    if storage.is_s3(uri):
        return canonical(uri)[len("s3://") :]
    return os.path.normpath(os.path.abspath(os.path.expanduser(uri)))


def existing(output: str, s3: storage.S3Settings) -> Set[str]:
    """Files already below ``--output``, in ``outputs.plan``'s form (listed once, before work)."""
    fs, path = storage.resolve(output, s3)
    path = output_root(output)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise storage.StorageError(
                f"--output {storage.redact(output)} is a file: a folder of inputs needs an output folder"
            )
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise storage.StorageError(f"cannot list --output {storage.redact(output)}: {storage.redact(why)}") from None
    return {i.path for i in infos if i.type == pafs.FileType.File}


def plan(
    input_uri: str,
    output_uri: str,
    paths: List[str],
    s3: storage.S3Settings,
    overwrite: bool,
    name=outputs.output_name,
    suffix: str = "",
) -> List[outputs.Target]:
    """Every input's output (or why it gets none), decided before any work starts: refuses an
    output folder that is the input folder, lists what the output already holds, checks that it
    can be written."""
    s3_in, s3_out = storage.is_s3(input_uri), storage.is_s3(output_uri)
    a_folder = not input_uri.endswith(storage.LIST_SUFFIXES)
    if s3_in == s3_out and a_folder and canonical(input_uri) == canonical(output_uri):
        raise storage.StorageError(
            f"--output {storage.redact(output_uri)} is the input folder: colorize never writes "
            "over its inputs; give another folder"
        )
    held = existing(output_uri, s3)
    storage.check_writable_parent(posixpath.join(output_uri, "x"), s3)  # fail before the work, not after
    return outputs.plan(
        paths,
        output_root(output_uri),
        s3_inputs=s3_in,
        s3_output=s3_out,
        existing=held,
        overwrite=overwrite,
        name=name,
        suffix=suffix,
    )


def print_skips(skipped: Skips) -> None:
    """One line per skip reason with up to three examples (redacted)."""
    for reason, n in skipped.counts.items():
        hint = " (--overwrite replaces them)" if reason in (outputs.EXISTS, outputs.OTHER_SETTINGS) else ""
        examples = ", ".join(storage.redact(p) for p in skipped.examples.get(reason, [])[:3])
        print(f"  skipped {n} ({reason}){hint}" + (f", e.g. {examples}" if examples else ""))


def exit_code(written: int, skipped: Skips, write_failed: str) -> int:
    """1 when a write failed, a result exists made with other settings, or no input has its result;
    0 when some input has one, written now or kept from before (a rerun answers as the first run did)."""
    if skipped.counts.get(write_failed) or skipped.counts.get(outputs.OTHER_SETTINGS):
        return 1
    return 0 if written + skipped.counts.get(outputs.EXISTS, 0) else 1
