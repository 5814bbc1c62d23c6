"""The ``flowsr`` command: super-resolve, rescale, convert, inspect, evaluate, train, demo.

Run ``flowsr --help`` or ``flowsr <command> --help``; ``python -m flowsr`` is the same command.
The reference is ``docs/cli.md``. :func:`main` takes the argument list (``None``: ``sys.argv``)
and returns the exit status: 0 on success, 2 on any error, which is reported as one line
``flowsr: error: ...`` on stderr (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "CLIError"]

PROG = "flowsr"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class CLIError(Exception):
    """A user-facing error: printed as one line ``flowsr: error: <message>``, exit status 2."""


class _UsageError(CLIError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) that :func:`main` reports like every other error."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description/epilog layout; appends "(default: X)" where a default is worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and default is not None
            and default is not False
            and default is not argparse.SUPPRESS
            and action.option_strings
            and action.nargs != 0
        ):
            shown = (
                " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
                if isinstance(default, list)
                else default
            )
            text += f" (default: {shown})"
        return text


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if not text:
        text = type(err).__name__
    if isinstance(err, (MemoryError,)) or type(err).__name__ == "OutOfMemoryError":
        text = f"out of memory ({text}); try --tile 128 (or smaller)"
    return text


# -- shared helpers ---------------------------------------------------------------------------------


def _setup_torch(args) -> None:
    import torch

    threads = getattr(args, "threads", None)
    if threads:
        torch.set_num_threads(int(threads))


def _device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise CLIError(f"unknown device {name!r} ({_one_line(err)})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def load_checkpoint(path: str | os.PathLike, device="cpu"):
    """A flowsr model from a ``.safetensors`` checkpoint, with one-line :class:`CLIError` on failure."""
    from flowsr.models import load

    p = Path(path)
    if not p.exists():
        raise CLIError(f"checkpoint not found: {path}")
    if p.is_dir():
        raise CLIError(f"checkpoint {path} is a directory, not a .safetensors file")
    try:
        return load(p, device=device)
    except Exception as err:  # safetensors, JSON, spec and state-dict errors all mean "bad checkpoint"
        hint = ""
        if p.suffix.lower() in (".pth", ".pt", ".ckpt"):
            hint = "; official .pth checkpoints must be converted first: flowsr convert OFFICIAL.pth --config ..."
        raise CLIError(f"cannot load checkpoint {path}: {_one_line(err)}{hint}") from None


def _collect_images(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise CLIError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {item}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise CLIError(f"no such file or folder: {item}")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise CLIError(f"two inputs are named {f.stem!r} ({stems[f.stem]} and {f}); their outputs would collide")
        stems[f.stem] = f
    return files


def _read_image(path: Path):
    from flowsr.data import read_image

    try:
        return read_image(path)
    except ValueError as err:
        msg = str(err)
        raise CLIError(msg[len("read_image: ") :] if msg.startswith("read_image: ") else msg) from None


def _model_channels(model) -> int:
    spec = model.spec
    return int(getattr(spec, "in_channels", None) or spec.flow.in_channels)


def _for_model(img, model, path):
    """``(3, H, W)`` from :func:`read_image` -> ``(1, C, H, W)`` with the model's channel count."""
    channels = _model_channels(model)
    if channels == 3:
        return img[None]
    if channels == 1:
        if not (img[0] == img[1]).all() or not (img[0] == img[2]).all():
            raise CLIError(f"{path}: the model takes grey (1-channel) images, this image has colour")
        return img[None, :1]
    raise CLIError(f"{path}: the model takes {channels}-channel images; flowsr reads images as RGB")


def _check_size(img, path, minimum: int = 1) -> None:
    h, w = img.shape[-2:]
    if h < minimum or w < minimum:
        raise CLIError(f"{path}: image is {w}x{h}, too small (at least {minimum}x{minimum} pixels)")


def _check_positive(value, name: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise CLIError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _t_str(t: float) -> str:
    return f"{t:g}"


def _write(path: Path, img) -> Path:
    from flowsr.data import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, img)


def _size(t) -> str:
    return f"{t.shape[-1]}x{t.shape[-2]}"


# -- sr ---------------------------------------------------------------------------------------------


