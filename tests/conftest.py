"""Test-wide settings.

Under CI (``CI`` set, as `.ci/run` runs) Hypothesis is derandomized: every property test
draws the same examples on every run, so CI's verdict depends only on the code. Locally the
draws stay random and explore more; a failure found that way is reproducible with the seed
Hypothesis prints, and belongs in the test as an ``@example``.
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def machine(monkeypatch):
    """A fake machine for the worker limits (`evaluators.pool`): 2 cores, no GPU, 64 GiB
    available; a test changes the returned dict's entries to change the machine."""
    from optforge.evaluators import pool

    spec = {"cores": 2, "memory": 64 * 2**30, "gpus": 0}
    monkeypatch.setattr(pool, "usable_cores", lambda: spec["cores"])
    monkeypatch.setattr(pool, "available_memory", lambda: spec["memory"])
    monkeypatch.setattr(pool, "cuda_device_count", lambda: spec["gpus"])
    monkeypatch.setattr(os, "cpu_count", lambda: spec["cores"])
    return spec
