"""Declarative description of a hierarchical conditional flow.

A :class:`HierarchySpec` says everything the builder needs: number of levels, steps per level,
squeeze kind, coupling and subnet, which part is kept at each split, the conditional flow on the
split-off part, its prior, and the per-level feature extractor that conditions it. Specs are
plain dataclasses that round-trip through dicts, JSON and YAML, so a model's architecture can be
stored beside its weights and edited by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["CouplingSpec", "FeatureSpec", "LatentSpec", "HierarchySpec"]


def check_keys(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``d``; ``ValueError`` naming the keys that are not fields of the dataclass ``cls``."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    return dict(d)


def _per_level(value: int | list[int] | None, levels: int, name: str) -> list[int | None]:
    if value is None or isinstance(value, int):
        return [value] * levels
    value = list(value)
    if len(value) != levels:
        raise ValueError(f"{name} must be an int or a list of {levels} ints (one per level), got {value}")
    return value


@dataclass
class CouplingSpec:
    """One coupling layer and its subnet, by registered name (:mod:`flowsr.layers.registry`).

    Attributes:
        kind: a registered coupling: ``"affine"`` (:class:`~flowsr.layers.AffineCoupling`),
            ``"three_shift"`` (HCFlow's Affine3shift, alternating with the step index),
            ``"inv_block_exp"`` (IRN), any coupling registered with
            :func:`~flowsr.layers.register_coupling`, or ``"none"`` (ActNorm + permutation only).
        subnet: a registered subnet: ``"fcn"`` (Glow/HCFlow FCN with a zero-initialised output
            conv) or ``"dense"`` (DenseBlock), or one added with :func:`~flowsr.layers.register_subnet`.
        hidden: the subnet's width (FCN hidden channels, DenseBlock growth channels).
        scale: log-scale function name (``"atan"``, ``"sigmoid"``, ``"tanh_clamp"``, ``"exp"``)
            of the coupling and of the injector; ``None`` keeps each layer's default. Passed to the
            coupling as its ``scale`` option: a coupling without one (IRN's) rejects it.
        injector: precede the coupling by an affine injector conditioned on the external
            condition alone (SRFlow); needs ``HierarchySpec.condition_channels > 0``.
        init_std: initialise the subnet's hidden convs from N(0, init_std^2) (SRFlow: 0.05)
            through its ``weight_std`` argument; ``None`` keeps the subnet's default.
        options: the coupling layer's own keyword options (e.g. ``{"clamp": 2.0}`` for
            ``inv_block_exp``, ``{"order": "scale_shift"}`` for ``affine``), checked against its
            constructor: an option the layer does not have is an error.
    """

    kind: str = "affine"
    subnet: str = "fcn"
    hidden: int = 64
    scale: str | None = None
    injector: bool = False
    init_std: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CouplingSpec:
        d = check_keys(cls, d)
        # Specs saved by flowsr 0.1 always carried a scale; for IRN's coupling and for steps
        # without a coupling it named the fixed behaviour, which is now simply the default.
        if (d.get("kind"), d.get("scale")) in (("inv_block_exp", "tanh_clamp"),) or d.get("kind") == "none":
            d["scale"] = None
        return cls(**d)


@dataclass
class FeatureSpec:
    """The per-level feature extractor that conditions the flow on a split-off part.

    ``kind="rrdb"`` is HCFlow's: ``conv_first`` -> ``nb[0]`` RRDBs -> ``nb[1]`` RRDBs ->
    ``trunk_conv`` + skip; with ``concat=True`` (SR) the output is ``cat(trunk0, trunk1)`` with
    ``2 nf`` channels, otherwise (rescaling) ``nf`` channels. Its input is the kept part of the
    level concatenated with the nearest-upsampled features of all deeper levels.
    ``kind="kept"`` conditions on the kept part alone (Glow/SRFlow learned-prior split).
    """

    kind: str = "rrdb"
    nf: int = 64
    gc: int = 32
    nb: list[int] = field(default_factory=lambda: [7, 7])
    concat: bool = True

    @property
    def channels(self) -> int:
        return 2 * self.nf if self.concat else self.nf


@dataclass
class LatentSpec:
    """The conditional flow applied to the split-off part ``a_l`` before whitening.

    Attributes:
        steps: conditional flow steps per level (int, or a list with one entry per level).
        permutation: permutation inside those steps.
        coupling: coupling of those steps (conditioned on the level's feature).
        prior: log-scale function of the Gaussian prior (``"exp"`` unbounded, ``"atan"`` soft),
            or ``"none"`` for a fixed standard-normal latent (no learned prior, IRN). A learned
            prior is a zero-initialised 3x3 conv on the level's feature (HCFlow, Glow).
    """

    steps: int | list[int] = 13
    permutation: str = "invconv"
    coupling: CouplingSpec = field(default_factory=CouplingSpec)
    prior: str = "exp"


@dataclass
class HierarchySpec:
    """Architecture of a hierarchical conditional flow (HCFlow and relatives).

    Level ``l = 0 .. levels-1`` counts from the HR side. Each level squeezes its input (x2 in
    each spatial direction), runs ``steps[l]`` flow steps, then splits the result into a kept
    part (the next level's input; at the last level the output ``y``) and a split-off part that
    a conditional flow maps to a whitened Gaussian latent.

    Attributes:
        in_channels: channels of the input image.
        levels: number of levels L (the scale factor is ``2**L``).
        steps: main-flow steps per level (int or per-level list).
        extra_steps: steps of ActNorm + permutation only (no coupling) after each squeeze,
            before the main steps (SRFlow's ``additionalFlowNoAffine``).
        condition_channels: channels of an external per-level condition (e.g. LR-encoder
            features at the level's spatial size) fed to every main-step coupling; 0 for an
            unconditional main flow (HCFlow).
        squeeze: ``"checkerboard"`` or ``"haar"``.
        actnorm: whether main-flow steps start with ActNorm.
        permutation: main-flow permutation: ``"invconv"``, ``"lu"``, ``"reverse"``, ``"random"``, ``"none"``.
        coupling: main-flow coupling.
        keep: channels kept at each split (per-level list); ``None`` entries mean the default:
            half of the channels (floor) at inner levels and ``out_channels`` at the last level;
            ``0`` disables the split at that level (everything goes on).
        out_channels: channels of ``y`` at the last level (3: the LR image); also what couplings
            that treat the leading "LR" channels specially take as their ``split_len``
            (:class:`~flowsr.layers.registry.StepInfo` ``lr_channels``).
        latent: the conditional flow on split-off parts.
        features: the feature extractor conditioning it.
    """

    in_channels: int = 3
    levels: int = 2
    steps: int | list[int] = 13
    extra_steps: int = 0
    condition_channels: int = 0
    squeeze: str = "checkerboard"
    actnorm: bool = True
    permutation: str = "invconv"
    coupling: CouplingSpec = field(default_factory=CouplingSpec)
    keep: list[int | None] | None = None
    out_channels: int = 3
    latent: LatentSpec = field(default_factory=LatentSpec)
    features: FeatureSpec = field(default_factory=FeatureSpec)

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"HierarchySpec: levels must be >= 1, got {self.levels}")
        if self.squeeze not in ("checkerboard", "haar"):
            raise ValueError(f"HierarchySpec: squeeze must be 'checkerboard' or 'haar', got {self.squeeze!r}")
        self.level_steps()
        self.latent_steps()
        self.kept_channels()

    @property
    def scale(self) -> int:
        return 2**self.levels

    def level_steps(self) -> list[int]:
        return [int(s) for s in _per_level(self.steps, self.levels, "steps")]

    def latent_steps(self) -> list[int]:
        return [int(s) for s in _per_level(self.latent.steps, self.levels, "latent.steps")]

    def channels(self) -> list[int]:
        """Channels of each level's main flow (after its squeeze)."""
        out, c = [], self.in_channels
        for keep in self.kept_channels():
            c *= 4
            out.append(c)
            c = keep
        return out

    def kept_channels(self) -> list[int]:
        """Channels kept at each level's split (= all channels where the split is disabled)."""
        keep = _per_level(self.keep, self.levels, "keep") if self.keep is not None else [None] * self.levels
        out, c = [], self.in_channels
        for l, k in enumerate(keep):
            c *= 4
            if k is None:
                k = self.out_channels if l == self.levels - 1 else c // 2
            elif k == 0:
                k = c
            if not 0 < k <= c:
                raise ValueError(f"HierarchySpec: level {l} keeps {k} of {c} channels; must be in 1..{c}")
            out.append(k)
            c = k
        return out

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HierarchySpec:
        d = check_keys(cls, d)
        if isinstance(d.get("coupling"), dict):
            d["coupling"] = CouplingSpec.from_dict(d["coupling"])
        if isinstance(d.get("features"), dict):
            d["features"] = FeatureSpec(**d["features"])
        if isinstance(d.get("latent"), dict):
            lat = dict(d["latent"])
            if isinstance(lat.get("coupling"), dict):
                lat["coupling"] = CouplingSpec.from_dict(lat["coupling"])
            d["latent"] = LatentSpec(**lat)
        return cls(**d)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> HierarchySpec:
        return cls.from_dict(yaml.safe_load(text))
