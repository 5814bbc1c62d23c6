"""The preset benchmark's report: the table (absolute numbers, GFLOP/s and % of the measured
convolution peak -- no comparison with the official code, which only the side-by-side run of
:mod:`flowsr.bench.sidebyside` makes), the targets that need no official timing, and the
Markdown file.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from flowsr.bench.measure import is_variant
from flowsr.bench.presets import PRESETS
from flowsr.bench.system import format_table

__all__ = ["BUSY", "COLUMNS", "command_line", "label", "markdown_report", "rows", "setup_lines", "targets"]

#: Cores' worth of CPU used by other processes above which a row is flagged as measured on a busy machine.
BUSY = 0.25
#: Tiled HCFlow SR x4 512 -> 2048 within this peak memory (MiB).
TILED_TARGET_MIB = 2048


def label(r: dict) -> str:
    """A row's operation as shown in the table (``train (batch 1)``, ``decode [bf16]``, ...)."""
    op = r.get("op", "?")
    if op in ("samples", "samples_repeat"):
        op = f"{op} (N={r.get('samples')})"
    elif op == "train":
        op = f"train (batch {r.get('batch')})"
    elif op == "tiled":
        p = PRESETS.get(r.get("preset", ""))
        if p is not None:
            op = f"tiled {p.tiled_lr}->{p.tiled_lr * p.scale} (tile {p.tile})"
    tags = []
    if r.get("amp") not in (None, "none"):
        tags.append(str(r["amp"]))
    if r.get("channels_last"):
        tags.append("channels-last")
    if r.get("compile"):
        tags.append("compile")
    return op + (f" [{', '.join(tags)}]" if tags else "")


