"""``main``: parse the command line, run the command, turn every failure into one line.

Exit status: 0 on success; 2 on an error (``flowsr: error: <what>`` on stderr, the traceback too
with ``--debug``) or when some images of a batch failed; 130 on Ctrl-C. A reader of stdout that
goes away (``flowsr ... | head``) ends the output quietly.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Sequence

from flowsr.cli.console import handle_broken_pipe, say
from flowsr.cli.errors import CLIError, one_line
from flowsr.cli.options import setup_torch
from flowsr.cli.parser import build_parser

__all__ = ["main"]

PROG = "flowsr"
#: Commands that print how long they took.
_TIMED = ("test", "demo")


def _message(err: BaseException) -> str:
    if isinstance(err, CLIError):
        return str(err)
    if isinstance(err, OSError) and err.strerror and err.filename:  # not "[Errno 13] ...": what and where
        return f"{err.strerror}: {err.filename}"
    if isinstance(err, (ValueError, OSError, FloatingPointError)):  # library errors already say what and where
        return one_line(err)
    train_errors = sys.modules.get("flowsr.train.errors")  # loaded if training raised (no import here)
    if train_errors is not None and isinstance(err, train_errors.TrainingError):
        return one_line(err)
    return f"{type(err).__name__}: {one_line(err)}"


def _parse(argv: list[str]):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "bench_delegate", False):
        args.bench_argv = extra  # parsed by the benchmark's own parser (flowsr.cli.bench)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowsr`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    status = _main(list(sys.argv[1:] if argv is None else argv))
    try:  # flush now: a pipe that closed must not print an error at interpreter exit
        sys.stdout.flush()
    except BrokenPipeError:
        handle_broken_pipe()
    except (OSError, ValueError):  # pragma: no cover - stdout already closed
        pass
    return status


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        args = _parse(argv)
        debug = debug or getattr(args, "debug", False)
        if getattr(args, "command", None) is None:
            raise CLIError(
                "no command given; try 'flowsr --help' (commands: sr, rescale, convert, info, test, train, demo, bench)"
            )
        setup_torch(getattr(args, "threads", None))
        start = time.perf_counter()
        status = args.func(args)
        if args.command in _TIMED:
            say(f"done in {time.perf_counter() - start:.1f} s")
        return int(status or 0)
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away: stop quietly
        handle_broken_pipe()
        return 0
    except Exception as err:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {' '.join(_message(err).split())}", file=sys.stderr)
        return 2
