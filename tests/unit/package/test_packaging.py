"""What pyproject.toml packages: every folder inside a listed package is listed too (setuptools
warns at every install about a folder of data that is not, and may leave it out), and the light
install's dependencies are the few that colouring photos needs."""

from __future__ import annotations

import tomllib

from support import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_folder_of_a_package_is_listed():
    packages = set(PROJECT["tool"]["setuptools"]["packages"])
    for package in sorted(packages):
        folder = ROOT.joinpath(*package.split("."))
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and sub.name != "__pycache__":
                assert f"{package}.{sub.name}" in packages, f"{sub.relative_to(ROOT)} is not in packages"


def test_the_light_install_needs_only_what_colours_photos():
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in PROJECT["project"]["dependencies"]}
    assert names == {"torch", "numpy", "pillow", "scikit-image", "pyyaml", "tqdm"}
    extras = PROJECT["project"]["optional-dependencies"]
    assert {"train", "serve", "tune", "video", "export", "all"} <= set(extras)
    assert extras["all"] == ["colorize[train,tune,serve,video,export]"]