def cmd_sr(args) -> int:
    import torch

    from flowsr.inference import super_resolve

    _check_options(args)
    files = _collect_images(args.images)
    device = _device(args.device)
    model = load_checkpoint(args.checkpoint, device)
    if model.task != "sr":
        raise CLIError(
            f"{args.checkpoint} is a rescaling model ({model.family}): use 'flowsr rescale HR_IMAGES' "
            "(it upscales the LR images it makes itself)"
        )
    out = Path(args.out)
    for path in files:
        img = _read_image(path)
        lr = _for_model(img, model, path).to(device)
        written = 0
        for t in args.temperature:
            gen = torch.Generator().manual_seed(args.seed)  # same noise at every temperature
            for k in range(args.samples):
                hr = super_resolve(model, lr, t, gen, tile=args.tile, overlap=args.overlap)
                _write(out / f"{path.stem}_t{_t_str(t)}_s{k}.png", hr[0].cpu())
                written += 1
        print(
            f"{path.name}: {_size(lr)} -> {lr.shape[-1] * model.scale}x{lr.shape[-2] * model.scale}, "
            f"{written} image(s) -> {out}/{path.stem}_t*_s*.png"
        )
    return 0


def _check_options(args) -> None:
    for t in getattr(args, "temperature", None) or []:
        _check_positive(t, "--temperature", allow_zero=True)
    if getattr(args, "samples", 1) < 1:
        raise CLIError(f"--samples must be >= 1, got {args.samples}")
    if getattr(args, "tile", None) is not None and args.tile < 1:
        raise CLIError(f"--tile must be >= 1, got {args.tile}")
    if getattr(args, "overlap", 0) < 0:
        raise CLIError(f"--overlap must be >= 0, got {args.overlap}")


# -- rescale ----------------------------------------------------------------------------------------


