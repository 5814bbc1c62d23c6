"""The model-family interface every flowsr model implements, its registry, and the shared
implementation of families built on one :class:`~flowsr.models.hierarchy.HierarchicalFlow`.

Consumers (inference, evaluation, training, the benchmark, the demo, the command line) talk to a
model only through :class:`FlowSRModel` and look families up by name in :data:`FAMILIES`; they
never branch on a family's name. A new family subclasses :class:`FlowSRModel` (usually through
:class:`HierarchicalModel`) and registers itself with :func:`register_family`.

The interface, for an LR image ``lr (B, C, h, w)`` and an HR image ``hr (B, C, s h, s w)``:

* ``family`` (registry name), ``task`` (``"sr"`` or ``"rescaling"``), ``scale`` ``s``,
  ``lr_multiple`` (LR sizes must be multiples of it), ``in_channels`` ``C``,
  ``default_temperature``;
* ``latent_shapes(lr_size, batch)``, ``sample_latents(lr, temperature, generator)``: the
  latents, deepest level first;
* ``encode(hr, lr=None) -> (lr_out, zs, logdet)`` and its exact inverse ``decode(lr, zs)``;
* ``sample(lr, temperature, n, generator)`` (diverse HR samples), ``upscale(lr, temperature,
  generator, zs=None)`` and, for rescaling, ``downscale(hr)``;
* ``training_losses(hr, lr, noise, losses)`` and ``loss_terms(losses)``: the family's own
  objective (see :class:`NoiseSource` for where its random draws come from);
* ``config()`` / ``from_config(config)``: everything besides the weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from flowsr.layers.base import check_finite
from flowsr.layers.quantization import quantize
from flowsr.models.hierarchy import HierarchicalFlow, build_hierarchy
from flowsr.models.spec import HierarchySpec

__all__ = [
    "FAMILIES",
    "TASKS",
    "FlowSRModel",
    "GeneratorNoise",
    "HierarchicalModel",
    "NoiseSource",
    "NonFiniteOutputError",
    "check_generator",
    "check_temperature",
    "get_family",
    "register_family",
]

TASKS = ("sr", "rescaling")

#: family name -> model class; filled by :func:`register_family`.
FAMILIES: dict[str, type[FlowSRModel]] = {}


def register_family(cls: type[FlowSRModel]) -> type[FlowSRModel]:
    """Class decorator: make a model class known by its ``family`` name (to :func:`get_family`,
    checkpoints, training configs and the command line)."""
    name = getattr(cls, "family", "")
    if not name or getattr(cls, "task", None) not in TASKS:
        raise ValueError(f"register_family: {cls.__name__} needs a 'family' name and a 'task' in {TASKS}")
    old = FAMILIES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"a model family named {name!r} is already registered ({old.__qualname__})")
    FAMILIES[name] = cls
    return cls


def get_family(name: str) -> type[FlowSRModel]:
    """The model class registered as ``name``."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def preset_scale(cls: type, name: str) -> int:
    """The scale of a preset named ``"x<scale>"`` (``ValueError`` unless it is one of ``cls.presets``)."""
    if name not in cls.presets:
        raise ValueError(f"{cls.__name__}: unknown preset {name!r}; expected one of {list(cls.presets)}")
    return int(name[1:])


class NonFiniteOutputError(FloatingPointError):
    """A model produced NaN or Inf from finite inputs (typically a temperature too high for it)."""


def check_temperature(temperature: Any, who: str) -> float:
    """The temperature as a float; ``ValueError`` unless it is a finite real number >= 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"{who}: temperature must be a number, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"{who}: temperature must be a finite number >= 0, got {temperature!r}")
    return float(temperature)


def check_generator(generator: Any, who: str) -> torch.Generator | None:
    """``generator`` itself; ``ValueError`` unless it is a ``torch.Generator`` or ``None``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"{who}: generator must be a torch.Generator or None, got {type(generator).__name__} "
            "(use torch.Generator().manual_seed(seed))"
        )
    return generator


