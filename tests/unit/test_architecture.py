"""The architecture docs/architecture.md draws, checked from the source: the layers (which subpackage
may import which, bench/ on top), no import cycles among pipeline/, models/, tune/ and bench/
(function-local imports count: a cycle hidden in a function is still a cycle); models/ imports
nothing from pipeline/; ``ray`` is imported only by the Ray glue modules."""

from __future__ import annotations

import ast
import re
from itertools import pairwise
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

from support import ROOT

PACKAGES = ("pipeline", "models", "tune", "bench")
# Folders of scripts that put themselves on sys.path: there `import common` is bench/common.py.
SCRIPT_FOLDERS = ("bench",)
# Every module directly in pipeline/jobs/ is a job: the module of one ``colorize`` command (what the
# jobs share lives in pipeline/jobs/common/). Each job is a unit of its own, so no job imports another.
JOBS = tuple(
    sorted(f"pipeline.jobs.{f.stem}" for f in (ROOT / "pipeline" / "jobs").glob("*.py") if f.stem != "__init__")
)
# The layers, bottom first. A module may import its own unit and the units of lower layers; never a
# peer in its own layer, never a unit above. Every module belongs to a unit: a new subpackage (or a
# new module directly in pipeline/) is placed here, in the order its imports allow.
LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("models",),  # pure torch; the generator's shape (GeneratorConfig) lives with it
    ("pipeline.credentials",),  # no imports from the project: config and storage refuse with it
    ("pipeline", "pipeline.config", "pipeline.assets", "pipeline.configs"),
    ("pipeline.version",),  # `colorize --version`: the package's version and the checkout's revision
    ("pipeline.core",),  # colour science and geometry, pure numpy/torch: colour, hints, decoding, metrics, split
    ("pipeline.runtime",),  # run-time helpers: output names and the rerun rule, progress, stops, work limits
    ("pipeline.data",),  # storage, Ray Data sources and shards, the prior and prepare work
    ("pipeline.gan",),  # the model: the GAN and its step, batches, checkpoints, references, prediction, MLflow form
    ("pipeline.train", "pipeline.apply", "pipeline.serve", "pipeline.video"),  # libraries: train, apply, serve a model
    ("tune",),  # the sweep: every trial is one training (pipeline.train)
    ("pipeline.jobs.common",),  # what several jobs share: flags, help texts, the per-input skeleton
    JOBS,  # one module per command; peers, so a job never imports another job
    ("pipeline.jobs", "pipeline.run", "pipeline.cli"),  # the jobs' public face; `python pipeline/run.py`; `colorize`
    ("bench",),  # benchmarks call product code; product code never calls them
)
# Units that hold only their own module: ``pipeline`` is pipeline/__init__.py, not what lies below it.
EXACT_UNITS = {"pipeline", "pipeline.jobs"}
# Modules that may `import ray` (the Ray I/O layer and the Ray jobs); everything else runs without it.
RAY_ALLOWED = {
    "pipeline.data.sources",
    "pipeline.data.shards",
    "pipeline.data.priors",
    "pipeline.data.prepare",
    "pipeline.train.trainer",
    "pipeline.apply.infer",
    "pipeline.video.colorize",
    "pipeline.serve.app",
    "pipeline.jobs.common.per_input",
    "pipeline.jobs.infer",  # whether Ray is installed: a folder runs in-process without it
    "pipeline.jobs.serve",
    "pipeline.jobs.train",
}
RAY_ALLOWED_PACKAGES = ("tune", "bench")


def module_files(root: Path, packages=PACKAGES) -> Dict[str, Path]:
    """{dotted module name: file} for every .py under the packages (a package is its __init__)."""
    out = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else None
    return name == "TYPE_CHECKING"


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[Tuple[str, int]]:
    """(absolute dotted name, line) of every import anywhere in the tree, function bodies included;
    ``from a import b`` yields ``a.b``: the module a.b if there is one, else a name in a. Imports under
    ``if TYPE_CHECKING:`` are skipped: they never run."""
    skip: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1 more
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            for a in node.names:
                yield f"{prefix}.{a.name}", node.lineno


