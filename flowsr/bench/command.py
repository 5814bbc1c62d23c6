"""``flowsr bench``'s command line: arguments, the plan of measurements, the run and its report.

Without ``--official`` it measures flowsr alone (absolute numbers, GFLOP/s, % of the measured
convolution peak, peak memory; :mod:`flowsr.bench.measure`). With ``--official PATH`` it runs the
side-by-side comparison with the official code (:mod:`flowsr.bench.sidebyside`), the only source
of "flowsr / official" ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flowsr.bench.measure import DEFAULT_OPS, OPS, run_job, worker_main
from flowsr.bench.presets import FULL_PRESETS, PRESETS, available_presets
from flowsr.bench.report import COLUMNS, command_line, fmt_load, label, markdown_report, rows, targets
from flowsr.bench.system import format_table, loadavg, machine_info

DESCRIPTION = (
    "Speed, FLOP efficiency and peak memory of the model presets; with --official, side by side with the "
    "official code (outputs checked to agree, timings interleaved in one process)"
)

__all__ = ["DESCRIPTION", "add_arguments", "add_parser", "command_line", "main", "plan", "run"]


def plan(args) -> list[dict]:
    """The list of measurements (jobs) an argument namespace asks for.

    ``--all`` adds, after each HCFlow preset's rows, ``samples_repeat`` (the baseline of the
    shared-feature sampling) and, for HCFlow SR x4, the issue's batch-4 training step, the
    variants (bf16 autocast of everything / of the conditioning networks only, channels-last,
    ``torch.compile``) and the tiled 512 -> 2048 decode.
    """
    amp = None if args.amp in (None, "none") else args.amp
    base = {
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "samples": args.samples,
        "batch": args.train_batch,
        "seed": args.seed,
        "amp": amp,
        "compile": bool(args.compile),
        "channels_last": bool(args.channels_last),
        "flops": not args.no_flops,
    }
    tiled = {"op": "tiled", "repeats": 1, "warmup": 0, "flops": False}
    presets = list(args.preset or [])
    if args.all and not presets:
        presets = list(FULL_PRESETS)
    if not presets:
        presets = ["hcflow_sr_x4"]
    avail = available_presets(presets)
    ops = list(args.ops or DEFAULT_OPS)
    cuda = str(args.device).startswith("cuda")
    jobs: list[dict] = []
    for name in presets:
        if avail[name] is not None:
            jobs.append({**base, "preset": name, "op": "-", "skip": avail[name]})
            continue
        for op in ops:
            if op == "tiled" and not PRESETS[name].tiled_lr:
                continue
            jobs.append({**base, "preset": name, "op": op, **(tiled if op == "tiled" else {})})
        if not args.all:
            continue
        if PRESETS[name].shares_lr_features and "samples" in ops and "samples_repeat" not in ops:
            jobs.append({**base, "preset": name, "op": "samples_repeat"})
        if name != "hcflow_sr_x4":
            continue
        if base["batch"] != 4:
            jobs.append({**base, "preset": name, "op": "train", "batch": 4})
        plain = {"amp": None, "compile": False, "channels_last": False}
        if not (amp or args.compile or args.channels_last):
            variants = [
                ("decode", {"amp": "bf16"}),
                ("decode", {"amp": "bf16-features"}),
                ("decode", {"channels_last": True}),
                ("decode", {"compile": True}),
                ("samples", {"amp": "bf16-features"}),
                ("train", {"amp": "bf16"}),
                ("train", {"amp": "bf16-features"}),
            ]
            if cuda:
                variants.append(("train", {"compile": True}))
            jobs += [{**base, **plain, "preset": name, "op": op, **v} for op, v in variants]
        if "tiled" not in ops:
            jobs.append({**base, "preset": name, **tiled})
    return jobs


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on an ``argparse`` sub-parser collection (``flowsr bench``)."""
    p = subparsers.add_parser(
        "bench",
        help="Benchmark the model presets (time, GFLOP/s, peak memory); side by side with the official code",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  flowsr bench --official ~/HCFlow ~/SRFlow ~/IRN --rounds 5 --markdown docs/benchmarks.md\n"
            "  flowsr bench --official ~/HCFlow --preset hcflow_sr_x4 --quick\n"
            "  flowsr bench --all --markdown docs/benchmarks-presets.md\n"
            "  flowsr bench --preset hcflow_sr_x4 --ops decode samples --repeats 5\n"
            "  flowsr bench --preset tiny_hcflow_sr --repeats 1 --warmup 0   # seconds\n"
            "  flowsr bench --preset hcflow_sr_x4 --ops decode train --device cuda --amp bf16 --compile"
        ),
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's arguments, on ``p``."""
    p.add_argument(
        "--preset",
        action="append",
        choices=sorted(PRESETS),
        help="preset to measure (repeatable; default hcflow_sr_x4)",
    )
    p.add_argument("--all", action="store_true", help="every full preset, plus the extra rows of docs/benchmarks.md")
    p.add_argument("--ops", nargs="+", choices=OPS, default=None, help=f"operations (default: {' '.join(DEFAULT_OPS)})")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, as the official timings)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--samples", "-n", type=int, default=8, help="N of the diverse-samples operation (default 8)")
    p.add_argument("--train-batch", type=int, default=1, help="batch of the training step (default 1)")
    p.add_argument(
        "--amp",
        choices=("none", "bf16", "bf16-features"),
        default=None,
        help="bf16 autocast for every row: of everything, or of the conditioning networks only (the flow in float32)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile every measured function")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (weights and inputs)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and latents")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP counting pass")
    p.add_argument("--calib-seconds", type=float, default=1.0, help="time per throughput kernel (default 1 s)")
    p.add_argument("--in-process", action="store_true", help="no fresh process per row (faster; peak RSS not isolated)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per row before giving up")
    p.add_argument("--markdown", metavar="FILE", default=None, help="also write a Markdown report")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the raw results as JSON")
    p.add_argument("--note", default=None, help="a sentence added to the Markdown report's header")
    p.add_argument(
        "--from-json", metavar="FILE", default=None, help="measure nothing: re-render the report of a --json file"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    g = p.add_argument_group("side by side with the official code (flowsr.bench.sidebyside)")
    g.add_argument(
        "--official",
        metavar="PATH",
        nargs="+",
        action="extend",
        default=None,
        help="checkout(s) of the official HCFlow, SRFlow or IRN repository (repeatable): time flowsr and the "
        "official network interleaved in this process, on the same weights and inputs, after checking that "
        "their outputs agree; the only source of 'flowsr / official' ratios",
    )
    g.add_argument(
        "--rounds", type=int, default=7, help="interleaved A/B rounds per row (default 7; use at least 5 for a report)"
    )
    g.add_argument("--quick", action="store_true", help="3 rounds, for iterating (not for reports)")
    g.add_argument(
        "--rerun-busy",
        action="store_true",
        help="measure again the rows taken while other processes used the CPU (> 0.25 cores); both runs are reported",
    )
    g.add_argument("--tolerance", type=float, default=1e-5, help="largest max-abs deviation that counts as agreement")


def run(args) -> int:
    """Run the benchmark described by ``args`` (see :func:`add_parser`); prints the table."""
    if getattr(args, "official", None) or _side_by_side_json(args):
        from flowsr.bench.sidebyside import measure_all
        from flowsr.bench.sidebyside_report import run_report

        return run_report(args, measure_all)
    if getattr(args, "from_json", None):
        data = json.loads(Path(args.from_json).read_text())
        meta = data["meta"]
        meta.update({k: tuple(v) for k, v in meta.items() if k.startswith("load_") and v})
        return _report(data["results"], data["calibration"], data["machine"], meta, args)
    started = time.perf_counter()
    meta = {
        "command": getattr(args, "command_line", None) or command_line(),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load_start": loadavg(),
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "note": args.note,
    }
    info = machine_info()
    jobs = plan(args)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"flowsr bench: {len(jobs)} measurements on {args.device}, {args.threads} threads; {info['cpu']}")
    calib_job = {
        "op": "calibrate",
        "device": args.device,
        "threads": args.threads,
        "amp": "bf16" if args.all else None,  # also measure the bf16 convolution
        "calib_seconds": args.calib_seconds,
    }
    calibrations = [_calibration(calib_job, args, say, "at start")]
    results = []
    for job in jobs:
        if job.get("skip"):
            results.append(job)
            say(f"  {job['preset']}: skipped ({job['skip']})")
            continue
        res = run_job(job, args.in_process, args.timeout)
        results.append(res)
        if res.get("error"):
            say(f"  {job['preset']} {label(job)}: ERROR {res['error']}")
        else:
            say(
                f"  {job['preset']} {label(res)}: {res['median']:.3f} s (min {res['min']:.3f}, max {res['max']:.3f}), "
                f"peak {res.get('gpu_peak_mib') or res.get('peak_rss_mib') or 0:.0f} MiB, "
                f"load {fmt_load(res.get('load_before'))}->{fmt_load(res.get('load_after'))}, "
                f"others' CPU {res.get('others_cpu', float('nan')):.2f}"
            )
    calibrations.append(_calibration(calib_job, args, say, "at end"))
    # the machine's throughput: the better of the two (a busy machine lowers one of them)
    calib = {k: max(c.get(k, 0.0) for c in calibrations) for c in calibrations for k in c} or None
    meta["calibrations"] = calibrations
    meta["load_end"] = loadavg()
    meta["elapsed_s"] = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "machine": info, "calibration": calib, "results": results}, indent=1)
        )
    return _report(results, calib, info, meta, args)


def _side_by_side_json(args) -> bool:
    path = getattr(args, "from_json", None)
    return bool(path) and "side_by_side" in json.loads(Path(path).read_text())


def _report(results: list[dict], calib: dict | None, info: dict, meta: dict, args) -> int:
    for r in results:
        for key in ("load_before", "load_after"):
            if r.get(key):
                r[key] = tuple(r[key])
    table = rows(results, calib)
    print()
    print(format_table(COLUMNS, table, markdown=False))
    print()
    for line in targets(results, args.device):
        print(line)
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown_report(results, calib, info, meta, table))
        if not args.quiet:
            print(f"wrote {path}")
    return 1 if any(r.get("error") for r in results) else 0


def _calibration(job: dict, args, say, when: str) -> dict[str, float]:
    res = run_job(job, args.in_process, args.timeout)
    calib = res.get("calibration") or {}
    if calib:
        say(f"throughput {when}: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in calib.items()))
    else:
        say(f"throughput calibration {when} failed: {res.get('error')}")
    return calib


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flowsr.bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1])
    parser = argparse.ArgumentParser(prog="python -m flowsr.bench", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python -m flowsr.bench", *map(shlex.quote, argv)])
    return run(args)
