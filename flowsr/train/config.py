"""Training configuration: a tree of dataclasses loaded from YAML.

A recipe is one YAML file with the top-level sections ``model``, ``data``, ``val``, ``losses``,
``optim``, ``discriminator``, ``train``, ``checkpoint`` and ``log`` (every section and every key
is optional and has a default; see ``docs/training.md`` for the reference). Unknown keys are
errors that name the key (``config: unknown key 'losses.nl' ...``), so a typo never silently
falls back to a default.

    cfg = load_config("flowsr/recipes/hcflow_sr_x4.yaml", overrides=["train.iterations=10"])
    cfg.optim.lr, cfg.losses.nll, cfg.model.family
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from flowsr.models.base import get_family

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
    "config_from_dict",
    "config_to_dict",
    "load_config",
]

#: loss weights of the SR phases the trainer runs on samples (every SR family has them).
SR_PHASE_WEIGHTS = ("hr_l1", "hr_l2", "perceptual", "gan")
#: every loss weight of :class:`LossConfig` (the rest of its fields are options).
LOSS_WEIGHTS = ("nll", "hr_l1", "hr_l2", "lr_l1", "lr_l2", "z_l2", "perceptual", "gan", "irn_fit", "irn_rec", "irn_ce")


class ConfigError(ValueError):
    """A training configuration is invalid (the message names the offending key)."""


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
            per-step noise (every random draw of an iteration derives from ``(seed, iteration)``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        legacy_grad_leak: reproduce the official SR "+" runs exactly: no ``zero_grad`` before
            the NLL step, so the previous pixel-step gradient is added to it (hcflow-spec §9.6).
        resume: ``auto`` (continue from the run folder's latest checkpoint if there is one),
            ``never`` (refuse to start when the run folder has checkpoints), or a path to a
            training-state ``.pt`` file.
        run_dir: where checkpoints and logs go (default ``runs/<recipe name>``).
        threads: torch CPU threads (``None``: torch's default).
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
    """The whole recipe."""

    name: str = "run"
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
        if len(o.betas) != 2:
            raise ConfigError(f"config: optim.betas must be two numbers, got {o.betas}")
        if len(self.discriminator.betas) != 2:
            raise ConfigError(f"config: discriminator.betas must be two numbers, got {self.discriminator.betas}")
        if o.lr <= 0:
            raise ConfigError(f"config: optim.lr must be > 0, got {o.lr}")
        if t.iterations < 0:
            raise ConfigError(f"config: train.iterations must be >= 0, got {t.iterations}")
        if self.discriminator.update_ratio < 1:
            raise ConfigError("config: discriminator.update_ratio must be >= 1")
        if self.checkpoint.every < 0 or self.checkpoint.keep_last < 0 or self.log.every < 1:
            raise ConfigError("config: checkpoint.every and checkpoint.keep_last must be >= 0, log.every >= 1")
        _choice("train.dtype", t.dtype, ("float32", "float64"))
        _choice("log.progress", str(self.log.progress).lower(), ("auto", "true", "false"))
        if not (t.resume in ("auto", "never") or t.resume.endswith(".pt")):
            raise ConfigError(f"config: train.resume must be 'auto', 'never' or a .pt path, got {t.resume!r}")
        return self


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


# -- dict <-> dataclass ------------------------------------------------------------------------


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, key: str) -> Any:
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config: {key} must not be null")
    if dataclasses.is_dataclass(base):
        if isinstance(value, base):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config: {key} must be a mapping, got {type(value).__name__} {value!r}")
        return _from_dict(base, value, key)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config: {key} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config: {key} must be an integer, got {value!r}")
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config: {key} must be a number, got {value!r}")
    if base is str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        if key.endswith("progress") and isinstance(value, bool):
            return str(value).lower()
        raise ConfigError(f"config: {key} must be a string, got {value!r}")
    if base is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"config: {key} must be a list, got {value!r}")
    if base is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"config: {key} must be a mapping, got {value!r}")
    return value


def _from_dict(cls: type, d: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in d.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"config: unknown key {path!r} (known keys{' of ' + prefix if prefix else ''}: {names})")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def config_from_dict(d: dict) -> TrainingConfig:
    """Build and validate a :class:`TrainingConfig` from a (YAML-loaded) dict."""
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"config: the top level must be a mapping, got {type(d).__name__}")
    return _from_dict(TrainingConfig, d).validate()


def config_to_dict(cfg: TrainingConfig) -> dict:
    """The config as plain dicts/lists (YAML-safe)."""
    return dataclasses.asdict(cfg)


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"config: override {item!r} must look like 'section.key=value'")
    key, text = item.split("=", 1)
    return key.strip(), yaml.safe_load(text) if text.strip() else None


def apply_overrides(d: dict, overrides: dict | list | None) -> dict:
    """Set dotted keys in a config dict: ``{"train.iterations": 10}`` or ``["train.iterations=10"]``
    (values parsed as YAML). Unknown keys are reported when the config is built."""
    if not overrides:
        return d
    items = overrides.items() if isinstance(overrides, dict) else (_parse_override(o) for o in overrides)
    d = dict(d)
    for key, value in items:
        parts = key.split(".")
        node = d
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return d


def load_config(path: str | os.PathLike, overrides: dict | list | None = None) -> TrainingConfig:
    """Read a recipe YAML; ``name`` defaults to the file stem. ``overrides``: see :func:`apply_overrides`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"config: cannot read {path}: {err.strerror or err}") from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {path} is not valid YAML: {err}") from None
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ConfigError(f"config: {path}: the top level must be a mapping")
    d.setdefault("name", path.stem)
    return config_from_dict(apply_overrides(d, overrides))
