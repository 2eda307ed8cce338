"""Data shipped inside the package, found through ``importlib.resources`` (as hls4ml finds its templates).

The top-level ``boards/`` and ``hls_templates/`` directories of the source tree are mapped by pyproject.toml to
the data subpackages ``flow.boards_data`` and ``flow.hls_templates``, so a wheel and an editable install both
reach them by package name. An editable install made before that mapping falls back to the source tree."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from flow.errors import FlowError

BOARDS = "flow.boards_data"
TEMPLATES = "flow.hls_templates"
SOURCE_DIRS = {BOARDS: "boards", TEMPLATES: "hls_templates"}  # their directories in the source tree


@functools.cache
def data_dir(package: str) -> Path:
    """The directory of the data subpackage ``package`` (one of ``SOURCE_DIRS``)."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError:  # an editable install older than the mapping: the source tree itself
        root = Path(__file__).resolve().parent.parent / SOURCE_DIRS[package]
    if isinstance(root, Path) and not root.is_dir():
        raise FlowError(f"the installed ftflow lacks its data package {package}; reinstall it (pip install .)")
    if not isinstance(root, Path):
        raise FlowError(f"{package} is not on the file system ({root}); install ftflow unzipped")
    return root


def boards_dir() -> Path:
    """Where the ``<name>.yaml`` board files are."""
    return data_dir(BOARDS)


def template(name: str) -> Path:
    """One file of ``hls_templates/`` (``fi_bridge.cpp.in``, ``nnet_correction.h``)."""
    path = data_dir(TEMPLATES) / name
    if not path.is_file():
        raise FlowError(f"template {name} is missing from {path.parent}; reinstall ftflow (pip install .)")
    return path
