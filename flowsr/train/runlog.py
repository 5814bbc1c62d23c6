"""The run's records: log lines (``train.log`` and stderr), ``log.csv`` (training windows and
validation rows), TensorBoard events and the ``curves.png`` plot. Only the main process writes.

TensorBoard and matplotlib are optional: without them (or with ``log.tensorboard`` /
``log.plot`` off) the run goes on and one note in the log says what is not written. A TensorBoard
writer that fails (a full disk) is stopped quietly: one log line, no thread traceback.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowsr.fileio import atomic_write

__all__ = ["RunLog", "TensorBoard", "describe_error", "optional_tools", "write_errors"]


def optional_tools() -> dict[str, bool]:
    """Which optional logging packages are importable (``tensorboard``, ``matplotlib``)."""

    def present(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, a broken install
            return False

    return {"tensorboard": present("tensorboard"), "matplotlib": present("matplotlib")}


class TensorBoard:
    """A ``SummaryWriter`` that never takes the run down: the first failure (e.g. a full disk)
    logs one line and turns it off; its writer thread's exception is not printed as a traceback."""

    def __init__(self, folder: Path, purge_step: int, log: Any):
        from torch.utils.tensorboard import SummaryWriter

        self.log, self.failed = log, False
        self._hook_previous = threading.excepthook
        threading.excepthook = self._thread_hook
        self._writer = SummaryWriter(os.fspath(folder), purge_step=purge_step)

    def _thread_hook(self, args: Any) -> None:
        # the writer's background thread re-raises its I/O error; report it once, as a line
        if type(args.thread).__name__.startswith("_AsyncWriter"):
            self._fail(args.exc_value)
            return
        self._hook_previous(args)

    def _fail(self, err: BaseException | None) -> None:
        if not self.failed:
            self.failed = True
            self.log(f"TensorBoard logging stopped: {describe_error(err)}")

    def _guard(self, fn: Any, *args: Any) -> None:
        if self.failed:
            return
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 - logging must never end a training run
            self._fail(err)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._guard(self._writer.add_scalar, tag, value, step)

    def flush(self) -> None:
        self._guard(self._writer.flush)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a failed writer raises its error again while closing
            self._writer.close()
        threading.excepthook = self._hook_previous


def describe_error(err: BaseException | None) -> str:
    """One line for an I/O error (``no space left on device`` whatever layer raised it)."""
    if err is None:
        return "unknown error"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    errno = getattr(err, "errno", None)
    if errno == 28 or "No space left on device" in text or "os error 28" in text:
        return "no space left on device"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror[0].lower() + err.strerror[1:]
    return text


@contextlib.contextmanager
def write_errors(path: Path, note: str = ""):
    """Turn a failed write into a :class:`~flowsr.train.errors.TrainingError` of one line that
    names the file (``no space left on device while writing <file>``); ``note`` is appended."""
    from safetensors import SafetensorError

    from flowsr.train.errors import TrainingError

    try:
        yield
    except (OSError, SafetensorError) as err:
        reason = describe_error(err)
        if reason == "no space left on device":
            raise TrainingError(f"no space left on device while writing {path}{note}") from err
        raise TrainingError(f"cannot write {path}: {reason}{note}") from err


