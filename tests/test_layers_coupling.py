"""Unit tests of the scale functions, couplings, injector, Gaussian whitening / split and flow steps.

* A FrEIA graph built the usual way (nodes constructing the layers from their classes).
* Bad hyper-parameters and subnets raise ``ValueError`` naming the layer; layers pickle.
* Formula and operation-order tests (bitwise in float32, where official reproduction needs it).
* Official numerics: IRN (Haar + ``InvBlockExp``) and SRFlow level 1 (``FlowStep`` with injector
  and sigmoid coupling, ``ConditionalGaussianSplit``) against the shared golden fixtures.

The properties every layer must have (exact inverse, log-det vs autograd, batch independence,
``output_dims``, not the identity, FrEIA graph node, float32, bad input and conditions) are the
layer contract, run in ``test_contract_layers.py`` over every layer case -- including ``*_drawn``
cases that draw these layers' hyper-parameters (subnet, scale, order, layout, split, ...).
"""

from __future__ import annotations

import functools
import math
import pickle

import pytest
import torch
from FrEIA.framework import ConditionNode, GraphINN, InputNode, Node, OutputNode
from torch import nn

from flowsr import testing as ft
from flowsr.layers.coupling import AffineCoupling, AffineInjector, InvBlockExp, ThreeShiftCoupling
from flowsr.layers.reshape import HaarDownsampling, Squeeze
from flowsr.layers.scales import (
    AtanScale,
    CallableScale,
    ExpScale,
    ScaleFunction,
    SigmoidScale,
    TanhClampScale,
    get_scale_function,
)
from flowsr.layers.split import ConditionalGaussianSplit, GaussianWhitening
from flowsr.layers.step import FlowStep
from flowsr.layers.subnets import FCN, DenseBlock, ZeroConv2d
from flowsr.testing.builtin_cases import TwoConv, softsign_log_scale

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*triangular_solve.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.qr.*:UserWarning"),
]

# --------------------------------------------------------------------------------------------
# subnets
# --------------------------------------------------------------------------------------------


