"""A custom conditional layer and its property tests with ``flowsr.testing`` (run with pytest)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from torch import nn

from flowsr import testing as ft
from flowsr.layers.base import FlowModule


class ConditionalElementwiseAffine(FlowModule):
    """Conditional element-wise affine transform (SRFlow's "affine injector" without the features).

    **Forward** ``y = x * exp(s) + t`` with ``(s_raw, t) = net(c)``, ``s = clamp * tanh(s_raw / clamp)``.
    **Inverse** ``x = (y - t) * exp(-s)``.
    **Log-det** ``sum_{c,h,w} s``.
    Shapes: ``x``, ``y``: ``(B, C, H, W)``; one condition ``(B, Cc, H, W)``.
    """

    def __init__(self, dims_in, dims_c=None, *, hidden: int = 16, clamp: float = 2.0):
        super().__init__(dims_in, dims_c)
        channels, cond_channels = self.dims_in[0][0], self.dims_c[0][0]
        self.clamp = clamp
        self.net = nn.Sequential(
            nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, 2 * channels, 3, padding=1)
        )
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity: tests must perturb the weights
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        s_raw, t = self.net(c[0]).chunk(2, dim=1)
        s = self.clamp * torch.tanh(s_raw / self.clamp)
        log_det = s.flatten(1).sum(1)
        if not rev:
            return (x[0] * torch.exp(s) + t,), log_det
        return ((x[0] - t) * torch.exp(-s),), -log_det

    def output_dims(self, input_dims):
        return list(input_dims)


# Property test: random shapes, batch sizes, condition channels and weights; float64 for exact checks.
@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(case=ft.layer_inputs(n_conditions=1), seed=ft.seeds())
def test_conditional_affine_properties(case, seed):
    with ft.default_dtype(torch.float64):
        layer = ConditionalElementwiseAffine(case.dims_in, case.dims_c)
    ft.perturb_parameters(layer, seed=seed)  # leave the zero-initialised identity
    x, c = case.make(dtype=torch.float64)
    # invertible, reverse log-det = -forward, batch-independent, output_dims, log-det == autograd
    ft.check_all(layer, x, c)


def test_conditional_affine_float32_smoke():
    layer = ft.perturb_parameters(ConditionalElementwiseAffine([(3, 16, 16)], [(2, 16, 16)]), seed=0)
    x = ft.tensors((2, 3, 32, 32), seed=1, dtype=torch.float32)  # fully convolutional: any size works
    c = ft.tensors((2, 2, 32, 32), seed=2, dtype=torch.float32)
    ft.assert_invertible(layer, x, c)  # float32: relative tolerances
    ft.assert_reverse_logdet_negates(layer, x, c)


# The layer contract that flowsr's own layers pass -- the properties above on drawn shapes and
# conditions, the layer as a FrEIA GraphINN node, float32, clear errors on bad input -- in one call.
CASE = ft.LayerCase(ConditionalElementwiseAffine, conditions=1)  # one condition tensor


def test_conditional_affine_contract():
    ft.check_layer(CASE, max_examples=10)
