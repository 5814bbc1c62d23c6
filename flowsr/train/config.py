"""Training configuration: a tree of dataclasses loaded from YAML.

A recipe is one YAML file with the top-level sections ``model``, ``data``, ``val``, ``losses``,
``optim``, ``discriminator``, ``train``, ``checkpoint`` and ``log`` (every section and every key
is optional and has a default; see ``docs/training.md`` for the reference). Unknown keys are
errors that name the key (``config: unknown key 'losses.nl' ...``), so a typo never silently
falls back to a default.

    cfg = load_config("hcflow_sr_x4", overrides=["train.iterations=10"])   # a bundled name or a path
    cfg.optim.lr, cfg.losses.nll, cfg.model.family

Numbers must be finite (``.inf`` / ``.nan`` are errors that name the key). A top-level
``imports`` list names Python files or modules the recipe needs (custom layers,
:mod:`flowsr.train.plugins`); relative paths follow the rule of :mod:`flowsr.train.recipes`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowsr.models.base import get_family
from flowsr.train.coerce import apply_overrides, from_dict
from flowsr.train.errors import ConfigError
from flowsr.train.plugins import import_plugins
from flowsr.train.recipes import read_recipe, resolve_paths, resolve_recipe

__all__ = [
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DiscriminatorConfig",
    "LogConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainingConfig",
    "ValConfig",
    "apply_overrides",
    "available_cores",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]

#: loss weights of the SR phases the trainer runs on samples (every SR family has them).
SR_PHASE_WEIGHTS = ("hr_l1", "hr_l2", "perceptual", "gan")
#: every loss weight of :class:`LossConfig` (the rest of its fields are options).
LOSS_WEIGHTS = ("nll", "hr_l1", "hr_l2", "lr_l1", "lr_l2", "z_l2", "perceptual", "gan", "irn_fit", "irn_rec", "irn_ce")
#: ``train.threads`` may be at most this many times the number of usable cores
MAX_THREADS_PER_CORE = 4
#: ``train.seed`` range (what python, numpy's SeedSequence and torch all accept)
MAX_SEED = 2**63 - 1


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@dataclass
class ModelConfig:
    """Which model to train.

    Attributes:
        family: ``hcflow_sr``, ``hcflow_rescaling``, ``srflow`` or ``irn``.
        preset: a named architecture of the family (``x2``/``x4``/``x8`` for HCFlow and IRN;
            ``DF2K_4X``/``CelebA_8X``/``DF2K_8X`` for SRFlow), or ``null`` with a full ``spec``.
        spec: with ``preset: null``, a full architecture dict (``HierarchySpec.to_dict()``; for
            SRFlow ``SRFlowSpec.to_dict()``) for a new architecture; with a preset, keys that
            override the preset's (nested, e.g. ``{steps: 4, features: {nf: 16}}``).
        options: family keyword options (HCFlow SR: ``quant``, ``lr_log_std``; SRFlow: ``quant``).
        init_from: a flowsr ``.safetensors`` checkpoint whose weights initialise the model (the
            ``+``/``++`` fine-tuning runs start from the HCFlow checkpoint); the architecture
            must match. Ignored when the run resumes from its own checkpoint.
        shrink: replace the architecture widths and depths by tiny ones (tests, smoke runs).
        actnorm_init: which ActNorms are data-initialised on the first batch: ``all`` (Glow /
            official), ``latent`` (all but the main-flow steps, whose ActNorms stay the identity
            so an untrained rescaling flow still passes its Haar low-pass through as the LR image),
            or ``none`` (``flowsr.layers.actnorm.skip_data_init``).
    """

    family: str = "hcflow_sr"
    preset: str | None = "x4"
    spec: dict | None = None
    options: dict = field(default_factory=dict)
    init_from: str | None = None
    shrink: bool = False
    actnorm_init: str = "all"


@dataclass
class DataConfig:
    """A dataset of HR (and LR) images.

    Attributes:
        source: ``folders`` (``hr_dir`` and optionally ``lr_dir``) or ``samples`` (the images
            bundled with flowsr, ``flowsr.data.sample_images``).
        hr_dir: folder of HR images (PNG/JPEG/BMP/TIFF), searched non-recursively.
        lr_dir: folder of LR images with the same file stems; ``None`` makes the LR on the fly.
        samples: bundled set for ``source: samples`` (``face_x8`` or ``general_x4``).
        names: keep only these image stems (e.g. to hold images out for validation).
        exclude: drop these image stems.
        lr: ``auto`` (files when there are any of the right scale, else bicubic), ``files``
            or ``bicubic`` (MATLAB-exact ``imresize`` of the 8-bit HR image, the way the
            benchmark LR images are made; computed on the whole image, then cropped).
        bicubic_uint8: round the on-the-fly LR to 8 bits (MATLAB ``imresize`` of the ``uint8``
            HR, like LR files); ``false`` keeps the float result (IRN's ``imresize_np`` LR).
        patch_size: HR crop size (a multiple of the scale); ``None`` uses whole images (all of
            one size for batches > 1; validation always runs image by image).
        batch_size: global batch (split evenly across DDP processes).
        hflip, vflip, rot90: random augmentations, each with probability 0.5, in BasicSR's
            order (horizontal flip, vertical flip, transpose), as the official data loaders.
        cache: keep decoded images (and the on-the-fly LR) in memory.
        workers: DataLoader worker processes (0: load in the training process). Batches do
            not depend on it.
    """

    source: str = "samples"
    hr_dir: str | None = None
    lr_dir: str | None = None
    samples: str = "face_x8"
    names: list | None = None
    exclude: list | None = None
    lr: str = "auto"
    bicubic_uint8: bool = True
    patch_size: int | None = 160
    batch_size: int = 16
    hflip: bool = True
    vflip: bool = False
    rot90: bool = False
    cache: bool = True
    workers: int = 0


@dataclass
class ValConfig:
    """Validation during training (off when ``every`` is 0 or ``data`` is missing).

    Attributes:
        every: validate every this many iterations (and at the end).
        data: the validation images (whole images, no augmentation; ``patch_size`` is ignored).
        metric: ``psnr_y`` (Y of BT.601, border crop = scale), ``psnr`` (RGB, crop = scale) or
            ``nll`` (SR families; lower is better). Picks the ``best`` checkpoint.
        temperature: sampling temperature of the SR / upscaled images (default: 0 for SR,
            1 for rescaling, as the official validation).
        max_images: validate on the first N images only.
    """

    every: int = 0
    data: DataConfig | None = None
    metric: str = "psnr_y"
    temperature: float | None = None
    max_images: int | None = None


@dataclass
class LossConfig:
    """Loss weights (0 disables a term) and their options.

    SR families (``hcflow_sr``, ``srflow``) follow the official HCFlow update order: an NLL
    step (``nll``, plus ``lr_l1``/``lr_l2`` on the flow's LR output), a pixel step
    (``hr_l1``/``hr_l2`` on the sample at ``hr_temperature``, default 0 = the mean sample) and a
    perceptual + GAN step (on a sample at ``sample_temperature``), each with its own Adam step.
    Rescaling families use one summed loss per iteration: HCFlow rescaling
    ``lr_l2 * MSE(clamp(y), lr) + z_l2 * mean(z^2) + hr_l1 * L1(upscale(Q(y)), hr)`` with the
    latents drawn at ``hr_temperature`` (default 1); IRN the official IRN losses
    (``flowsr.models.irn.irn_losses`` with ``irn_fit``/``irn_rec``/``irn_ce``; ``None`` = official).
    """

    nll: float = 1.0
    hr_l1: float = 0.0
    hr_l2: float = 0.0
    hr_temperature: float | None = None
    lr_l1: float = 0.0
    lr_l2: float = 0.0
    z_l2: float = 0.0
    perceptual: float = 0.0
    perceptual_weights: str | None = None
    perceptual_criterion: str = "l1"
    gan: float = 0.0
    gan_type: str = "vanilla"
    sample_temperature: float = 0.9
    irn_fit: float | None = None
    irn_rec: float | None = None
    irn_ce: float | None = None


@dataclass
class OptimConfig:
    """Adam and the multi-step learning-rate schedule of the generator (the flow).

    ``milestones`` are absolute iterations; ``milestones_rel`` fractions of ``train.iterations``
    (``int(rel * iterations)``, the official ``lr_steps_rel``). The learning rate at iteration
    ``i`` (1-based) is ``lr * gamma ** (number of milestones <= i)``: the scheduler steps before
    the update of each iteration, as the official ``MultiStepLR_Restart``.
    Gradients are clipped by value (``clip_value``) then by norm (``clip_norm``) after every
    backward; ``None`` disables either.
    """

    lr: float = 2.5e-4
    betas: list = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    eps: float = 1e-8
    milestones: list | None = None
    milestones_rel: list | None = None
    gamma: float = 0.5
    clip_value: float | None = 5.0
    clip_norm: float | None = 100.0


@dataclass
class DiscriminatorConfig:
    """The VGG-style discriminator of the GAN loss (official ``discriminator_vgg_160``).

    ``input_size`` defaults to the HR patch size (the official network takes 160 px);
    ``init_iters``: the generator is not updated during iterations ``1 .. init_iters`` (only D
    trains: the official ``D_init_iters``); ``update_ratio``: G is updated on iterations that
    are multiples of it.
    """

    nf: int = 64
    input_size: int | None = None
    lr: float = 5e-5
    betas: list = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    init_iters: int = 0
    update_ratio: int = 1


@dataclass
class TrainConfig:
    """The loop.

    Attributes:
        iterations: total iterations (``niter``).
        seed: seeds python, numpy and torch, the model construction, the data order and the
            per-step noise (every random draw of an iteration derives from ``(seed, iteration)``);
            0 .. 2**63 - 1.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        legacy_grad_leak: the official HCFlow SR gradient handling (the HCFlow recipes set it):
            no ``zero_grad`` before the likelihood step, so the gradient the previous iteration's
            last generator phase left behind is added to it (hcflow-spec §9.6; it matters for
            the "+" runs, whose pixel step is the last phase). ``false`` clears it first.
        resume: ``auto`` (continue from the run folder's latest checkpoint if there is one),
            ``never`` (refuse to start when the run folder has checkpoints), or a path to a
            training-state ``.pt`` file.
        run_dir: where checkpoints and logs go (default ``runs/<recipe name>``).
        threads: torch CPU threads, 1 .. 4 x the usable cores (``None``: torch's default;
            more than the cores is allowed with a warning in the log).
        dtype: ``float32`` (default) or ``float64`` (model, data and noise; for exactness checks).
    """

    iterations: int = 1000
    seed: int = 0
    device: str = "auto"
    legacy_grad_leak: bool = False
    resume: str = "auto"
    run_dir: str | None = None
    threads: int | None = None
    dtype: str = "float32"


@dataclass
class CheckpointConfig:
    """``every``: save every this many iterations (and at the end); ``keep_last``: how many
    periodic checkpoints to keep (older ones are deleted; 0 keeps all); ``best``: also keep the
    best checkpoint (by the validation metric, else by the training-loss EMA)."""

    every: int = 5000
    keep_last: int = 3
    best: bool = True


@dataclass
class LogConfig:
    """``every``: one CSV row (window means), TensorBoard point and progress-bar update every
    this many iterations; ``tensorboard``/``plot``: write TensorBoard events / ``curves.png``;
    ``progress``: ``auto`` (a tqdm bar only on a terminal and outside CI), ``true`` or ``false``;
    ``ema``: smoothing of the training-loss EMA used for the ``best`` checkpoint."""

    every: int = 100
    tensorboard: bool = True
    plot: bool = True
    progress: str = "auto"
    ema: float = 0.98


@dataclass
class TrainingConfig:
    """The whole recipe (``imports``: Python files or modules to import first, see
    :mod:`flowsr.train.plugins`)."""

    name: str = "run"
    imports: list = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    val: ValConfig = field(default_factory=ValConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    # -- derived ---------------------------------------------------------------------------
    def milestones(self) -> list[int]:
        """Absolute learning-rate milestones (``milestones`` + ``milestones_rel``), sorted."""
        out = [int(m) for m in (self.optim.milestones or [])]
        out += [int(float(r) * self.train.iterations) for r in (self.optim.milestones_rel or [])]
        return sorted(out)

    def run_dir(self) -> Path:
        return Path(self.train.run_dir) if self.train.run_dir else Path("runs") / self.name

    def validate(self) -> TrainingConfig:
        """Check values that the types alone do not; raises :class:`ConfigError`."""
        m, d, l, o, t = self.model, self.data, self.losses, self.optim, self.train
        try:
            family = get_family(m.family)
        except ValueError as e:
            raise ConfigError(f"config: model.family: {e}") from None
        _choice("model.actnorm_init", m.actnorm_init, ("all", "latent", "none"))
        if m.spec is None and m.preset is None:
            raise ConfigError("config: model needs a 'preset' or a 'spec'")
        _check_data("data", d)
        if d.batch_size < 1:
            raise ConfigError(f"config: data.batch_size must be >= 1, got {d.batch_size}")
        if self.val.data is not None:
            _check_data("val.data", self.val.data)
        _choice("val.metric", self.val.metric, ("psnr_y", "psnr", "nll"))
        if self.val.metric == "nll" and family.task != "sr":
            raise ConfigError(f"config: val.metric 'nll' needs an SR model family, not {m.family!r}")
        _choice("losses.perceptual_criterion", l.perceptual_criterion, ("l1", "l2"))
        _choice("losses.gan_type", l.gan_type, ("vanilla", "lsgan"))
        for name in ("nll", "hr_l1", "hr_l2", "lr_l1", "lr_l2", "z_l2", "perceptual", "gan"):
            if getattr(l, name) < 0:
                raise ConfigError(f"config: losses.{name} must be >= 0, got {getattr(l, name)}")
        # Every non-zero weight must be one the family's objective or (SR) the SR phases use.
        used = set(family.objective_weights) | (set(SR_PHASE_WEIGHTS) if family.task == "sr" else set())
        unused = [n for n in LOSS_WEIGHTS if getattr(l, n) and n not in used]
        if unused:
            raise ConfigError(
                f"config: the {m.family} family does not use losses.{', losses.'.join(unused)}; "
                f"set {'them' if len(unused) > 1 else 'it'} to 0 (it uses: {', '.join(sorted(used))})"
            )
        try:
            family.loss_terms(dataclasses.asdict(l))
        except ValueError as e:
            raise ConfigError(f"config: losses: {e}") from None
        _betas("optim.betas", o.betas)
        _betas("discriminator.betas", self.discriminator.betas)
        for key, value in (("optim.lr", o.lr), ("optim.eps", o.eps), ("optim.gamma", o.gamma)):
            _positive(key, value)
        _positive("discriminator.lr", self.discriminator.lr)
        for key, value in (("optim.clip_value", o.clip_value), ("optim.clip_norm", o.clip_norm)):
            if value is not None:
                _positive(key, value)
        d_cfg = self.discriminator
        for key, value in (("optim.weight_decay", o.weight_decay), ("discriminator.weight_decay", d_cfg.weight_decay)):
            if value < 0:
                raise ConfigError(f"config: {key} must be >= 0, got {value}")
        _milestones(o, t.iterations)
        for key in ("hr_temperature", "sample_temperature"):
            value = getattr(l, key)
            if value is not None and value < 0:
                raise ConfigError(f"config: losses.{key} must be >= 0, got {value}")
        if self.val.temperature is not None and self.val.temperature < 0:
            raise ConfigError(f"config: val.temperature must be >= 0, got {self.val.temperature}")
        if t.iterations < 0:
            raise ConfigError(f"config: train.iterations must be >= 0, got {t.iterations}")
        if not 0 <= t.seed <= MAX_SEED:
            raise ConfigError(f"config: train.seed must be an integer in 0 .. 2**63 - 1, got {t.seed}")
        if t.threads is not None:
            limit = MAX_THREADS_PER_CORE * available_cores()
            if not 1 <= t.threads <= limit:
                raise ConfigError(
                    f"config: train.threads must be 1 .. {limit} ({MAX_THREADS_PER_CORE} x the {available_cores()} "
                    f"usable cores) or null for torch's default, got {t.threads}"
                )
        if self.discriminator.update_ratio < 1 or self.discriminator.init_iters < 0 or self.discriminator.nf < 1:
            raise ConfigError("config: discriminator.update_ratio and nf must be >= 1, init_iters >= 0")
        size = self.discriminator.input_size
        if l.gan and size is not None and (size < 32 or size % 32):
            raise ConfigError(f"config: discriminator.input_size must be a positive multiple of 32, got {size}")
        if self.val.max_images is not None and self.val.max_images < 1:
            raise ConfigError(f"config: val.max_images must be >= 1 or null, got {self.val.max_images}")
        if not 0 <= self.log.ema < 1:
            raise ConfigError(f"config: log.ema must be in [0, 1), got {self.log.ema}")
        if not isinstance(self.imports, list) or not all(isinstance(i, str) and i for i in self.imports):
            raise ConfigError(f"config: imports must be a list of file paths or module names, got {self.imports!r}")
        if self.checkpoint.every < 0 or self.checkpoint.keep_last < 0 or self.log.every < 1:
            raise ConfigError("config: checkpoint.every and checkpoint.keep_last must be >= 0, log.every >= 1")
        _choice("train.dtype", t.dtype, ("float32", "float64"))
        _choice("log.progress", str(self.log.progress).lower(), ("auto", "true", "false"))
        if not (t.resume in ("auto", "never") or t.resume.endswith(".pt")):
            raise ConfigError(f"config: train.resume must be 'auto', 'never' or a .pt path, got {t.resume!r}")
        return self


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"config: {key} must be > 0, got {value}")


def _number(value: Any) -> float | None:
    """A finite number, also from a YAML 1.1 string like ``9e-1``; ``None`` otherwise."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _betas(key: str, betas: list) -> None:
    numbers = [_number(b) for b in betas]
    if len(numbers) != 2 or any(b is None or not 0 <= b < 1 for b in numbers):
        raise ConfigError(f"config: {key} must be two numbers in [0, 1), got {betas}")
    betas[:] = numbers


def _milestones(o: OptimConfig, iterations: int) -> None:
    for m in o.milestones or []:
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ConfigError(f"config: optim.milestones must be iterations (integers >= 0), got {m!r}")
    for i, r in enumerate(o.milestones_rel or []):
        number = _number(r)
        if number is None or not 0 <= number <= 1:
            raise ConfigError(f"config: optim.milestones_rel must be fractions in [0, 1], got {r!r}")
        o.milestones_rel[i] = number


def _choice(key: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ConfigError(f"config: {key} must be one of {list(options)}, got {value!r}")


def _check_data(key: str, d: DataConfig) -> None:
    _choice(f"{key}.source", d.source, ("folders", "samples"))
    _choice(f"{key}.lr", d.lr, ("auto", "files", "bicubic"))
    if d.source == "folders" and not d.hr_dir:
        raise ConfigError(f"config: {key}.hr_dir is required with source 'folders'")
    if d.patch_size is not None and d.patch_size < 1:
        raise ConfigError(f"config: {key}.patch_size must be >= 1 or null, got {d.patch_size}")


def config_from_dict(d: dict) -> TrainingConfig:
    """Build and validate a :class:`TrainingConfig` from a (YAML-loaded) dict."""
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"config: the top level must be a mapping, got {type(d).__name__}")
    return from_dict(TrainingConfig, d).validate()


def config_to_dict(cfg: TrainingConfig) -> dict:
    """The config as plain dicts/lists (YAML-safe)."""
    return dataclasses.asdict(cfg)


def load_config(path: str | os.PathLike, overrides: dict | list | None = None) -> TrainingConfig:
    """Read a recipe: a YAML path or the name of a bundled recipe (:func:`~flowsr.train.recipes.resolve_recipe`).

    ``name`` defaults to the file stem; relative input paths are resolved by the rule of
    :mod:`flowsr.train.recipes`; the recipe's ``imports`` are imported. ``overrides``: see
    :func:`apply_overrides`. The config remembers its file as ``cfg.source``.
    """
    source = resolve_recipe(path)
    d = read_recipe(source)
    d.setdefault("name", source.stem)
    d = resolve_paths(apply_overrides(d, overrides), source.parent)
    import_plugins(d.get("imports") if isinstance(d.get("imports"), list) else None, source.parent)
    cfg = config_from_dict(d)
    cfg.source = source.resolve()
    return cfg
