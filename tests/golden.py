"""Finding and comparing against the golden fixtures made with the official implementations.

The fixtures travel with the code: ``tests/fixtures/official`` (provenance in its README). A
folder of extra fixtures made the same way (other seeds, sizes, configurations) is added with
``FLOWSR_EXTRA_GOLDEN``. Nothing here depends on the particular files shipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

ATOL = 1e-5
RTOL = 1e-5
REPO_ROOT = Path(__file__).resolve().parent.parent
OFFICIAL_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "official"


def official_fixtures() -> Path:
    """The folder of official fixtures shipped with the tests."""
    return OFFICIAL_FIXTURES


def golden_files(pattern: str) -> list[Path]:
    """Every fixture matching ``pattern`` in the shipped folder and ``$FLOWSR_EXTRA_GOLDEN``."""
    dirs = [OFFICIAL_FIXTURES]
    if os.environ.get("FLOWSR_EXTRA_GOLDEN"):
        dirs.append(Path(os.environ["FLOWSR_EXTRA_GOLDEN"]))
    return sorted(p for d in dirs if d.is_dir() for p in d.glob(pattern))


def load_golden(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_close(actual, expected, what: str, atol: float = ATOL, rtol: float = 0.0) -> float:
    """``|actual - expected| <= atol + rtol |expected|`` everywhere; returns the max abs error."""
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual - expected).abs()
    worst = (err - (atol + rtol * expected.abs())).max().item() if err.numel() else 0.0
    assert worst <= 0, f"{what}: max abs error {err.max().item():.3g} exceeds atol {atol} + rtol {rtol}*|expected|"
    return err.max().item() if err.numel() else 0.0


def assert_rel_close(actual, expected, what: str, rtol: float = RTOL) -> float:
    """Relative error ``|actual - expected| / |expected| <= rtol``; returns it."""
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = ((actual - expected).abs() / expected.abs().clamp_min(1e-12)).max().item()
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol} ({actual.tolist()} vs {expected.tolist()})"
    return err