def cmd_rescale(args) -> int:
    import torch

    from flowsr.evaluate import bicubic_down, bicubic_up, format_value, image_quality
    from flowsr.inference import downscale, upscale
    from flowsr.metrics import psnr

    args.temperature = [args.temperature]
    _check_options(args)
    files = _collect_images(args.images)
    device = _device(args.device)
    model = load_checkpoint(args.checkpoint, device)
    if model.task != "rescaling":
        raise CLIError(f"{args.checkpoint} is an SR model ({model.family}), not a rescaling model: use 'flowsr sr'")
    scale = int(model.scale)
    t = args.temperature[0]
    out = Path(args.out)
    for path in files:
        img = _read_image(path)
        x = _for_model(img, model, path).to(device)
        gen = torch.Generator().manual_seed(args.seed)
        if args.mode == "up":
            hr = upscale(model, x, t, gen, tile=args.tile and max(1, args.tile // scale), overlap=args.overlap)
            dst = _write(out / f"{path.stem}_up.png", hr[0].cpu())
            print(f"{path.name}: LR {_size(x)} -> HR {_size(hr)} (T={_t_str(t)}) -> {dst}")
            continue
        _check_size(x, path)
        lr = downscale(model, x, tile=args.tile, overlap=args.overlap * scale)  # 8-bit values
        lr_path = _write(out / f"{path.stem}_LR.png", lr[0].cpu())
        if args.mode == "down":
            print(f"{path.name}: HR {_size(x)} -> LR {_size(lr)} -> {lr_path}")
            continue
        rec = upscale(model, lr, t, gen, tile=args.tile and max(1, args.tile // scale), overlap=args.overlap)
        rec = rec[..., : x.shape[-2], : x.shape[-1]]
        rec_path = _write(out / f"{path.stem}_HR.png", rec[0].cpu())
        hr_cpu, rec_cpu = x[0].cpu(), rec[0].cpu()
        if hr_cpu.shape[0] == 3:
            q = image_quality(rec_cpu, hr_cpu, scale)
            lr_bic = bicubic_down(hr_cpu, scale)
            q_bic = image_quality(bicubic_up(lr_bic, scale, hr_cpu.shape[-2:]), hr_cpu, scale)
            lr_q = psnr(lr[0].cpu(), lr_bic) if lr.shape[-2:] == lr_bic.shape[-2:] else math.nan
            f = format_value
            print(f"{path.name}: HR {_size(x)} -> LR {_size(lr)} -> HR {_size(rec)} (T={_t_str(t)})")
            print(
                f"  reconstruction PSNR {f('psnr', q['psnr'])} dB, Y-PSNR {f('psnr', q['psnr_y'])} dB "
                f"(bicubic down+up: {f('psnr', q_bic['psnr'])} dB, {f('psnr', q_bic['psnr_y'])} dB); "
                f"LR vs bicubic LR: {f('psnr', lr_q)} dB"
            )
            print(f"  wrote {lr_path}, {rec_path}")
        else:
            print(f"{path.name}: reconstruction PSNR {format_value('psnr', psnr(rec_cpu, hr_cpu))} dB -> {rec_path}")
    return 0


# -- convert ----------------------------------------------------------------------------------------


def official_presets() -> dict[str, dict]:
    """``{"converter:name": official options}`` for every preset of the registered converters."""
    from flowsr.convert import official_presets as presets

    return presets()


def _official_options(config: str) -> tuple[dict, str]:
    """Official options from a YAML/JSON file or a preset name; returns ``(options, description)``."""
    p = Path(config)
    if p.is_file():
        text = p.read_text()
        try:
            if p.suffix.lower() == ".json":
                opt = json.loads(text)
            else:
                import yaml

                opt = yaml.safe_load(text)
        except Exception as err:
            raise CLIError(f"cannot parse {config}: {_one_line(err)}") from None
        if not isinstance(opt, dict) or "network_G" not in opt:
            raise CLIError(f"{config}: expected the official options (a mapping with 'network_G', 'scale', ...)")
        return opt, p.name
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


def cmd_convert(args) -> int:
    from flowsr.convert import load_official
    from flowsr.models import save

    src = Path(args.official)
    if not src.is_file():
        raise CLIError(f"official checkpoint not found: {args.official}")
    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise CLIError(f"--out must be a .safetensors file, got {args.out}")
    opt, source = _official_options(args.config)
    try:
        model = load_official(src, opt)
    except ValueError as err:
        raise CLIError(f"cannot convert {src.name}: {_one_line(err)}") from None
    extra = {"converted_from": src.name, "official_options": json.dumps(opt, sort_keys=True, default=str)}
    save(model, out, extra=extra)
    n = sum(p.numel() for p in model.parameters())
    print(f"{src.name} ({source}) -> {out}: {model.family}, x{model.scale}, {n:,} parameters")
    return 0


# -- info -------------------------------------------------------------------------------------------


def cmd_info(args) -> int:
    import yaml

    from flowsr.models.checkpoint import read_metadata

    model = load_checkpoint(args.checkpoint)
    meta = read_metadata(args.checkpoint)
    config = json.loads(meta["config"])
    spec = config.pop("spec", None)
    n_params = sum(p.numel() for p in model.parameters())
    extra = {k: v for k, v in meta.items() if k not in ("format", "family", "task", "scale", "config")}
    task = {"sr": "super-resolution", "rescaling": "rescaling"}

    if args.json:
        info = {
            "path": str(args.checkpoint),
            "family": model.family,
            "task": model.task,
            "scale": int(model.scale),
            "parameters": n_params,
            "options": config,
            "spec": spec,
            "metadata": extra,
        }
        print(json.dumps(info, indent=2))
        return 0
    size = Path(args.checkpoint).stat().st_size
    print(f"checkpoint: {args.checkpoint} ({size / 2**20:.1f} MiB, {meta['format']})")
    print(f"family:     {model.family} ({task[model.task]})")
    print(f"scale:      x{model.scale}")
    print(f"parameters: {n_params:,}")
    for k, v in config.items():
        print(f"{k + ':':11} {v}")
    for k, v in extra.items():
        print(f"{k + ':':11} {v if len(str(v)) <= 200 else str(v)[:200] + ' ...'}")
    print("spec:")
    print("  " + yaml.safe_dump(spec, sort_keys=False).rstrip().replace("\n", "\n  "))
    return 0


# -- test -------------------------------------------------------------------------------------------


def _is_checkpoint(path: Path) -> bool:
    if path.suffix.lower() == ".safetensors":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        return len(head) == 9 and head[8:9] == b"{"  # safetensors: 8-byte header length, then JSON
    except OSError:
        return False


def _pairs_from_dir(data: str, scale: int):
    """Test pairs from a folder (``HR/`` [+ ``LR/``] subfolders, or HR images) or a bundled set name."""
    from flowsr.data import SAMPLE_KINDS, sample_images
    from flowsr.evaluate import Pair

    p = Path(data)
    if not p.exists() and data in SAMPLE_KINDS:
        items = [(name, hr, lr) for name, hr, lr in sample_images(data)]
        use_lr = SAMPLE_KINDS[data] == scale
        return [Pair(n, _read_image(hr), _read_image(lr) if use_lr else None) for n, hr, lr in items]
    if not p.is_dir():
        raise CLIError(f"--data {data}: no such folder (or bundled set: {', '.join(SAMPLE_KINDS)})")
    hr_dir = p / "HR" if (p / "HR").is_dir() else p
    lr_dir = p / "LR" if (p / "LR").is_dir() else None
    hrs = _collect_images([str(hr_dir)])
    pairs = []
    for hr_path in hrs:
        hr = _read_image(hr_path)
        lr = None
        if lr_dir is not None:
            # same stem, or BasicSR's / DIV2K's "<stem>x<scale>" (e.g. 0801x4.png), as the trainer
            stems = (hr_path.stem, f"{hr_path.stem}x{scale}")
            cand = sorted(f for f in lr_dir.iterdir() if f.stem in stems and f.suffix.lower() in IMAGE_EXTENSIONS)
            if cand:
                lr = _read_image(cand[0])
                if lr.shape[-2:] != (hr.shape[-2] // scale, hr.shape[-1] // scale):
                    raise CLIError(
                        f"{cand[0]}: LR is {_size(lr)}, expected {hr.shape[-1] // scale}x{hr.shape[-2] // scale} "
                        f"for HR {_size(hr)} at x{scale} (remove LR/ to make bicubic LR images)"
                    )
        pairs.append(Pair(hr_path.stem, hr, lr))
    return pairs


def _pairs_from_config(cfg, scale: int):
    from flowsr.evaluate import Pair

    try:
        from flowsr.train.data import list_images
    except ImportError:
        raise CLIError("reading the test images from a config needs flowsr.train; give --data DIR") from None
    data = cfg.val.data if getattr(cfg.val, "data", None) is not None else cfg.data
    records = list_images(data, scale)
    return [Pair(r.name, _read_image(r.hr), _read_image(r.lr) if r.lr is not None else None) for r in records]


def _checkpoint_from_config(cfg) -> Path:
    """The run folder's ``checkpoints/best.safetensors``, else the latest periodic checkpoint's weights."""
    run = Path(cfg.run_dir())
    best = run / "checkpoints" / "best.safetensors"
    if best.is_file():
        return best
    try:
        from flowsr.train import latest_checkpoint
    except ImportError:
        latest_checkpoint = None
    state = latest_checkpoint(run) if latest_checkpoint is not None else None
    if state is not None and state.with_suffix(".safetensors").is_file():
        return state.with_suffix(".safetensors")
    found = sorted(run.glob("**/*.safetensors"), key=os.path.getmtime)
    if not found:
        raise CLIError(f"no checkpoint in the run folder {run} (train first, or give --checkpoint)")
    return found[-1]


def _lpips_model(args, device):
    from flowsr.metrics import LPIPS, lpips_available

    if not (args.lpips_alexnet or args.lpips_lin):
        return None, "LPIPS skipped (give --lpips-alexnet and --lpips-lin to compute it; nothing is downloaded)"
    ok, msg = lpips_available(args.lpips_alexnet, args.lpips_lin)
    if not ok:
        return None, msg
    try:
        return LPIPS(args.lpips_alexnet, args.lpips_lin).to(device), "LPIPS (AlexNet) computed"
    except ValueError as err:
        return None, f"LPIPS unavailable: {_one_line(err)}"


def cmd_test(args) -> int:
    from flowsr.evaluate import evaluate_rescaling, evaluate_sr, markdown_table, summarize, write_csv

    _check_options(args)
    target = Path(args.target)
    if not target.exists():
        raise CLIError(f"no such file: {args.target}")
    cfg = None
    if _is_checkpoint(target):
        ckpt = Path(args.checkpoint) if args.checkpoint else target
    else:
        try:
            from flowsr.train.config import load_config
        except ImportError:
            raise CLIError(f"{args.target} is not a flowsr checkpoint and configs need flowsr.train") from None
        cfg = load_config(target)
        ckpt = Path(args.checkpoint) if args.checkpoint else _checkpoint_from_config(cfg)
    device = _device(args.device)
    model = load_checkpoint(ckpt, device)
    scale = int(model.scale)
    task = model.task
    if args.data:
        pairs = _pairs_from_dir(args.data, scale)
    elif cfg is not None:
        pairs = _pairs_from_config(cfg, scale)
    else:
        raise CLIError(
            "give the test images with --data DIR (HR/ and optional LR/ subfolders, or a folder of HR images)"
        )
    if args.max_images:
        pairs = pairs[: args.max_images]
    for pair in pairs:
        if pair.hr is not None and min(pair.hr.shape[-2:]) < scale:
            raise CLIError(f"{pair.name}: HR image {_size(pair.hr)} is smaller than the scale x{scale}")
    out = Path(args.out)
    lpips, lpips_msg = _lpips_model(args, device)
    print(f"{ckpt}: {model.family} x{scale}, {len(pairs)} image(s); {lpips_msg}")
    temps = args.temperature
    if not temps and cfg is not None and getattr(cfg.val, "temperature", None) is not None:
        temps = [float(cfg.val.temperature)]
    temps = temps or ([0.0, 0.8] if task == "sr" else [1.0])
    common = dict(
        seed=args.seed,
        tile=args.tile,
        overlap=args.overlap,
        lpips=lpips,
        device=device,
        grid_dir=out / "grids",
        log=print,
    )
    if task == "sr":
        rows = evaluate_sr(model, pairs, temperatures=temps, samples=args.samples, nll=not args.no_nll, **common)
    else:
        rows = evaluate_rescaling(model, pairs, temperatures=temps, **common)
    mean = summarize(rows)
    table = markdown_table(mean + rows)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"# flowsr test: {ckpt.name}\n\n{model.family} x{scale}; {len(pairs)} image(s); temperatures "
        f"{', '.join(_t_str(t) for t in temps)}; samples {args.samples if task == 'sr' else 1}; seed {args.seed}; "
        f"PSNR/SSIM on 8-bit images, border {scale}, Y = BT.601; {lpips_msg}.\n\n"
    )
    (out / "metrics.md").write_text(header + table)
    write_csv(out / "metrics.csv", mean + rows)
    print(markdown_table(mean), end="")
    print(f"wrote {out / 'metrics.md'}, {out / 'metrics.csv'} and {len(pairs)} grid(s) in {out / 'grids'}")
    return 0


# -- train ------------------------------------------------------------------------------------------


def train_api():
    """:class:`flowsr.train.Trainer`, or ``None`` when this installation has no training engine."""
    try:
        from flowsr.train import Trainer
    except ImportError:
        return None
    return Trainer


def cmd_train(args) -> int:
    trainer_cls = train_api()
    if trainer_cls is None:
        raise CLIError("training isn't available in this installation of flowsr (flowsr.train is missing)")
    if not Path(args.config).is_file():
        raise CLIError(f"config not found: {args.config}")
    trainer = trainer_cls(args.config, overrides=args.set or None, run_dir=args.run_dir)
    trainer.run()
    ckpt = trainer.run_dir / "checkpoints"
    print(f"checkpoints in {ckpt}; evaluate: flowsr test {args.config} --checkpoint {ckpt / 'best.safetensors'}")
    return 0


# -- demo -------------------------------------------------------------------------------------------


def cmd_demo(args) -> int:
    from flowsr import demo

    return demo.run(
        out=Path(args.out),
        models_dir=Path(args.models) if args.models else None,
        device=_device(args.device),
        retrain=args.retrain,
        retrain_iterations=args.retrain_iterations,
        untrained=args.untrained,
        seed=args.seed,
        max_images=args.max_images,
        log=print,
    )


# -- parser -----------------------------------------------------------------------------------------

_MAIN_DESCRIPTION = """\
Conditional normalizing flows (HCFlow, SRFlow, IRN) for image super-resolution and rescaling.

Start here:
  flowsr demo                         rescale and super-resolve the bundled sample images
  flowsr sr photo.png --checkpoint model.safetensors --out results/
  flowsr rescale photo.png --checkpoint rescaling.safetensors --out results/
  flowsr <command> --help             options and examples of one command

Models are flowsr checkpoints (.safetensors: weights + architecture). Official HCFlow / SRFlow /
IRN .pth files are converted once with 'flowsr convert'. Errors are reported as one line
'flowsr: error: ...' with exit status 2 (add --debug for a traceback)."""

_SR_EPILOG = """\
Outputs: OUT/<name>_t<T>_s<k>.png for every input, temperature T and sample k = 0..N-1.
Temperature 0 gives the mean sample (smoothest, highest PSNR); 0.8-0.9 gives diverse samples
with realistic detail (lower PSNR, better perceptual quality). Sample k uses the same noise at
every temperature (one generator seeded with --seed per input and temperature), so results are
reproducible on any device.

Any image size works (the LR image is padded to the model's multiple and the output cropped).
For large images use --tile: the LR image is processed in overlapping tiles of S x S pixels,
blended with linear ramps, so memory stays bounded by the tile size (e.g. --tile 128 for a
512x512 LR on a small machine). Images: PNG, JPEG, BMP, TIFF; grey is replicated to RGB, alpha
is dropped, 16-bit is read at full precision.

Examples:
  flowsr sr lr.png --checkpoint hcflow_sr_x4.safetensors --out out/
  flowsr sr lr_folder/ --checkpoint m.safetensors --temperature 0 0.8 --samples 4 --out out/
  flowsr sr big.png --checkpoint m.safetensors --tile 128 --overlap 16 --out out/"""

_RESCALE_EPILOG = """\
Outputs: OUT/<name>_LR.png (the model's 8-bit LR image) and OUT/<name>_HR.png (the HR image
reconstructed from that 8-bit LR), and one line per image with the reconstruction PSNR (RGB and
Y, border = scale), the bicubic down+up PSNR for comparison, and the LR image's PSNR against the
bicubic LR. --mode down only writes the LR; --mode up treats the inputs as LR images made by the
model and writes OUT/<name>_up.png. --tile is in HR pixels (--overlap in LR pixels).

Examples:
  flowsr rescale photo.png --checkpoint hcflow_rescaling_x4.safetensors --out out/
  flowsr rescale out/photo_LR.png --mode up --checkpoint hcflow_rescaling_x4.safetensors --out out/"""

_CONVERT_EPILOG = """\
--config is the official options: the official test/train YAML (or JSON) with 'scale', 'quant'
(SR) and 'network_G', or the name of a preset. Presets (family:name; the name alone works when
unique): {presets}

Examples:
  flowsr convert SR_DF2K_X4_HCFlow++.pth --config SR_DF2K_4X --out hcflow_sr_x4.safetensors
  flowsr convert IRN_x4.pth --config irn:IRN_x4 --out irn_x4.safetensors
  flowsr convert model.pth --config test_SR_CelebA_8X_HCFlow.yml --out hcflow_face_x8.safetensors"""

_TEST_EPILOG = """\
Test images (--data): a folder with HR/ and optional LR/ subfolders (matched by file name),
a folder of HR images (LR images made with MATLAB-exact bicubic), or a bundled set name
(face_x8, general_x4). HR images are cropped to a multiple of the scale (as the official test).

Writes OUT/metrics.md and OUT/metrics.csv (per image and mean rows) and OUT/grids/<name>.png:
LR | bicubic | first sample at each temperature | HR (rescaling: bicubic LR | model LR |
bicubic up | reconstructions | HR); for SR with --samples >= 2 also the strip of samples at the
last temperature. Metrics: PSNR/SSIM on RGB and Y (BT.601) of 8-bit images with border = scale
(MATLAB-style SSIM), LR-PSNR (SR downscaled vs the LR; rescaling: model LR vs bicubic LR),
diversity over the samples, LPIPS with local weights, NLL in bits per pixel (SR).

CONFIG_OR_CHECKPOINT is a .safetensors checkpoint, or a training config (recipe YAML): then its
validation images are used unless --data is given, and the run folder's best checkpoint unless
--checkpoint is given.

Examples:
  flowsr test model.safetensors --data face_x8 --samples 4 --out test_out/
  flowsr test model.safetensors --data datasets/Set5 --temperature 0 0.9 --out test_out/"""

_TRAIN_EPILOG = """\
A recipe is a YAML file (see flowsr/recipes/ and docs/training.md): model, data, losses, optimiser,
schedule. The run folder (runs/<recipe name> unless --run-dir or train.run_dir) receives the log,
a CSV of the losses, TensorBoard events, curves.png and checkpoints/ (iter_*.safetensors weights
with *.pt training state, best.safetensors by the validation metric). Running the same command
again resumes from the latest checkpoint; when train.iterations is reached it does nothing.
The *_tiny.yaml recipes run on a CPU in minutes.

Examples:
  flowsr train flowsr/recipes/hcflow_rescaling_x4_tiny.yaml
  flowsr train flowsr/recipes/hcflow_sr_x4.yaml --set train.iterations=1000 --set data.batch_size=8
  flowsr test flowsr/recipes/hcflow_rescaling_x4_tiny.yaml      # evaluates the run's best checkpoint"""

_DEMO_EPILOG = """\
Rescales the bundled sample images (downscale, then upscale from the 8-bit LR) with the bundled
rescaling model and super-resolves the bundled LR images with the bundled SR model; prints
PSNR/SSIM next to bicubic down+up and writes comparison grids and metrics tables to --out.
Models come from flowsr/data/models/*.safetensors (each with a model card). Without bundled
models, or with --untrained, a freshly initialised tiny model is used and the output says so:
its numbers only show that the pipeline runs. --retrain first trains the models again with their
recipes (flowsr/recipes/hcflow_rescaling_x4_demo.yaml, flowsr/recipes/hcflow_sr_x4_demo.yaml; about an hour
each on 2 CPU cores) into OUT/runs/ and uses their last checkpoints.

Examples:
  flowsr demo                                   # or: make demo
  flowsr demo --out my_demo --device cuda
  flowsr demo --retrain                         # or: make demo-retrain
  flowsr demo --retrain --retrain-iterations 10 --max-images 1   # quick pipeline check"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=_MAIN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    common.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: torch's)")
    device = _Parser(add_help=False)
    device.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (CUDA / MPS when available, else CPU)"
    )
    tiling = _Parser(add_help=False)
    tiling.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="S",
        help="process in S x S tiles (sr: LR pixels, rescale: HR pixels; default: whole image)",
    )
    tiling.add_argument("--overlap", type=int, default=16, metavar="O", help="tile overlap in LR pixels")
    tiling.add_argument("--seed", type=int, default=0, help="seed of the latent noise")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name, help_, epilog, parents):
        return sub.add_parser(
            name, help=help_, description=help_ + ".", epilog=epilog, parents=parents, formatter_class=_Formatter
        )

    p = add(
        "sr",
        "Super-resolve LR images with an SR model (diverse samples at chosen temperatures)",
        _SR_EPILOG,
        [common, device, tiling],
    )
    p.add_argument("images", nargs="+", metavar="LR_IMAGE", help="LR image files or folders of images")
    p.add_argument("--checkpoint", "-c", required=True, help="flowsr SR model (.safetensors)")
    p.add_argument(
        "--temperature",
        "-t",
        type=float,
        nargs="+",
        default=[0.8],
        metavar="T",
        help="one or more sampling temperatures",
    )
    p.add_argument("--samples", "-n", type=int, default=1, metavar="N", help="samples per image and temperature")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    p.set_defaults(func=cmd_sr)

    p = add(
        "rescale",
        "Downscale HR images with a rescaling model and reconstruct them from the 8-bit LR",
        _RESCALE_EPILOG,
        [common, device, tiling],
    )
    p.add_argument("images", nargs="+", metavar="HR_IMAGE", help="HR image files or folders of images")
    p.add_argument("--checkpoint", "-c", required=True, help="flowsr rescaling model (.safetensors)")
    p.add_argument(
        "--temperature",
        "-t",
        type=float,
        default=1.0,
        metavar="T",
        help="temperature of the latent when upscaling (official: 1)",
    )
    p.add_argument(
        "--mode",
        choices=("both", "down", "up"),
        default="both",
        help="both: HR -> LR -> HR; down: HR -> LR only; up: LR (made by the model) -> HR",
    )
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    p.set_defaults(func=cmd_rescale)

    presets = ", ".join(sorted(official_presets()))
    p = add(
        "convert",
        "Convert an official HCFlow / SRFlow / IRN checkpoint (.pth) to a flowsr checkpoint",
        _CONVERT_EPILOG.format(presets=presets),
        [common],
    )
    p.add_argument("official", metavar="OFFICIAL.pth", help="the official checkpoint (read with weights_only=True)")
    p.add_argument("--config", required=True, metavar="OPT", help="official options: .yml/.yaml/.json file or a preset")
    p.add_argument("--out", "-o", required=True, metavar="OUT.safetensors", help="the flowsr checkpoint to write")
    p.set_defaults(func=cmd_convert)

    p = add(
        "info",
        "Show a checkpoint's family, scale, parameter count, architecture spec and metadata",
        "Example:\n  flowsr info model.safetensors\n  flowsr info model.safetensors --json",
        [common],
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="flowsr checkpoint (.safetensors)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)

    p = add(
        "test",
        "Evaluate a model on test images: metrics table (Markdown, CSV) and comparison grids",
        _TEST_EPILOG,
        [common, device, tiling],
    )
    p.add_argument("target", metavar="CONFIG_OR_CHECKPOINT", help="a .safetensors checkpoint or a training config")
    p.add_argument("--checkpoint", "-c", default=None, help="the checkpoint (overrides the config's run folder)")
    p.add_argument("--data", "-d", default=None, metavar="DIR", help="test images (see below)")
    p.add_argument(
        "--temperature",
        "-t",
        type=float,
        nargs="+",
        default=None,
        metavar="T",
        help="temperatures (default: 0 0.8 for SR, 1 for rescaling)",
    )
    p.add_argument(
        "--samples",
        "-n",
        type=int,
        default=1,
        metavar="N",
        help="SR samples per temperature (>= 2 for diversity and the sample strip)",
    )
    p.add_argument("--max-images", type=int, default=None, metavar="K", help="evaluate the first K images only")
    p.add_argument("--no-nll", action="store_true", help="skip the NLL (SR)")
    p.add_argument("--lpips-alexnet", default=None, metavar="PATH", help="torchvision AlexNet weights for LPIPS")
    p.add_argument("--lpips-lin", default=None, metavar="PATH", help="LPIPS v0.1 lin weights (alex.pth)")
    p.add_argument("--out", "-o", default="test_results", metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_test)

    p = add(
        "train",
        "Train a model from a recipe (resumes automatically from its run folder)",
        _TRAIN_EPILOG,
        [common],
    )
    p.add_argument("config", metavar="CONFIG", help="recipe YAML (see flowsr/recipes/)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.iterations=100 (repeatable)",
    )
    p.add_argument("--run-dir", default=None, metavar="DIR", help="run folder (default: train.run_dir or runs/<name>)")
    p.set_defaults(func=cmd_train)

    p = add("demo", "Run the README demo on the bundled images and models", _DEMO_EPILOG, [common, device])
    p.add_argument("--out", "-o", default="demo_out", metavar="DIR", help="output folder for grids and tables")
    p.add_argument("--models", default=None, metavar="DIR", help="folder of models (default: the bundled ones)")
    p.add_argument("--untrained", action="store_true", help="use freshly initialised tiny models (pipeline check)")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="first retrain the models with their recipes (flowsr/recipes/*_demo.yaml, about an hour each on 2 cores)",
    )
    p.add_argument(
        "--retrain-iterations", type=int, default=None, metavar="N", help="with --retrain: train N iterations only"
    )
    p.add_argument("--max-images", type=int, default=None, metavar="K", help="use the first K images of each part")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent noise")
    p.set_defaults(func=cmd_demo)

    from flowsr import bench  # flowsr bench: timings, FLOPs and memory of the presets

    bench.add_parser(sub)
    return parser


def _version() -> str:
    try:
        from flowsr import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowsr`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = debug or getattr(args, "debug", False)
        if getattr(args, "command", None) is None:
            raise CLIError(
                "no command given; try 'flowsr --help' (commands: sr, rescale, convert, info, test, train, demo, bench)"
            )
        _setup_torch(args)
        start = time.perf_counter()
        status = args.func(args)
        if getattr(args, "command", "") in ("test", "demo"):
            print(f"done in {time.perf_counter() - start:.1f} s")
        return int(status or 0)
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            traceback.print_exc()
        if isinstance(err, CLIError):
            message = str(err)
        elif isinstance(err, (ValueError, OSError)):  # library errors already say what and where
            message = _one_line(err)
        else:
            message = f"{type(err).__name__}: {_one_line(err)}"
        print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
