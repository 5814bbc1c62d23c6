"""The ``flowsr`` argument parser: the top level and one sub-parser per command module.

Each command module (:mod:`flowsr.cli.sr`, ...) has ``add_parser(sub, common)`` and ``run(args)``.
Building the parser imports no torch (``flowsr --help`` answers in a fraction of a second); the
commands import what they need when they run.
"""

from __future__ import annotations

import argparse

from flowsr.cli import bench, convert, demo, info, rescale, sr, test, train
from flowsr.cli.base import PROG, Parser
from flowsr.cli.modelref import bundled_names
from flowsr.cli.options import common_options

__all__ = ["COMMANDS", "build_parser"]

#: The command modules, in the order ``flowsr --help`` lists them.
COMMANDS = (sr, rescale, convert, info, test, train, demo, bench)


def _description() -> str:
    names = ", ".join(bundled_names()) or "none installed"
    return f"""\
Conditional normalizing flows (HCFlow, SRFlow, IRN) for image super-resolution and rescaling.

Start here:
  flowsr demo                         rescale and super-resolve the bundled sample images
  flowsr sr photo.png -m hcflow_sr_x4_demo              (writes results/photo_t0_s0.png, ...)
  flowsr rescale photo.png -m hcflow_rescaling_x4_demo  (writes results/photo_lr.png, photo_rec.png)
  flowsr <command> --help             options and examples of one command

Models (-m): a bundled model name, 'flowsr info --list' lists them:
  {names}
or a flowsr checkpoint (.safetensors: weights + architecture). Official HCFlow / SRFlow / IRN
.pth files are converted once with 'flowsr convert'. Inputs are never written; existing outputs
are replaced only with --overwrite; a batch goes on past a bad image. Errors are one line
'flowsr: error: ...' with exit status 2 (add --debug for a traceback)."""


def build_parser() -> argparse.ArgumentParser:
    """The whole ``flowsr`` parser (``args.func(args)`` runs the chosen command)."""
    parser = Parser(prog=PROG, description=_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    common = common_options(Parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.add_parser(sub, [common])
    return parser


def _version() -> str:
    import flowsr

    return getattr(flowsr, "__version__", "unknown")