class Fixed(nn.Module):
    """A subnet returning a fixed tensor (broadcast over the batch), to test the formulas alone."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.register_buffer("out", out)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x)
        return self.out.expand(x.shape[0], -1, -1, -1)


def _fixed(out):
    return lambda c_in, c_out: Fixed(out)


_tiny_fcn = functools.partial(FCN, hidden=4)
_tiny_dense = functools.partial(DenseBlock, gc=3)
def test_graph_inn_builds_layers_from_classes(float64):
    """The usual FrEIA way: the node constructs the layer from its class and keyword arguments."""
    inp = InputNode(5, 4, 4, name="x")
    cond = ConditionNode(3, 4, 4, name="feature")
    coupling = Node(inp, AffineCoupling, {"subnet_constructor": _tiny_fcn, "scale": "sigmoid"}, conditions=cond)
    split = Node(coupling, ConditionalGaussianSplit, {"subnet_constructor": ZeroConv2d}, conditions=cond)
    white = Node((split, 1), GaussianWhitening, {"subnet_constructor": ZeroConv2d, "scale": "atan"}, conditions=cond)
    outs = [OutputNode((split, 0)), OutputNode(white)]
    graph = GraphINN([inp, cond, coupling, split, white, *outs], force_tuple_output=True)
    ft.perturb_parameters(graph, seed=3, scale=0.3)
    x, c = ft.tensors((2, 5, 4, 4), seed=1), ft.tensors((2, 3, 4, 4), seed=2)
    ft.check_all(graph, [x], [c])
    (h, eps), _ = ft.run_module(graph, [x], [c])
    assert h.shape == (2, 3, 4, 4) and eps.shape == (2, 2, 4, 4)  # consume round(2.5) = 2


def test_bad_hyper_parameters_and_subnets(float64):
    with pytest.raises(ValueError, match="^AffineCoupling: split_len"):
        AffineCoupling([(4, 2, 2)], subnet_constructor=TwoConv, split_len=4)
    with pytest.raises(ValueError, match="^AffineCoupling: order"):
        AffineCoupling([(4, 2, 2)], subnet_constructor=TwoConv, order="scale_first")
    with pytest.raises(ValueError, match="^AffineCoupling: layout"):
        AffineCoupling([(4, 2, 2)], subnet_constructor=TwoConv, layout="chunks")
    with pytest.raises(ValueError, match="unknown scale function"):
        AffineCoupling([(4, 2, 2)], subnet_constructor=TwoConv, scale="softplus")
    with pytest.raises(ValueError, match="^ThreeShiftCoupling: split_len"):
        ThreeShiftCoupling([(3, 2, 2)], subnet_constructor=TwoConv)
    with pytest.raises(ValueError, match="^InvBlockExp: split_len"):
        InvBlockExp([(3, 2, 2)], subnet_constructor=TwoConv)
    with pytest.raises(ValueError, match="clamp must be positive"):
        InvBlockExp([(4, 2, 2)], subnet_constructor=TwoConv, clamp=0.0)
    for cls in (AffineInjector, GaussianWhitening):
        with pytest.raises(ValueError, match=f"^{cls.__name__}: needs at least one condition"):
            cls([(4, 2, 2)], subnet_constructor=TwoConv)
    with pytest.raises(ValueError, match="^ConditionalGaussianSplit: n_keep"):
        ConditionalGaussianSplit([(4, 2, 2)], subnet_constructor=TwoConv, n_keep=0)
    with pytest.raises(ValueError, match="use_kept=False"):
        ConditionalGaussianSplit([(4, 2, 2)], subnet_constructor=ZeroConv2d, use_kept=False)
    # a subnet with the wrong output width fails with the layer's name, not deep inside torch
    layer = AffineCoupling([(4, 2, 2)], subnet_constructor=lambda c_in, c_out: TwoConv(c_in, c_out + 1))
    with pytest.raises(ValueError, match=r"^AffineCoupling: subnet must map \(1, 2, 2, 2\) to \(1, 4, 2, 2\)"):
        layer([torch.randn(1, 4, 2, 2)])
    split = ConditionalGaussianSplit([(4, 2, 2)], subnet_constructor=lambda c_in, c_out: TwoConv(c_in, 3))
    with pytest.raises(ValueError, match="^ConditionalGaussianSplit: prior must map"):
        split([torch.randn(1, 4, 2, 2)])
    block = InvBlockExp([(5, 2, 2)], subnet_constructor=lambda c_in, c_out: TwoConv(c_in, 2))
    with pytest.raises(ValueError, match="^InvBlockExp: phi must map"):
        block([torch.randn(1, 5, 2, 2)])


# --------------------------------------------------------------------------------------------
# scale functions
# --------------------------------------------------------------------------------------------


def test_scale_functions(float64):
    s = torch.linspace(-5, 5, 11)
    torch.testing.assert_close(AtanScale().log_scale(s), 0.318 * torch.atan(2 * s))
    assert AtanScale().log_scale(torch.tensor(1e9)).abs() <= 0.318 * math.pi / 2
    scale, log_scale = SigmoidScale().params(torch.zeros(1))
    assert abs(scale.item() - (1 / (1 + math.exp(-2)) + 1e-4)) < 1e-12  # 0.880897: SRFlow at init
    torch.testing.assert_close(log_scale, scale.log())
    torch.testing.assert_close(TanhClampScale(2.0).log_scale(s), 2.0 * torch.tanh(s / 2))
    torch.testing.assert_close(ExpScale().log_scale(s), s)
    y = torch.randn(11)
    for fn in (ExpScale(), AtanScale(), SigmoidScale(), TanhClampScale(), CallableScale(softsign_log_scale)):
        e, l = fn.params(s)
        torch.testing.assert_close(e.log(), l)
        torch.testing.assert_close(fn.scale(s), e)
        torch.testing.assert_close(fn.log_scale(s), l)
        torch.testing.assert_close(fn.unscale(y * e, e, l), y)


def test_get_scale_function():
    for name, cls in (
        ("atan", AtanScale),
        ("exp", ExpScale),
        ("sigmoid", SigmoidScale),
        ("tanh_clamp", TanhClampScale),
    ):
        fn = get_scale_function(name)
        assert isinstance(fn, cls) and fn.name == name
    custom = TanhClampScale(3.0)
    assert get_scale_function(custom) is custom
    wrapped = get_scale_function(softsign_log_scale)
    assert isinstance(wrapped, CallableScale) and isinstance(wrapped, ScaleFunction)
    assert wrapped.name == "softsign_log_scale"
    with pytest.raises(ValueError, match="unknown scale function 'softplus'"):
        get_scale_function("softplus")
    with pytest.raises(ValueError, match="scale must be"):
        get_scale_function(3.0)


def test_layers_pickle_and_repr(float64):
    layers = [
        AffineCoupling([(5, 2, 2)], [(2, 2, 2)], subnet_constructor=_tiny_fcn, scale=softsign_log_scale),
        ThreeShiftCoupling([(5, 2, 2)], subnet_constructor=_tiny_dense, lr_to_others=False),
        AffineInjector([(5, 2, 2)], [(2, 2, 2)], subnet_constructor=_tiny_fcn),
        InvBlockExp([(5, 2, 2)], subnet_constructor=_tiny_dense, clamp=2.0),
        GaussianWhitening([(5, 2, 2)], [(2, 2, 2)], subnet_constructor=ZeroConv2d, scale=TanhClampScale(2.0)),
        ConditionalGaussianSplit([(5, 2, 2)], subnet_constructor=ZeroConv2d, scale="atan"),
        FlowStep([(5, 2, 2)], coupling=InvBlockExp, coupling_kwargs={"subnet_constructor": _tiny_dense}),
    ]
    x = torch.randn(2, 5, 2, 2)
    c = [torch.randn(2, 2, 2, 2)]
    for layer in layers:
        ft.perturb_parameters(layer, seed=0)
        cond = c if layer.dims_c else None
        copy = pickle.loads(pickle.dumps(layer))
        a, b = layer([x], c=cond), copy([x], c=cond)
        assert all(torch.equal(u, v) for u, v in zip(a[0], b[0])) and torch.equal(a[1], b[1])
    assert "scale=CallableScale(softsign_log_scale)" in repr(layers[0])
    assert "lr_to_others=False" in repr(layers[1]) and "clamp=2.0" in repr(layers[3])
    assert "n_keep=3" in repr(layers[5]) and "divide=True" in repr(layers[5])


# --------------------------------------------------------------------------------------------
# formulas and operation order
# --------------------------------------------------------------------------------------------


def test_affine_coupling_hcflow_formula(float64):
    """(x2 + shift) * exp(0.318 atan(2 s)) with interleaved (shift, s) and the first half passive."""
    C, H, W = 5, 2, 3
    h = torch.randn(1, 2 * (C - C // 2), H, W)
    layer = AffineCoupling([(C, H, W)], subnet_constructor=_fixed(h))
    x = torch.randn(2, C, H, W)
    (y,), logdet = layer([x])
    shift, ls = h[:, 0::2], 0.318 * torch.atan(2 * h[:, 1::2])
    torch.testing.assert_close(y[:, :2], x[:, :2])
    torch.testing.assert_close(y[:, 2:], (x[:, 2:] + shift) * torch.exp(ls))
    torch.testing.assert_close(logdet, ls.sum().expand(2))
    torch.testing.assert_close(layer.subnet.seen[0], x[:, :2])


def test_affine_coupling_layout_order_and_split_len(float64):
    C, k = 6, 2
    h = torch.randn(1, 2 * (C - k), 2, 2)
    x = torch.randn(3, C, 2, 2)
    layer = AffineCoupling(
        [(C, 2, 2)], subnet_constructor=_fixed(h), scale="exp", order="scale_shift", layout="halves", split_len=k
    )
    (y,), logdet = layer([x])
    s, t = h[:, : C - k], h[:, C - k :]  # halves: raw scale first, shift second (FrEIA's order)
    torch.testing.assert_close(y, torch.cat([x[:, :k], x[:, k:] * torch.exp(s) + t], 1))
    torch.testing.assert_close(logdet, s.sum().expand(3))
    (back,), _ = layer([y], rev=True)
    torch.testing.assert_close(back, x)


def test_affine_coupling_conditions_follow_the_passive_half(float64):
    layer = AffineCoupling([(4, 2, 2)], [(3, 2, 2), (1, 2, 2)], subnet_constructor=_fixed(torch.zeros(1, 4, 2, 2)))
    x, c1, c2 = torch.randn(1, 4, 2, 2), torch.randn(1, 3, 2, 2), torch.randn(1, 1, 2, 2)
    layer([x], c=[c1, c2])
    torch.testing.assert_close(layer.subnet.seen[0], torch.cat([x[:, :2], c1, c2], 1))


def test_official_operation_order_bitwise():
    """float32 results equal the official expressions bit for bit (HCFlow, SRFlow, IRN orders)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 7, generator=g) * 3
    h = torch.randn(1, 6, 5, 7, generator=g) * 2
    shift, raw = h[:, 0::2], h[:, 1::2]
    x1, x2 = x[:, :3], x[:, 3:]

    # HCFlow: forward (z2 + shift) * exp(0.318 atan(2 s)), reverse z2 * exp(-ls) - shift
    hc = AffineCoupling([(6, 5, 7)], subnet_constructor=_fixed(h), scale="atan")
    ls = 0.318 * torch.atan(2 * raw)
    (y,), _ = hc([x])
    assert torch.equal(y[:, 3:], (x2 + shift) * torch.exp(ls))
    (back,), _ = hc([y], rev=True)
    assert torch.equal(back[:, 3:], y[:, 3:] * torch.exp(-ls) - shift)

    # SRFlow: scale = sigmoid(s + 2) + 1e-4; forward (z2 + shift) * scale, reverse z2 / scale - shift
    sr = AffineCoupling([(6, 5, 7)], subnet_constructor=_fixed(h), scale="sigmoid")
    scale = torch.sigmoid(raw + 2.0) + 1e-4
    (y,), logdet = sr([x])
    assert torch.equal(y[:, 3:], (x2 + shift) * scale)
    assert torch.equal(logdet, torch.log(scale).sum(dim=[1, 2, 3]).expand(2))
    (back,), _ = sr([y], rev=True)
    assert torch.equal(back[:, 3:], y[:, 3:] / scale - shift)

    # SRFlow injector: the same on all channels, from the condition only
    hf = torch.randn(1, 12, 5, 7, generator=g)
    inj = AffineInjector([(6, 5, 7)], [(4, 5, 7)], subnet_constructor=_fixed(hf))
    scale_f = torch.sigmoid(hf[:, 1::2] + 2.0) + 1e-4
    (y,), _ = inj([x], c=[torch.zeros(2, 4, 5, 7)])
    assert torch.equal(y, (x + hf[:, 0::2]) * scale_f)
    (back,), _ = inj([y], c=[torch.zeros(2, 4, 5, 7)], rev=True)
    assert torch.equal(back, y / scale_f - hf[:, 0::2])

    # HCFlow rescaling Affine3shift, odd step: additive on the LR channels
    t3 = torch.randn(1, 3, 5, 7, generator=g)
    odd = ThreeShiftCoupling([(6, 5, 7)], subnet_constructor=_fixed(t3), lr_to_others=False)
    (y,), _ = odd([x])
    assert torch.equal(y, torch.cat([x1 + t3, x2], 1))

    # IRN: y1 = x1 + F(x2); s = clamp * (sigmoid(H(y1)) * 2 - 1); y2 = x2.mul(exp(s)) + G(y1);
    # reverse x2 = (y2 - G(y1)).div(exp(s)); x1 = y1 - F(x2)
    nets = {n: TwoConv(3, 3) for n in ("F", "G", "H")}
    block = InvBlockExp([(6, 5, 7)], subnet_constructor=functools.partial(TwoConv, hidden=4))
    for ours, theirs in (("phi", "F"), ("eta", "G"), ("rho", "H")):
        getattr(block, ours).load_state_dict(nets[theirs].state_dict())
    with torch.no_grad():
        (y,), logdet = block([x])
        y1 = x1 + nets["F"](x2)
        s = 1.0 * (torch.sigmoid(nets["H"](y1)) * 2 - 1)
        assert torch.equal(y, torch.cat([y1, x2.mul(torch.exp(s)) + nets["G"](y1)], 1))
        assert torch.equal(logdet, s.sum(dim=[1, 2, 3]))
        (back,), _ = block([y], rev=True)
        s = 1.0 * (torch.sigmoid(nets["H"](y[:, :3])) * 2 - 1)
        b2 = (y[:, 3:] - nets["G"](y[:, :3])).div(torch.exp(s))
        assert torch.equal(back, torch.cat([y[:, :3] - nets["F"](b2), b2], 1))


