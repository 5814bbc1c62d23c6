"""Shared pieces of the command-line tests (tests/test_cli*.py): tiny models from the families'
``shrink_spec``, small images, running ``main`` in-process or as a subprocess, error checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from flowsr.cli import main
from flowsr.data import write_image
from flowsr.models import get_family, save
from flowsr.testing import perturb_parameters

REPO = Path(__file__).resolve().parent.parent


def tiny(family: str, preset: str = "x4", seed: int = 0):
    """A tiny model of ``family`` (its ``shrink_spec`` of ``preset``), weights perturbed so that no
    layer is an identity (a freshly initialised flow hides mistakes)."""
    cls = get_family(family)
    torch.manual_seed(seed)
    model = cls(cls.shrink_spec(cls.preset_spec(preset)))
    return perturb_parameters(model, seed=seed, scale=0.05).eval()


def tiny_sr(seed: int = 0):
    return tiny("hcflow_sr", "x4", seed)


def tiny_rescaling(seed: int = 0):
    return tiny("hcflow_rescaling", "x4", seed)


def smooth(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random (3, h, w) image in [0, 1] (natural-image-like, so border effects are realistic)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(2, h // 4), max(2, w // 4), generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]


def make_files(tmp_path_factory) -> dict[str, Path]:
    """Two tiny checkpoints, two small images, a truncated PNG and a corrupt checkpoint (for a
    module-scoped ``files`` fixture in each test module)."""
    d = tmp_path_factory.mktemp("cli")
    out = {
        "sr": save(tiny_sr(), d / "sr.safetensors"),
        "rs": save(tiny_rescaling(), d / "rs.safetensors", extra={"note": "tiny test model"}),
        "lr": write_image(d / "lr.png", smooth(7, 5)),  # odd size: padded and cropped back
        "hr": write_image(d / "hr.png", smooth(26, 21, seed=1)),  # not a multiple of the scale
    }
    corrupt = d / "corrupt.png"
    corrupt.write_bytes(out["lr"].read_bytes()[:60])  # a truncated PNG
    out["corrupt"] = corrupt
    bad_ckpt = d / "bad.safetensors"
    bad_ckpt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    out["bad_ckpt"] = bad_ckpt
    return out


def run(capsys, *argv) -> tuple[int, str, str]:
    """``main(argv)`` in this process: ``(exit status, stdout, stderr)``."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(*argv, cwd: Path | None = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m flowsr argv`` in a fresh process (one torch thread, like the test workers)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "flowsr", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=timeout,
        **kwargs,
    )


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit status 2 and exactly one stderr line ``flowsr: error: ...`` holding every needle."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("flowsr: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (recursively) with its bytes: to check what a command changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
