"""Options shared by several commands, their checks, and the process settings they control.

Every value is checked when the command line is parsed (argparse ``type=`` functions raising
``ArgumentTypeError``: the error names the option), or, where two options or the model are
involved, by the helpers here before any work starts. Nothing in this module imports torch at
import time: ``flowsr --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence

from flowsr.cli.console import say, warn
from flowsr.cli.errors import CLIError, one_line

__all__ = [
    "DEFAULT_OVERLAP",
    "MAX_SEED",
    "MIN_SEED",
    "THREADS_PER_CORE",
    "add_common",
    "add_device",
    "add_model",
    "add_output",
    "add_seed",
    "add_tiling",
    "common_options",
    "count",
    "cpu_cores",
    "model_ref",
    "resolve_device",
    "seed",
    "setup_torch",
    "temperature",
    "temperatures",
    "threads",
    "tiling",
]

#: --threads above cores x this is refused: OpenMP allocates per-thread state, and 100000 threads
#: crash the process (issue 14, defect 7); anything above the core count only slows down.
THREADS_PER_CORE = 4
#: torch.Generator.manual_seed accepts exactly this range (beyond it: "Overflow when unpacking long long").
MIN_SEED, MAX_SEED = -(2**63), 2**64 - 1
#: Default tile overlap, in LR pixels.
DEFAULT_OVERLAP = 16
#: Output formats of --ext (what the writers keep: 16 bit and alpha in png / tif, alpha in webp).
EXTENSIONS = ("png", "jpg", "webp", "tif")


# -- argparse types: each names what is wrong ---------------------------------------------------------


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def count(minimum: int = 1) -> Callable[[str], int]:
    """An integer ``>= minimum`` (``--samples``, ``--max-images``, ...)."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def threads(text: str) -> int:
    """``--threads``: 1 .. cores x :data:`THREADS_PER_CORE` (a warning above the core count, later)."""
    value = _int(text)
    limit = cpu_cores() * THREADS_PER_CORE
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value} (leave it out for torch's default)")
    if value > limit:
        raise argparse.ArgumentTypeError(
            f"{value} is too many: at most {limit} ({THREADS_PER_CORE} x the {cpu_cores()} CPU cores of this machine)"
        )
    return value


def seed(text: str) -> int:
    """``--seed``: an integer torch's generators accept."""
    value = _int(text)
    if not MIN_SEED <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**64-1 (or down to -2**63), got {text}")
    return value


def temperature(text: str) -> float:
    """A sampling temperature: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def temperatures(values: Sequence[float]) -> list[float]:
    """``values`` without repeats (``0.8 0.80 8e-1`` is one temperature), in the given order;
    says which were dropped."""
    out: list[float] = []
    for t in values:
        if t in out:
            say(f"note: temperature {t:g} is given more than once; it is used once")
            continue
        out.append(float(t))
    return out


# -- option groups ----------------------------------------------------------------------------------


def common_options(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """``--debug`` and ``--threads``: every command has them (a parent parser)."""
    p = parser_class(add_help=False)
    add_common(p)
    return p


def add_common(p: argparse.ArgumentParser) -> None:
    """Add ``--debug`` and ``--threads`` to ``p`` (see :func:`common_options`)."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    p.add_argument(
        "--threads",
        type=threads,
        default=None,
        metavar="N",
        help=f"torch CPU threads, 1 to {THREADS_PER_CORE} x the CPU cores (default: torch's)",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (CUDA / MPS when available, else CPU)"
    )


def add_model(p: argparse.ArgumentParser, what: str, bundled: Sequence[str], required: bool = True) -> None:
    """``-m/--model NAME_OR_PATH`` and ``-c/--checkpoint PATH`` (the same thing, for paths; kept)."""
    names = ", ".join(bundled) if bundled else "none installed"
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument(
        "--model",
        "-m",
        default=None,
        metavar="NAME_OR_PATH",
        help=f"{what}: a bundled model name ({names}; 'flowsr info --list'), a flowsr .safetensors file, "
        "or a folder holding model.safetensors",
    )
    g.add_argument("--checkpoint", "-c", default=None, metavar="PATH", help="the same as --model, for a file path")


