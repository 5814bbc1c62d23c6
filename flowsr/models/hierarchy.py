"""The hierarchy builder: levels of flow steps with splits and cross-level conditioned latents.

:func:`build_hierarchy` turns a :class:`~flowsr.models.spec.HierarchySpec` into a
:class:`HierarchicalFlow`, one invertible module ``x -> (y, z_{L-1}, ..., z_0)``.

Why not one flat FrEIA graph: in HCFlow the latent of level ``l`` is conditioned on the kept
part of level ``l`` *and* on features of every deeper level's output. FrEIA 0.2 can neither
condition a node on another node's output nor host a conditioning network inside a graph (see
``docs/architecture.md``), so each level's linear parts are FrEIA sequences
(:class:`~flowsr.layers.sequence.FlowSequence`) and this module wires them across levels. The
result is itself a FrEIA ``InvertibleModule`` and can be a node of any ``GraphINN``.

Forward (``x`` of shape ``(B, C, H, W)``, H and W divisible by ``2^L``)::

    h_0 = x
    for l = 0 .. L-1:   u_l = body_l(h_l);  keep_l, a_l = u_l[:, :n_l], u_l[:, n_l:];  h_{l+1} = keep_l
    y = keep_{L-1}
    for l = L-1 .. 0:   feat_l = features_l(keep_l, feat_{l+1}, ..., feat_{L-1})
                        z_l = latent_l(a_l | feat_l)           # conditional steps + Gaussian whitening

Log-det: the sum of every body, conditional step and whitening log-det (block-triangular
Jacobian: features depend only on parts that pass through unchanged). The reverse runs the
levels deepest first, recomputing each feature from the already reconstructed deeper parts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowsr.layers.base import FlowModule, check_finite, set_finite_checks
from flowsr.layers.registry import StepInfo, check_options, get_coupling, get_subnet
from flowsr.layers.reshape import HaarDownsampling, Squeeze
from flowsr.layers.sequence import FlowSequence
from flowsr.layers.split import GaussianWhitening
from flowsr.layers.step import FlowStep
from flowsr.layers.subnets import ZeroConv2d
from flowsr.models.features import HierarchicalFeatures, KeptPart
from flowsr.models.spec import CouplingSpec, HierarchySpec

__all__ = ["HierarchicalFlow", "Level", "build_hierarchy", "make_step"]

SubnetConstructor = Callable[[int, int], nn.Module]


def _subnet(spec: CouplingSpec) -> SubnetConstructor:
    """The subnet constructor the spec names, with its width (and ``init_std``) bound."""
    constructor, width = get_subnet(spec.subnet)
    kwargs = {width: spec.hidden}
    if spec.init_std is not None:
        check_options(f"subnet {spec.subnet!r}", constructor, {"weight_std": spec.init_std}, (width,))
        kwargs["weight_std"] = spec.init_std
    return functools.partial(constructor, **kwargs)


def _coupling_options(spec: CouplingSpec) -> dict[str, Any]:
    """The coupling's own keyword options: ``spec.options`` plus ``scale`` when the spec sets it."""
    options = dict(spec.options)
    if spec.scale is not None:
        if "scale" in options:
            raise ValueError("CouplingSpec: give the scale function either as 'scale' or in 'options', not both")
        options["scale"] = spec.scale
    return options