def test_whitening_operation_order_bitwise():
    """Forward (a - mu) * exp(-l) (HCFlow rescaling) or (a - mu) / exp(l) (SRFlow); reverse mu + exp(l) * eps."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2, 3, 4, 5, generator=g) * 4
    h = torch.randn(1, 6, 4, 5, generator=g) * 2
    mu, raw = h[:, 0::2], h[:, 1::2]
    c = [torch.zeros(2, 1, 4, 5)]
    for scale, ls in (("atan", 0.318 * torch.atan(2 * raw)), ("exp", raw)):
        for divide in (False, True):
            layer = GaussianWhitening(
                [(3, 4, 5)], [(1, 4, 5)], subnet_constructor=_fixed(h), scale=scale, divide=divide
            )
            (eps,), logdet = layer([a], c=c)
            assert torch.equal(eps, (a - mu) / torch.exp(ls) if divide else (a - mu) * torch.exp(-ls))
            assert torch.equal(logdet, -ls.sum(dim=[1, 2, 3]).expand(2))
            (back,), _ = layer([eps], c=c, rev=True)
            assert torch.equal(back, mu + torch.exp(ls) * eps)
    # the split: SRFlow's Split2d order by default, prior on the kept part only
    x = torch.randn(2, 6, 4, 5, generator=g)
    split = ConditionalGaussianSplit([(6, 4, 5)], subnet_constructor=_fixed(h))
    (kept, eps), logdet = split([x])
    assert torch.equal(kept, x[:, :3]) and torch.equal(split.prior.seen[0], x[:, :3])
    assert torch.equal(eps, (x[:, 3:] - mu) / torch.exp(raw))
    (back,), _ = split([kept, eps], rev=True)
    assert torch.equal(back, torch.cat([kept, mu + torch.exp(raw) * eps], 1))


def test_srflow_coupling_and_injector_at_init_scale_by_sigmoid_2(float64):
    """Zero-initialised output convs: SRFlow's couplings start as a constant 0.8809 scaling."""
    x, c = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 3, 3)
    k = 1 / (1 + math.exp(-2)) + 1e-4
    (y,), j = AffineInjector([(4, 3, 3)], [(5, 3, 3)], subnet_constructor=_tiny_fcn)([x], c=[c])
    torch.testing.assert_close(y, x * k)
    torch.testing.assert_close(j, torch.full((2,), 4 * 9 * math.log(k)))
    coupling = AffineCoupling([(4, 3, 3)], [(5, 3, 3)], subnet_constructor=_tiny_fcn, scale="sigmoid")
    (y,), _ = coupling([x], c=[c])
    torch.testing.assert_close(y, torch.cat([x[:, :2], x[:, 2:] * k], 1))