class RunLog:
    """Everything a run writes besides checkpoints, in ``run_dir``.

    Args:
        run_dir: the run folder.
        name: the run name (plot title).
        main: whether this process writes (rank 0); the others write nothing.
        quiet: no log lines on stderr (``train.log`` is still written).
    """

    def __init__(self, run_dir: Path, name: str = "run", *, main: bool = True, quiet: bool = False):
        self.run_dir, self.name, self.main, self.quiet = Path(run_dir), name, main, quiet
        self.bar: Any = None  # a tqdm bar: lines are written through it while it is shown
        self.terms: list[str] = []
        self.val_metric: str | None = None
        self.tensorboard: TensorBoard | None = None
        self._file_ok = True

    # -- lines ---------------------------------------------------------------------------------
    def line(self, message: str, echo: bool = True) -> None:
        """A timestamped line in ``train.log`` and, unless quiet (or ``echo`` is off), on stderr."""
        if not self.main:
            return
        text = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        if self._file_ok:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                with open(self.run_dir / "train.log", "a") as f:
                    f.write(text + "\n")
            except OSError as err:  # e.g. a full disk: lines still reach the terminal
                self._file_ok = False
                if echo and not self.quiet:
                    self._print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] cannot write train.log: {describe_error(err)}")
        if echo and not self.quiet:
            self._print(text)

    __call__ = line

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def note_missing_tools(self, tensorboard: bool, plot: bool) -> tuple[bool, bool]:
        """One log line if a wanted optional package is missing; returns what can be written."""
        tools = optional_tools()
        wanted = (("tensorboard", "TensorBoard events", tensorboard), ("matplotlib", "curves.png", plot))
        missing = [f"{name} (no {what})" for name, what, want in wanted if want and not tools[name]]
        if missing:
            self.line(f"note: not installed: {', '.join(missing)}; install them with pip install 'flowsr[train]'")
        return tensorboard and tools["tensorboard"], plot and tools["matplotlib"]

    # -- the CSV -------------------------------------------------------------------------------
    @property
    def csv_path(self) -> Path:
        return self.run_dir / "log.csv"

    def columns(self) -> list[str]:
        cols = ["iteration", "lr", "loss", *self.terms, "skipped", "grad_norm", "time_s", "it_per_s"]
        return cols + ([f"val_{self.val_metric}"] if self.val_metric else [])

    def configure(self, terms: Sequence[str], val_metric: str | None) -> None:
        """The loss terms of the training rows and the validation metric (``None``: no validation)."""
        self.terms, self.val_metric = list(terms), val_metric

    def truncate(self, iteration: int) -> None:
        """Drop CSV rows past ``iteration`` (written after the checkpoint a run resumes from); a
        log with other columns (another configuration) is kept aside as ``log.before_<N>.csv``."""
        if not self.main or not self.csv_path.is_file():
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        if header != self.columns():
            os.replace(self.csv_path, self.csv_path.with_suffix(f".before_{iteration}.csv"))
            return
        kept = [r for r in body if r and int(float(r[0])) <= iteration]
        if len(kept) != len(body):

            def write(tmp: str) -> None:
                with open(tmp, "w", newline="") as f:
                    w = csv.writer(f, lineterminator="\n")
                    w.writerow(header)
                    w.writerows(kept)

            atomic_write(self.csv_path, write)

    def row(self, row: dict[str, Any]) -> None:
        """Append one row (missing columns stay empty)."""
        if not self.main:
            return
        new = not self.csv_path.is_file() or self.csv_path.stat().st_size == 0
        with open(self.csv_path, "a", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            if new:
                w.writerow(self.columns())
            w.writerow([repr(row[c]) if isinstance(row.get(c), float) else row.get(c, "") for c in self.columns()])

    def train_window(self, row: dict[str, Any]) -> None:
        """A training row (window means) in the CSV and TensorBoard."""
        self.row(row)
        for key in ("loss", *self.terms, "lr", "grad_norm"):
            if self.tensorboard is not None and math.isfinite(row.get(key, float("nan"))):
                self.tensorboard.scalar(f"train/{key}", row[key], row["iteration"])

    def validation(self, iteration: int, value: float) -> None:
        """A validation row (``iteration`` and ``val_<metric>`` only) in the CSV and TensorBoard."""
        self.row({"iteration": iteration, f"val_{self.val_metric}": float(value)})
        if self.tensorboard is not None:
            self.tensorboard.scalar(f"val/{self.val_metric}", value, iteration)

    def read(self) -> list[dict[str, float]]:
        """The rows of ``log.csv`` as dicts of floats (empty cells: NaN)."""
        if not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in rows]

    # -- TensorBoard -----------------------------------------------------------------------------
    def open_tensorboard(self, purge_step: int) -> None:
        """Start writing events to ``tensorboard/`` (steps from ``purge_step`` on replace old ones)."""
        if self.main and self.tensorboard is None:
            self.tensorboard = TensorBoard(self.run_dir / "tensorboard", purge_step, self.line)

    def flush(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        """Stop the TensorBoard writer (cleanly, also after a failure)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    # -- the plot ----------------------------------------------------------------------------------
    def plot(self) -> Path | None:
        """Write ``curves.png`` (loss, each term, learning rate, validation) from ``log.csv``;
        ``None`` without rows or without matplotlib."""
        if not self.main:
            return None
        rows = self.read()
        train = [r for r in rows if math.isfinite(r.get("lr", float("nan")))]
        if not train:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except Exception:  # noqa: BLE001 - optional; the start of the run noted its absence
            return None
        names = ["loss", *[t for t in self.terms if t != "loss"], "lr"]
        val = f"val_{self.val_metric}" if self.val_metric else None
        val_rows = [r for r in rows if val and math.isfinite(r.get(val, float("nan")))]
        panels = names + ([val] if val_rows else [])
        cols = 3
        nrows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
        axes = list(axes.flat)
        for ax, name in zip(axes, panels):
            source = val_rows if name == val else train
            x = [r["iteration"] for r in source]
            y = [r.get(name, float("nan")) for r in source]
            ax.plot(x, y, lw=1, marker="o" if name == val else None, ms=3)
            ax.set_title(name.replace("val_", "validation ") if name == val else name, fontsize=9)
            ax.grid(alpha=0.3)
            finite = [v for v in y if math.isfinite(v)]
            if name == "lr" or (finite and min(finite) > 0 and max(finite) / max(min(finite), 1e-30) > 100):
                ax.set_yscale("log")
        for ax in axes[len(panels) :]:
            ax.axis("off")
        fig.suptitle(f"{self.name}: iteration {int(train[-1]['iteration'])}", fontsize=10)
        fig.tight_layout()
        path = self.run_dir / "curves.png"
        try:
            atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
        finally:
            plt.close(fig)
        return path
