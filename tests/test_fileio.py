from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from flowsr import fileio
from flowsr.fileio import TEMP_PREFIX, atomic_write, remove_stale_temporaries

REPO = Path(__file__).resolve().parents[1]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_replaces_with_usual_permissions_and_never_leaves_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"old"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()

    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_safetensors_files_get_the_usual_permissions(tmp_path: Path) -> None:
    # safetensors' save_file writes its own 0600 temporary file and renames it over the path it is
    # given; atomic_write must set the mode after the writer ran.
    old = os.umask(0o002)
    try:
        path = atomic_write(tmp_path / "m.safetensors", lambda tmp: save_file({"w": torch.ones(3)}, tmp))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert torch.equal(load_file(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from flowsr.fileio import atomic_write

def write(tmp):
    Path(tmp).write_bytes(b"partial")
    Path(tmp).with_name(".tmpabc123").write_bytes(b"a writer's own temporary file")
    print("writing", flush=True)
    time.sleep(60)

atomic_write(Path(sys.argv[1]), write)
"""


def test_temporaries_of_a_killed_process_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.safetensors"
    target.write_bytes(b"previous")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, os.fspath(target)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    left = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(left) == 1 and f".{proc.pid}." in left[0].name, list(tmp_path.iterdir())
    assert target.read_bytes() == b"previous"  # the kill did not touch the target
    fileio._cleaned_dirs.discard(os.fspath(tmp_path.resolve()))
    atomic_write(tmp_path / "other.txt", lambda tmp: Path(tmp).write_text("x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors", "other.txt"]


def test_only_temporaries_of_dead_processes_on_this_host_are_removed(tmp_path: Path) -> None:
    host, me = fileio._host_tag(), os.getpid()
    start = fileio._start_ticks(me)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    try:
        names = {
            "mine": f"{TEMP_PREFIX}{host}.{me}.{start}.0001",  # another thread of this process
            "live": f"{TEMP_PREFIX}{host}.{sleeper.pid}.{fileio._start_ticks(sleeper.pid)}.0002",
            "other_host": f"{TEMP_PREFIX}elsewhere.{dead.pid}.1.0003",
            "dead": f"{TEMP_PREFIX}{host}.{dead.pid}.1.0004",
            "reused_pid": f"{TEMP_PREFIX}{host}.{me}.1{start}.0005",  # our pid, another start time
            "unrelated": ".ckpt.safetensors.abc.tmp",
        }
        for name in names.values():
            (tmp_path / name).mkdir()
            (tmp_path / name / "f").write_bytes(b"x")
        removed = {p.name for p in remove_stale_temporaries(tmp_path)}
        if start == "0":  # no /proc: a reused pid cannot be told apart and is kept
            assert removed == {names["dead"]}
        else:
            assert removed == {names["dead"], names["reused_pid"]}
        assert {p.name for p in tmp_path.iterdir()} == set(names.values()) - removed
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)


def test_full_disk_gives_a_clear_error_and_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "state.pt"
    target.write_bytes(b"previous")

    def enospc(tmp: str) -> None:
        Path(tmp).write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    def safetensors_full(tmp: str) -> None:
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    def torch_full(tmp: str) -> None:
        Path(tmp).write_bytes(b"part")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(fileio, "_free_bytes", lambda folder: 4096)
    for writer in (enospc, safetensors_full, torch_full):
        with pytest.raises(OSError) as info:
            atomic_write(target, writer)
        assert info.value.errno == errno.ENOSPC, writer
        assert f"no space left on device while writing {target}" in str(info.value)
        assert target.read_bytes() == b"previous"
        assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    # The same torch message with plenty of space left is some other write failure: not called a full disk.
    monkeypatch.setattr(fileio, "_free_bytes", lambda folder: 1 << 40)
    with pytest.raises(OSError, match=f"write failed while writing {target}") as info:
        atomic_write(target, torch_full)
    assert info.value.errno == errno.EIO
    # Unrelated errors are re-raised unchanged.
    with pytest.raises(ValueError, match="boom"):
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(ValueError("boom")))
    assert target.read_bytes() == b"previous"


_TMPFS_WRITER = """
import sys, torch
from pathlib import Path
from safetensors.torch import save_file
from flowsr.fileio import atomic_write

root = Path(sys.argv[1])
big = {"w": torch.zeros(200_000)}
for name, write in [
    ("a.bin", lambda tmp: Path(tmp).write_bytes(bytes(800_000))),
    ("b.pt", lambda tmp: torch.save(big, tmp)),
    ("c.safetensors", lambda tmp: save_file(big, tmp)),
]:
    try:
        atomic_write(root / name, write)
    except OSError as err:
        print(name, err.errno, err)
    else:
        print(name, "written")
"""


def test_full_tmpfs_in_a_subprocess(tmp_path: Path) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", os.fspath(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        for name in ("a.bin", "b.pt", "c.safetensors"):
            (mnt / name).write_bytes(b"previous")
        out = subprocess.run(
            [sys.executable, "-c", _TMPFS_WRITER, os.fspath(mnt)], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 3, out.stdout
        for line, name in zip(lines, ("a.bin", "b.pt", "c.safetensors")):
            assert line.startswith(f"{name} {errno.ENOSPC} no space left on device while writing {mnt / name}"), line
            assert (mnt / name).read_bytes() == b"previous"
        assert sorted(p.name for p in mnt.iterdir()) == ["a.bin", "b.pt", "c.safetensors"]
    finally:
        deadline = time.monotonic() + 10
        while subprocess.run(["umount", os.fspath(mnt)], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not unmount {mnt}")
            time.sleep(0.2)


def test_a_file_or_folder_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "out.png").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match=f"cannot write {tmp_path / 'out.png' / 'a.png'}: .*out.png is a file"):
        atomic_write(tmp_path / "out.png" / "a.png", lambda tmp: Path(tmp).write_bytes(b"y"))
    with pytest.raises(NotADirectoryError, match="out.png is a file, not a folder"):
        atomic_write(tmp_path / "out.png" / "sub" / "a.png", lambda tmp: Path(tmp).write_bytes(b"y"))
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        atomic_write(tmp_path / "dir", lambda tmp: Path(tmp).write_bytes(b"y"))
    assert (tmp_path / "out.png").read_bytes() == b"x"
