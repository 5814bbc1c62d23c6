"""The contract cases of flowsr's own layers (one :class:`~flowsr.testing.cases.LayerCase` each).

Two kinds of case, both run through every contract check:

* fixed configurations of the papers (``"affine_cond_sigmoid"`` is SRFlow's coupling,
  ``"three_shift_odd"`` HCFlow rescaling's odd step, ...), whose hyper-parameters never change;
* ``"*_drawn"`` cases whose ``build`` draws the hyper-parameters too (subnet, scale function,
  order, layout, split, permutation, ...), so Hypothesis searches the configuration space.

Registered couplings also run as ``"coupling:<name>"`` (see :func:`~flowsr.testing.cases.layer_cases`).
Adding a layer is one :func:`~flowsr.testing.cases.register_layer_case` line at the end of this file.
"""

from __future__ import annotations

import functools

import torch
from FrEIA.framework import ConditionNode, InputNode, Node, OutputNode
from nflows.transforms import AffineCouplingTransform, OneByOneConvolution
from torch import Tensor, nn

from flowsr.layers.actnorm import ActNorm
from flowsr.layers.adapters import NflowsTransform
from flowsr.layers.coupling import AffineCoupling, AffineInjector, InvBlockExp, ThreeShiftCoupling
from flowsr.layers.graph import FlowGraph
from flowsr.layers.invconv import FixedPermutation, InvConv1x1
from flowsr.layers.reshape import HaarDownsampling, Squeeze
from flowsr.layers.scales import TanhClampScale
from flowsr.layers.sequence import FlowSequence, Inverse
from flowsr.layers.split import ConditionalGaussianSplit, GaussianWhitening
from flowsr.layers.step import FlowStep
from flowsr.layers.subnets import FCN, DenseBlock, ZeroConv2d
from flowsr.testing.cases import Draw, LayerCase, register_layer_case
from flowsr.testing.strategies import import_strategies

__all__ = ["CondConvNet", "TwoConv", "nflows_coupling", "softsign_log_scale"]


# -- subnets and scale functions the cases draw from ------------------------------------------------


