"""``python -m flowsr.train RECIPE [--iterations N] [--run-dir DIR] [--set key=value ...]``: train from a recipe.

The entry point for ``torchrun`` (``torchrun --nproc_per_node 2 -m flowsr.train CONFIG``); the
``flowsr train`` command offers the same. Resumes automatically from the run folder.
"""

from __future__ import annotations

import argparse
import sys

from flowsr.train.errors import ConfigError, TrainingError
from flowsr.train.recipes import list_recipes
from flowsr.train.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowsr.train", description=__doc__.splitlines()[0])
    parser.add_argument(
        "config",
        metavar="RECIPE",
        help=f"a recipe YAML or the name of a bundled recipe ({', '.join(list_recipes())})",
    )
    parser.add_argument("--iterations", type=int, metavar="N", help="train up to iteration N (train.iterations)")
    parser.add_argument("--run-dir", help="run folder (default: train.run_dir or runs/<recipe name>)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.iterations=100 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.iterations is not None:
        overrides.append(f"train.iterations={args.iterations}")
    try:
        Trainer(args.config, overrides=overrides, run_dir=args.run_dir, quiet=args.quiet).run()
    except (ConfigError, TrainingError, OSError) as err:
        print(f"flowsr.train: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowsr.train: interrupted; run again to resume from the last checkpoint", file=sys.stderr)
        return 130
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