def test_three_shift_directions_and_widths(float64):
    C = 7
    even = ThreeShiftCoupling([(C, 2, 2)], [(2, 2, 2)], subnet_constructor=_tiny_dense, lr_to_others=True)
    odd = ThreeShiftCoupling([(C, 2, 2)], subnet_constructor=_tiny_dense, lr_to_others=False)
    assert even.subnet.conv1.in_channels == 3 + 2 and even.subnet.conv5.out_channels == 2 * (C - 3)
    assert odd.subnet.conv1.in_channels == C - 3 and odd.subnet.conv5.out_channels == 3
    ft.perturb_parameters(odd, seed=1)
    x = torch.randn(2, C, 2, 2)
    (y,), j = odd([x])
    torch.testing.assert_close(y[:, 3:], x[:, 3:])  # additive update of the LR channels only
    torch.testing.assert_close(y[:, :3], x[:, :3] + odd.subnet(x[:, 3:]))
    assert torch.equal(j, torch.zeros(2))
    ft.perturb_parameters(even, seed=2)
    c = torch.randn(2, 2, 2, 2)
    (y,), j = even([x], c=[c])
    h = even.subnet(torch.cat([x[:, :3], c], 1))
    ls = 0.318 * torch.atan(2 * h[:, 1::2])
    torch.testing.assert_close(y, torch.cat([x[:, :3], (x[:, 3:] + h[:, 0::2]) * torch.exp(ls)], 1))
    torch.testing.assert_close(j, ls.flatten(1).sum(1))


