"""The cluster configs in cluster/ agree with Ray's schema, KubeRay's required fields, the pinned
Ray version and the real arguments of pipeline/run.py (no cloud, no Kubernetes needed)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline import run as run_job
from support import ROOT

CLUSTER = ROOT / "cluster"


def image_pin(name: str) -> str:
    """The exact version the image fixes: the default of ``ARG <name>=...`` in cluster/Dockerfile."""
    return re.search(rf"^ARG {name}=(\S+)$", (CLUSTER / "Dockerfile").read_text(), re.M).group(1)


def library_requirement(name: str):
    """pyproject.toml's dependency on ``name``, as a ``packaging`` Requirement."""
    from packaging.requirements import Requirement

    text = (ROOT / "pyproject.toml").read_text()
    return Requirement(re.search(rf'^\s*"({name}(\[[^\]]*\])?[<>=!~][^"]*)",', text, re.M).group(1))


def load(name: str):
    return yaml.safe_load((CLUSTER / name).read_text())


def images(obj) -> set:
    """Every container image named anywhere in a parsed config."""
    found = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "image" and isinstance(v, str):
                found.add(v)
            else:
                found |= images(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= images(v)
    return found


def test_aws_config_validates_against_rays_schema():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    cfg = load("aws.yaml")
    jsonschema.validate(cfg, schema)
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    assert types["head"]["resources"] == {"CPU": 0}, "the head runs drivers, not tasks"
    assert {"gpu_worker", "cpu_worker"} <= set(types)
    assert sum(t.get("max_workers", 0) for t in types.values()) <= cfg["max_workers"]
    for t in types.values():
        assert "IamInstanceProfile" in t["node_config"], "S3 comes from an instance profile, not keys"
    for cmd in (cfg["head_start_ray_commands"][-1], cfg["worker_start_ray_commands"][-1]):
        assert "RAY_AUTH_MODE=token" in cmd, "token auth on every node"
    bad = dict(cfg, max_workers="many")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_versions_and_images_agree():
    """The image pins one Ray and one torch; the library allows a range that holds them (Ray: that
    minor version's patch releases only); the manifests name the image's Ray; CI tests that minor
    Ray and the image's torch."""
    import ray
    from packaging.version import Version

    version, torch_version = image_pin("RAY_VERSION"), image_pin("TORCH_VERSION")
    docker = (CLUSTER / "Dockerfile").read_text()
    assert "FROM rayproject/ray:${RAY_VERSION}-" in docker and '"torch==${TORCH_VERSION}"' in docker
    stage = docker.split("\nFROM ", 1)[1].split("\n", 1)[1]  # an ARG from before FROM is empty here unless redeclared
    for used in set(re.findall(r"\$\{(\w+)\}", stage)):
        assert re.search(rf"^ARG {used}\b", stage, re.M), f"cluster/Dockerfile uses ${{{used}}} after FROM undeclared"
    major, minor = Version(version).release[:2]
    ray_range, torch_range = library_requirement("ray").specifier, library_requirement("torch").specifier
    assert ray_range.contains(version) and not ray_range.contains(f"{major}.{minor + 1}.0"), ray_range
    assert not any(s.operator == "==" for s in ray_range), "the library takes a range; the image pins"
    assert torch_range.contains(torch_version), torch_range
    assert Version(ray.__version__).release[:2] == (major, minor), "tests run the cluster's Ray"
    assert f'"torch=={torch_version}"' in (ROOT / "Makefile").read_text(), "CI installs the image's torch"
    rc, rj = load("kuberay/raycluster.yaml"), load("kuberay/rayjob.yaml")
    assert rc["spec"]["rayVersion"] == rj["spec"]["rayClusterSpec"]["rayVersion"] == version
    named = images(load("aws.yaml")) | images(rc) | images(rj)
    assert len(named) == 1, f"all configs must name the one project image, got {named}"
    assert next(iter(named)).endswith(":0.1.0")  # the project version
    assert 'version = "0.1.0"' in (ROOT / "pyproject.toml").read_text()


def _check_kuberay_cluster_spec(spec: dict) -> None:
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    (container,) = head["template"]["spec"]["containers"]
    assert container["image"] and container["name"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["dashboard"] == 8265 and ports["gcs-server"] == 6379
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert "gpu" in groups
    for g in groups.values():
        assert isinstance(g["rayStartParams"], dict)
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        (c,) = g["template"]["spec"]["containers"]
        res = c["resources"]
        assert res["limits"]["cpu"] == res["requests"]["cpu"], "Ray reads CPUs from limits"
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]
    assert int(gpu["limits"]["nvidia.com/gpu"]) >= 1
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token", "the job API must not be open"


def test_kuberay_manifests_have_what_kuberay_requires():
    rc = load("kuberay/raycluster.yaml")
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster") and rc["metadata"]["name"]
    _check_kuberay_cluster_spec(rc["spec"])
    rj = load("kuberay/rayjob.yaml")
    assert (rj["apiVersion"], rj["kind"]) == ("ray.io/v1", "RayJob") and rj["metadata"]["name"]
    _check_kuberay_cluster_spec(rj["spec"]["rayClusterSpec"])
    assert rj["spec"]["shutdownAfterJobFinishes"] is True
    runtime_env = yaml.safe_load(rj["spec"]["runtimeEnvYAML"])
    from ray.runtime_env import RuntimeEnv

    assert set(runtime_env) <= RuntimeEnv.known_fields


def test_rayjob_entrypoint_is_run_py_with_real_arguments():
    rj = load("kuberay/rayjob.yaml")
    argv = shlex.split(rj["spec"]["entrypoint"])
    assert argv[:2] == ["python", "pipeline/run.py"]
    args = run_job.parse_args(argv[2:])
    from pipeline import config

    cfg = config.load(str(ROOT / args.config), args.overrides)
    gpu_group = next(g for g in rj["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    limits = gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"]
    gpus = gpu_group["replicas"] * int(limits["nvidia.com/gpu"])
    assert cfg.train.use_gpu and cfg.train.num_workers <= gpus, "the job must fit the GPUs the RayJob asks for"
    cpus = int(gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    assert cfg.train.cpus_per_worker < cpus, "leave CPUs on GPU pods for Ray Data"


def test_runtime_env_file_is_valid():
    from ray.runtime_env import RuntimeEnv

    env = load("runtime_env.yaml")
    assert set(env) <= RuntimeEnv.known_fields
    RuntimeEnv(**env)
    assert not any(re.search(r"(?i)secret|password|aws_access", k) for k in env.get("env_vars", {}))


def _documented_commands():
    """Every `python pipeline/run.py ...` command written in the README, cluster/ and docs/."""
    files = [ROOT / "README.md", *CLUSTER.rglob("*.yaml"), *(ROOT / "docs").glob("*.md")]
    for f in files:
        text = re.sub(r"\\\n\s*(#\s*)?", " ", f.read_text())  # join continued lines (also in comments)
        for m in re.finditer(r"python pipeline/run\.py([^\n`|]*)", text):
            yield f.name, m.group(1)


def test_documented_commands_parse_with_run_py():
    found = list(_documented_commands())
    assert len(found) >= 4
    for name, rest in found:
        argv = shlex.split(rest.split(" #")[0])
        args = run_job.parse_args(argv)
        if args.config and args.config.startswith("pipeline/"):  # shipped configs (not a sweep's output)
            assert (ROOT / args.config).exists(), f"{name}: {args.config} does not exist"