class TwoConv(nn.Module):
    """A small local subnet: 3x3 conv -> tanh -> 1x1 conv (non-zero init, unlike flowsr's subnets)."""

    def __init__(self, c_in: int, c_out: int, hidden: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(torch.tanh(self.conv1(x)))


class CondConvNet(nn.Module):
    """Transform net of nflows' coupling: ``conv(cat(x, context))`` (nflows calls ``net(x, context)``)."""

    def __init__(self, c_in: int, c_out: int, c_ctx: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in + c_ctx, c_out, 3, padding=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.conv(torch.cat([x, context], 1))


def softsign_log_scale(s: Tensor) -> Tensor:
    """A module-level log-scale function (exercises ``CallableScale``; picklable)."""
    return s / (1 + s.abs())


_tiny_fcn = functools.partial(FCN, hidden=4)
_tiny_dense = functools.partial(DenseBlock, gc=3)
_SUBNETS = (TwoConv, _tiny_fcn, _tiny_dense)
_PRIOR_NETS = (ZeroConv2d, TwoConv, _tiny_fcn)
_SCALES = ("atan", "exp", "sigmoid", "tanh_clamp", TanhClampScale(2.0), softsign_log_scale)


def _pick(draw: Draw, options, label: str):
    return draw(import_strategies().sampled_from(list(options)), label=label)


# -- fixed configurations --------------------------------------------------------------------------


def _invconv(dims_in, *, seed):
    return InvConv1x1(dims_in, seed=seed)


def _invconv_lu(dims_in, *, seed):
    return InvConv1x1(dims_in, seed=seed, lu=True)


def _perm_reverse(dims_in):
    return FixedPermutation(dims_in, kind="reverse")


def _perm_random(dims_in, *, seed):
    return FixedPermutation(dims_in, kind="random", seed=seed)


def _sequence(dims_in, *, seed):
    shape = tuple(dims_in[0])
    seq = FlowSequence(*shape)
    seq.add(ActNorm([shape])).add(InvConv1x1([shape], seed=seed)).add(Squeeze([shape]))
    seq.append(InvConv1x1, lu=True, seed=seed + 1).append(FixedPermutation, kind="random", seed=seed + 2)
    if all(s % 4 == 0 for s in shape[1:]):
        seq.append(HaarDownsampling)
    return seq


def _inverse_haar(dims_in):
    c, h, w = dims_in[0]
    return Inverse(module=HaarDownsampling([(c // 4, 2 * h, 2 * w)]))


def _inverse_invconv(dims_in, *, seed):
    return Inverse(InvConv1x1(dims_in, seed=seed))


def _nflows_conv(dims_in):
    return NflowsTransform(dims_in, transform=OneByOneConvolution(dims_in[0][0], identity_init=False))


def nflows_coupling(dims_in, dims_c):
    """nflows' ``AffineCouplingTransform`` (alternating mask, conditional conv net) as a flowsr layer."""
    c = dims_in[0][0]
    mask = torch.tensor([1 if i % 2 else -1 for i in range(c)])
    net = functools.partial(CondConvNet, c_ctx=sum(s[0] for s in dims_c))
    return NflowsTransform(dims_in, dims_c, transform=AffineCouplingTransform(mask, net))


def _affine(dims_in, dims_c=None):
    return AffineCoupling(dims_in, dims_c, subnet_constructor=_tiny_fcn, scale="atan")


def _affine_sigmoid(dims_in, dims_c=None):
    return AffineCoupling(dims_in, dims_c, subnet_constructor=_tiny_fcn, scale="sigmoid")


def _affine_realnvp(dims_in, dims_c=None):
    return AffineCoupling(
        dims_in, dims_c, subnet_constructor=_tiny_fcn, scale="exp", order="scale_shift", layout="halves", split_len=1
    )


def _three_shift_even(dims_in, dims_c=None):
    return ThreeShiftCoupling(dims_in, dims_c, subnet_constructor=_tiny_dense, split_len=3, lr_to_others=True)


def _three_shift_odd(dims_in, dims_c=None):
    return ThreeShiftCoupling(dims_in, dims_c, subnet_constructor=_tiny_dense, split_len=3, lr_to_others=False)


def _injector(dims_in, dims_c=None):
    return AffineInjector(dims_in, dims_c, subnet_constructor=_tiny_fcn)


def _inv_block_exp(dims_in, dims_c=None):
    return InvBlockExp(dims_in, dims_c, subnet_constructor=_tiny_dense, split_len=3)


def _whitening(dims_in, dims_c=None):
    return GaussianWhitening(dims_in, dims_c, subnet_constructor=ZeroConv2d, scale="atan")


def _whitening_exp(dims_in, dims_c=None):
    return GaussianWhitening(dims_in, dims_c, subnet_constructor=ZeroConv2d, scale="exp")


def _split(dims_in, dims_c=None):
    return ConditionalGaussianSplit(dims_in, dims_c, subnet_constructor=ZeroConv2d)


def _split_cond(dims_in, dims_c=None):
    return ConditionalGaussianSplit(dims_in, dims_c, subnet_constructor=ZeroConv2d, n_keep=1, scale="atan")


def _step(dims_in, dims_c=None, *, seed):
    coupling = {"subnet_constructor": _tiny_fcn, "scale": "sigmoid"}
    injector = {"subnet_constructor": _tiny_fcn}
    return FlowStep(
        dims_in, dims_c, coupling=AffineCoupling, coupling_kwargs=coupling, injector_kwargs=injector, seed=seed
    )


def _step_irn(dims_in, *, seed):
    kwargs = {"subnet_constructor": _tiny_dense, "split_len": 3}
    return FlowStep(dims_in, actnorm=False, permutation="lu", coupling=InvBlockExp, coupling_kwargs=kwargs, seed=seed)


def _flow_graph(dims_in, dims_c=None, *, seed):
    """ActNorm -> 1x1 conv -> affine coupling (on every condition) -> split, as a FlowGraph."""
    inp = InputNode(*dims_in[0], name="x")
    conds = [ConditionNode(*s, name=f"c{i}") for i, s in enumerate(dims_c or [])]
    norm = Node(inp, ActNorm, {}, name="actnorm")
    mix = Node(norm, InvConv1x1, {"seed": seed}, name="invconv")
    coupling = Node(mix, AffineCoupling, {"subnet_constructor": _tiny_fcn}, conditions=conds or None, name="coupling")
    split = Node(coupling, ConditionalGaussianSplit, {"subnet_constructor": ZeroConv2d}, name="split")
    outs = [OutputNode((split, 0), name="kept"), OutputNode((split, 1), name="eps")]
    return FlowGraph([inp, *conds, norm, mix, coupling, split, *outs])


# -- configurations drawn by Hypothesis ---------------------------------------------------------------


def _affine_drawn(dims_in, dims_c=None, *, draw):
    st = import_strategies()
    kwargs = {
        "subnet_constructor": _pick(draw, _SUBNETS, "subnet"),
        "scale": _pick(draw, _SCALES, "scale"),
        "order": _pick(draw, ("shift_scale", "scale_shift"), "order"),
        "layout": _pick(draw, ("interleaved", "halves"), "layout"),
        "split_len": draw(st.one_of(st.none(), st.integers(1, dims_in[0][0] - 1)), label="split_len"),
    }
    return AffineCoupling(dims_in, dims_c, **kwargs)


def _three_shift_drawn(dims_in, dims_c=None, *, draw):
    kwargs = {
        "subnet_constructor": _pick(draw, _SUBNETS, "subnet"),
        "split_len": draw(import_strategies().integers(1, min(3, dims_in[0][0] - 1)), label="split_len"),
        "lr_to_others": _pick(draw, (False, True), "lr_to_others"),
        "scale": _pick(draw, _SCALES, "scale"),
    }
    return ThreeShiftCoupling(dims_in, dims_c, **kwargs)


def _injector_drawn(dims_in, dims_c=None, *, draw):
    kwargs = {"subnet_constructor": _pick(draw, _SUBNETS, "subnet"), "scale": _pick(draw, _SCALES, "scale")}
    return AffineInjector(dims_in, dims_c, **kwargs)


def _inv_block_drawn(dims_in, dims_c=None, *, draw):
    kwargs = {
        "subnet_constructor": _pick(draw, _SUBNETS, "subnet"),
        "split_len": draw(import_strategies().integers(1, min(3, dims_in[0][0] - 1)), label="split_len"),
        "clamp": _pick(draw, (0.5, 1.0, 2.0), "clamp"),
    }
    return InvBlockExp(dims_in, dims_c, **kwargs)


def _whitening_drawn(dims_in, dims_c=None, *, draw):
    kwargs = {
        "subnet_constructor": _pick(draw, _PRIOR_NETS, "prior net"),
        "scale": _pick(draw, _SCALES, "scale"),
        "divide": _pick(draw, (False, True), "divide"),
    }
    return GaussianWhitening(dims_in, dims_c, **kwargs)


def _split_drawn(dims_in, dims_c=None, *, draw):
    st = import_strategies()
    kwargs = {
        "subnet_constructor": _pick(draw, _PRIOR_NETS, "prior net"),
        "n_keep": draw(st.one_of(st.none(), st.integers(1, dims_in[0][0] - 1)), label="n_keep"),
        "scale": _pick(draw, _SCALES, "scale"),
        # the prior needs an input: the kept part or a condition
        "use_kept": _pick(draw, (True, False), "use_kept") if dims_c else True,
        "divide": _pick(draw, (False, True), "divide"),
    }
    return ConditionalGaussianSplit(dims_in, dims_c, **kwargs)


def _step_drawn(dims_in, dims_c=None, *, seed, draw):
    subnet = _pick(draw, _SUBNETS, "subnet")
    couplings = [(None, None), (AffineCoupling, {"subnet_constructor": subnet, "scale": _pick(draw, _SCALES, "scale")})]
    if dims_in[0][0] >= 4:
        lr_to_others = _pick(draw, (False, True), "lr_to_others")
        couplings += [
            (ThreeShiftCoupling, {"subnet_constructor": subnet, "lr_to_others": lr_to_others}),
            (InvBlockExp, {"subnet_constructor": subnet}),
        ]
    coupling, coupling_kwargs = _pick(draw, couplings, "coupling")
    injector = _pick(draw, (False, True), "injector") if dims_c else False
    return FlowStep(
        dims_in,
        dims_c,
        actnorm=_pick(draw, (False, True), "actnorm"),
        permutation=_pick(draw, ("invconv", "lu", "reverse", "random", "none"), "permutation"),
        coupling=coupling,
        coupling_kwargs=coupling_kwargs,
        injector_kwargs={"subnet_constructor": subnet} if injector else None,
        seed=seed,
    )


def _step_changes_its_input(step: FlowStep) -> bool:
    # a step of a fixed permutation alone may be the identity (e.g. a random permutation of 2 channels)
    parts = (step.actnorm, step.injector, step.coupling)
    return any(p is not None for p in parts) or isinstance(step.permute, InvConv1x1)


# -- the registry --------------------------------------------------------------------------------------

_DRAWN = {"max_channels": 9, "sizes": range(1, 6), "max_dims": 320, "condition_channels": (1, 3), "perturb_scale": 0.15}

register_layer_case("actnorm", LayerCase(ActNorm))
register_layer_case("invconv", LayerCase(_invconv, layer=InvConv1x1))
register_layer_case("invconv_lu", LayerCase(_invconv_lu, layer=InvConv1x1))
register_layer_case("perm_reverse", LayerCase(_perm_reverse, layer=FixedPermutation, nontrivial=False))
register_layer_case("perm_random", LayerCase(_perm_random, layer=FixedPermutation, nontrivial=False))
register_layer_case("squeeze", LayerCase(Squeeze, factor=2))
register_layer_case("haar", LayerCase(HaarDownsampling, factor=2))
register_layer_case("sequence", LayerCase(_sequence, layer=FlowSequence, factor=2, odd_name="Squeeze"))
register_layer_case("inverse_haar", LayerCase(_inverse_haar, layer=Inverse, channel_multiple=4))
register_layer_case("inverse_invconv", LayerCase(_inverse_invconv, layer=Inverse))
register_layer_case("nflows_conv", LayerCase(_nflows_conv, layer=NflowsTransform, min_channels=2))
register_layer_case("nflows_coupling", LayerCase(nflows_coupling, layer=NflowsTransform, min_channels=2, conditions=1))
register_layer_case("affine", LayerCase(_affine, layer=AffineCoupling, min_channels=2))
register_layer_case(
    "affine_cond_sigmoid", LayerCase(_affine_sigmoid, layer=AffineCoupling, min_channels=2, conditions=2)
)
register_layer_case("affine_realnvp", LayerCase(_affine_realnvp, layer=AffineCoupling, min_channels=2, conditions=1))
register_layer_case("three_shift_even", LayerCase(_three_shift_even, layer=ThreeShiftCoupling, min_channels=4))
register_layer_case(
    "three_shift_odd", LayerCase(_three_shift_odd, layer=ThreeShiftCoupling, min_channels=4, conditions=1)
)
register_layer_case("injector", LayerCase(_injector, layer=AffineInjector, conditions=1))
register_layer_case("inv_block_exp", LayerCase(_inv_block_exp, layer=InvBlockExp, min_channels=4))
register_layer_case("inv_block_exp_cond", LayerCase(_inv_block_exp, layer=InvBlockExp, min_channels=4, conditions=1))
register_layer_case("whitening", LayerCase(_whitening, layer=GaussianWhitening, conditions=1))
register_layer_case("whitening_exp", LayerCase(_whitening_exp, layer=GaussianWhitening, conditions=2))
register_layer_case("split", LayerCase(_split, layer=ConditionalGaussianSplit, min_channels=2))
register_layer_case("split_cond", LayerCase(_split_cond, layer=ConditionalGaussianSplit, min_channels=2, conditions=1))
register_layer_case("flow_step", LayerCase(_step, layer=FlowStep, min_channels=2, conditions=1))
register_layer_case("flow_step_irn", LayerCase(_step_irn, layer=FlowStep, min_channels=4))
register_layer_case("flow_graph", LayerCase(_flow_graph, layer=FlowGraph, min_channels=2, conditions=(0, 2)))
register_layer_case(
    "affine_drawn", LayerCase(_affine_drawn, layer=AffineCoupling, min_channels=2, conditions=(0, 2), **_DRAWN)
)
register_layer_case(
    "three_shift_drawn",
    LayerCase(_three_shift_drawn, layer=ThreeShiftCoupling, min_channels=2, conditions=(0, 1), **_DRAWN),
)
register_layer_case("injector_drawn", LayerCase(_injector_drawn, layer=AffineInjector, conditions=(1, 2), **_DRAWN))
register_layer_case(
    "inv_block_exp_drawn", LayerCase(_inv_block_drawn, layer=InvBlockExp, min_channels=2, conditions=(0, 1), **_DRAWN)
)
register_layer_case(
    "whitening_drawn", LayerCase(_whitening_drawn, layer=GaussianWhitening, conditions=(1, 2), **_DRAWN)
)
register_layer_case(
    "split_drawn", LayerCase(_split_drawn, layer=ConditionalGaussianSplit, min_channels=2, conditions=(0, 2), **_DRAWN)
)
register_layer_case(
    "flow_step_drawn",
    LayerCase(
        _step_drawn, layer=FlowStep, min_channels=2, conditions=(0, 1), nontrivial=_step_changes_its_input, **_DRAWN
    ),
)
