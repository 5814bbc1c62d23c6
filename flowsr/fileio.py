"""Atomic file writing, shared by every stage that writes files (images, checkpoints, logs).

:func:`atomic_write` gives three guarantees:

* **Old or new, never partial**: the data is written to a temporary file in a private hidden
  folder beside the target, fsync'ed, then renamed over the target (atomic on POSIX). A
  crash, ``kill -9`` or full disk at any point leaves the previous file as it was.
* **Usual permissions**: the file gets ``0666 & ~umask``, like a file created with ``open``. The
  permissions are set *after* the writer ran, because some writers replace the file they were
  given instead of writing into it: safetensors' ``save_file`` writes its own ``.tmpXXXXXX``
  (mode ``0600``) and renames it over the path, which is why flowsr checkpoints used to come out
  ``0600``.
* **No litter**: the temporary folder is named ``.flowsr-tmp.<host>.<pid>.<start>.<random>``
  (``<start>``: the process start time from ``/proc``, so a reused pid is told apart). A killed
  process leaves it behind; the next :func:`atomic_write` into the same folder (once per folder and
  process) removes those whose process is gone. Because the writer works *inside* that folder,
  the temporary files writers create for themselves (safetensors' ``.tmpXXXXXX``) are removed
  with it. Folders of other hosts or of live processes are never touched.

A full disk (``ENOSPC``, ``EDQUOT``; safetensors' "No space left on device (os error 28)"; torch's
``[enforce fail at inline_container.cc] unexpected pos`` / ``file write failed`` when the disk is
full) becomes one ``OSError`` saying ``no space left on device while writing <file>``.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

__all__ = ["TEMP_PREFIX", "atomic_write", "remove_stale_temporaries"]

#: Name prefix of atomic_write's temporary folders (hidden; see the module docstring).
TEMP_PREFIX = ".flowsr-tmp."

# A disk with less free space than this after a failed torch write is taken to be full.
_FULL_DISK_BYTES = 1 << 20
# torch.save's messages for a failed write: the zip writer's position check and its fwrite check.
_TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed")
_SPACE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}

_cleaned_dirs: set[str] = set()


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _start_ticks(pid: int) -> str:
    """The process start time (clock ticks after boot, field 22 of ``/proc/<pid>/stat``), "0" if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return "0"
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else "0"


def _process_gone(pid: int, start: str) -> bool:
    """Whether the process that created a temporary folder has exited (a zombie still counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        pass
    except OSError:
        return False
    # The pid exists: it is ours only if it also started at the same time (pids are reused).
    return start != "0" and _start_ticks(pid) not in (start, "0")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders of :func:`atomic_write` calls whose process has died.

    Only names ``.flowsr-tmp.<this host>.<pid>.<start>.<random>`` are considered, and only when
    process ``<pid>`` no longer exists (or is a different process that reused the pid). Returns the
    paths removed. Errors (a folder that vanished meanwhile, no permission) are ignored: cleaning up
    is a courtesy, never a reason to fail a write.
    """
    removed = []
    host = _host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        parts = entry.name[len(TEMP_PREFIX) :].split(".")
        if len(parts) != 4 or parts[0] != host or not parts[1].isdigit():
            continue
        pid, start = int(parts[1]), parts[2]
        if pid == os.getpid() and start == _start_ticks(pid):
            continue  # another thread of this process is writing there
        if not _process_gone(pid, start):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _os_error(code: int, message: str) -> OSError:
    """An ``OSError`` with ``errno`` set whose text is just ``message`` (no "[Errno N]" prefix)."""
    err = OSError(message)
    err.errno = code
    return err


def _space_error(err: BaseException, path: Path, tmp_dir: Path) -> OSError | None:
    """The clear ``OSError`` for a write that failed because the disk is full, else None."""
    code = getattr(err, "errno", None)
    text = str(err)
    if code not in _SPACE_ERRNOS:
        if "No space left on device" in text or "os error 28" in text:  # safetensors (Rust) I/O errors
            code = errno.ENOSPC
        elif "Disk quota exceeded" in text or "os error 122" in text:
            code = errno.EDQUOT
        elif isinstance(err, RuntimeError) and any(s in text for s in _TORCH_WRITE_FAILURES):
            # torch.save loses the errno; the partial temporary file is still there, so a full disk
            # shows as (almost) no free space left.
            free = _free_bytes(tmp_dir)
            if free is None or free >= _FULL_DISK_BYTES:
                return _os_error(errno.EIO, f"write failed while writing {path} ({' '.join(text.split())})")
            code = errno.ENOSPC
        else:
            return None
    return _os_error(code, f"{_SPACE_ERRNOS[code]} while writing {path}; the previous file, if any, is unchanged")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on folders
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    ``tmp`` has the same file name as ``path`` (so writers that look at the extension work) inside a
    private hidden folder in ``path``'s folder; the writer may create, replace or rename files in
    that folder as it likes. A reader, or a run interrupted at any point, sees the old file or the
    new one, never a partial one; the temporary folder is removed on success and on failure, and by
    a later call when the process was killed (see the module docstring). The file gets the usual
    ``0666 & ~umask`` permissions. Returns ``path``.

    Raises:
        OSError: ``"no space left on device while writing <path>; ..."`` (``errno.ENOSPC``; or
            ``EDQUOT``) when the disk or quota is full, whichever writer reported it; other errors
            of ``write`` are re-raised unchanged.
    """
    path = Path(path)
    folder = path.parent
    for parent in (folder, *folder.parents):  # a file where a folder should be: say so, not "[Errno 17]"
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    folder.mkdir(parents=True, exist_ok=True)
    key = os.fspath(folder.resolve())
    if key not in _cleaned_dirs:
        remove_stale_temporaries(folder)
        _cleaned_dirs.add(key)
    pid = os.getpid()
    tmp_dir = folder / f"{TEMP_PREFIX}{_host_tag()}.{pid}.{_start_ticks(pid)}.{secrets.token_hex(4)}"
    os.mkdir(tmp_dir, 0o700)
    # Long target names would make the temporary path too long; the name only matters for its suffix.
    tmp = tmp_dir / (path.name if len(path.name) <= 200 else "file" + path.suffix[-50:])
    try:
        try:
            write(os.fspath(tmp))
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except Exception as err:  # any writer's error may mean a full disk (torch: RuntimeError)
            clear = _space_error(err, path, tmp_dir)
            if clear is not None:
                raise clear from err
            raise
        _fsync_dir(folder)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path