def test_inv_block_exp_is_identity_at_init_and_conditions_reach_every_subnet(float64):
    block = InvBlockExp([(12, 4, 4)], subnet_constructor=_tiny_dense)
    x = torch.randn(2, 12, 4, 4)
    (y,), j = block([x])
    torch.testing.assert_close(y, x)  # conv5 of every DenseBlock is zero: the IRN initial state
    assert torch.equal(j, torch.zeros(2))
    cond = InvBlockExp([(5, 2, 2)], [(2, 2, 2)], subnet_constructor=_tiny_dense, split_len=2)
    assert cond.phi.conv1.in_channels == 3 + 2 and cond.phi.conv5.out_channels == 2
    assert cond.rho.conv1.in_channels == 2 + 2 and cond.eta.conv5.out_channels == 3


def test_whitening_gives_the_gaussian_log_density(float64):
    """log N(a; mu, e^l) == log N(eps; 0, I) + log-det: the learned prior as a bijection."""
    layer = ft.perturb_parameters(GaussianWhitening([(3, 4, 4)], [(5, 4, 4)], subnet_constructor=ZeroConv2d), seed=2)
    a, c = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    (eps,), logdet = layer([a], c=[c])
    mu, ls = layer.mean_and_log_scale([c])
    direct = torch.distributions.Normal(mu, ls.exp()).log_prob(a).flatten(1).sum(1)
    via = torch.distributions.Normal(0.0, 1.0).log_prob(eps).flatten(1).sum(1) + logdet
    torch.testing.assert_close(via, direct)
    (a_back,), _ = layer([eps * 0], c=[c], rev=True)
    torch.testing.assert_close(a_back, mu)  # temperature 0 gives the mean


