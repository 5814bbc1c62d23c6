"""Unit tests of the coupling, injector, whitening/split and step layers against their formulas.

(Their invertibility / log-det / GraphINN / bad-input properties run with every other layer in
``test_layers_basic.py``.)
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from flowsr import testing as ft
from flowsr.layers.coupling import AffineCoupling, AffineInjector, InvBlockExp, ThreeShiftCoupling
from flowsr.layers.scales import AtanScale, ExpScale, ScaleFunction, SigmoidScale, TanhClampScale, get_scale_function
from flowsr.layers.split import ConditionalGaussianSplit, GaussianWhitening
from flowsr.layers.step import FlowStep
from flowsr.layers.subnets import FCN, DenseBlock, ZeroConv2d


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


def test_scale_functions(float64):
    s = torch.linspace(-5, 5, 11)
    torch.testing.assert_close(AtanScale().log_scale(s), 0.318 * torch.atan(2 * s))
    assert AtanScale().log_scale(torch.tensor(1e9)).abs() <= 0.318 * math.pi / 2
    scale, log_scale = SigmoidScale().params(torch.zeros(1))
    assert abs(scale.item() - (1 / (1 + math.exp(-2)) + 1e-4)) < 1e-12  # 0.880897: SRFlow at init
    torch.testing.assert_close(log_scale, scale.log())
    torch.testing.assert_close(TanhClampScale(2.0).log_scale(s), 2.0 * torch.tanh(s / 2))
    torch.testing.assert_close(ExpScale().log_scale(s), s)
    assert isinstance(get_scale_function("exp"), ScaleFunction) and get_scale_function(AtanScale()).name == "atan"
    y = torch.randn(11)
    for fn in (ExpScale(), AtanScale(), SigmoidScale(), TanhClampScale()):
        e, l = fn.params(s)
        torch.testing.assert_close(fn.unscale(y * e, e, l), y)
    with pytest.raises(ValueError, match="unknown scale function"):
        get_scale_function("softplus")


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


def test_affine_coupling_conditions_follow_the_passive_half(float64):
    layer = AffineCoupling([(4, 2, 2)], [(3, 2, 2)], subnet_constructor=_fixed(torch.zeros(1, 4, 2, 2)))
    x, c = torch.randn(1, 4, 2, 2), torch.randn(1, 3, 2, 2)
    layer([x], c=[c])
    torch.testing.assert_close(layer.subnet.seen[0], torch.cat([x[:, :2], c], 1))


def test_srflow_coupling_and_injector_at_init_scale_by_sigmoid_2(float64):
    """Zero-initialised output convs: SRFlow's couplings start as a constant 0.8809 scaling."""
    sub = functools.partial(FCN, hidden=4)
    x, c = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 3, 3)
    k = 1 / (1 + math.exp(-2)) + 1e-4
    (y,), j = AffineInjector([(4, 3, 3)], [(5, 3, 3)], subnet_constructor=sub)([x], c=[c])
    torch.testing.assert_close(y, x * k)
    torch.testing.assert_close(j, torch.full((2,), 4 * 9 * math.log(k)))
    coupling = AffineCoupling([(4, 3, 3)], [(5, 3, 3)], subnet_constructor=sub, scale="sigmoid")
    (y,), _ = coupling([x], c=[c])
    torch.testing.assert_close(y, torch.cat([x[:, :2], x[:, 2:] * k], 1))


def test_three_shift_directions(float64):
    C = 7
    even = ThreeShiftCoupling([(C, 2, 2)], subnet_constructor=functools.partial(DenseBlock, gc=2), lr_to_others=True)
    odd = ThreeShiftCoupling([(C, 2, 2)], subnet_constructor=functools.partial(DenseBlock, gc=2), lr_to_others=False)
    assert even.subnet.conv1.in_channels == 3 and even.subnet.conv5.out_channels == 2 * (C - 3)
    assert odd.subnet.conv1.in_channels == C - 3 and odd.subnet.conv5.out_channels == 3
    ft.perturb_parameters(odd, seed=1)
    x = torch.randn(2, C, 2, 2)
    (y,), j = odd([x])
    torch.testing.assert_close(y[:, 3:], x[:, 3:])  # additive update of the LR channels only
    torch.testing.assert_close(y[:, :3], x[:, :3] + odd.subnet(x[:, 3:]))
    assert torch.equal(j, torch.zeros(2))


def test_inv_block_exp_is_identity_at_init_and_matches_formula(float64):
    sub = functools.partial(DenseBlock, gc=4)
    block = InvBlockExp([(12, 4, 4)], subnet_constructor=sub)
    x = torch.randn(2, 12, 4, 4)
    (y,), j = block([x])
    torch.testing.assert_close(y, x)  # conv5 of every DenseBlock is zero: the IRN initial state
    assert torch.equal(j, torch.zeros(2))
    ft.perturb_parameters(block, seed=0)
    (y,), j = block([x])
    y1 = x[:, :3] + block.phi(x[:, 3:])
    s = torch.sigmoid(block.rho(y1)) * 2 - 1
    torch.testing.assert_close(y, torch.cat([y1, x[:, 3:] * torch.exp(s) + block.eta(y1)], 1))
    torch.testing.assert_close(j, s.flatten(1).sum(1))


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
    assert split.whitening.prior.in_channels == 6 and split.whitening.prior.out_channels == 12
    odd = ConditionalGaussianSplit([(5, 2, 2)], [(2, 2, 2)], subnet_constructor=ZeroConv2d)
    # Glow/SRFlow: consume round(C / 2) channels (Python rounds 2.5 to 2), keep the rest.
    assert odd.n_keep == 3 and odd.whitening.prior.in_channels == 5  # kept part + condition
    with pytest.raises(ValueError, match="use_kept=False"):
        ConditionalGaussianSplit([(4, 2, 2)], subnet_constructor=ZeroConv2d, use_kept=False)


def test_flow_step_parts_and_order(float64):
    coupling = {"subnet_constructor": functools.partial(FCN, hidden=4), "scale": "sigmoid"}
    step = FlowStep(
        [(4, 2, 2)],
        [(3, 2, 2)],
        coupling=AffineCoupling,
        coupling_kwargs=coupling,
        injector_kwargs={"subnet_constructor": functools.partial(FCN, hidden=4)},
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
    plain = FlowStep([(4, 2, 2)], permutation="none")
    assert [n for n, _ in plain.named_children()] == ["actnorm"]
    with pytest.raises(ValueError, match="permutation"):
        FlowStep([(4, 2, 2)], permutation="shuffle")
    with pytest.raises(ValueError, match="injector needs conditions"):
        FlowStep([(4, 2, 2)], injector_kwargs={"subnet_constructor": FCN})
