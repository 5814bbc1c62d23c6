"""Measuring on a shared machine: throughput calibration, FLOP counting, CPU use of other
processes, memory high-water marks, load averages, the machine's description, plain tables.

Shared by the preset benchmark (:mod:`flowsr.bench.measure`) and the side-by-side run against the
official code (:mod:`flowsr.bench.sidebyside`).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "calibrate",
    "count_flops",
    "cpu_busy",
    "format_table",
    "loadavg",
    "machine_info",
    "maxrss_mib",
    "rss_now_mib",
    "sync",
]


def count_flops(fn: Callable[[], Any]) -> int:
    """Convolution / matmul FLOPs of one call of ``fn`` (``FlopCounterMode``: 1 MAC = 2 FLOP;
    backward passes run inside ``fn`` are counted too)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def sync(device) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing on the CPU."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def cpu_busy() -> tuple[float, float] | None:
    """``(busy, total)`` CPU seconds of the whole machine so far (``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


def rss_now_mib() -> float | None:
    """This process's resident memory now (MiB), or ``None``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def maxrss_mib(who=None) -> float:
    """This process's resident-memory high-water mark (MiB)."""
    usage = resource.getrusage(resource.RUSAGE_SELF if who is None else who)
    return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def loadavg() -> tuple[float, float, float] | None:
    """The 1 / 5 / 15 minute load averages, or ``None``."""
    try:
        return os.getloadavg()
    except (OSError, AttributeError):
        return None


def calibrate(device="cpu", seconds: float = 1.0, bf16: bool = False) -> dict[str, float]:
    """Peak throughput (GFLOP/s of the fastest call) of a 3x3 convolution 64 -> 64 channels on a
    1x64x80x80 float32 input (the size of HCFlow's HR/2 feature maps for a 160x160 crop, where most
    of the FLOPs are) and of a 1024x1024 float32 matmul (``bf16=True`` adds the
    convolution under bf16 autocast)."""
    import torch
    import torch.nn.functional as F

    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 80, 80, generator=g).to(device)
    w = torch.randn(64, 64, 3, 3, generator=g).to(device) * 0.05
    a = torch.randn(1024, 1024, generator=g).to(device)
    b = torch.randn(1024, 1024, generator=g).to(device)
    kernels = {
        "conv3x3_64": (lambda: F.conv2d(x, w, padding=1), 2 * 64 * 64 * 9 * 80 * 80),
        "matmul_1024": (lambda: a @ b, 2 * 1024**3),
    }
    if bf16:

        def conv_bf16():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return F.conv2d(x, w, padding=1)

        kernels["conv3x3_64_bf16"] = (conv_bf16, 2 * 64 * 64 * 9 * 80 * 80)
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, (fn, flops) in kernels.items():
            for _ in range(2):
                fn()
            sync(device)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < 3 or (time.perf_counter() - start < seconds and len(times) < 1000):
                t0 = time.perf_counter()
                fn()
                sync(device)
                times.append(time.perf_counter() - t0)
            out[name] = flops / min(times) / 1e9  # peak: the fastest call
    return out


def format_table(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
    """``body`` under ``header`` as a Markdown table or as aligned plain text."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(line.rstrip() for line in lines)


def machine_info() -> dict[str, Any]:
    """CPU model and ISA flags, cores, memory, Python / torch / oneDNN versions, GPU."""
    import torch

    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                if flags and not cpu.startswith(platform.machine()):
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile") if f in flags]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    info = {
        "cpu": cpu,
        "isa": " ".join(isa) or None,
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory_gib": mem,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "dnnl_max_cpu_isa": os.environ.get("DNNL_MAX_CPU_ISA"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }
    return info