def test_conditional_split_defaults_and_prior_input(float64):
    split = ConditionalGaussianSplit([(12, 4, 4)], subnet_constructor=ZeroConv2d)
    assert split.n_keep == 6 and split.output_dims([(12, 8, 8)]) == [(6, 8, 8), (6, 8, 8)]
    assert split.prior.in_channels == 6 and split.prior.out_channels == 12
    assert sorted(split.state_dict()) == ["prior.bias", "prior.logs", "prior.weight"]  # SRFlow's `conv.*`
    odd = ConditionalGaussianSplit([(5, 2, 2)], [(2, 2, 2)], subnet_constructor=ZeroConv2d)
    # Glow/SRFlow: consume round(C / 2) channels (Python rounds 2.5 to 2), keep the rest.
    assert odd.n_keep == 3 and odd.prior.in_channels == 5 and odd.prior.out_channels == 4  # kept part + condition
    seven = ConditionalGaussianSplit([(7, 2, 2)], subnet_constructor=ZeroConv2d)
    assert seven.n_keep == 3  # round(3.5) = 4 consumed
    no_kept = ConditionalGaussianSplit([(4, 2, 2)], [(3, 2, 2)], subnet_constructor=ZeroConv2d, use_kept=False)
    assert no_kept.prior.in_channels == 3
    ft.perturb_parameters(no_kept, seed=0)
    x, c = torch.randn(2, 4, 2, 2), torch.randn(2, 3, 2, 2)
    (h, eps), logdet = no_kept([x], c=[c])
    mu, ls = no_kept.mean_and_log_scale(h, [c])
    hp = no_kept.prior(c)
    torch.testing.assert_close(mu, hp[:, 0::2])
    torch.testing.assert_close(eps, (x[:, 2:] - mu) * torch.exp(-ls))
    torch.testing.assert_close(logdet, -ls.flatten(1).sum(1))


def test_flow_step_parts_and_order(float64):
    coupling = {"subnet_constructor": _tiny_fcn, "scale": "sigmoid"}
    step = FlowStep(
        [(4, 2, 2)],
        [(3, 2, 2)],
        coupling=AffineCoupling,
        coupling_kwargs=coupling,
        injector_kwargs={"subnet_constructor": _tiny_fcn},
    )
    assert [n for n, _ in step.named_children()] == ["actnorm", "permute", "injector", "coupling"]
    ft.perturb_parameters(step, seed=0)
    x, c = torch.randn(2, 4, 2, 2), torch.randn(2, 3, 2, 2)
    expected, total = [x], torch.zeros(2)
    for part, cond in ((step.actnorm, None), (step.permute, None), (step.injector, [c]), (step.coupling, [c])):
        expected, j = part(expected, c=cond)
        total = total + j
    (y,), logdet = step([x], c=[c])
    torch.testing.assert_close(y, expected[0])
    torch.testing.assert_close(logdet, total)
    back, total_rev = [y], torch.zeros(2)
    for part, cond in ((step.coupling, [c]), (step.injector, [c]), (step.permute, None), (step.actnorm, None)):
        back, j = part(back, c=cond, rev=True)
        total_rev = total_rev + j
    (x_back,), logdet_rev = step([y], c=[c], rev=True)
    torch.testing.assert_close(x_back, back[0])
    torch.testing.assert_close(logdet_rev, total_rev)


