"""One training process per run folder: :class:`RunLock`.

The lock is ``<run folder>/train.lock``: a file holding its owner (pid, host, start time, command)
and, where the platform has it, an exclusive ``flock`` on it that the kernel drops when the
process dies. A second process is refused with a message naming the owner. A lock left by a
process that is gone (killed, crashed) is taken over with a log line; one that names a live
process on this host, or any process on another host, is respected (delete the file by hand if
that process is known to be gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from flowsr.train.errors import TrainingError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: the owner record alone
    fcntl = None

__all__ = ["RunLock", "pid_alive"]

LOCK_NAME = "train.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"


class RunLock:
    """The exclusive right to train into ``run_dir``.

    Use :meth:`acquire` / :meth:`release` (or ``with RunLock(d):``). ``log`` receives the line
    about a stale lock that was taken over.
    """

    def __init__(self, run_dir: str | os.PathLike, log: Any = None):
        self.path = Path(run_dir) / LOCK_NAME
        self.log = log or (lambda message: None)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict[str, Any] | None:
        """The owner record in the lock file (``None``: no file or an unreadable one)."""
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _refuse(self, holder: dict[str, Any], why: str) -> TrainingError:
        return TrainingError(
            f"the run folder {self.path.parent} is in use by another training process ({_describe(holder)}){why}; "
            f"wait for it to finish or train into another folder (--run-dir); if that process is gone, "
            f"delete {self.path}"
        )

    def acquire(self) -> None:
        """Take the lock or raise :class:`TrainingError` naming the process that holds it."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # the file may be replaced by another process in between; try again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        holder = self.holder() or {"pid": "?", "host": "?", "started": "?"}
                        raise self._refuse(holder, "") from None
                    # the file we locked must still be the one at the path (not unlinked by its releaser)
                    if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                        os.close(fd)
                        continue
                self._check_record(self.holder())
                self._write_record(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            self._fd = fd
            return
        raise TrainingError(f"cannot lock the run folder {self.path.parent}: the lock file keeps changing")

    def _check_record(self, holder: dict[str, Any] | None) -> None:
        """Decide about a record left in the file by an earlier owner (we hold the flock)."""
        if not holder or holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            return
        pid, host = holder.get("pid"), holder.get("host")
        if host != socket.gethostname():
            raise self._refuse(holder, " (on another host: cannot tell whether it still runs)")
        if isinstance(pid, int) and pid_alive(pid):
            raise self._refuse(holder, "")
        self.log(f"took over the lock of a training process that is gone ({_describe(holder)})")

    def _write_record(self, fd: int) -> None:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)

    def release(self) -> None:
        """Give the lock up (the file is removed)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if self.holder() and self.holder().get("pid") == os.getpid():
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)  # drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
