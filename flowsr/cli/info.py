"""``flowsr info``: what a checkpoint holds, or (``--list``) which models come with flowsr."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowsr.cli.base import command
from flowsr.cli.console import say
from flowsr.cli.errors import CLIError, one_line
from flowsr.cli.modelref import bundled_dir, load_model

__all__ = ["add_parser", "bundled_models", "run"]

HELP = "Show a model's family, scale, parameter count, architecture spec and metadata; --list: the bundled models"

EPILOG = """\
MODEL is a bundled model name, a flowsr .safetensors file or a model folder (model.safetensors
and its card). --list prints the bundled models: name, task, scale, the card's title and where
the file is.

Examples:
  flowsr info --list
  flowsr info hcflow_sr_x4_demo
  flowsr info model.safetensors --json"""

_TASKS = {"sr": "super-resolution", "rescaling": "rescaling"}


def add_parser(sub, parents: list) -> argparse.ArgumentParser:
    p = command(sub, "info", HELP, EPILOG, parents)
    p.add_argument("checkpoint", nargs="?", default=None, metavar="MODEL", help="bundled name, file or model folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--list", action="store_true", help="list the bundled models")
    p.set_defaults(func=run)
    return p


def bundled_models() -> list[dict]:
    """``[{"name", "task", "scale", "family", "title", "path", "card"}, ...]`` of the bundled models
    (``flowsr.data.bundled_models`` with each file's task and scale)."""
    from flowsr.data import bundled_models as entries
    from flowsr.models.checkpoint import model_info

    out = []
    for entry in entries():
        try:
            info = model_info(entry.path)
        except Exception as err:  # noqa: BLE001 - a broken installation: say so in the list
            info = {"family": "?", "task": "?", "scale": 0, "error": one_line(err)}
        card = str(entry.card) if entry.card is not None else None
        out.append({"name": entry.name, **info, "title": entry.title, "path": str(entry.path), "card": card})
    return out


def _list(as_json: bool) -> int:
    models = bundled_models()
    if as_json:
        say(json.dumps(models, indent=2))
        return 0
    if not models:
        say(f"no bundled models in {bundled_dir()}")
        return 0
    for m in models:
        task = _TASKS.get(m["task"], m["task"])
        say(f"{m['name']}: {task} x{m['scale']} ({m['family']}){' - ' + m['title'] if m['title'] else ''}")
        say(f"    {m['path']}" + (f" (card: {Path(m['card']).name})" if m["card"] else ""))
    for m in models[:2]:
        command = "sr" if m["task"] == "sr" else "rescale"
        say(f"use one with -m NAME, e.g. flowsr {command} photo.png -m {m['name']}")
    return 0


def run(args: argparse.Namespace) -> int:
    import yaml

    from flowsr.models.checkpoint import read_metadata

    if args.list:
        return _list(args.json)
    if args.checkpoint is None:
        raise CLIError("give a model (a bundled name, a .safetensors file or a folder), or --list")
    model, path = load_model(args.checkpoint)
    meta = read_metadata(path)
    config = json.loads(meta["config"])
    spec = config.pop("spec", None)
    n_params = sum(p.numel() for p in model.parameters())
    extra = {k: v for k, v in meta.items() if k not in ("format", "family", "task", "scale", "config")}
    if args.json:
        info = {
            "path": str(path),
            "family": model.family,
            "task": model.task,
            "scale": int(model.scale),
            "parameters": n_params,
            "options": config,
            "spec": spec,
            "metadata": extra,
        }
        say(json.dumps(info, indent=2))
        return 0
    size = path.stat().st_size
    say(f"checkpoint: {path} ({size / 2**20:.1f} MiB, {meta['format']})")
    say(f"family:     {model.family} ({_TASKS[model.task]})")
    say(f"scale:      x{model.scale}")
    say(f"parameters: {n_params:,}")
    for k, v in config.items():
        say(f"{k + ':':11} {v}")
    for k, v in extra.items():
        say(f"{k + ':':11} {v if len(str(v)) <= 200 else str(v)[:200] + ' ...'}")
    say("spec:")
    say("  " + yaml.safe_dump(spec, sort_keys=False).rstrip().replace("\n", "\n  "))
    return 0
