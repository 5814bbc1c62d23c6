"""``flowsr train``: train a model from a recipe (a YAML file or a bundled recipe name)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowsr.cli.base import command
from flowsr.cli.console import say
from flowsr.cli.errors import CLIError

__all__ = ["add_parser", "config_path", "recipe_path", "run", "train_api"]

HELP = "Train a model from a recipe (resumes automatically from its run folder)"

EPILOG = """\
CONFIG is a recipe YAML file or the name of a bundled recipe (flowsr/recipes/<name>.yaml, e.g.
hcflow_rescaling_x4_tiny): model, data, losses, optimiser, schedule (docs/training.md). The run
folder (runs/<recipe name> unless --run-dir or train.run_dir) receives the log, a CSV of the losses,
TensorBoard events, curves.png and checkpoints/ (iter_*.safetensors weights with *.pt training
state, best.safetensors by the validation metric). Running the same command again resumes from the
latest checkpoint; when train.iterations is reached it does nothing. The *_tiny recipes run on a
CPU in minutes.

Examples:
  flowsr train hcflow_rescaling_x4_tiny --iterations 2
  flowsr train my_recipe.yaml --set train.iterations=1000 --set data.batch_size=8
  flowsr test my_recipe.yaml      # evaluates the run's best checkpoint"""


def add_parser(sub, parents: list) -> argparse.ArgumentParser:
    p = command(sub, "train", HELP, EPILOG, parents)
    p.add_argument("config", metavar="CONFIG", help="recipe YAML file or bundled recipe name")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.iterations=100 (repeatable)",
    )
    p.add_argument("--run-dir", default=None, metavar="DIR", help="run folder (default: train.run_dir or runs/<name>)")
    p.add_argument(
        "--iterations", type=int, default=None, metavar="N", help="train up to iteration N (= --set train.iterations=N)"
    )
    p.set_defaults(func=run)
    return p


def train_api():
    """:class:`flowsr.train.Trainer`, or ``None`` when this installation has no training engine."""
    try:
        from flowsr.train import Trainer
    except ImportError:
        return None
    return Trainer


def recipe_path(name: str) -> Path | None:
    """The bundled recipe called ``name`` (:func:`flowsr.data.recipe_path`), or ``None``."""
    from flowsr.data.recipes import recipe_path as find

    try:
        return find(name)
    except FileNotFoundError:
        return None


def config_path(config: str) -> Path:
    """The recipe file ``config`` names (a file or a bundled recipe name), checked to be a text file."""
    from flowsr.runs import file_kind

    p = Path(config)
    if not p.exists():
        found = recipe_path(config)
        if found is None:
            raise CLIError(f"config not found: {config} (neither a file nor a bundled recipe name)")
        return found
    kind = file_kind(p)
    if kind in ("image", "binary", "special") or p.is_dir():
        what = {"image": "an image", "special": "not a regular file"}.get(kind, "not a text file")
        raise CLIError(f"{config} is {what}, not a YAML recipe")
    return p


def run(args: argparse.Namespace) -> int:
    trainer_cls = train_api()
    if trainer_cls is None:
        raise CLIError("training isn't available in this installation of flowsr (flowsr.train is missing)")
    config = config_path(args.config)
    overrides = list(args.set or [])
    if args.iterations is not None:
        if args.iterations < 0:
            raise CLIError(f"--iterations must be >= 0, got {args.iterations}")
        overrides.append(f"train.iterations={args.iterations}")
    trainer = trainer_cls(config, overrides=overrides or None, run_dir=args.run_dir)
    trainer.run()
    ckpt = trainer.run_dir / "checkpoints"
    say(f"checkpoints in {ckpt}; evaluate: flowsr test {args.config} --checkpoint {ckpt / 'best.safetensors'}")
    return 0
