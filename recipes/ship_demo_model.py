"""Ship a trained run as a bundled demo model: ``flowsr/data/models/<name>.safetensors`` + ``<name>.md``.

    python recipes/ship_demo_model.py RUN_DIR NAME [--temperatures "0 1"] [--note TEXT]

Takes the run's latest checkpoint (the last iteration, never ``best``: the demo images are what
the model is judged on, so nothing may be picked on them), adds the ``recipe`` and
``demo_temperatures`` metadata, evaluates it on the demo's images exactly as ``flowsr demo`` does,
and writes the model card from what the run recorded (config, iterations, logged time, machine).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flowsr.bench import machine_info  # noqa: E402
from flowsr.data.catalog import format_front_matter  # noqa: E402
from flowsr.demo import IMAGE_SETS, bundled_models_dir, rescaling_pairs, sr_pairs  # noqa: E402
from flowsr.evaluate import COLUMNS, evaluate_rescaling, evaluate_sr, markdown_table, summarize  # noqa: E402
from flowsr.models.checkpoint import load, read_metadata, save  # noqa: E402


def _training_time(run: Path) -> tuple[float, str, str, int]:
    """Seconds of training (sum of the logged intervals), first and last log time, segments."""
    seconds, previous = 0.0, 0
    for row in csv.DictReader(open(run / "log.csv")):  # one row per logged interval, each with its rate
        if not row.get("it_per_s"):  # a validation row: no training interval
            continue
        it = int(row["iteration"])
        seconds += (it - previous) / float(row["it_per_s"])
        previous = it
    log = (run / "train.log").read_text()
    stamps = re.findall(r"^\[([0-9-]+ [0-9:]+)\]", log, flags=re.M)
    segments = log.count("] training ")
    return seconds, stamps[0], stamps[-1], segments


#: The card's metrics: (column key, hub metric type), for every mean row that has the column.
_CARD_METRICS = (("psnr_y", "psnr"), ("ssim_y", "ssim"), ("psnr", "psnr"), ("ssim", "ssim"), ("lr_psnr_y", "psnr"))


def front_matter(model, name: str, recipe: str, temperatures: list[float], mean: list[dict], what: str) -> dict:
    """The card's YAML front matter (model-hub conventions): identity, the facts of the checkpoint,
    and every mean metric of the card's table as ``model-index`` results (tests/test_model_files.py
    checks that both agree)."""
    sr = model.task == "sr"
    metrics = []
    for row in mean:
        for key, kind in _CARD_METRICS:
            value = row.get(key)
            if isinstance(value, float) and value == value:  # not NaN
                digits = 2 if kind == "psnr" else 4
                name = f"{COLUMNS[key]} ({row['method']})"
                metrics.append({"type": kind, "name": name, "value": round(value, digits)})
    return {
        "license": "mit",
        "library_name": "flowsr",
        "pipeline_tag": "image-to-image",
        "tags": ["flowsr", "normalizing-flow", "hcflow", "super-resolution" if sr else "image-rescaling"],
        "datasets": ["scikit-image-sample-images"],
        "metrics": ["psnr", "ssim"],
        "base_recipe": recipe,
        "flowsr": {
            "weights": f"{name}.safetensors",
            "family": model.family,
            "task": "super-resolution" if sr else "rescaling",
            "scale": int(model.scale),
            "parameters": sum(p.numel() for p in model.parameters()),
            "recipe": f"flowsr/recipes/{recipe}.yaml",
            "demo_temperatures": temperatures,
            "evaluation_data": what,
        },
        "model-index": [
            {
                "name": name,
                "results": [
                    {
                        "task": {
                            "type": "image-super-resolution" if sr else "image-rescaling",
                            "name": f"Image super-resolution x{model.scale}" if sr
                            else f"Image rescaling x{model.scale} (downscale, 8-bit LR, upscale)",
                        },
                        "dataset": {"type": "flowsr-demo-images", "name": f"flowsr demo images: {what}"},
                        "metrics": metrics,
                    }
                ],
            }
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--temperatures", default=None, help='demo temperatures, e.g. "0 0.8" (default: the demo\'s)')
    ap.add_argument("--note", default="", help="extra paragraph for the model card")
    ap.add_argument("--out", type=Path, default=None, help="default: flowsr/data/models")
    args = ap.parse_args()

    run = args.run
    cfg = yaml.safe_load(open(run / "config.yaml"))
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    weights = run / "checkpoints" / latest["weights"]
    meta = read_metadata(weights)
    model = load(weights).eval()
    task = model.task
    temps = args.temperatures or ("1" if task == "rescaling" else "0 0.8")
    recipe = cfg.get("name") or meta.get("recipe")

    out_dir = args.out or bundled_models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{args.name}.safetensors"
    extra = {"recipe": recipe, "iteration": meta.get("iteration", "?"), "demo_temperatures": temps}
    save(model, target, extra=extra)

    temperatures = [float(t) for t in temps.split()]
    torch.manual_seed(0)
    sets = IMAGE_SETS["reference"]  # the cards report on these (`flowsr demo --images reference`)
    if task == "rescaling":
        rows = evaluate_rescaling(model, rescaling_pairs(sets), temperatures=temperatures, seed=0)
        what = "every bundled HR image of the reference sets (Set5 butterfly + six CelebA-HQ faces), none trained on"
    else:
        pairs, what = sr_pairs(int(model.scale), sets)
        rows = evaluate_sr(model, pairs, temperatures=temperatures, samples=3, seed=0)
    mean = summarize(rows)

    seconds, first, last, segments = _training_time(run)
    nparams = sum(p.numel() for p in model.parameters())
    machine = machine_info()
    t, d = cfg["train"], cfg["data"]
    temps_arg = "" if args.temperatures is None else f' --temperatures "{temps}"'
    facts = {
        "recipe": f"`flowsr/recipes/{recipe}.yaml` (the run's full config: below)",
        "data": f"`{d.get('hr_dir') or d.get('samples')}` ({d.get('source')}), random {d['patch_size']}x"
        f"{d['patch_size']} HR crops, batch {d['batch_size']}, LR {d.get('lr') or 'files'}",
        "iterations": f"{extra['iteration']} (the last one is shipped, not a checkpoint picked on the "
        "evaluation images)",
        "training time": f"{seconds / 60:.0f} min of training steps (logged); {first} to {last} wall clock "
        f"in {segments} segment(s)",
        "machine": f"{machine['cpu']}, {machine['cores']} cores, {t.get('threads')} torch thread(s), other jobs "
        f"on the same CPU; torch {machine['torch']}, Python {machine['python']}",
        "command": f"`flowsr train {recipe} --run-dir runs/{recipe}` then "
        f"`python recipes/ship_demo_model.py runs/{recipe} {args.name}{temps_arg}`",
        "file": f"`{target.name}`, float32 safetensors; metadata `recipe`, `iteration`, "
        f"`demo_temperatures` = `{temps}`",
    }
    table = "\n".join(f"| {k} | {v} |" for k, v in facts.items())
    meta_card = front_matter(model, args.name, recipe, temperatures, mean, what)
    meta_card["flowsr"]["iterations"] = int(extra["iteration"])
    title = f"{args.name}: {model.family} x{model.scale}, {nparams:,} parameters, {extra['iteration']} iterations"
    card = format_front_matter(meta_card) + f"""# {title}

Trained by flowsr's own recipe `flowsr/recipes/{recipe}.yaml`; `flowsr demo` uses it.

| | |
|---|---|
{table}

{args.note}

## Results on the demo images

{what}; 8-bit images, border crop = scale; written {datetime.now():%Y-%m-%d} by `recipes/ship_demo_model.py`.
`flowsr demo --images reference` prints the same numbers.

{markdown_table(mean)}
## Config

```yaml
{yaml.safe_dump(cfg, sort_keys=False).strip()}
```
"""
    target.with_suffix(".md").write_text(card)
    print(markdown_table(mean))
    print(f"wrote {target} and {target.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
