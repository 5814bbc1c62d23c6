from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flowsr.fileio import atomic_write


def test_atomic_write_replaces_with_usual_permissions_and_never_leaves_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"old"))
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask

    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]