def make_step(
    shape: tuple[int, int, int],
    coupling: CouplingSpec,
    *,
    index: int,
    actnorm: bool,
    permutation: str,
    lr_channels: int,
    cond_shape: tuple[int, int, int] | None = None,
) -> FlowStep:
    """One flow step (ActNorm -> permutation -> [injector] -> coupling) from a coupling spec.

    ``index`` and ``lr_channels`` are passed to the coupling's
    :meth:`~flowsr.layers.CouplingBase.for_step` (HCFlow's three-shift coupling alternates its
    direction with the index; it and IRN's coupling split at the LR channels); ``cond_shape`` is
    the condition of the coupling and injector.
    """
    if coupling.injector and cond_shape is None:
        raise ValueError("an affine injector needs an external condition (HierarchySpec.condition_channels > 0)")
    cond = [cond_shape] if cond_shape is not None else None
    layer = None
    if coupling.kind != "none":
        cls = get_coupling(coupling.kind)
        layer = functools.partial(
            cls.for_step,
            subnet_constructor=_subnet(coupling),
            step=StepInfo(index=index, lr_channels=lr_channels),
            options=_coupling_options(coupling),
        )
    injector = None
    if coupling.injector:
        injector = {"subnet_constructor": _subnet(coupling)}
        if coupling.scale is not None:
            injector["scale"] = coupling.scale
    return FlowStep([shape], cond, actnorm=actnorm, permutation=permutation, coupling=layer, injector_kwargs=injector)


class Level(nn.Module):
    """One level of a hierarchy: ``body`` (squeeze + steps), split, ``features``, ``latent``.

    Not invertible on its own (its latent needs the deeper levels); :class:`HierarchicalFlow`
    runs the levels.

    Attributes:
        body: FlowSequence on the level input (squeeze, then the main flow steps); if
            ``conditioned``, its couplings take the level's external condition as ``c[0]``.
        n_keep: channels kept at the split (``None``: no split, everything goes on).
        features: net computing the condition of the latent flow (``None`` if unconditioned).
        latent: FlowSequence on the split-off part, conditioned on the feature (``None``: identity).
    """

    def __init__(
        self,
        body: FlowSequence,
        n_keep: int | None,
        features: nn.Module | None = None,
        latent: FlowSequence | None = None,
        conditioned: bool = False,
    ):
        super().__init__()
        self.body = body
        self.n_keep = n_keep
        self.features = features
        self.latent = latent
        self.conditioned = conditioned

    def body_layer(self, p: int) -> nn.Module:
        """Layer ``p`` of the body: 0 is the squeeze, ``1 ..`` the flow steps in order."""
        return self.body.module_list[p]

    def latent_layer(self, k: int) -> nn.Module:
        """Layer ``k`` of the latent flow: its conditional steps in order, then the whitening prior."""
        if self.latent is None:
            raise IndexError("this level has no latent flow")
        return self.latent.module_list[k]

    def run_body(self, h: Tensor, cond: Tensor | None, rev: bool) -> tuple[Tensor, Tensor]:
        # only a body with conditional steps takes the level's condition
        (out,), j = self.body([h], c=[cond] if self.body.dims_c else None, rev=rev)
        return out, j