def import_graph(root: Path, packages=PACKAGES) -> Tuple[Dict[str, Set[str]], Dict[str, List[Tuple[str, int]]]]:
    """(edges {module: internal modules it imports}, every import {module: [(name, line)]})."""
    files = module_files(root, packages)
    edges: Dict[str, Set[str]] = {m: set() for m in files}
    raw: Dict[str, List[Tuple[str, int]]] = {}
    for mod, f in files.items():
        tree = ast.parse(f.read_text(), str(f))
        raw[mod] = list(imported_names(tree, mod, f.name == "__init__.py"))
        for name, _ in raw[mod]:
            # `from pipeline.core import color` is the module pipeline.core.color; `from pipeline.config import X`
            # is pipeline.config; the longest dotted prefix that is one of our modules is the target.
            target = _our_module(name, mod, files)
            if target is not None and target != mod:
                edges[mod].add(target)
    return edges, raw


def _our_module(name: str, importer: str, files) -> Optional[str]:
    """The longest dotted prefix of ``name`` that is one of our modules (a script's bare import of a
    sibling, ``import common`` in bench/, is that folder's module); None for anything else."""
    folder = importer.split(".")[0]
    candidates = [name] + ([f"{folder}.{name}"] if folder in SCRIPT_FOLDERS else [])
    for candidate in candidates:
        parts = candidate.split(".")
        for n in range(len(parts), 0, -1):
            target = ".".join(parts[:n])
            if target in files:
                return target
    return None