def _fmt_s(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return f"{_fmt_s(v[0])}-{_fmt_s(v[1])}"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def fmt_load(v) -> str:
    return "-" if not v else f"{v[0]:.2f}"


COLUMNS = [
    "preset",
    "operation",
    "median s",
    "min-max s",
    "s / MP",
    "GFLOP",
    "GFLOP/s",
    "% conv peak",
    "peak MiB",
    "load 1m before/after",
    "others' CPU",
]


def rows(results: Sequence[dict], calib: dict | None) -> list[list[str]]:
    """The table rows (strings) for ``results``; columns :data:`COLUMNS`."""
    conv = (calib or {}).get("conv3x3_64")
    out = []
    for r in results:
        name = r.get("preset", "?")
        if r.get("skip") or r.get("error"):
            why = r.get("skip") or r.get("error")
            out.append([name, label(r), f"not measured: {why}"] + [""] * (len(COLUMNS) - 3))
            continue
        med, pixels = r["median"], r.get("hr_pixels") or 0
        gflop = r.get("flop", 0) / 1e9 if r.get("flop") is not None else None
        rate = gflop / med if gflop is not None and med > 0 else None
        mem = r.get("gpu_peak_mib") or r.get("peak_rss_mib")
        mem_s = "-" if mem is None else f"{mem:.0f}" + (" (GPU)" if r.get("gpu_peak_mib") else "")
        if r.get("in_process") and not r.get("gpu_peak_mib"):
            mem_s += " (in-process)"
        note = "" if r.get("finite") in (True, None) else " NON-FINITE"
        out.append(
            [
                name,
                label(r) + note,
                _fmt_s(med),
                f"{_fmt_s(r['min'])}-{_fmt_s(r['max'])}",
                _fmt_s(med / (pixels / 1e6)) if pixels else "-",
                "-" if gflop is None else f"{gflop:.4g}",
                "-" if rate is None else f"{rate:.0f}",
                "-" if rate is None or not conv else f"{100 * rate / conv:.0f}%",
                mem_s,
                f"{fmt_load(r.get('load_before'))}/{fmt_load(r.get('load_after'))}",
                "-" if r.get("others_cpu") is None else f"{r['others_cpu']:.2f}",
            ]
        )
    return out


def _contended(results: Sequence[dict]) -> bool:
    others = [r.get("others_cpu") for r in results if r.get("others_cpu") is not None]
    return bool(others) and max(others) > BUSY


def _busy(*rs: dict) -> str:
    """A warning when other processes used the CPU during a measurement."""
    others = max((r.get("others_cpu") or 0.0) for r in rs)
    return f"; measured while other processes used {others:.1f} cores: not conclusive" if others > BUSY else ""


def targets(results: Sequence[dict], device: str) -> list[str]:
    """The targets that need no official timing (shared-feature sampling, tiled memory), with the
    measured value next to each, and the variants (bf16, compile, ...) against float32 eager."""
    by = {}
    for r in results:
        if r.get("error") or r.get("skip"):
            continue
        key = (r.get("preset"), r.get("op"), r.get("batch") if r.get("op") == "train" else None)
        if not is_variant(r):
            by[key] = r
    lines = []
    for name in PRESETS:
        r, base = by.get((name, "samples", None)), by.get((name, "samples_repeat", None))
        if r is None or base is None:
            continue
        gain = f"{base['median'] / r['median']:.2f}x faster"
        if base.get("flop") and r.get("flop"):
            gain += f", {base['flop'] / r['flop'] - 1:.0%} more FLOPs without sharing"
        lines.append(
            f"- {PRESETS[name].title}: N = {r.get('samples')} samples sharing the LR features {r['median']:.2f} s vs "
            f"{base['median']:.2f} s with the LR repeated ({gain}{_busy(r, base)})"
        )
    r = by.get(("hcflow_sr_x4", "tiled", None))
    if r is not None:
        mem = r.get("gpu_peak_mib") or r.get("peak_rss_mib")
        ok = ("met" if mem is not None and mem <= TILED_TARGET_MIB else "NOT met") + _busy(r)
        lines.append(
            f"- Tiled HCFlow SR x4 512x512 -> 2048x2048 within {TILED_TARGET_MIB} MiB peak: {mem:.0f} MiB "
            f"({ok}), {r['median']:.0f} s; seams (tiled vs whole image at temperature 0) are tested in "
            f"tests/test_cli.py, not here"
        )
    r = by.get(("hcflow_sr_x4", "train", 4))
    if r is not None:
        lines.append(
            f"- HCFlow SR x4 NLL training step, batch of 4 160x160 patches: {r['median']:.2f} s (reported{_busy(r)})"
        )
    for r in results:
        if r.get("error") or r.get("skip") or not is_variant(r):
            continue
        base = by.get((r.get("preset"), r.get("op"), r.get("batch") if r.get("op") == "train" else None))
        if base is None:
            continue
        speed = base["median"] / r["median"]
        dev = r.get("deviation")
        dev_s = f", max / mean |output - float32 eager| = {dev['max_abs']:.2g} / {dev['mean_abs']:.2g}" if dev else ""
        first = f", first call {r['first_call_s']:.1f} s" if r.get("first_call_s") else ""
        verdict = ("helps" if speed > 1.05 else ("no gain" if speed > 0.95 else "slower")) + _busy(r, base)
        lines.append(
            f"- {PRESETS[r['preset']].title} {label(r)} on {device}: {r['median']:.2f} s vs {base['median']:.2f} s "
            f"float32 eager = {speed:.2f}x speed-up ({verdict}){first}{dev_s}"
        )
    for r in results:
        if r.get("error") and is_variant(r):
            lines.append(f"- {PRESETS[r['preset']].title} {label(r)}: failed: {r['error']}")
    lines.append(
        "- Numerics unchanged: checked by the golden-fixture tests (`pytest tests/test_hcflow_golden.py`), not here"
    )
    return lines


def markdown_report(results: Sequence[dict], calib: dict | None, info: dict, meta: dict, table: list[list[str]]) -> str:
    threads = meta.get("threads")
    lines = [
        "# flowsr benchmarks",
        "",
        "Generated by `flowsr bench` (`flowsr/bench/`); regenerate this file with",
        "",
        "```",
        "python -m flowsr.bench --all --markdown docs/benchmarks-presets.md",
        "```",
        "",
    ]
    if _contended(results):
        lines += [
            "> **Taken while other jobs were running on this machine** "
            f"(other processes used up to {max(r.get('others_cpu') or 0 for r in results):.2f} cores' worth of "
            "CPU during the timed calls; see the *others' CPU* column): these timings are inflated and noisy. "
            "Re-run the command above on an idle machine for the real numbers.",
            "",
        ]
    if meta.get("note"):
        lines += [f"> **Note.** {meta['note']}", ""]
    lines += [
        "## Setup",
        "",
        *setup_lines(info, meta),
        f"- Device {meta['device']}, {threads} torch threads (`torch.set_num_threads`), float32 unless marked "
        f"bf16 (autocast) or compile (`torch.compile`)",
        f"- Method: {meta['warmup']} warm-up call(s), then {meta['repeats']} timed calls: median (min-max); "
        "each row runs in a fresh process (peak = that process's `ru_maxrss`, Python + torch runtime "
        "included; CUDA: `max_memory_allocated`); FLOPs of one call from `torch.utils.flop_counter` "
        "(conv/matmul only, 1 MAC = 2 FLOP, backward included for training); *% conv peak* = achieved "
        "GFLOP/s over the 3x3-conv throughput below; *others' CPU* = cores' worth of CPU used by other "
        "processes during the timed calls (0 = idle machine); *s / MP* = seconds per megapixel of HR output",
        "- Inputs: 160x160 HR crops (butterfly at (48, 48) with its 40x40 bicubic LR; face 16.png with "
        "its 20x20 LR), batch 1 (training: batch as marked); heats 0.9 (x4 SR), 0.8 (x8), 1.0 (rescaling)",
        "- Weights: random, non-trivial, numerically like a trained net (`flowsr.bench.make_nontrivial`: "
        "1x1-conv weights += N(0, 0.05^2) as the official measurements, ActNorms data-initialised on the "
        "input crop, zero-initialised layers drawn for 0.1 output std (SRFlow 0.01), other zero parameters "
        "N(0, 0.01^2)); timings do not depend on the values. Training: Adam, forward + backward + step. "
        "*samples*: N diverse samples of one LR in one batched call (LR-only features computed once); "
        "*samples_repeat*: the same with the LR repeated N times (the old way, for the gain); "
        "*bf16-features*: bf16 autocast of the conditioning networks only (RRDB features / SRFlow encoder), "
        "the flow in float32",
        "",
        "## Convolution / GEMM throughput (same run)",
        "",
        "Peak GFLOP/s (fastest call) measured at the start and at the end of the run; the better of the "
        "two is the reference of the *% conv peak* column.",
        "",
        format_table(
            ["kernel", "at start", "at end", "used"],
            [
                [k, *(f"{c[k]:.0f}" if k in c else "-" for c in _pad2(meta.get("calibrations"))), f"{v:.0f}"]
                for k, v in (calib or {}).items()
            ]
            or [["(not measured)", "-", "-", "-"]],
            markdown=True,
        ),
        "",
        "## Results",
        "",
        format_table(COLUMNS, table, markdown=True),
        "",
        "## Targets",
        "",
        *targets(results, meta["device"]),
        "",
        "## Reading the numbers",
        "",
        "- *samples* vs *samples_repeat*: the deepest level's conditioning features depend only on the LR "
        "image, so `HierarchicalFlow.decode` computes them once per LR and expands them over the N samples "
        "(bit-identical to decoding each sample alone in float64, `tests/test_diverse_sampling.py`). The "
        "saving is that feature network's share of the FLOPs: large for HCFlow SR x4 (LR 40x40 features), "
        "small for x8 (20x20), none for SRFlow (whose `sample` already encodes the LR once) and IRN (nothing "
        "depends on the LR alone).",
        "- *% conv peak* can exceed 100%: the reference is a 64 -> 64 3x3 convolution, while most of the "
        "models' FLOPs are in RRDB convolutions with 96-192 input channels, which run faster per FLOP.",
        "- Deviations of variants: for inference rows max / mean |output - float32 eager output| (images "
        "clamped to [0, 1]); for training rows |loss - float32 loss| in bits per pixel, which for these "
        "untrained SR models is dominated by the LR term (sigma = e^-6), so a change of the LR branch shows "
        "up strongly and a change of the conditioning features may vanish below float32 resolution.",
        "- `torch.compile` rows include nothing of the compilation in the timed calls; the first call "
        "(compilation) is listed in the targets above.",
        "",
    ]
    return "\n".join(lines) + "\n"


def _pad2(calibrations) -> list[dict]:
    calibrations = list(calibrations or [])
    return (calibrations + [{}, {}])[:2]


def _fmt_loads(v) -> str:
    return "-" if not v else " / ".join(f"{x:.2f}" for x in v)


def setup_lines(info: dict, meta: dict) -> list[str]:
    """The Markdown lines of a report's setup: command, date, machine, software, load averages."""
    isa = info.get("dnnl_max_cpu_isa")
    return [
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']} (run took {meta['elapsed_s'] / 60:.1f} min)",
        f"- Machine: {info['cpu']}"
        + (f" ({info['isa']})" if info.get("isa") else "")
        + f", {info['cores']} logical cores ({info['usable_cores']} usable)"
        + (f", {info['memory_gib']:.0f} GiB RAM" if info.get("memory_gib") else "")
        + (f", GPU {info['cuda']}" if info.get("cuda") else ""),
        f"- Software: torch {info['torch']}, Python {info['python']}, oneDNN (mkldnn) {info['mkldnn']}"
        + (f", DNNL_MAX_CPU_ISA={isa}" if isa else "")
        + f"; {info['platform']}",
        f"- Load averages (1/5/15 min) at start {_fmt_loads(meta.get('load_start'))}, "
        f"at end {_fmt_loads(meta.get('load_end'))}",
    ]


def command_line() -> str:
    """How this process was started, as a ``flowsr bench`` / ``python -m flowsr.bench`` command line."""
    argv = sys.argv[1:]
    prog = "flowsr bench" if Path(sys.argv[0]).name in ("flowsr", "__main__.py") else "python -m flowsr.bench"
    if argv and argv[0] == "bench":
        argv = argv[1:]
    return " ".join([prog, *map(shlex.quote, argv)])
