"""Each top-level folder is one subpackage of `ghostrt` (the layout the project asked for); setuptools finds
the packages inside each, so a new module or folder needs no list kept by hand."""

import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOTS = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())["tool"]["ghostrt"]["package-dirs"]

packages, package_dir = [], {}
for name, folder in ROOTS.items():
    package_dir[name] = folder
    packages += [name] + [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"])
                          if f"{name}.{sub}" not in ROOTS]

setup(packages=packages, package_dir=package_dir)
