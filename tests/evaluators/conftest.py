"""Shared fixtures: the tiny suite and its baselines, computed once per session into a
temporary cache."""

from __future__ import annotations

import pytest
from optforge.evaluators import ensure_baselines, get_suite

from .helpers import torch_threads


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("optforge-cache")


@pytest.fixture(scope="session")
def tiny():
    return get_suite("tiny")


@pytest.fixture(scope="session")
def tiny_baselines(tiny, cache):
    with torch_threads(1):
        return ensure_baselines(tiny, cache=cache)


@pytest.fixture
def one_thread():
    """One torch thread, as in a pool worker on this machine: bit-exact comparisons."""
    with torch_threads(1):
        yield
