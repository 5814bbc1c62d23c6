"""``flowsr bench``: speed of the model presets, alone or side by side with the official code.

Two kinds of run:

* **Side by side** (``--official PATH ...``, :mod:`flowsr.bench.sidebyside`): for each preset an
  official checkout covers, the official network is built from the official options with the
  repository's own classes (:mod:`flowsr.bench.official`), given non-trivial weights, and its own
  state dict is converted into the flowsr model (:mod:`flowsr.convert`). Outputs are checked to
  agree on fixed latents, then both are timed in this process, interleaved A/B, on the same
  inputs, threads and weights. The "flowsr / official" ratios of ``docs/benchmarks.md`` come
  only from such a run (:mod:`flowsr.bench.sidebyside_report`).
* **flowsr alone** (:mod:`flowsr.bench.measure`, :mod:`flowsr.bench.report`): absolute time,
  FLOPs, GFLOP/s and % of a convolution peak measured in the same run, peak memory in a fresh
  process per row, bf16 / compile / channels-last variants; no ratio to the official code.

Usage::

    python -m flowsr.bench --official /path/HCFlow /path/SRFlow /path/IRN --rounds 5 --markdown docs/benchmarks.md
    python -m flowsr.bench --official /path/HCFlow --preset hcflow_sr_x4 --quick
    flowsr bench --preset hcflow_sr_x4 --ops decode samples      # flowsr alone

Weights are random but non-trivial and numerically like a trained network's
(:func:`~flowsr.bench.presets.make_nontrivial`). Timings never belong in the test suite:
``tests/test_bench*.py`` check that this runs and that the checks catch what they should.
"""

from __future__ import annotations

from flowsr.bench.command import DESCRIPTION, add_arguments, add_parser, main, plan, run
from flowsr.bench.measure import DEFAULT_OPS, OPS, run_measurement
from flowsr.bench.presets import FULL_PRESETS, PRESETS, Preset, available_presets, crop_inputs, make_nontrivial
from flowsr.bench.report import COLUMNS, rows, targets
from flowsr.bench.system import calibrate, count_flops, format_table, machine_info

__all__ = [
    "COLUMNS",
    "DEFAULT_OPS",
    "DESCRIPTION",
    "FULL_PRESETS",
    "OPS",
    "PRESETS",
    "Preset",
    "add_arguments",
    "add_parser",
    "available_presets",
    "calibrate",
    "count_flops",
    "crop_inputs",
    "format_table",
    "machine_info",
    "main",
    "make_nontrivial",
    "plan",
    "rows",
    "run",
    "run_measurement",
    "targets",
]
