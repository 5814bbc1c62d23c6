"""The training loop: :class:`Trainer` (``Trainer(config).run()``).

What one iteration ``i`` (1-based) does, as the official HCFlow code (hcflow-spec §6):

1. every learning-rate scheduler steps (so milestone ``m`` applies from iteration ``m`` on);
2. SR families (``hcflow_sr``, ``srflow``), when G is updated (``i % D_update_ratio == 0`` and
   ``i > D_init_iters``, or no GAN): (a) NLL step, (b) pixel step on the mean sample (heat
   ``hr_temperature``), (c) perceptual + GAN step on a sample at ``sample_temperature`` -- each
   its own ``backward``, clipping (``clip_grad_value_`` then ``clip_grad_norm_``) and Adam step;
   then, with a GAN, one discriminator step (``BCE(D(hr), 1) + BCE(D(sr), 0)``).
   Rescaling families: one step on the summed loss.
3. a loss that is not finite (on any process) skips that optimiser step: nothing is
   back-propagated, the gradients are zeroed, the event is counted (``skipped``) and logged; a
   non-finite gradient norm skips the step the same way. Checkpoints are only written from
   finite parameters.

Determinism: all randomness of iteration ``i`` (data order, crops, flips, dequantisation noise,
latents) is drawn from generators seeded by ``(seed, i, what)`` for the whole global batch and
then sliced to this process's part. A resumed run therefore repeats an uninterrupted one
exactly, and ``N`` data-parallel processes compute the same losses as one process on the same
global batch (up to float rounding of the gradient average).

Data-parallel training: launch with ``torchrun --nproc_per_node N`` (``WORLD_SIZE > 1``);
the process group is initialised here (NCCL on CUDA, Gloo on CPU) unless it already is. Only
rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import re
import sys
import time
import warnings
import zlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn

from flowsr.fileio import atomic_write
from flowsr.layers.actnorm import ActNorm, skip_data_init
from flowsr.models import checkpoint as model_checkpoint
from flowsr.models.base import GeneratorNoise, NonFiniteOutputError, get_family
from flowsr.train.build import build_model
from flowsr.train.config import (
    ConfigError,
    TrainingConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)
from flowsr.train.data import PatchDataset, StepBatchSampler, ValDataset, collate, make_train_loader
from flowsr.train.losses import GANLoss, PerceptualLoss, VGGDiscriminator, pixel_loss

__all__ = ["Trainer", "StepNoise", "TrainingError", "latest_checkpoint"]

STATE_FORMAT = "flowsr-train/1"
_CKPT_RE = re.compile(r"^iter_(\d+)\.pt$")

# Tags of the per-iteration random streams (StepNoise).
_DEQUANT, _PIXEL, _SAMPLE, _RESCALE, _IRN, _VAL = 1, 2, 3, 4, 5, 6
#: the stream of each named draw (families name theirs; fixed numbers keep runs reproducible)
_TAGS = {"dequant": _DEQUANT, "pixel": _PIXEL, "sample": _SAMPLE, "rescale": _RESCALE, "irn": _IRN}


def _tag(name: str | int) -> int:
    if isinstance(name, int):
        return name
    return _TAGS.get(name, 0x100 + zlib.crc32(name.encode()) % 0xFFFF)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a checkpoint does not match the configuration)."""


