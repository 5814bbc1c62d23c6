"""The FlowModule base class and the quantisation autograd function."""

from __future__ import annotations

import pytest
import torch

from flowsr.layers.base import FlowModule, format_shape, set_finite_checks
from flowsr.layers.quantization import _StraightThroughQuantize, quantize


class Scale2(FlowModule):
    """A minimal FlowModule: y = 2 x, conditioned on nothing but validated by the base class."""

    spatial_factor = 2

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        self._check_conditions(c, x[0])
        factor = 0.5 if rev else 2.0
        logdet = x[0][0].numel() * torch.log(torch.tensor(factor)) * torch.ones(x[0].shape[0])
        return (x[0] * factor,), logdet

    def output_dims(self, input_dims):
        return [tuple(input_dims[0])]


def test_base_validation_messages() -> None:
    layer = Scale2([(3, 4, 4)], [(2, 4, 4)])
    assert layer.dims_in == [(3, 4, 4)] and layer.dims_c == [(2, 4, 4)]
    c = [torch.zeros(1, 2, 4, 4)]
    with pytest.raises(ValueError, match=r"^Scale2: input 0 must have shape \(B, 3, H, W\)"):
        layer([torch.zeros(1, 4, 4, 4)], c=c)
    with pytest.raises(ValueError, match="bare tensor"):
        layer(torch.zeros(1, 3, 4, 4), c=c)
    with pytest.raises(ValueError, match="not divisible by 2"):
        layer([torch.zeros(1, 3, 4, 5)], c=c)
    with pytest.raises(ValueError, match="expected 1 condition"):
        layer([torch.zeros(1, 3, 4, 4)])
    with pytest.raises(ValueError, match=r"condition 0 must have shape \(1, 2, 4, 4\)"):
        layer([torch.zeros(1, 3, 4, 4)], c=[torch.zeros(1, 2, 2, 2)])
    with pytest.raises(ValueError, match="NaN or Inf"):
        layer([torch.full((1, 3, 4, 4), float("nan"))], c=c)
    set_finite_checks(layer, False)  # a composite that validates once at its entry turns its layers' off
    (y,), _ = layer([torch.full((1, 3, 4, 4), float("nan"))], c=c)
    assert torch.isnan(y).all()
    set_finite_checks(layer, True)
    with pytest.raises(ValueError, match="NaN or Inf"):
        layer([torch.full((1, 3, 4, 4), float("inf"))], c=c)
    outer = torch.nn.Sequential(layer)
    set_finite_checks(outer, False)
    assert not layer.check_finite_inputs
    assert format_shape((3, 4, 4)) == "(B, 3, H, W)" and format_shape((3, 4, 4), spatial=True) == "(B, 3, 4, 4)"


def test_straight_through_quantisation_gradient() -> None:
    x = torch.tensor([-0.3, 0.1234, 0.5, 1.7], requires_grad=True)
    y = _StraightThroughQuantize.apply(x, 255.0)
    torch.testing.assert_close(y, quantize(x))
    torch.testing.assert_close(y.detach(), torch.round(x.detach().clamp(0, 1) * 255) / 255)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(4))  # identity, also outside [0, 1]


def test_skip_data_init_keeps_actnorm_identity() -> None:
    from flowsr.layers.actnorm import ActNorm, skip_data_init
    from flowsr.layers.step import FlowStep

    step = skip_data_init(FlowStep([(4, 2, 2)], permutation="none")).train()
    x = torch.randn(3, 4, 2, 2) * 5 + 1
    (y,), logdet = step([x])
    torch.testing.assert_close(y, x)  # no data-dependent init: still the identity
    assert isinstance(step.actnorm, ActNorm) and step.actnorm.is_initialized and torch.equal(logdet, torch.zeros(3))
