"""Shared fixtures: trained zoo models and compiled hls4ml projects are built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from flow.config import config_from_dict

TINY = {
    "seed": 1,
    "data": {"name": "digits", "n_train": 300, "n_test": 60},
    "model": {"name": "lenet", "input_shape": [8, 8, 1], "filters": [2, 4], "dense_units": 8},
    "train": {"epochs": 2},
}


@pytest.fixture
def tiny_cfg_dict() -> dict:
    """A config that trains and converts in seconds (a fresh copy per test)."""
    import copy

    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_cfg(tiny_cfg_dict):
    return config_from_dict(tiny_cfg_dict, "tiny")