def test_flow_step_children(float64):
    plain = FlowStep([(4, 2, 2)], permutation="none")
    assert [n for n, _ in plain.named_children()] == ["actnorm"]
    kinds = {"invconv": ("weight",), "lu": ("lower", "upper", "log_s"), "reverse": (), "random": ()}
    for permutation, params in kinds.items():
        step = FlowStep([(4, 2, 2)], actnorm=False, permutation=permutation, seed=3)
        assert [n for n, _ in step.named_children()] == ["permute"]
        assert tuple(n for n, _ in step.permute.named_parameters()) == params
    rescaling = FlowStep(
        [(12, 2, 2)],
        permutation="none",
        coupling=ThreeShiftCoupling,
        coupling_kwargs={"subnet_constructor": _tiny_dense, "lr_to_others": False},
    )
    assert [n for n, _ in rescaling.named_children()] == ["actnorm", "coupling"]
    assert isinstance(rescaling.coupling, ThreeShiftCoupling) and not rescaling.coupling.lr_to_others
    with pytest.raises(ValueError, match="^FlowStep: unknown permutation"):
        FlowStep([(4, 2, 2)], permutation="shuffle")
    with pytest.raises(ValueError, match="^FlowStep: an affine injector needs conditions"):
        FlowStep([(4, 2, 2)], injector_kwargs={"subnet_constructor": FCN})
    with pytest.raises(ValueError, match="^FlowStep: coupling_kwargs given but coupling is None"):
        FlowStep([(4, 2, 2)], coupling_kwargs={"subnet_constructor": FCN})


# --------------------------------------------------------------------------------------------
# official numerics (golden fixtures of the official IRN / SRFlow code, float32)
# --------------------------------------------------------------------------------------------


def test_irn_golden_inv_block_exp(golden_dir):
    """Haar + InvBlockExp (F/G/H loaded as phi/eta/rho) reproduce the official IRN forward and reverse."""
    g = torch.load(golden_dir / "irn_small_golden.pt", weights_only=True)
    sd, gc = g["state_dict"], int(g["opt"]["network_G"]["gc"])
    ops, shape = [], tuple(g["hr"].shape[1:])
    indices = sorted({int(k.split(".")[1]) for k in sd})
    for i in indices:
        prefix = f"operations.{i}."
        local = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if "haar_weights" in local:
            op = HaarDownsampling([shape])
        else:
            op = InvBlockExp([shape], subnet_constructor=functools.partial(DenseBlock, gc=gc), split_len=3)
            names = {"F": "phi", "G": "eta", "H": "rho"}
            local = {names[k[0]] + k[1:]: v for k, v in local.items()}
        op.load_state_dict(local, strict=True)
        ops.append(op.eval())
        shape = op.output_dims([shape])[0]
    assert sum(isinstance(op, InvBlockExp) for op in ops) == 4

    with torch.no_grad():
        x, logdet = g["hr"], torch.zeros(2, dtype=torch.float64)
        for op, (name, expected) in zip(ops, g["fwd_trace"]):
            (x,), j = op([x])
            logdet = logdet + j.double()
            # convolutions differ by a few float32 ulps between CPU kernels (oneDNN / ISA)
            torch.testing.assert_close(x, expected, rtol=0, atol=2e-6, msg=name)
        torch.testing.assert_close(x, g["fwd_out"], rtol=0, atol=2e-6)
        torch.testing.assert_close(logdet, g["fwd_logdet_per_sample"].double(), rtol=1e-6, atol=0)

        for start, expected in ((g["rev_in"], g["rev_out"]), (g["fwd_out"], g["rev_of_fwd_out"])):
            z = start
            for op in reversed(ops):
                (z,), _ = op([z], rev=True)
            # rev_in carries N(0, I) latents, so rev_out reaches |x| ~ 135: float32 round-off of
            # the official output itself is ~1e-4 there (vs float64); compare relative to the range
            atol = max(1e-5, 2e-6 * float(expected.abs().max()))
            torch.testing.assert_close(z[:, :3], expected, rtol=0, atol=atol)