class HierarchicalFlow(FlowModule):
    """A hierarchy of levels as one invertible module ``[x] -> [y, z_{L-1}, ..., z_0]``.

    Latents are ordered deepest level first (the order the reverse pass consumes them); levels
    without a split contribute no latent. See the module docstring for the math.

    External conditions (``dims_c``, SRFlow-style LR-encoder features): one tensor per
    conditioned level, in level order, each at that level's spatial size after its squeeze.

    Shapes: ``x (B, C, H, W)`` -> ``y (B, C_y, H / 2^L, W / 2^L)``, ``z_l (B, C_l - n_l, H / 2^(l+1), W / 2^(l+1))``.
    """

    same_spatial_size = False  # latents live at the resolutions of their levels

    def __init__(
        self,
        dims_in: Sequence[Sequence[int]],
        levels: Sequence[Level],
        dims_c: Sequence[Sequence[int]] | None = None,
    ):
        super().__init__(dims_in, dims_c)
        self.levels = nn.ModuleList(levels)
        self.spatial_factor = 2 ** len(self.levels)
        n_cond = sum(level.conditioned for level in self.levels)
        if n_cond != len(self.dims_c):
            raise ValueError(
                f"HierarchicalFlow: {n_cond} conditioned level(s) but {len(self.dims_c)} condition shape(s)"
            )
        # The hierarchy is the boundary: it (or the model around it) checks inputs for NaN / Inf
        # once, so the layers inside do not read every tensor again.
        set_finite_checks(self, False, include_self=False)

    def _level_conditions(self, c: Sequence[Tensor] | None) -> list[Tensor | None]:
        c = list(c or [])
        out = []
        for level in self.levels:
            out.append(c.pop(0) if level.conditioned and c else None)
        return out

    # -- shapes ------------------------------------------------------------------------------
    def output_dims(self, input_dims):
        c, h, w = input_dims[0]
        outs, latents = [], []
        for level in self.levels:
            c, h, w = level.body.output_dims([(c, h, w)])[0]
            if level.n_keep is not None:
                latents.append((c - level.n_keep, h, w))
                c = level.n_keep
        outs.append((c, h, w))
        return outs + latents[::-1]

    # -- the two directions ------------------------------------------------------------------
    def encode(self, x: Tensor, c: Sequence[Tensor] | None = None) -> tuple[list[Tensor], Tensor, list[Tensor]]:
        """``x -> ([y, z_{L-1}, ..., z_0], logdet, features deepest first)`` without validation."""
        logdet = x.new_zeros(x.shape[0])
        keeps, parts = [], []
        h = x
        for level, cond in zip(self.levels, self._level_conditions(c)):
            u, j = level.run_body(h, cond, rev=False)
            logdet = logdet + j
            if level.n_keep is None:
                h, a = u, None
            else:
                h, a = u[:, : level.n_keep], u[:, level.n_keep :]
            keeps.append(h)
            parts.append(a)
        latents, deeper = [], []
        for level, keep, a in zip(reversed(self.levels), reversed(keeps), reversed(parts)):
            if a is None:
                continue
            z, j, feat = self._latent(level, keep, a, deeper, rev=False)
            logdet = logdet + j
            latents.append(z)
            if feat is not None:
                deeper = [feat, *deeper]
        return [h, *latents], logdet, deeper

    def decode(
        self,
        y: Tensor,
        latents: Sequence[Tensor],
        c: Sequence[Tensor] | None = None,
        *,
        chunk: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(y, [z_{L-1}, ..., z_0]) -> (x, logdet of the inverse)`` without validation.

        Several samples per ``y`` (diverse sampling): the latents (and the result) may have
        ``n`` times the batch of ``y`` and ``c``; sample ``i * B + b`` then decodes ``y[b]``, exactly
        as with ``y.repeat(n, 1, 1, 1)``, but whatever depends on ``y`` alone (levels before the
        first split, the first split level's features) is computed once per ``y``, not ``n`` times.
        ``chunk``: decode at most ``chunk`` samples per ``y`` at a time after that shared part
        (bounds the memory; ``None``: all at once). Every row is computed on its own by every
        layer, so the result does not depend on ``chunk``.
        """
        latents = list(latents)
        levels = list(zip(reversed(self.levels), reversed(self._level_conditions(c))))
        h, logdet = y, y.new_zeros(y.shape[0])
        # the shared part: levels without a split, then the first split level's features
        while levels and levels[0][0].n_keep is None:
            level, cond = levels.pop(0)
            cond = _repeat_batch(cond, h.shape[0])  # y may already carry the samples (SRFlow)
            h, j = level.run_body(h, cond, rev=True)
            logdet = logdet + j
        if not levels:
            return h, logdet
        first = levels[0][0]
        feat = first.features(h, []) if first.features is not None else None
        batch = latents[0].shape[0]
        # chunks only where the samples are introduced here (not when y itself carries them)
        step = batch if chunk is None or h.shape[0] == batch else max(1, int(chunk)) * h.shape[0]
        if step >= batch:
            return self._decode_levels(h, logdet, feat, latents, levels)
        outs, logdets = [], []
        for start in range(0, batch, step):
            part = [z[start : start + step] for z in latents]
            x, j = self._decode_levels(h, logdet, feat, part, levels)
            outs.append(x)
            logdets.append(j)
        return torch.cat(outs), torch.cat(logdets)

    def _decode_levels(
        self,
        h: Tensor,
        logdet: Tensor,
        first_feat: Tensor | None,
        latents: list[Tensor],
        levels: list[tuple[Level, Tensor | None]],
    ) -> tuple[Tensor, Tensor]:
        """The reverse of ``levels`` (deepest first; the first one splits, its features given)."""
        latents = list(latents)
        deeper: list[Tensor] = []
        for k, (level, cond) in enumerate(levels):
            if level.n_keep is not None:
                feat = first_feat if k == 0 else None
                a, j, feat = self._latent(level, h, latents.pop(0), deeper, rev=True, feat=feat)
                if a.shape[0] != h.shape[0]:  # the first latent brings the samples: expand what is shared
                    h, logdet = _repeat_batch(h, a.shape[0]), _repeat_batch(logdet, a.shape[0])
                logdet = logdet + j
                if feat is not None:
                    deeper = [feat, *deeper]
                h = torch.cat([h, a], 1)
            h, j = level.run_body(h, _repeat_batch(cond, h.shape[0]), rev=True)
            logdet = logdet + j
        return h, logdet

    @staticmethod
    def _latent(level: Level, keep: Tensor, t: Tensor, deeper: list[Tensor], rev: bool, feat: Tensor | None = None):
        if feat is None and level.features is not None:
            feat = level.features(keep, deeper)
        feat = _repeat_batch(feat, t.shape[0])  # shared by the samples of one y (decode)
        if level.latent is None:
            return t, t.new_zeros(t.shape[0]), feat
        (out,), j = level.latent([t], c=[feat] if feat is not None else None, rev=rev)
        return out, j, feat

    def _check_input(self, x, rev):
        super()._check_input(x, rev)
        if rev:
            c0, h, w = self.dims_in[0]
            y = x[0]
            expected = self.output_dims([(c0, y.shape[2] * self.spatial_factor, y.shape[3] * self.spatial_factor)])
            for i, (t, shape) in enumerate(zip(x, expected)):
                if tuple(t.shape[1:]) != shape:
                    raise ValueError(
                        f"HierarchicalFlow: reverse input {i} must have shape (B, {', '.join(map(str, shape))}) "
                        f"for an output y of spatial size {tuple(y.shape[2:])}, got {tuple(t.shape)}"
                    )

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        if self.dims_c:
            c = self._check_level_conditions(c, x[0], rev)
        if not rev:
            outs, logdet, _ = self.encode(x[0], c)
            return tuple(outs), logdet
        out, logdet = self.decode(x[0], x[1:], c)
        return (out,), logdet

    def _check_level_conditions(self, c, x: Tensor, rev: bool) -> list[Tensor]:
        c = list(c or [])
        if len(c) != len(self.dims_c):
            raise ValueError(f"HierarchicalFlow: expected {len(self.dims_c)} level condition(s), got {len(c)}")
        for i, (t, shape) in enumerate(zip(c, self.dims_c)):
            if t.dim() != 4 or t.shape[0] != x.shape[0] or t.shape[1] != shape[0]:
                raise ValueError(
                    f"HierarchicalFlow: condition {i} must have shape (B={x.shape[0]}, {shape[0]}, H, W), "
                    f"got {tuple(t.shape)}"
                )
            if self.check_finite_inputs:
                check_finite("HierarchicalFlow", f"condition {i}", t)
        return c


def _repeat_batch(t: Tensor | None, batch: int) -> Tensor | None:
    """``t`` (batch ``B``) repeated to ``batch = n * B`` in ``t.repeat(n, ...)`` order; ``t`` itself
    when it has that batch already or is ``None`` (no condition / features)."""
    if t is None or t.shape[0] == batch:
        return t
    if batch % t.shape[0]:
        raise ValueError(f"HierarchicalFlow: {batch} latent samples are not a multiple of the batch {t.shape[0]} of y")
    return t.repeat(batch // t.shape[0], *([1] * (t.dim() - 1)))


def build_hierarchy(spec: HierarchySpec, image_size: tuple[int, int] | None = None) -> HierarchicalFlow:
    """Build the invertible hierarchy described by ``spec``.

    Args:
        spec: the architecture.
        image_size: nominal ``(H, W)`` recorded in the FrEIA dims (any size divisible by
            ``2^L`` works at run time); defaults to ``(2^L * 8, 2^L * 8)``.
    """
    H, W = image_size or (spec.scale * 8, spec.scale * 8)
    steps, latent_steps, keeps = spec.level_steps(), spec.latent_steps(), spec.kept_channels()
    plain = CouplingSpec(kind="none")
    levels: list[Level] = []
    dims_c: list[tuple[int, int, int]] = []
    shape = (spec.in_channels, H, W)
    for l in range(spec.levels):
        body = FlowSequence(*shape)
        body.add((HaarDownsampling if spec.squeeze == "haar" else Squeeze)([shape]))
        shape = body.shapes[-1]
        cond = (spec.condition_channels, *shape[1:]) if spec.condition_channels else None
        common = {"actnorm": spec.actnorm, "permutation": spec.permutation, "lr_channels": spec.out_channels}
        for k in range(spec.extra_steps):
            body.add(make_step(shape, plain, index=k, **common))
        for k in range(steps[l]):
            body.add(make_step(shape, spec.coupling, index=k, cond_shape=cond, **common), cond=0 if cond else None)
        if cond is not None:
            dims_c.append(cond)
        n_keep = keeps[l] if keeps[l] < shape[0] else None
        levels.append(Level(body, n_keep, conditioned=cond is not None))
        shape = (keeps[l], *shape[1:])

    # Latent flows are built deepest first: a level's features see those of all deeper levels.
    deeper_channels: list[int] = []
    for l in reversed(range(spec.levels)):
        level = levels[l]
        if level.n_keep is None:
            continue
        c, h, w = level.body.shapes[-1]
        features = _features(spec, level.n_keep, deeper_channels)
        if features is not None and spec.features.kind == "rrdb":
            deeper_channels = [features.out_channels, *deeper_channels]
        level.features = features
        level.latent = _latent_flow(spec, (c - level.n_keep, h, w), latent_steps[l], features)
    return HierarchicalFlow([(spec.in_channels, H, W)], levels, dims_c)


def _features(spec: HierarchySpec, n_keep: int, deeper_channels: list[int]) -> nn.Module | None:
    f = spec.features
    if f.kind == "none" or (spec.latent.prior == "none" and not any(spec.latent_steps())):
        return None
    if f.kind == "kept":
        return KeptPart(n_keep)
    if f.kind == "rrdb":
        return HierarchicalFeatures(n_keep + sum(deeper_channels), nf=f.nf, gc=f.gc, nb=f.nb, concat=f.concat)
    raise ValueError(f"unknown feature kind {f.kind!r}; expected 'rrdb', 'kept' or 'none'")


def _latent_flow(spec: HierarchySpec, a_shape, n_steps: int, features: nn.Module | None) -> FlowSequence | None:
    if n_steps == 0 and spec.latent.prior == "none":
        return None
    seq = FlowSequence(*a_shape)
    cond = (features.out_channels, *a_shape[1:]) if features is not None else None
    for k in range(n_steps):
        step = make_step(
            a_shape,
            spec.latent.coupling,
            index=k,
            actnorm=True,
            permutation=spec.latent.permutation,
            lr_channels=spec.out_channels,
            cond_shape=cond,
        )
        seq.add(step, cond=0 if cond is not None else None)
    if spec.latent.prior != "none":
        if cond is None:
            raise ValueError("a learned latent prior needs a feature extractor (features.kind != 'none')")
        prior = GaussianWhitening(
            [a_shape], [cond], subnet_constructor=functools.partial(ZeroConv2d, kernel_size=3), scale=spec.latent.prior
        )
        seq.add(prior, cond=0)
    return seq
