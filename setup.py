"""Packaging beyond what pyproject.toml can say: the shipped scenarios, datasets and docker stack live at the
repository root (where people look for them) and travel in the wheel as harness/_data/* (harness.paths.asset_dir
finds them there). Code packages are found automatically, so a new subpackage cannot be left out of the wheel."""

from setuptools import find_packages, setup

ASSETS = {
    "harness._data.scenarios": "scenarios",
    "harness._data.datasets": "datasets",
    "harness._data.docker": "docker",
}

setup(
    packages=find_packages(include=["harness", "harness.*", "serve_apps", "serve_apps.*"]) + list(ASSETS),
    package_dir=ASSETS,
)