def find_cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """One concrete cycle [a, b, ..., a] per strongly connected component with more than one module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    sccs: List[List[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(comp, edges) for comp in sccs]


def _cycle_in(comp: List[str], edges: Dict[str, Set[str]]) -> List[str]:
    """A shortest path from comp[0] back to itself inside the component (breadth first)."""
    start, members = comp[0], set(comp)
    prev: Dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {comp}")


def _where(raw, mod: str, target: str) -> str:
    folder = mod.split(".")[0]
    names = {target} | ({target.removeprefix(folder + ".")} if folder in SCRIPT_FOLDERS else set())
    lines = sorted({line for name, line in raw[mod] for n in names if name == n or name.startswith(n + ".")})
    return f"{mod} -> {target} (line {', '.join(map(str, lines))})"


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_no_import_cycles(graph):
    edges, raw = graph
    cycles = find_cycles(edges)
    described = [
        "  " + " -> ".join(c) + "\n" + "\n".join(f"      {_where(raw, a, b)}" for a, b in pairwise(c)) for c in cycles
    ]
    assert not cycles, "import cycles (function-local imports included):\n" + "\n".join(described)


def models_importing_pipeline(raw) -> List[str]:
    return sorted(
        {
            f"{mod}:{line} imports {name}"
            for mod, names in raw.items()
            if mod.split(".")[0] == "models"
            for name, line in names
            if name.split(".")[0] == "pipeline"
        }
    )


def ray_outside_glue(raw) -> List[str]:
    return sorted(
        {
            f"{mod}:{line}"
            for mod, names in raw.items()
            for name, line in names
            if name.split(".")[0] == "ray" and mod not in RAY_ALLOWED and mod.split(".")[0] not in RAY_ALLOWED_PACKAGES
        }
    )


def test_models_import_nothing_from_pipeline(graph):
    bad = models_importing_pipeline(graph[1])
    assert not bad, "models/ is pure torch; pass what it needs in:\n  " + "\n  ".join(bad)


def test_ray_only_in_the_ray_glue_modules(graph):
    bad = ray_outside_glue(graph[1])
    assert not bad, "`import ray` outside the Ray glue modules:\n  " + "\n  ".join(bad)


def _write(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_checks_find_a_planted_cycle_and_ignore_what_is_not_one(tmp_path):
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": "from pkg import b\nimport os\n",
            "pkg/b.py": "import numpy\n\ndef later():\n    from pkg.c import thing  # a cycle hidden in a function\n",
            "pkg/c.py": "from . import a\nthing = 1\n",
            "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n",
            "pkg/e.py": "import pkg.d\n",  # only a type-checking edge back: not a cycle
            "pkg/sub/__init__.py": "from .. import e\n",
        },
    )
    edges, _ = import_graph(root, ("pkg",))
    assert edges["pkg.c"] == {"pkg.a"} and edges["pkg.sub"] == {"pkg.e"} and edges["pkg.d"] == set()
    assert find_cycles(edges) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert find_cycles({"x": {"y"}, "y": set()}) == []


def test_the_checks_find_a_planted_upward_import_and_a_stray_ray(tmp_path):
    root = _write(
        tmp_path,
        {
            "models/__init__.py": "",
            "models/net.py": "def bins():\n    from pipeline.core.color import ab_bins\n    return ab_bins()\n",
            "pipeline/__init__.py": "",
            "pipeline/core/color.py": "import numpy\n",
            "pipeline/data/sources.py": "import ray\n",  # allowed
            "pipeline/core/scoring.py": "def f():\n    from ray import data\n",  # not allowed, even in a function
            "tune/sweep.py": "import ray.tune\n",  # allowed
        },
    )
    _, raw = import_graph(root)
    assert models_importing_pipeline(raw) == ["models.net:2 imports pipeline.core.color.ab_bins"]
    assert ray_outside_glue(raw) == ["pipeline.core.scoring:2"]


@pytest.mark.parametrize("name", ["models", "pipeline", "tune", "bench"])
def test_the_walk_sees_every_package(name):
    files = module_files(ROOT)
    assert len([m for m in files if m.split(".")[0] == name]) > 1


def unit_of(module: str, units) -> Optional[str]:
    """The layer unit ``module`` belongs to: the longest unit that is it or a package above it."""
    found = [u for u in units if module == u or (module.startswith(u + ".") and u not in EXACT_UNITS)]
    return max(found, key=len, default=None)


def layer_violations(edges: Dict[str, Set[str]], layers=LAYERS) -> List[str]:
    """Every import that points sideways or up the layers, and every module in no layer."""
    rank = {unit: i for i, layer in enumerate(layers) for unit in layer}
    bad = set()
    for mod in sorted(edges):
        src = unit_of(mod, rank)
        if src is None:
            bad.add(f"{mod}: in no layer (place its unit in LAYERS)")
            continue
        for target in sorted(edges[mod]):
            dst = unit_of(target, rank)
            if dst is None or dst == src or rank[dst] < rank[src]:
                continue  # a module in no layer is reported as the importer it also is
            where = "a peer in the same layer" if rank[dst] == rank[src] else "a layer above"
            bad.add(f"{mod} -> {target}: {dst} is {where} of {src}")
    return sorted(bad)


def test_imports_follow_the_layers(graph):
    bad = layer_violations(graph[0])
    assert not bad, "imports against the layers (LAYERS, bottom first):\n  " + "\n  ".join(bad)


def test_every_command_is_a_job_of_the_jobs_layer():
    from pipeline import cli

    assert set(cli.COMMANDS.values()) == set(JOBS), "every `colorize` command is one module of pipeline/jobs/"


def test_the_layer_check_finds_planted_upward_sideways_and_unplaced_modules(tmp_path):
    root = _write(
        tmp_path,
        {
            "models/__init__.py": "",
            "pipeline/__init__.py": "",
            "pipeline/config.py": "import models\n",
            "pipeline/core/__init__.py": "",
            "pipeline/core/color.py": "def f():\n    from pipeline.gan import cgan  # up\n",
            "pipeline/gan/__init__.py": "",
            "pipeline/gan/cgan.py": "from pipeline.core import color\nfrom pipeline import config\nimport models\n",
            "pipeline/train/__init__.py": "",
            "pipeline/train/trainer.py": "from pipeline.apply import infer  # a peer\n",
            "pipeline/apply/__init__.py": "",
            "pipeline/apply/infer.py": "from pipeline.gan import cgan\n",
            "pipeline/video/__init__.py": "",
            "pipeline/video/colorize.py": "from pipeline.gan import cgan  # allowed: gan is below video\n",
            "pipeline/jobs/__init__.py": "",
            "pipeline/jobs/common/__init__.py": "",
            "pipeline/jobs/common/per_input.py": "from pipeline.apply import infer\n",  # allowed: below the jobs
            "pipeline/jobs/infer.py": "from pipeline.jobs.common import per_input\nfrom pipeline.apply import infer\n",
            "pipeline/jobs/video.py": "def run():\n    from pipeline.jobs import infer  # a job importing a job\n",
            "pipeline/stray.py": "from pipeline.core import color\n",
            "bench/quality.py": "import ship\nfrom pipeline.gan import cgan\n",
            "bench/ship.py": "def main():\n    import quality\n",
        },
    )
    edges, _ = import_graph(root, ("pipeline", "models", "bench"))
    assert edges["bench.quality"] == {"bench.ship", "pipeline.gan.cgan"}
    assert sorted(find_cycles(edges)) == [
        ["bench.quality", "bench.ship", "bench.quality"],
        ["pipeline.core.color", "pipeline.gan.cgan", "pipeline.core.color"],
    ]
    assert layer_violations(edges) == [
        "pipeline.core.color -> pipeline.gan.cgan: pipeline.gan is a layer above of pipeline.core",
        "pipeline.jobs.video -> pipeline.jobs.infer: pipeline.jobs.infer is a peer in the same layer of "
        "pipeline.jobs.video",
        "pipeline.stray: in no layer (place its unit in LAYERS)",
        "pipeline.train.trainer -> pipeline.apply.infer: pipeline.apply is a peer in the same layer of pipeline.train",
    ]


def public_faces(root: Path) -> Dict[str, Optional[Set[str]]]:
    """{subpackage of pipeline/: the modules its ``__init__.py`` names in ``__all__``, None without one}."""
    faces: Dict[str, Optional[Set[str]]] = {}
    for init in sorted((root / "pipeline").glob("*/**/__init__.py")):
        package = ".".join(init.parent.relative_to(root).parts)
        if package in ("pipeline.assets", "pipeline.configs"):
            continue  # package data, not code layers
        found = None
        for node in ast.parse(init.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                found = set(ast.literal_eval(node.value))
        faces[package] = found
    return faces


def face_violations(edges: Dict[str, Set[str]], faces: Dict[str, Optional[Set[str]]]) -> List[str]:
    """Every subpackage without a face, and every import from outside a subpackage of a module its
    face does not name."""
    bad = {f"{package}: no __all__ in its __init__.py" for package, face in faces.items() if face is None}
    for mod in sorted(edges):
        for target in edges[mod]:
            for package, face in faces.items():
                inside = mod == package or mod.startswith(package + ".")
                if face is None or inside or not target.startswith(package + "."):
                    continue
                name = target[len(package) + 1 :].split(".")[0]
                if name not in face:
                    bad.add(f"{mod} -> {target}: {name} is not in {package}'s face (its __init__.py __all__)")
    return sorted(bad)


def test_other_layers_use_only_a_subpackages_public_face(graph):
    bad = face_violations(graph[0], public_faces(ROOT))
    assert not bad, "imports past a public face:\n  " + "\n  ".join(bad)


def test_the_face_check_finds_a_planted_private_import_and_a_missing_face(tmp_path):
    root = _write(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/video/__init__.py": '__all__ = ["colorize"]\n',
            "pipeline/video/colorize.py": "from pipeline.video import temporal  # inside: fine\n",
            "pipeline/video/temporal.py": "",
            "pipeline/jobs/__init__.py": "",
            "pipeline/jobs/video.py": "from pipeline.video import colorize\nfrom pipeline.video.temporal import x\n",
        },
    )
    edges, _ = import_graph(root, ("pipeline",))
    assert face_violations(edges, public_faces(root)) == [
        "pipeline.jobs.video -> pipeline.video.temporal: temporal is not in pipeline.video's face (its __init__.py "
        "__all__)",
        "pipeline.jobs: no __all__ in its __init__.py",
    ]


def documented_modules(text: str) -> Set[str]:
    """Files named in the module map of docs/architecture.md: under a folder line (``pipeline/gan/``),
    the leading ``name.py`` words of each entry line (indented by two)."""
    found, folder = set(), None
    for line in text.splitlines():
        if re.match(r"^(pipeline|models|tune)/", line):
            folder = line.split()[0]
        elif folder and re.match(r"^  \S", line):
            for word in line.split():
                if not word.endswith((".py", ".yaml")):
                    break
                found.add(folder + word)
    return found


def test_the_map_reader_sees_entries_not_descriptions():
    text = "pipeline/gan/      the model\n  a.py  b.py   one (see c.py)\n    d.py  continued\nmodels/\n  e.py  x\n"
    assert documented_modules(text) == {"pipeline/gan/a.py", "pipeline/gan/b.py", "models/e.py"}


def test_the_architecture_map_names_every_module():
    """docs/architecture.md is the current map: a module added, moved or renamed is added there too."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    modules = {
        str(f.relative_to(ROOT))
        for pkg in ("pipeline", "models", "tune")
        for f in (ROOT / pkg).rglob("*.py")
        if f.name != "__init__.py" and f.parent.name not in ("assets", "configs")
    }
    missing = sorted(modules - documented_modules(text))
    assert not missing, "modules missing from docs/architecture.md's map:\n  " + "\n  ".join(missing)
