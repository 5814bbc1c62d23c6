"""Shared test configuration.

* One torch thread: property tests are many tiny ops, where threading only adds overhead and
  oversubscribes the cores that pytest-xdist workers already use.
* Hypothesis profiles ``ci`` (default), ``dev`` and ``thorough``; pick one with the
  ``HYPOTHESIS_PROFILE`` environment variable, e.g. ``HYPOTHESIS_PROFILE=thorough make test``.
* Fixtures ``float64`` (default dtype float64 for one test) and ``golden_dir`` (the official
  reference fixtures shipped in ``tests/fixtures/official``).
* oneDNN float32 convolutions limited to AVX2 kernels (``DNNL_MAX_CPU_ISA``, unless set): the
  golden fixtures match AVX2 rounding; on AVX-512 CPUs the deep SRFlow flow amplifies the other
  kernels' rounding to ~9e-6 on its latents (2e-6 with AVX2), close to the 1e-5 tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from golden import official_fixtures
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)
# Example scripts and CLI runs in subprocesses: one thread each too. With pytest-xdist workers
# already on both cores, OpenMP threads of a child spin-wait against them and run 10-40x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Read by oneDNN when it creates its first primitive, so it must be set before any convolution runs.
os.environ.setdefault("DNNL_MAX_CPU_ISA", "AVX2")

# Property tests take the `float64` fixture below. It is function-scoped, so Hypothesis would
# fail them with HealthCheck.function_scoped_fixture; the fixture is safe to share across
# generated examples (it only sets the default dtype), so that check is off in every profile.
_FIXTURES_OK = [HealthCheck.function_scoped_fixture]

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        *_FIXTURES_OK,
    ],
)
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=_FIXTURES_OK)
settings.register_profile("thorough", max_examples=200, deadline=None, suppress_health_check=_FIXTURES_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def float64() -> Iterator[torch.dtype]:
    """Run the test with ``torch.float64`` as the default dtype, restoring the previous one."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch.float64
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture
def golden_dir() -> Path:
    """Folder of the official reference (golden) fixtures."""
    return official_fixtures()