def _srflow_fcn_state(sd, prefix):
    """Official ``nn.Sequential`` indices {0, 2, 4} -> FCN's conv1, conv2, conv3."""
    out = {}
    for k, v in sd.items():
        if k.startswith(prefix):
            index, rest = k[len(prefix) :].split(".", 1)
            out[f"conv{int(index) // 2 + 1}.{rest}"] = v
    return out


def test_srflow_golden_level1_steps_and_split(golden_dir):
    """SRFlow level 1 from flowsr layers: squeeze, 2 plain steps, 2 steps with injector + sigmoid
    coupling on the RRDB feature, learned-prior split -- against the official trace."""
    g = torch.load(golden_dir / "srflow_small_golden.pt", weights_only=True)
    sd, P = g["state_dict"], "flowUpsamplerNet.layers."
    hidden = int(g["opt"]["network_G"]["flow"]["CondAffineSeparatedAndCond"]["hidden_channels"])
    feat = g["rrdb_features"][g["level_to_feature"][1]]
    hr = g["hr"]
    shape, cshape = (12, hr.shape[2] // 2, hr.shape[3] // 2), tuple(feat.shape[1:])
    subnet = functools.partial(FCN, hidden=hidden)
    steps = []
    for i in (1, 2, 3, 4):
        conditional = i >= 3
        step = FlowStep(
            [shape],
            [cshape] if conditional else None,
            coupling=AffineCoupling if conditional else None,
            coupling_kwargs={"subnet_constructor": subnet, "scale": "sigmoid"} if conditional else None,
            injector_kwargs={"subnet_constructor": subnet} if conditional else None,
        )
        state = {
            "actnorm.bias": sd[f"{P}{i}.actnorm.bias"],
            "actnorm.logs": sd[f"{P}{i}.actnorm.logs"],
            "permute.weight": sd[f"{P}{i}.invconv.weight"],
        }
        if conditional:
            for ours, theirs in (("coupling", "fAffine"), ("injector", "fFeatures")):
                sub = _srflow_fcn_state(sd, f"{P}{i}.affine.{theirs}.")
                state.update({f"{ours}.subnet.{k}": v for k, v in sub.items()})
        step.load_state_dict(state, strict=True)
        steps.append(step.eval())
    split = ConditionalGaussianSplit([shape], subnet_constructor=ZeroConv2d)
    split.load_state_dict({f"prior.{k}": sd[f"{P}5.conv.{k}"] for k in ("weight", "bias", "logs")}, strict=True)
    split.eval()

    (name0, before, logdet_before), (name1, kept, logdet_end) = g["fwd_trace"][:2]
    assert name0 == "layer5_level1_before_split" and name1 == "layer5_level1_end"
    with torch.no_grad():
        (x,), logdet = Squeeze([(3, *hr.shape[2:])])([hr])
        for step in steps:
            (x,), j = step([x], c=[feat] if step.injector is not None else None)
            logdet = logdet + j
        torch.testing.assert_close(x, before, rtol=0, atol=2e-5)
        torch.testing.assert_close(logdet, logdet_before, rtol=2e-7, atol=0)
        (h, eps), j = split([x])
        torch.testing.assert_close(h, kept, rtol=0, atol=2e-5)
        torch.testing.assert_close(eps, g["fwd_latents"][0], rtol=0, atol=2e-5)
        # the official log-det accumulates the prior log-density: log N(z2; mu, e^l) = log N(eps) + our log-det
        logp = j + (-0.5 * (eps**2 + math.log(2 * math.pi))).flatten(1).sum(1)
        torch.testing.assert_close(logdet_before + logp, logdet_end, rtol=2e-7, atol=0)
        # and back: the split and the four steps invert to the squeezed HR image
        (z,), _ = split([h, eps], rev=True)
        for step in reversed(steps):
            (z,), _ = step([z], c=[feat] if step.injector is not None else None, rev=True)
        (hr_back,), _ = Squeeze([(3, *hr.shape[2:])])([z], rev=True)
        torch.testing.assert_close(hr_back, hr, rtol=0, atol=1e-5)