def model_ref(args: argparse.Namespace) -> str | None:
    """What ``-m`` or ``-c`` named (argparse makes them exclusive)."""
    return getattr(args, "model", None) or getattr(args, "checkpoint", None)


def add_temperatures(p: argparse.ArgumentParser, help: str) -> None:
    """``--temperature/-t T [T ...]`` (checked by :func:`temperature`; ``None`` when not given)."""
    p.add_argument("--temperature", "-t", type=temperature, nargs="+", default=None, metavar="T", help=help)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=seed, default=0, help="seed of the latent noise (0 to 2**64-1)")


def add_tiling(p: argparse.ArgumentParser, unit: str) -> None:
    """``--tile`` and ``--overlap``, both in ``unit`` pixels (the pixels of the command's input)."""
    p.add_argument(
        "--tile",
        type=count(1),
        default=None,
        metavar="S",
        help=f"process in S x S tiles of {unit} pixels to bound memory (default: the whole image)",
    )
    p.add_argument(
        "--overlap",
        type=count(0),
        default=None,
        metavar="O",
        help=f"overlap of neighbouring tiles in {unit} pixels, at most S/2 "
        f"(default: {DEFAULT_OVERLAP} LR pixels, capped at S/2)",
    )


def add_output(p: argparse.ArgumentParser, default: str) -> None:
    """``-o/--out``, ``--overwrite``, ``--suffix`` and ``--ext`` of the image-writing commands."""
    p.add_argument(
        "--out",
        "-o",
        default=default,
        metavar="DIR_OR_FILE",
        help="output folder (created if needed); for one input and one output also a file name, e.g. -o out.png",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.add_argument("--suffix", default="", metavar="TEXT", help="added to every output name: <name>_TEXT_...")
    p.add_argument("--ext", choices=EXTENSIONS, default="png", help="output format")


# -- checks that need two options, the machine or the model ------------------------------------------


def tiling(tile: int | None, overlap: int | None, default_overlap: int, align: int = 1, unit: str = "") -> int:
    """The overlap to use with ``tile``; ``CLIError`` for combinations the tiler cannot honour.

    ``default_overlap`` (same units) applies when ``--overlap`` is not given, capped at half the tile.
    ``align``: the model's tile granularity in these units (tiles are rounded down to it).
    """
    unit = f" {unit} pixels" if unit else ""
    if tile is None:
        return default_overlap if overlap is None else overlap
    if tile < align:
        raise CLIError(f"--tile {tile} is smaller than the model's granularity of {align}{unit}; use --tile >= {align}")
    if overlap is None:
        return min(default_overlap, tile // 2)
    if 2 * overlap > tile:
        raise CLIError(
            f"--overlap {overlap} is more than half of --tile {tile}{unit}: neighbouring tiles would overlap more "
            f"than they advance; use --overlap <= {tile // 2} or a larger --tile"
        )
    return overlap


def setup_torch(n_threads: int | None) -> None:
    """Apply ``--threads`` (checked by :func:`threads`), warning above the core count."""
    if not n_threads:
        return
    cores = cpu_cores()
    if n_threads > cores:
        warn(f"--threads {n_threads} is more than the {cores} CPU cores of this machine; this usually slows down")
    import torch

    torch.set_num_threads(int(n_threads))


def resolve_device(name: str):
    """``--device`` as a ``torch.device`` that exists on this machine (``CLIError`` naming what is missing)."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise CLIError(f"unknown device {name!r} ({one_line(err)}); use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CLIError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not _mps_available():
        raise CLIError(f"--device {name}: Apple MPS is not available on this machine; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise CLIError(f"--device {name}: flowsr runs on cpu, cuda or mps")
    return dev


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())
