"""``flowsr convert``: an official HCFlow / SRFlow / IRN checkpoint (.pth) -> a flowsr checkpoint."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from flowsr.cli.base import command
from flowsr.cli.console import say
from flowsr.cli.errors import CLIError, one_line
from flowsr.cli.inputs import path_problem

__all__ = ["add_parser", "official_options", "official_presets", "run"]

HELP = "Convert an official HCFlow / SRFlow / IRN checkpoint (.pth) to a flowsr checkpoint"

EPILOG = """\
--config is the official options: the official test/train YAML (or JSON) with 'scale', 'quant'
(SR) and 'network_G', or the name of a preset: family:name, the name alone when it is unique, e.g.
hcflow:SR_DF2K_4X, srflow:DF2K_4X, irn:IRN_x4. 'flowsr convert --list-presets' lists them all.

Examples:
  flowsr convert SR_DF2K_X4_HCFlow++.pth --config SR_DF2K_4X --out hcflow_sr_x4.safetensors
  flowsr convert IRN_x4.pth --config irn:IRN_x4 --out irn_x4.safetensors
  flowsr convert model.pth --config test_SR_CelebA_8X_HCFlow.yml --out hcflow_face_x8.safetensors"""


class _ListPresets(argparse.Action):
    """``--list-presets``: print the presets and exit (they come from the converters, i.e. torch)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        for name in sorted(official_presets()):
            say(name)
        parser.exit(0)


def add_parser(sub, parents: list) -> argparse.ArgumentParser:
    p = command(sub, "convert", HELP, EPILOG, parents)
    p.add_argument("official", metavar="OFFICIAL.pth", help="the official checkpoint (read with weights_only=True)")
    p.add_argument("--config", required=True, metavar="OPT", help="official options: .yml/.yaml/.json file or a preset")
    p.add_argument("--out", "-o", required=True, metavar="OUT.safetensors", help="the flowsr checkpoint to write")
    p.add_argument("--list-presets", action=_ListPresets, help="print the preset names and exit")
    p.set_defaults(func=run)
    return p


def official_presets() -> dict[str, dict]:
    """``{"converter:name": official options}`` for every preset of the registered converters."""
    from flowsr.convert import official_presets as presets

    return presets()


def _read_options_file(p: Path, config: str) -> dict:
    from flowsr.runs import file_kind

    kind = file_kind(p)
    if kind in ("image", "binary", "special"):
        what = {"image": "an image", "special": "not a regular file"}.get(kind, "not a text file")
        raise CLIError(f"--config {config} is {what}; expected the official options (YAML or JSON)")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            opt = json.loads(text)
        else:
            import yaml

            opt = yaml.safe_load(text)
    except Exception as err:  # noqa: BLE001 - any parser error: the file is not options
        raise CLIError(f"cannot parse {config}: {one_line(err)}") from None
    if not isinstance(opt, dict) or "network_G" not in opt:
        raise CLIError(f"{config}: expected the official options (a mapping with 'network_G', 'scale', ...)")
    return opt


def official_options(config: str) -> tuple[dict, str]:
    """Official options from a YAML/JSON file or a preset name; returns ``(options, description)``."""
    p = Path(config)
    if p.is_file() or (p.exists() and not p.is_dir()):
        return _read_options_file(p, config), p.name
    presets = official_presets()
    if config in presets:
        return presets[config], config
    matches = [k for k in presets if k.split(":", 1)[1] == config]
    if not matches:
        matches = [k for k in presets if k.lower() == config.lower() or k.split(":", 1)[1].lower() == config.lower()]
    if len(matches) == 1:
        return presets[matches[0]], matches[0]
    if len(matches) > 1:
        raise CLIError(f"preset {config!r} is ambiguous: {', '.join(matches)}")
    if p.suffix.lower() in (".yml", ".yaml", ".json") or os.sep in config:
        raise CLIError(f"config file not found: {config}")
    raise CLIError(f"--config {config!r} is neither a file nor a preset; presets: {', '.join(sorted(presets))}")


def run(args: argparse.Namespace) -> int:
    from flowsr.convert import load_official
    from flowsr.models import save

    src = Path(args.official)
    problem = path_problem(src)
    if problem == "does not exist":
        raise CLIError(f"official checkpoint not found: {args.official}")
    if problem:
        raise CLIError(f"official checkpoint {args.official} {problem}")
    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise CLIError(f"--out must be a .safetensors file, got {args.out}")
    if out.is_dir():
        raise CLIError(f"--out {args.out} is a folder")
    opt, source = official_options(args.config)
    try:
        model = load_official(src, opt)
    except ValueError as err:
        raise CLIError(f"cannot convert {src.name}: {one_line(err)}") from None
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise CLIError(
            f"cannot convert {src.name}: it holds non-finite weights (NaN or Inf in {len(bad)} tensors: {shown})"
        )
    extra = {"converted_from": src.name, "official_options": json.dumps(opt, sort_keys=True, default=str)}
    save(model, out, extra=extra)
    n = sum(p.numel() for p in model.parameters())
    say(f"{src.name} ({source}) -> {out}: {model.family}, x{model.scale}, {n:,} parameters")
    return 0
