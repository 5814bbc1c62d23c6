"""The ``flowsr`` command: super-resolve, rescale, convert, inspect, evaluate, train, demo, bench.

Run ``flowsr --help`` or ``flowsr <command> --help``; ``python -m flowsr`` is the same command.
The reference is ``docs/cli.md``. :func:`main` takes the argument list (``None``: ``sys.argv``)
and returns the exit status: 0 on success, 2 on any error, which is reported as one line
``flowsr: error: ...`` on stderr (``--debug`` shows the traceback instead).

One module per command (:mod:`~flowsr.cli.sr`, :mod:`~flowsr.cli.rescale`,
:mod:`~flowsr.cli.convert`, :mod:`~flowsr.cli.info`, :mod:`~flowsr.cli.test`,
:mod:`~flowsr.cli.train`, :mod:`~flowsr.cli.demo`, :mod:`~flowsr.cli.bench`), each with
``add_parser`` and ``run``; shared pieces: :mod:`~flowsr.cli.options` (common options and their
checks), :mod:`~flowsr.cli.inputs` (input files), :mod:`~flowsr.cli.plan` (output names and the
never-overwrite checks), :mod:`~flowsr.cli.batch` (continuing past bad images),
:mod:`~flowsr.cli.images` (reading and writing images), :mod:`~flowsr.cli.modelref` (model names
and loading), :mod:`~flowsr.cli.console` (output, progress bars), :mod:`~flowsr.cli.parser` and
:mod:`~flowsr.cli.app` (``main``). Importing this package does not import torch.
"""

from __future__ import annotations

from flowsr.cli.app import main
from flowsr.cli.convert import official_presets
from flowsr.cli.errors import CLIError
from flowsr.cli.parser import build_parser
from flowsr.cli.train import train_api

__all__ = ["CLIError", "build_parser", "main", "official_presets", "train_api"]