# -- randomness ------------------------------------------------------------------------------


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global numpy RNG is what third-party code uses
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state() -> dict:
    """The global RNG states as plain containers and tensors (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])


class StepNoise:
    """The random tensors of one iteration.

    Each draw is made for the whole global batch on the CPU from a generator seeded with
    ``(seed, iteration, tag)`` and then sliced to ``slots`` (this process's samples) and moved
    to ``device``, so it is the same whatever the device, the number of processes or where
    the run was resumed.
    """

    def __init__(
        self, seed: int, step: int, batch: int, slots: range, device: torch.device, dtype: torch.dtype = torch.float32
    ):
        self.seed, self.step, self.batch, self.slots, self.device = seed, step, batch, slots, device
        self.dtype = dtype

    def _generator(self, tag: str | int) -> torch.Generator:
        return torch.Generator().manual_seed(_derive_seed(self.seed, 0x5EED, self.step, _tag(tag)))

    def _slice(self, t: Tensor) -> Tensor:
        return t[self.slots.start : self.slots.stop].to(self.device, self.dtype)

    def uniform(self, tag: str | int, shape: Sequence[int]) -> Tensor:
        """``U[0, 1)`` of per-sample ``shape``."""
        return self._slice(torch.rand((self.batch, *shape), generator=self._generator(tag)))

    def normal(self, tag: str | int, shapes: Sequence[Sequence[int]], temperature: float) -> list[Tensor]:
        """``N(0, temperature^2)`` tensors of the per-sample ``shapes`` (zeros at temperature 0)."""
        if temperature == 0:
            return [torch.zeros((len(self.slots), *s), device=self.device, dtype=self.dtype) for s in shapes]
        g = self._generator(tag)
        return [self._slice(torch.randn((self.batch, *s), generator=g)) * temperature for s in shapes]


# -- the module that DDP wraps ---------------------------------------------------------------


class _Generator(nn.Module):
    """Routes every gradient-carrying model call through ``forward`` (what DDP needs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.model, method)(*args, **kwargs)


def _sample_latent_shapes(model: nn.Module, lr_hw: Sequence[int]) -> list[tuple[int, ...]]:
    return [tuple(s[1:]) for s in model.latent_shapes(lr_hw, 1)]


# -- small file helpers ------------------------------------------------------------------------


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The training-state ``.pt`` of the newest complete checkpoint of a run folder, or ``None``.

    ``checkpoints/latest.json`` names it (written last, atomically, after the weights and the
    state); without it (or if its files are gone) the highest ``iter_N.pt`` whose weights exist.
    """
    ckdir = Path(run_dir) / "checkpoints"
    if not ckdir.is_dir():
        return None
    pointer = ckdir / "latest.json"
    if pointer.is_file():
        with contextlib.suppress(ValueError, KeyError, OSError):
            info = json.loads(pointer.read_text())
            state, weights = ckdir / info["state"], ckdir / info["weights"]
            if state.is_file() and weights.is_file():
                return state
    found = []
    for p in ckdir.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.with_suffix(".safetensors").is_file():
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


# -- the trainer -------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("config: train.device is 'cuda' but no CUDA device is available")
        return torch.device(f"cuda:{local_rank}")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config: train.device {name!r} is not a device") from None


def _init_distributed(device_name: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = device_name != "cpu" and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return _Dist()


def _finite(x: float) -> bool:
    return math.isfinite(x)


class Trainer:
    """Train a flowsr model from a :class:`~flowsr.train.config.TrainingConfig`.

    Args:
        config: a config object, or the path of a recipe YAML.
        overrides: dotted-key overrides applied to a YAML config (``["train.iterations=10"]``).
        run_dir: overrides ``train.run_dir`` (default ``runs/<name>``).
        quiet: no log lines on stderr (the log file, CSV, TensorBoard and plot are still written).

    ``Trainer(...)`` builds everything and, with ``train.resume: auto``, loads the run folder's
    latest checkpoint; :meth:`run` trains up to ``train.iterations`` and returns the per-iteration
    records of this call (dicts of floats: ``iteration``, ``lr``, ``loss``, each loss term,
    ``skipped``). Attributes: ``model`` (the bare model), ``iteration`` (last completed),
    ``run_dir``.
    """

    def __init__(
        self,
        config: TrainingConfig | str | os.PathLike,
        *,
        overrides: dict | list | None = None,
        run_dir: str | os.PathLike | None = None,
        quiet: bool = False,
    ):
        if not isinstance(config, TrainingConfig):
            config = load_config(config, overrides)
        elif overrides:
            from flowsr.train.config import apply_overrides

            config = config_from_dict(apply_overrides(config_to_dict(config), overrides))
        self.cfg = cfg = config.validate()
        self.quiet = quiet
        self.dist = _init_distributed(cfg.train.device)
        self.device = _resolve_device(cfg.train.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.family = cfg.model.family
        self.is_sr = get_family(self.family).task == "sr"

        seed_everything(cfg.train.seed)
        self.dtype = getattr(torch, cfg.train.dtype)
        self.model = build_model(cfg.model).to(self.device, self.dtype)
        if cfg.model.actnorm_init == "none":
            skip_data_init(self.model)
        elif cfg.model.actnorm_init == "latent":
            for level in self.model.flow.levels:
                skip_data_init(level.body)
        self.model.train()
        self.scale = int(self.model.scale)
        self._ddp_g: nn.Module | None = None  # DDP wrapper, made in run()
        self._g = _Generator(self.model)

        losses = cfg.losses
        self.hr_temperature = (
            losses.hr_temperature if losses.hr_temperature is not None else (0.0 if self.is_sr else 1.0)
        )
        self.perceptual = None
        if losses.perceptual > 0:
            if not losses.perceptual_weights:
                raise ConfigError("config: losses.perceptual > 0 needs losses.perceptual_weights (a local VGG19 file)")
            self.perceptual = PerceptualLoss(losses.perceptual_weights, losses.perceptual_criterion)
            self.perceptual = self.perceptual.to(self.device, self.dtype)
        self.disc = self.gan_loss = None
        if losses.gan > 0:
            size = cfg.discriminator.input_size or cfg.data.patch_size
            if size is None:
                raise ConfigError("config: losses.gan > 0 needs discriminator.input_size (or data.patch_size)")
            self.disc = VGGDiscriminator(3, cfg.discriminator.nf, size).to(self.device, self.dtype).train()
            if self.dist.enabled and self.device.type == "cuda":
                self.disc = nn.SyncBatchNorm.convert_sync_batchnorm(self.disc)
            self.gan_loss = GANLoss(losses.gan_type)
        self._ddp_d: nn.Module | None = None

        o = cfg.optim
        self.g_params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(
            self.g_params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
        )
        milestones = cfg.milestones()
        self.sched_g = torch.optim.lr_scheduler.MultiStepLR(self.opt_g, milestones, gamma=o.gamma)
        self.opt_d = self.sched_d = None
        if self.disc is not None:
            d = cfg.discriminator
            self.opt_d = torch.optim.Adam(
                self.disc.parameters(), lr=d.lr, betas=tuple(d.betas), weight_decay=d.weight_decay
            )
            self.sched_d = torch.optim.lr_scheduler.MultiStepLR(self.opt_d, milestones, gamma=o.gamma)

        self.train_set = PatchDataset(cfg.data, self.scale, cfg.train.seed)
        self.val_set = None
        if cfg.val.every and cfg.val.data is not None:
            multiple = self.scale * self.model.lr_multiple
            self.val_set = ValDataset(cfg.val.data, self.scale, multiple, cfg.val.max_images)

        self.iteration = 0
        self.loss_ema: float | None = None
        self.best: dict | None = None  # {"metric", "value", "iteration"}
        self.skipped_total = 0
        self.terms = self._term_names()
        self._writer = None
        self._window: list[dict] = []
        self._last_saved = -1
        self._resumed_from: Path | None = None
        self._resume()

    # -- configuration-derived ----------------------------------------------------------------
    def _term_names(self) -> list[str]:
        l = self.cfg.losses
        names = list(self.model.loss_terms(self._loss_weights()))
        if not self.is_sr:
            return names
        names += [n for n in ("hr_l1", "hr_l2", "perceptual") if getattr(l, n)]
        if l.gan:
            names += ["gan_g", "d_real", "d_fake"]
        return names

    def _loss_weights(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg.losses)

    @property
    def world_batch_slots(self) -> range:
        b = self.cfg.data.batch_size // self.dist.world
        return range(self.dist.rank * b, (self.dist.rank + 1) * b)

    # -- logging ----------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """A line in ``train.log`` (rank 0) and, unless quiet, on stderr."""
        if not self.dist.main:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "train.log", "a") as f:
            f.write(line + "\n")
        if not self.quiet:
            if self._bar is not None:
                self._bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr, flush=True)

    _bar = None

    def _csv_columns(self) -> list[str]:
        return ["iteration", "lr", "loss", *self.terms, "skipped", "grad_norm", "time_s", "it_per_s"]

    def _open_writer(self) -> None:
        if not (self.dist.main and self.cfg.log.tensorboard) or self._writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as err:  # noqa: BLE001 - tensorboard is optional
            self.log(f"TensorBoard logging off ({type(err).__name__}: {err})")
            self.cfg.log.tensorboard = False
            return
        self._writer = SummaryWriter(os.fspath(self.run_dir / "tensorboard"), purge_step=self.iteration + 1)

    def _truncate_csv(self) -> None:
        """Drop CSV rows past the resumed iteration (written after the last checkpoint)."""
        path = self.run_dir / "log.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        if header != self._csv_columns():  # a different configuration: keep the old log aside
            os.replace(path, path.with_suffix(f".before_{self.iteration}.csv"))
            return
        kept = [r for r in body if r and int(float(r[0])) <= self.iteration]
        if len(kept) != len(body):

            def write(tmp: str) -> None:
                with open(tmp, "w", newline="") as f:
                    w = csv.writer(f, lineterminator="\n")
                    w.writerow(header)
                    w.writerows(kept)

            atomic_write(path, write)

    def _write_row(self, row: dict) -> None:
        path = self.run_dir / "log.csv"
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            if new:
                w.writerow(self._csv_columns())
            w.writerow([repr(row[c]) if isinstance(row.get(c), float) else row.get(c, "") for c in self._csv_columns()])

    def read_log(self) -> list[dict]:
        """The rows of ``log.csv`` as dicts of floats."""
        path = self.run_dir / "log.csv"
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in rows]

    def plot(self) -> Path | None:
        """Write ``curves.png`` (loss terms, learning rate) from ``log.csv``; ``None`` without rows."""
        if not self.dist.main:
            return None
        rows = self.read_log()
        if not rows:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except Exception as err:  # noqa: BLE001
            self.log(f"plot skipped (matplotlib: {err})")
            return None
        names = ["loss", *[t for t in self.terms if t != "loss"], "lr"]
        cols = 3
        nrows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
        x = [r["iteration"] for r in rows]
        for ax, name in zip(axes.flat, names):
            y = [r.get(name, float("nan")) for r in rows]
            ax.plot(x, y, lw=1)
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
            finite = [v for v in y if math.isfinite(v)]
            if name == "lr" or (finite and min(finite) > 0 and max(finite) / max(min(finite), 1e-30) > 100):
                ax.set_yscale("log")
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        fig.suptitle(f"{self.cfg.name}: iteration {int(x[-1])}", fontsize=10)
        fig.tight_layout()
        path = self.run_dir / "curves.png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
        plt.close(fig)
        return path

    # -- checkpoints --------------------------------------------------------------------------
    def _state(self) -> dict:
        state = {
            "format": STATE_FORMAT,
            "iteration": self.iteration,
            "family": self.family,
            "config": config_to_dict(self.cfg),
            "optimizer_g": self.opt_g.state_dict(),
            "scheduler_g": self.sched_g.state_dict(),
            "rng": rng_state(),
            "loss_ema": self.loss_ema,
            "best": self.best,
            "skipped_total": self.skipped_total,
            "world_size": self.dist.world,
        }
        if self.disc is not None:
            state["discriminator"] = self.disc.state_dict()
            state["optimizer_d"] = self.opt_d.state_dict()
            state["scheduler_d"] = self.sched_d.state_dict()
        if self.cfg.train.legacy_grad_leak:
            # the gradient carried into the next NLL step (hcflow-spec §9.6) is training state
            state["grads"] = [None if p.grad is None else p.grad.detach().cpu().clone() for p in self.g_params]
        return state

    def _params_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def save_checkpoint(self, tag: str | None = None) -> Path | None:
        """Write ``checkpoints/<tag>.safetensors`` (weights, :func:`flowsr.models.checkpoint.save`)
        and ``<tag>.pt`` (optimiser, scheduler, RNG, iteration ...), each atomically; periodic
        checkpoints (``tag`` None: ``iter_<N>``) then update ``latest.json`` and prune to
        ``keep_last``. Returns the ``.pt`` path (``None`` on other ranks or non-finite weights)."""
        if not self.dist.main:
            return None
        if not self._params_finite():
            self.log(f"iteration {self.iteration}: NOT saving a checkpoint: the weights are not finite")
            return None
        periodic = tag is None
        tag = tag or f"iter_{self.iteration:08d}"
        weights = self.ckpt_dir / f"{tag}.safetensors"
        state_path = self.ckpt_dir / f"{tag}.pt"
        model_checkpoint.save(self.model, weights, extra={"iteration": str(self.iteration), "recipe": self.cfg.name})
        state = self._state()
        state["weights"] = weights.name
        _atomic_torch_save(state, state_path)
        if periodic:
            info = {"iteration": self.iteration, "weights": weights.name, "state": state_path.name}
            _atomic_text(self.ckpt_dir / "latest.json", json.dumps(info, indent=1) + "\n")
            self._prune()
            self._last_saved = self.iteration
        return state_path

    def _prune(self) -> None:
        keep = self.cfg.checkpoint.keep_last
        if keep <= 0:
            return
        iters = sorted(int(m.group(1)) for p in self.ckpt_dir.iterdir() if (m := _CKPT_RE.match(p.name)) is not None)
        for it in iters[:-keep]:
            for suffix in (".pt", ".safetensors"):
                with contextlib.suppress(FileNotFoundError):
                    (self.ckpt_dir / f"iter_{it:08d}{suffix}").unlink()

    def _clean_temp_files(self) -> None:
        if self.dist.main and self.ckpt_dir.is_dir():
            for p in self.ckpt_dir.glob("*.tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()

    def _resume(self) -> None:
        resume = self.cfg.train.resume
        self._clean_temp_files()
        if resume == "auto":
            path = latest_checkpoint(self.run_dir)
        elif resume == "never":
            if latest_checkpoint(self.run_dir) is not None:
                raise TrainingError(
                    f"{self.run_dir} already holds checkpoints and train.resume is 'never': "
                    "choose another train.run_dir or set train.resume: auto"
                )
            path = None
        else:
            path = Path(resume)
            if not path.is_file():
                raise ConfigError(f"config: train.resume {resume!r} does not exist")
        if path is not None:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore weights and training state from a ``.pt`` written by :meth:`save_checkpoint`."""
        path = Path(path)
        try:
            state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            raise TrainingError(f"cannot read the training state {path}: {err}") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise TrainingError(f"{path} is not a flowsr training state ({STATE_FORMAT})")
        if state["family"] != self.family:
            raise TrainingError(f"{path} trained a {state['family']!r} model, the config a {self.family!r} one")
        weights = path.parent / state["weights"]
        from safetensors.torch import load_file

        try:
            self.model.load_state_dict(load_file(os.fspath(weights), device=str(self.device)), strict=True)
        except (RuntimeError, OSError) as err:
            raise TrainingError(
                f"cannot resume from {weights}: it does not match the configured model ({str(err).splitlines()[0]})"
            ) from None
        old = state.get("config", {})
        if old.get("model") != config_to_dict(self.cfg)["model"]:
            self.log("warning: the model section of the config changed since the checkpoint was written")
        self.opt_g.load_state_dict(state["optimizer_g"])
        self.sched_g.load_state_dict(state["scheduler_g"])
        self._follow_config_schedule(self.sched_g)
        if self.disc is not None:
            if "discriminator" not in state:
                raise TrainingError(f"{path} has no discriminator state but the config trains a GAN")
            self.disc.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["optimizer_d"])
            self.sched_d.load_state_dict(state["scheduler_d"])
            self._follow_config_schedule(self.sched_d)
        if "grads" in state:
            for p, g in zip(self.g_params, state["grads"]):
                p.grad = None if g is None else g.to(self.device)
        set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.loss_ema = state.get("loss_ema")
        self.best = state.get("best")
        self.skipped_total = int(state.get("skipped_total", 0))
        self._last_saved = self.iteration
        self._resumed_from = path
        if state.get("world_size", 1) != self.dist.world:
            self.log(
                f"note: resuming a {state.get('world_size', 1)}-process run with {self.dist.world} process(es); "
                "the global batch and the results are the same"
            )

    def _follow_config_schedule(self, sched: torch.optim.lr_scheduler.MultiStepLR) -> None:
        """Make a restored scheduler use the config's milestones and gamma.

        A scheduler's state carries its milestones, so without this a resumed run would silently
        keep the old schedule after ``train.iterations`` (with ``milestones_rel``), ``milestones``
        or ``gamma`` were changed. The learning rate is set to the one the new schedule gives at
        the current iteration, so resuming before the first changed milestone is the same as
        having trained with the new schedule from the start.
        """
        milestones = Counter(self.cfg.milestones())
        gamma = self.cfg.optim.gamma
        if sched.milestones == milestones and sched.gamma == gamma:
            return
        self.log(
            f"note: the learning-rate schedule follows the config: milestones {sorted(milestones.elements())} "
            f"gamma {gamma} (the checkpoint had {sorted(sched.milestones.elements())} gamma {sched.gamma})"
        )
        sched.milestones, sched.gamma = milestones, gamma
        passed = bisect_right(sorted(milestones.elements()), sched.last_epoch)
        for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
            group["lr"] = base * gamma**passed
        sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]

    # -- distributed helpers ------------------------------------------------------------------
    def _all_finite(self, value: Tensor) -> bool:
        ok = torch.tensor([1.0 if bool(torch.isfinite(value.detach()).all()) else 0.0], device=self.device)
        if self.dist.enabled:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() == 1.0)

    def _mean_over_ranks(self, record: dict) -> dict:
        if not self.dist.enabled or not record:
            return record
        keys = sorted(record)
        t = torch.tensor([record[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.dist.world for k, v in zip(keys, t.tolist())}

    # -- one optimiser step ---------------------------------------------------------------------
    def _g_step(self, loss: Tensor, what: str, step: int) -> bool:
        """backward + clip + Adam step on G unless the loss (any rank) or the gradient is not finite."""
        o = self.cfg.optim
        if not self._all_finite(loss):
            self.opt_g.zero_grad(set_to_none=False)
            self._skip(step, f"{what} loss is not finite ({float(loss.detach()):.4g})")
            return False
        loss.backward()
        if o.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.g_params, o.clip_value)
        max_norm = o.clip_norm if o.clip_norm is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.g_params, max_norm)
        self._grad_norm = float(norm)
        if not math.isfinite(self._grad_norm):
            self.opt_g.zero_grad(set_to_none=False)
            self._skip(step, f"{what} gradient norm is not finite")
            return False
        self.opt_g.step()
        return True

    def _skip(self, step: int, why: str) -> None:
        self._skipped += 1
        self.skipped_total += 1
        self.log(f"iteration {step}: skipped the {why}")

    # -- the iteration ----------------------------------------------------------------------------
    def _latents(self, noise: StepNoise, tag: str, lr: Tensor, temperature: float) -> list[Tensor]:
        shapes = _sample_latent_shapes(self.model, lr.shape[-2:])
        return noise.normal(tag, shapes, temperature)

    def _train_step(self, step: int, batch: dict) -> dict:
        hr, lr = batch["hr"], batch["lr"]
        noise = StepNoise(
            self.cfg.train.seed, step, self.cfg.data.batch_size, self.world_batch_slots, self.device, self.dtype
        )
        self._skipped = 0
        self._grad_norm = float("nan")
        rec: dict[str, float] = {}
        if self.is_sr:
            self._sr_step(step, hr, lr, noise, rec)
        else:
            self._rescaling_step(step, hr, lr, noise, rec)
        return rec

    def _rescaling_step(self, step: int, hr: Tensor, lr: Tensor, noise: StepNoise, rec: dict) -> None:
        self.opt_g.zero_grad(set_to_none=False)
        g = self._ddp_g or self._g
        terms = g("training_losses", hr, lr, noise, self._loss_weights())
        for k, v in terms.items():
            rec["loss" if k == "total" else k] = float(v.detach())
        self._g_step(terms["total"], "loss", step)

    def _sr_step(self, step: int, hr: Tensor, lr: Tensor, noise: StepNoise, rec: dict) -> None:
        l, d = self.cfg.losses, self.cfg.discriminator
        g = self._ddp_g or self._g
        gan = self.disc is not None
        total = 0.0
        sr_t = None
        update_g = (step % d.update_ratio == 0 and step > d.init_iters) or not gan
        if update_g:
            # (a) NLL step (plus optional LR terms on the flow's LR output)
            if not self.cfg.train.legacy_grad_leak:
                self.opt_g.zero_grad(set_to_none=False)
            if self.model.loss_terms(self._loss_weights()):
                terms = g("training_losses", hr, lr, noise, self._loss_weights())
                loss = terms.pop("total")
                rec.update({k: float(v.detach()) for k, v in terms.items()})
                total += float(loss.detach())
                self._g_step(loss, "NLL", step)
            self.opt_g.zero_grad(set_to_none=False)
            # (b) pixel step on the sample at hr_temperature (the mean sample by default)
            if l.hr_l1 or l.hr_l2:
                sr0 = g("decode", lr, self._latents(noise, "pixel", lr, self.hr_temperature)).clamp(0, 1)
                loss = 0.0
                for name, crit in (("hr_l1", "l1"), ("hr_l2", "l2")):
                    if getattr(l, name):
                        term = getattr(l, name) * pixel_loss(sr0, hr, crit)
                        rec[name] = float(term.detach())
                        loss = loss + term
                total += float(loss.detach())
                self._g_step(loss, "pixel", step)
            # (c) perceptual + GAN step on a sample at sample_temperature
            if self.perceptual is not None or gan:
                self.opt_g.zero_grad(set_to_none=False)
                sr_t = g("decode", lr, self._latents(noise, "sample", lr, l.sample_temperature)).clamp(0, 1)
                loss = 0.0
                if self.perceptual is not None:
                    term = l.perceptual * self.perceptual(sr_t, hr)
                    rec["perceptual"] = float(term.detach())
                    loss = loss + term
                if gan:
                    for p in self.disc.parameters():
                        p.requires_grad_(False)
                    term = l.gan * self.gan_loss(self.disc(sr_t), True)
                    rec["gan_g"] = float(term.detach())
                    loss = loss + term
                total += float(loss.detach())
                self._g_step(loss, "perceptual/GAN", step)
        if gan:
            self.opt_g.zero_grad(set_to_none=False)
            for p in self.disc.parameters():
                p.requires_grad_(True)
            if sr_t is None:
                with torch.no_grad():
                    sr_t = self.model.decode(lr, self._latents(noise, "sample", lr, l.sample_temperature)).clamp(0, 1)
            self.opt_d.zero_grad(set_to_none=False)
            dnet = self._ddp_d or self.disc
            l_real = self.gan_loss(dnet(hr), True)
            l_fake = self.gan_loss(dnet(sr_t.detach()), False)
            rec["d_real"], rec["d_fake"] = float(l_real.detach()), float(l_fake.detach())
            l_d = l_real + l_fake
            if self._all_finite(l_d):
                l_d.backward()
                self.opt_d.step()
            else:
                self.opt_d.zero_grad(set_to_none=False)
                self._skip(step, "discriminator loss is not finite")
        rec["loss"] = total if update_g else float("nan")

    # -- ActNorm data initialisation --------------------------------------------------------------
    def _needs_data_init(self) -> bool:
        return any(isinstance(m, ActNorm) and not m.is_initialized for m in self.model.modules())

    @torch.no_grad()
    def _data_init(self, sampler: StepBatchSampler, step: int) -> None:
        """One-time ActNorm data initialisation on the first batch -- the *global* batch, with
        the iteration's own dequantisation noise, in every process, so all processes (and a
        single-process run) get the same initial weights."""
        batch = collate([self.train_set[k] for k in sampler.keys(step)])
        hr, lr = batch["hr"].to(self.device, self.dtype), batch["lr"].to(self.device, self.dtype)
        b = self.cfg.data.batch_size
        noise = StepNoise(self.cfg.train.seed, step, b, range(b), self.device, self.dtype)
        self.model.train()
        if self.is_sr:
            self.model.training_losses(hr, lr, noise, self._loss_weights())
        else:
            self.model.encode(hr, lr)
        self.log(f"ActNorm data initialisation on the first batch ({b} samples)")

    # -- validation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float | None:
        """The validation metric (``val.metric``) over the validation images, or ``None``."""
        if self.val_set is None:
            return None
        from flowsr import metrics

        v = self.cfg.val
        temperature = v.temperature if v.temperature is not None else (0.0 if self.is_sr else 1.0)
        self.model.eval()
        values = []
        try:
            for i in range(len(self.val_set)):
                item = self.val_set[i]
                hr, lr = item["hr"][None].to(self.device, self.dtype), item["lr"][None].to(self.device, self.dtype)
                gen = torch.Generator(device=self.device).manual_seed(_derive_seed(self.cfg.train.seed, _VAL, i))
                if v.metric == "nll":
                    noise = GeneratorNoise(1, gen, dtype=self.dtype)
                    values.append(float(self.model.training_losses(hr, lr, noise, {"nll": 1.0})["nll"]))
                    continue
                try:
                    if self.is_sr:
                        sr = self.model.sample(lr, temperature=temperature, generator=gen)
                    else:
                        sr = self.model.upscale(self.model.downscale(hr), temperature=temperature, generator=gen)
                except NonFiniteOutputError:
                    values.append(float("nan"))
                    continue
                y = v.metric == "psnr_y"
                sr, hr = sr[0].float().cpu(), hr[0].float().cpu()
                values.append(float(metrics.psnr(sr, hr, crop_border=self.scale, y_channel=y)))
        finally:
            self.model.train()
        return float(np.mean(values)) if values else None

    def _improved(self, metric: str, value: float) -> bool:
        if not _finite(value):
            return False
        if self.best is None or self.best.get("metric") != metric:
            return True
        better_low = metric in ("nll", "loss_ema")
        return value < self.best["value"] if better_low else value > self.best["value"]

    def _consider_best(self, metric: str, value: float | None) -> None:
        if value is None or not self.cfg.checkpoint.best or not self._improved(metric, value):
            return
        self.best = {"metric": metric, "value": float(value), "iteration": self.iteration}
        if self.save_checkpoint("best") is not None:
            _atomic_text(self.ckpt_dir / "best.json", json.dumps(self.best, indent=1) + "\n")
            self.log(f"iteration {self.iteration}: new best {metric} {value:.5g}")

    # -- the loop -----------------------------------------------------------------------------------
    def _show_progress(self) -> bool:
        p = str(self.cfg.log.progress).lower()
        if not self.dist.main or self.quiet and p == "auto":
            return False
        if p in ("true", "false"):
            return p == "true"
        return sys.stderr.isatty() and not os.environ.get("CI")

    def _wrap_ddp(self) -> None:
        if not self.dist.enabled or self._ddp_g is not None:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        self._ddp_g = DDP(self._g, device_ids=ids, find_unused_parameters=self.model.has_unused_parameters)
        if self.disc is not None:
            self._ddp_d = DDP(self.disc, device_ids=ids)

    def run(self) -> list[dict]:
        """Train from the current iteration to ``train.iterations``; returns this call's records."""
        cfg = self.cfg
        end, start = cfg.train.iterations, self.iteration
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _atomic_text(self.run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
            self._truncate_csv()
        if self._resumed_from is not None:
            self.log(f"resumed from {self._resumed_from} at iteration {start}")
        if start >= end:
            self.log(f"nothing to do: iteration {start} of {end} already done")
            return []
        nparams = sum(p.numel() for p in self.model.parameters())
        self.log(
            f"training {cfg.name}: {self.family} x{self.scale}, {nparams:,} parameters, iterations {start + 1}..{end}, "
            f"batch {cfg.data.batch_size} ({self.dist.world} process(es)), device {self.device}"
        )
        sampler = StepBatchSampler(
            len(self.train_set), cfg.data.batch_size, cfg.train.seed, start, end, self.dist.rank, self.dist.world
        )
        if self._needs_data_init():
            self._data_init(sampler, start + 1)
        self._wrap_ddp()
        self._open_writer()
        loader = iter(make_train_loader(self.train_set, sampler, cfg.data.workers))
        records: list[dict] = []
        show = self._show_progress()
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=end, initial=start, dynamic_ncols=True, desc=cfg.name, unit="it")
        t0 = t_window = time.perf_counter()
        n_window = 0
        try:
            for step in range(start + 1, end + 1):
                batch = next(loader)
                batch = {k: v.to(self.device, self.dtype, non_blocking=True) for k, v in batch.items() if k != "index"}
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
                    self.sched_g.step()
                    if self.sched_d is not None:
                        self.sched_d.step()
                rec = self._train_step(step, batch)
                rec = self._mean_over_ranks(rec)
                rec.update(iteration=step, lr=float(self.opt_g.param_groups[0]["lr"]), skipped=float(self._skipped))
                rec["grad_norm"] = self._grad_norm
                self.iteration = step
                records.append(rec)
                loss = rec.get("loss", float("nan"))
                if self._skipped == 0 and _finite(loss):
                    a = cfg.log.ema
                    self.loss_ema = loss if self.loss_ema is None else a * self.loss_ema + (1 - a) * loss
                self._window.append(rec)
                n_window += 1
                if self._bar is not None:
                    self._bar.update(1)
                if step % cfg.log.every == 0 or step == end:
                    now = time.perf_counter()
                    self._flush_window(step, end, now - t0, n_window / max(now - t_window, 1e-9))
                    t_window, n_window = now, 0
                if cfg.val.every and self.val_set is not None and (step % cfg.val.every == 0 or step == end):
                    self._validate_and_pick_best(step)
                if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 or step == end:
                    self._checkpoint(step)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if self._writer is not None:
                self._writer.flush()
        elapsed = time.perf_counter() - t0
        self.log(f"done: iteration {self.iteration}, {elapsed:.1f} s, {self.skipped_total} skipped steps in total")
        if cfg.log.plot:
            self.plot()
        return records

    def _validate_and_pick_best(self, step: int) -> None:
        value = self.validate() if self.dist.main else None
        if value is not None:
            self.log(f"iteration {step}: validation {self.cfg.val.metric} {value:.4f}")
            if self._writer is not None:
                self._writer.add_scalar(f"val/{self.cfg.val.metric}", value, step)
            self._consider_best(self.cfg.val.metric, value)
        if self.dist.enabled:
            dist.barrier()

    def _checkpoint(self, step: int) -> None:
        if self.dist.main:
            if self._last_saved != step:
                self.save_checkpoint()
            if self.val_set is None and self.loss_ema is not None:
                self._consider_best("loss_ema", self.loss_ema)
            if self.cfg.log.plot:
                self.plot()
            if self._writer is not None:
                self._writer.flush()
        if self.dist.enabled:
            dist.barrier()

    def _flush_window(self, step: int, end: int, elapsed: float, speed: float) -> None:
        window, self._window = self._window, []
        if not self.dist.main or not window:
            return
        row: dict[str, Any] = {"iteration": step}
        for key in ("lr", "loss", *self.terms, "grad_norm"):
            vals = [r[key] for r in window if key in r and _finite(r[key])]
            row[key] = float(np.mean(vals)) if vals else float("nan")
        row["lr"] = window[-1]["lr"]
        row["skipped"] = float(sum(r["skipped"] for r in window))
        row["time_s"] = round(elapsed, 3)
        row["it_per_s"] = round(speed, 4)
        self._write_row(row)
        if self._writer is not None:
            for key in ("loss", *self.terms, "lr", "grad_norm"):
                if _finite(row[key]):
                    self._writer.add_scalar(f"train/{key}", row[key], step)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.2g}", refresh=False)
        else:
            eta = (end - step) / max(speed, 1e-9)
            terms = " ".join(f"{k} {row[k]:.4g}" for k in self.terms if k in row)
            self.log(
                f"iter {step}/{end} loss {row['loss']:.5g} ({terms}) lr {row['lr']:.3g} "
                f"{speed:.2f} it/s ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}"
            )