class NoiseSource(Protocol):
    """Where a family's training objective takes its random tensors from.

    Draws are named (``"dequant"``, ``"rescale"``, ...) so a trainer can give each its own
    reproducible stream, and a replay can hand back recorded tensors in order. Shapes are per
    sample; results have the batch of the current step.
    """

    def uniform(self, name: str, shape: Sequence[int]) -> Tensor:
        """``U[0, 1)`` of shape ``(B, *shape)``."""

    def normal(self, name: str, shapes: Sequence[Sequence[int]], temperature: float) -> list[Tensor]:
        """``N(0, temperature^2)`` tensors of shapes ``(B, *shape)``, one per entry of ``shapes``."""


class GeneratorNoise:
    """A :class:`NoiseSource` drawing from one ``torch.Generator`` (or the global RNG), in call
    order; draws are made on the generator's device and moved to ``device``."""

    def __init__(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.batch, self.generator, self.dtype = batch, generator, dtype
        self.device = device
        self._draw_device = generator.device if generator is not None else device

    def _draw(self, fn, shape: Sequence[int]) -> Tensor:
        t = fn((self.batch, *shape), generator=self.generator, device=self._draw_device, dtype=self.dtype)
        return t.to(self.device) if self.device is not None else t

    def uniform(self, name: str, shape: Sequence[int]) -> Tensor:
        return self._draw(torch.rand, shape)

    def normal(self, name: str, shapes: Sequence[Sequence[int]], temperature: float) -> list[Tensor]:
        return [self._draw(torch.randn, s) * temperature for s in shapes]


class FlowSRModel(nn.Module):
    """The interface of every flowsr model family (see the module docstring).

    Subclasses set ``family``, ``task`` and ``default_temperature`` and implement the methods
    that raise ``NotImplementedError`` here; the input checks are shared.
    """

    family: ClassVar[str] = ""
    task: ClassVar[str] = ""
    #: temperature of :meth:`sample` / :meth:`upscale` when none is given.
    default_temperature: ClassVar[float] = 1.0
    #: loss weights (by name) that :meth:`training_losses` uses.
    objective_weights: ClassVar[tuple[str, ...]] = ()
    #: whether some parameters never receive a gradient (data-parallel training must know).
    has_unused_parameters: ClassVar[bool] = False

    # -- what a family is ------------------------------------------------------------------------
    @property
    def scale(self) -> int:
        raise NotImplementedError

    @property
    def in_channels(self) -> int:
        raise NotImplementedError

    @property
    def lr_multiple(self) -> int:
        """LR heights and widths must be multiples of this (HR: of ``scale * lr_multiple``)."""
        return 1

    def config(self) -> dict:
        """Everything besides the weights needed to rebuild the model (JSON-serialisable)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> FlowSRModel:
        """Inverse of :meth:`config`."""
        raise NotImplementedError

    # -- architectures by name ---------------------------------------------------------------------
    #: names accepted by :meth:`preset_spec` (the papers' configurations).
    presets: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def preset_spec(cls, name: str) -> Any:
        """The spec of a named configuration (one of :attr:`presets`)."""
        raise NotImplementedError

    @classmethod
    def spec_from_dict(cls, d: dict) -> Any:
        """The family's spec from its dict form (as stored in ``config()["spec"]``)."""
        raise NotImplementedError

    @classmethod
    def shrink_spec(cls, spec: Any) -> Any:
        """The same topology (levels, squeeze, couplings, splits) with tiny widths and depths: the
        one place tiny models (tests, CPU smoke runs, demos without weights) come from."""
        raise NotImplementedError

    # -- the bijection -----------------------------------------------------------------------------
    def latent_shapes(self, lr_size: Sequence[int], batch: int = 1) -> list[tuple[int, ...]]:
        """Shapes ``(batch, C_i, h_i, w_i)`` of the latents for an LR image of spatial size ``lr_size``."""
        raise NotImplementedError

    def encode(self, hr: Tensor, lr: Tensor | None = None) -> tuple[Tensor, list[Tensor], Tensor]:
        """``hr -> (lr_out, zs, logdet)``: the LR image (the flow's output, not clamped, or the
        given ``lr`` for families conditioned on it), the latents deepest first, and the
        per-sample log-determinant ``(B,)`` of ``hr -> zs`` (given ``lr``)."""
        raise NotImplementedError

    def decode(self, lr: Tensor, zs: Sequence[Tensor]) -> Tensor:
        """Exact inverse of :meth:`encode` (not clamped)."""
        raise NotImplementedError

    # -- training ----------------------------------------------------------------------------------
    @classmethod
    def loss_terms(cls, losses: Mapping[str, Any]) -> list[str]:
        """Names of the terms :meth:`training_losses` returns for these loss weights (``total``
        excluded); ``ValueError`` for a weight the family does not support."""
        raise NotImplementedError

    def training_losses(
        self, hr: Tensor, lr: Tensor, noise: NoiseSource, losses: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        """The family's training objective on a batch: weighted terms and their sum ``total``.

        For rescaling families this is the whole objective of an iteration; for SR families it
        is the likelihood phase (the trainer adds the pixel, perceptual and GAN phases on
        samples from :meth:`decode`). ``losses`` holds the weights by name.
        """
        raise NotImplementedError

    # -- generation --------------------------------------------------------------------------------
    def sample_latents(
        self, lr: Tensor, temperature: float, generator: torch.Generator | None = None
    ) -> list[Tensor]:
        """Gaussian latents ``N(0, I) * temperature`` for ``lr``, deepest level first (drawn
        from ``generator`` when given, on ``lr``'s device and dtype)."""
        t = check_temperature(temperature, self._name)
        check_generator(generator, self._name)
        return [
            torch.randn(shape, generator=generator, device=lr.device, dtype=lr.dtype) * t
            for shape in self.latent_shapes(lr.shape[2:], lr.shape[0])
        ]

    def sample(
        self,
        lr: Tensor,
        temperature: float | None = None,
        n: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``n`` HR samples for ``lr`` at ``temperature`` (default :attr:`default_temperature`),
        clamped to [0, 1]: ``(B, C, sH, sW)`` for ``n == 1``, ``(n, B, C, sH, sW)`` otherwise.

        Whatever depends on ``lr`` alone is computed once for the ``n`` samples. Raises
        :class:`NonFiniteOutputError` if the model overflows (try a lower temperature).
        """
        self.check_lr(lr)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{self._name}: n must be an int >= 1, got {n!r}")
        t = self.default_temperature if temperature is None else temperature
        batch = lr.repeat(n, 1, 1, 1) if n > 1 else lr
        zs = self.sample_latents(batch, t, generator)
        x = self._decode_unchecked(lr, zs)
        self.check_output(x, t)
        x = x.clamp(0, 1)
        return x if n == 1 else x.reshape(n, *lr.shape[:1], *x.shape[1:])

    def upscale(
        self,
        lr: Tensor,
        temperature: float | None = None,
        generator: torch.Generator | None = None,
        zs: Sequence[Tensor] | None = None,
        *,
        clamp: bool = True,
    ) -> Tensor:
        """LR -> HR: :meth:`decode` with latents drawn at ``temperature`` (or the given ``zs``),
        clamped to [0, 1] unless ``clamp=False``."""
        if zs is None:
            self.check_lr(lr)
            t = self.default_temperature if temperature is None else temperature
            x = self._decode_unchecked(lr, self.sample_latents(lr, t, generator))
            self.check_output(x, t)
        else:
            x = self.decode(lr, zs)
        return x.clamp(0, 1) if clamp else x

    def downscale(self, hr: Tensor, quantize_8bit: bool = True) -> Tensor:
        """HR -> LR (rescaling models): the flow's LR output clamped to [0, 1] and, by default,
        rounded to 8 bits (straight-through gradient)."""
        if self.task != "rescaling":
            raise ValueError(
                f"{self._name} is an SR model: its LR output is not trained as an image; use a rescaling model"
            )
        y, _, _ = self.encode(hr)
        return quantize(y) if quantize_8bit else y.clamp(0, 1)

    # -- for implementations -------------------------------------------------------------------------
    def _decode_unchecked(self, lr: Tensor, zs: list[Tensor]) -> Tensor:
        """:meth:`decode` without input checks; ``zs`` may hold ``n`` times the batch of ``lr``."""
        raise NotImplementedError

    @property
    def _name(self) -> str:
        return type(self).__name__

    def check_output(self, x: Tensor, temperature: float) -> None:
        """:class:`NonFiniteOutputError` if the decoded ``x`` holds NaN or Inf."""
        if not bool(torch.isfinite(x).all()):
            raise NonFiniteOutputError(
                f"{self._name}: the model produced non-finite values at temperature {temperature:g}; "
                "try a lower temperature"
            )

    #: why LR sizes must be multiples of :attr:`lr_multiple` (for error messages), if they must.
    lr_multiple_reason: ClassVar[str] = ""

    def check_image(self, x: Any, what: str, multiple: int = 1, reason: str = "") -> None:
        """``ValueError`` unless ``x`` is a finite ``(B, in_channels, H, W)`` tensor with
        ``H, W >= 1`` divisible by ``multiple``, of the dtype and device of the weights.
        ``reason`` names the divisor in the message (e.g. ``"the scale 4"``)."""
        name, channels = self._name, self.in_channels
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: {what} must have shape (B, {channels}, H, W), got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"{name}: {what} must be a floating-point tensor (values in [0, 1]), got {x.dtype}")
        if x.shape[0] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"{name}: {what} is empty (shape {tuple(x.shape)})")
        if multiple > 1 and (x.shape[2] % multiple or x.shape[3] % multiple):
            size = tuple(x.shape[2:])
            if multiple == 2:
                why = f" ({reason})" if reason else ""
                raise ValueError(f"{name}: {what} size {size} must be even in both directions{why}")
            raise ValueError(f"{name}: {what} size {size} is not divisible by {reason or multiple}")
        ref = next(self.parameters(), None)
        if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
            raise ValueError(
                f"{name}: {what} is {x.dtype} on {x.device} but the model is {ref.dtype} on {ref.device}; "
                f"convert one of them (e.g. x.to(model_dtype) or model.to(x.dtype))"
            )
        check_finite(name, what, x)

    def check_lr(self, lr: Any, what: str = "LR image") -> None:
        """:meth:`check_image` for an LR image (sizes multiples of :attr:`lr_multiple`)."""
        self.check_image(lr, what, self.lr_multiple, self.lr_multiple_reason)

    def check_hr(self, hr: Any, what: str = "HR image") -> None:
        """:meth:`check_image` for an HR image (sizes multiples of ``scale * lr_multiple``)."""
        m = self.scale * self.lr_multiple
        if self.lr_multiple == 1:
            reason = f"the scale {self.scale}"
        else:
            reason = f"{m} (the scale {self.scale} times {self.lr_multiple}: {self.lr_multiple_reason})"
        self.check_image(hr, what, m, reason)

    def check_latents(self, lr: Tensor, zs: Any) -> list[Tensor]:
        """The latents as a list, checked against :meth:`latent_shapes` for ``lr``."""
        expected = self.latent_shapes(lr.shape[2:], lr.shape[0])
        if isinstance(zs, Tensor) or not isinstance(zs, Sequence) or len(zs) != len(expected):
            got = type(zs).__name__ if not isinstance(zs, Sequence) or isinstance(zs, Tensor) else f"{len(zs)}"
            noun = "latent" if len(expected) == 1 else "latents"
            raise ValueError(
                f"{self._name}: expected a list of {len(expected)} {noun} (deepest level first), got {got}"
            )
        for i, (z, shape) in enumerate(zip(zs, expected)):
            if not isinstance(z, Tensor) or tuple(z.shape) != shape:
                got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
                raise ValueError(f"{self._name}: latent {i} (deepest first) must have shape {shape}, got {got}")
            if z.dtype != lr.dtype or z.device != lr.device:
                raise ValueError(
                    f"{self._name}: latent {i} is {z.dtype} on {z.device}, the LR image {lr.dtype} on {lr.device}"
                )
            check_finite(self._name, f"latent {i}", z)
        return list(zs)

    def check_pair(self, hr: Tensor, lr: Tensor) -> None:
        """Both images checked, and ``hr`` exactly ``scale`` times the size of ``lr``."""
        self.check_lr(lr)
        self.check_image(hr, "HR image")
        expected = (lr.shape[0], lr.shape[1], lr.shape[2] * self.scale, lr.shape[3] * self.scale)
        if tuple(hr.shape) != expected:
            raise ValueError(
                f"{self._name}: HR image must have shape {expected} for an LR image of shape {tuple(lr.shape)} "
                f"(scale {self.scale}), got {tuple(hr.shape)}"
            )


class HierarchicalModel(FlowSRModel):
    """A family around one :class:`~flowsr.models.hierarchy.HierarchicalFlow` (HCFlow, IRN, SRFlow).

    The flow maps ``hr -> [y, z_{L-1}, ..., z_0]``. Hooks for the family:

    * :attr:`lr_is_flow_output` -- ``True`` (HCFlow, IRN): ``y`` is the LR image and the
      latents are the rest; ``False`` (SRFlow): every output is a latent and the LR image
      conditions the flow through :meth:`conditions`.
    * :meth:`conditions` -- the flow's external per-level conditions for an LR image (``None``
      for an unconditional flow).
    * :attr:`flow_spec` -- the :class:`HierarchySpec` of the flow (``spec`` itself by default).

    ``config()`` stores ``spec`` (and subclasses add their keyword options), which
    ``from_config`` passes back to the constructor.
    """

    lr_is_flow_output: ClassVar[bool] = True

    def __init__(self, spec: Any):
        super().__init__()
        self.spec = spec
        self._build_conditioning()
        self.flow: HierarchicalFlow = build_hierarchy(self.flow_spec)

    def _build_conditioning(self) -> None:
        """Hook: build the networks behind :meth:`conditions` (before the flow, so that parameter
        initialisation draws from the RNG in a fixed order)."""

    @property
    def flow_spec(self) -> HierarchySpec:
        return self.spec

    @property
    def scale(self) -> int:
        return self.spec.scale

    @property
    def in_channels(self) -> int:
        return self.flow_spec.in_channels

    @property
    def lr_multiple(self) -> int:
        return max(1, 2**self.flow_spec.levels // self.scale)

    def config(self) -> dict:
        return {"spec": self.spec.to_dict()}

    @classmethod
    def from_config(cls, config: dict) -> HierarchicalModel:
        config = dict(config)
        return cls(cls.spec_from_dict(config.pop("spec")), **config)

    @classmethod
    def spec_from_dict(cls, d: dict) -> HierarchySpec:
        return HierarchySpec.from_dict(d)

    @classmethod
    def shrink_spec(cls, spec: HierarchySpec) -> HierarchySpec:
        rep = dataclasses.replace
        return rep(
            spec,
            steps=2,
            coupling=rep(spec.coupling, hidden=8),
            latent=rep(spec.latent, steps=1, coupling=rep(spec.latent.coupling, hidden=8)),
            features=rep(spec.features, nf=8, gc=4, nb=[1] * len(spec.features.nb)),
        )

    # -- hooks ---------------------------------------------------------------------------------------
    def conditions(self, lr: Tensor | None) -> list[Tensor] | None:
        """The flow's per-level conditions for ``lr`` (``None``: the flow is unconditional)."""
        return None

    # -- the interface ---------------------------------------------------------------------------------
    def latent_shapes(self, lr_size: Sequence[int], batch: int = 1) -> list[tuple[int, ...]]:
        h, w = (int(s) * self.scale for s in lr_size[-2:])
        dims = self.flow.output_dims([(self.in_channels, h, w)])
        return [(batch, *d) for d in (dims[1:] if self.lr_is_flow_output else dims)]

    def encode(self, hr: Tensor, lr: Tensor | None = None) -> tuple[Tensor, list[Tensor], Tensor]:
        if self.lr_is_flow_output:
            self.check_hr(hr)
            outs, logdet, _ = self.flow.encode(hr, c=self.conditions(None))
            return outs[0], list(outs[1:]), logdet
        if lr is None:
            raise ValueError(f"{self._name}: encode needs the LR image (the flow is conditioned on it)")
        self.check_pair(hr, lr)
        outs, logdet, _ = self.flow.encode(hr, c=self.conditions(lr))
        return lr, list(outs), logdet

    def decode(self, lr: Tensor, zs: Sequence[Tensor]) -> Tensor:
        if self.lr_is_flow_output:
            self.check_image(lr, "LR image", 1)
        else:
            self.check_lr(lr)
        return self._decode_unchecked(lr, self.check_latents(lr, zs))

    def _decode_unchecked(self, lr: Tensor, zs: list[Tensor]) -> Tensor:
        # n latents per LR image: the flow computes what depends on lr alone (deepest features,
        # conditions) once and repeats it.
        if self.lr_is_flow_output:
            x, _ = self.flow.decode(lr, zs, c=self.conditions(None))
        else:
            x, _ = self.flow.decode(zs[0], zs[1:], c=self.conditions(lr))
        return x
