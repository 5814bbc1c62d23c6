"""``flowsr bench``: the benchmark (:mod:`flowsr.bench`), with the options every command shares.

``flowsr.bench`` defines its own arguments (its ``add_parser`` hook) and imports torch, so the
sub-parser is built only when ``bench`` runs: ``flowsr --help`` stays fast. The common options
(``--device``, ``--threads``, ``--debug``) then replace the benchmark's own, so they mean the
same as for the other commands.
"""

from __future__ import annotations

import argparse

from flowsr.cli.base import Parser
from flowsr.cli.options import add_common, add_device, resolve_device, setup_torch

__all__ = ["add_parser", "run"]

HELP = "Benchmark the model presets (time, GFLOP/s, peak memory); --official: side by side with the official code"


def add_parser(sub, parents: list) -> argparse.ArgumentParser:
    # A placeholder: its arguments are parsed by the benchmark's own parser in run().
    p = sub.add_parser("bench", help=HELP, add_help=False)
    p.set_defaults(func=run, bench_delegate=True)
    return p


class _Resolving(Parser):
    """Sub-parsers whose later options replace earlier ones of the same name (the common options
    replace the benchmark's ``--device`` / ``--threads``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)


def bench_parser() -> argparse.ArgumentParser:
    """``flowsr bench``'s full parser: the benchmark's arguments plus the common options."""
    from flowsr import bench

    top = Parser(prog="flowsr")
    sub = top.add_subparsers(dest="command", parser_class=_Resolving)
    p = bench.add_parser(sub)
    add_common(p)
    add_device(p)
    p.set_defaults(threads=None, device="auto")
    return top


def run(args: argparse.Namespace) -> int:
    argv = ["bench", *getattr(args, "bench_argv", [])]
    parser = bench_parser()
    ns = parser.parse_args(argv)
    for name in ("repeats", "samples", "train_batch", "calib_seconds", "timeout", "rounds", "tolerance"):
        value = getattr(ns, name, None)
        if value is not None and value <= 0:
            parser.error(f"argument --{name.replace('_', '-')}: must be > 0, got {value}")
    if getattr(ns, "warmup", 0) < 0:
        parser.error(f"argument --warmup: must be >= 0, got {ns.warmup}")
    setup_torch(ns.threads)
    ns.device = str(resolve_device(ns.device))
    return int(ns.func(ns) or 0)
