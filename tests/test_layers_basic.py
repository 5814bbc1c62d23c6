"""Unit tests of the basic layers: ActNorm, 1x1 convs, permutations, squeezes, quantisation,
subnets, FlowSequence / Inverse and the nflows adapter, and the official numerics they share
(unit tests of couplings and splits are in ``test_layers_coupling.py``).

The properties every layer must have (exact inverse, log-det vs autograd, batch independence,
``output_dims``, FrEIA graph node, float32, bad input) are the layer contract, run over every
layer case in ``test_contract_layers.py``.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable

import FrEIA.modules as Fm
import pytest
import torch
import torch.nn.functional as F
from FrEIA.framework import GraphINN, InputNode, Node, OutputNode
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from flowsr import testing as ft
from flowsr.layers.actnorm import ActNorm
from flowsr.layers.adapters import NflowsTransform
from flowsr.layers.base import set_finite_checks
from flowsr.layers.invconv import FixedPermutation, InvConv1x1
from flowsr.layers.quantization import dequantize, quantize
from flowsr.layers.reshape import HaarDownsampling, Squeeze
from flowsr.layers.sequence import FlowSequence, Inverse
from flowsr.layers.subnets import FCN, RRDB, ConvActNorm, DenseBlock, ResidualDenseBlock, ZeroConv2d
from flowsr.testing.builtin_cases import nflows_coupling

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*triangular_solve.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.qr.*:UserWarning"),
]


# --------------------------------------------------------------------------------------------
# ActNorm
# --------------------------------------------------------------------------------------------


def test_actnorm_data_init_in_training_forward(float64):
    layer = ActNorm([(3, 4, 4)])
    assert set(layer.state_dict()) == {"bias", "logs"}
    assert not layer.is_initialized
    x = torch.randn(5, 3, 4, 4) * 3 + 2
    x_before = x.clone()
    (y,), j = layer([x])
    assert torch.equal(x, x_before)
    assert layer.is_initialized
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-12)
    assert torch.allclose(y.pow(2).mean(dim=(0, 2, 3)), torch.ones(3), atol=1e-5)
    assert torch.allclose(j, layer.logs.sum() * 16 * torch.ones(5))
    expected_bias = -x.mean(dim=(0, 2, 3), keepdim=True)
    expected_logs = torch.log(1 / ((x + expected_bias).pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt() + 1e-6))
    assert torch.allclose(layer.bias, expected_bias) and torch.allclose(layer.logs, expected_logs)
    # a second batch does not re-initialise
    bias = layer.bias.detach().clone()
    layer([torch.randn(5, 3, 4, 4)])
    assert torch.equal(layer.bias, bias)


def test_actnorm_no_init_in_eval_or_reverse_or_with_nonzero_bias(float64):
    x = torch.randn(2, 3, 4, 4) + 1
    layer = ActNorm([(3, 4, 4)]).eval()
    (y,), _ = layer([x])
    assert torch.equal(y, x) and not layer.is_initialized
    layer.train()
    (y,), _ = layer([x], rev=True)
    assert torch.equal(y, x) and not layer.is_initialized
    with torch.no_grad():
        layer.bias[0, 1] = 0.5
    (y,), _ = layer([x])
    assert layer.is_initialized and float(layer.logs.detach().abs().sum()) == 0.0
    assert torch.equal(y[:, 1], x[:, 1] + 0.5)


def test_actnorm_load_state_dict_marks_initialized(float64):
    src = ActNorm([(3, 4, 4)])  # all-zero parameters: would re-initialise if not marked
    dst = ActNorm([(3, 4, 4)])
    dst.load_state_dict(src.state_dict())
    assert dst.is_initialized
    x = torch.randn(2, 3, 4, 4)
    (y,), _ = dst([x])
    assert torch.equal(y, x)
    # nested modules too
    outer = nn.Sequential(ConvActNorm(2, 3))
    outer.load_state_dict(nn.Sequential(ConvActNorm(2, 3)).state_dict())
    assert outer[0].actnorm.is_initialized


def test_actnorm_initialize_and_normalize_and_jacrev(float64):
    layer = ActNorm([(2, 3, 3)])
    x = torch.randn(4, 2, 3, 3)
    layer.initialize([x])
    assert layer.is_initialized
    (y,), _ = layer([x])
    assert torch.equal(layer.normalize(x), y)
    sample = x[0].reshape(-1)
    jac = torch.func.jacrev(lambda v: layer([v.reshape(1, 2, 3, 3)])[0][0].reshape(-1))(sample)
    assert torch.allclose(torch.linalg.slogdet(jac).logabsdet, layer([x[:1]])[1][0], atol=1e-12)
    with pytest.raises(ValueError, match="ActNorm"):
        layer.normalize(torch.randn(1, 3, 3, 3))


# --------------------------------------------------------------------------------------------
# 1x1 convolutions and permutations
# --------------------------------------------------------------------------------------------


def test_invconv_init_and_official_numerics():
    layer = InvConv1x1([(5, 4, 4)], seed=3)
    w = layer.weight.detach()
    assert w.dtype == torch.float32 and set(layer.state_dict()) == {"weight"}
    assert torch.allclose(w @ w.T, torch.eye(5), atol=1e-6)
    assert torch.equal(w, InvConv1x1([(5, 4, 4)], seed=3).weight)
    assert not torch.equal(w, InvConv1x1([(5, 4, 4)], seed=4).weight)
    ft.perturb_parameters(layer, seed=0, scale=0.3)
    w = layer.weight.detach()
    x = torch.randn(2, 5, 4, 6)
    (y,), j = layer([x])
    assert torch.equal(y, F.conv2d(x, w.view(5, 5, 1, 1)))
    assert torch.equal(j, (torch.slogdet(w)[1] * 24).expand(2))
    (x_rec,), j_rev = layer([y], rev=True)
    assert torch.equal(x_rec, F.conv2d(y, torch.inverse(w.double()).float().view(5, 5, 1, 1)))
    assert torch.equal(j_rev, -j)


@pytest.mark.parametrize("lu", [False, True])
def test_invconv_eval_cache(lu, float64):
    layer = ft.perturb_parameters(InvConv1x1([(4, 2, 2)], seed=0, lu=lu), seed=1)
    x = torch.randn(1, 4, 2, 2)
    assert layer.inverse_matrix() is not layer.inverse_matrix()  # training mode: no cache
    layer.eval()
    assert layer.inverse_matrix() is not layer.inverse_matrix()  # grad enabled for the weights: no cache
    with torch.no_grad():
        inv = layer.inverse_matrix()
        assert layer.inverse_matrix() is inv
        assert torch.equal(inv, layer._compute_inverse())
        (z,), _ = layer([x])
        ((x_rec,), _), (_, j1) = layer([z], rev=True), layer([x])
        assert torch.allclose(x_rec, x, atol=1e-12)
        # in-place update invalidates the cache
        for p in layer.parameters():
            p.mul_(1.1)
        assert layer.inverse_matrix() is not inv
        assert torch.allclose(layer.inverse_matrix() @ layer.matrix(), torch.eye(4), atol=1e-12)
        (_, j2) = layer([x])
        assert not torch.allclose(j1, j2)
        # load_state_dict invalidates the cache
        inv = layer.inverse_matrix()
        other = ft.perturb_parameters(InvConv1x1([(4, 2, 2)], seed=5, lu=lu), seed=6)
        layer.load_state_dict(other.state_dict())
        assert torch.equal(layer.inverse_matrix(), other._compute_inverse())
    frozen = InvConv1x1([(4, 2, 2)], seed=0).eval().requires_grad_(False)
    assert frozen.inverse_matrix() is frozen.inverse_matrix()  # no grad needed: cached


def test_invconv_lu_parametrisation(float64):
    layer = ft.perturb_parameters(InvConv1x1([(6, 2, 2)], seed=2, lu=True), seed=3, scale=0.3)
    assert {"lower", "upper", "log_s", "perm", "sign_s", "lower_mask", "eye"} <= set(layer.state_dict())
    assert layer.perm.dtype == torch.long
    w = layer.matrix()
    assert torch.allclose(torch.linalg.slogdet(w).logabsdet, layer.log_s.sum(), atol=1e-12)
    assert torch.allclose(layer._compute_inverse() @ w, torch.eye(6), atol=1e-12)
    fresh = InvConv1x1([(6, 2, 2)], seed=2, lu=True).matrix()
    assert torch.allclose(fresh @ fresh.T, torch.eye(6), atol=1e-12)  # starts as a rotation


def test_fixed_permutation():
    layer = FixedPermutation([(5, 2, 2)], kind="reverse")
    x = torch.randn(2, 5, 2, 2)
    (y,), j = layer([x])
    assert torch.equal(y, x.flip(1)) and torch.equal(j, torch.zeros(2))
    rnd = FixedPermutation([(5, 2, 2)], kind="random", seed=1)
    assert rnd.perm.dtype == torch.long and "perm" in rnd.state_dict()
    assert torch.equal(rnd.perm, FixedPermutation([(5, 2, 2)], kind="random", seed=1).perm)
    assert sorted(rnd.perm.tolist()) == list(range(5))
    with pytest.raises(ValueError, match="kind"):
        FixedPermutation([(5, 2, 2)], kind="shuffle")


# --------------------------------------------------------------------------------------------
# squeezes
# --------------------------------------------------------------------------------------------


@given(shape=ft.image_shapes(sizes=st.sampled_from([2, 4, 6])), batch=ft.batch_sizes(), seed=ft.seeds())
def test_squeeze_matches_formula_and_freia(shape, batch, seed):
    x = ft.tensors((batch, *shape), seed=seed, dtype=torch.float32)
    (y,), _ = Squeeze([shape])([x])
    C, H, W = shape
    for c in range(C):
        for i in range(2):
            for j in range(2):
                assert torch.equal(y[:, 4 * c + 2 * i + j], x[:, c, i::2, j::2])
    freia = Fm.IRevNetDownsampling([shape], legacy_backend=False)
    assert torch.equal(y, freia([x])[0][0])
    assert torch.equal(Squeeze([shape])([y], rev=True)[0][0], freia([y], rev=True)[0][0])


def test_squeeze_keeps_inf_local():
    x = torch.randn(1, 2, 4, 4)
    x[0, 0, 0, 0] = float("inf")
    layer = Squeeze([(2, 4, 4)])
    set_finite_checks(layer, False)
    (y,), _ = layer([x])
    assert not torch.isnan(y).any() and int(torch.isinf(y).sum()) == 1


@given(shape=ft.image_shapes(sizes=st.sampled_from([2, 4, 6])), batch=ft.batch_sizes(), seed=ft.seeds())
def test_haar_matches_bands_and_freia(shape, batch, seed):
    x = ft.tensors((batch, *shape), seed=seed, dtype=torch.float32)
    layer = HaarDownsampling([shape])
    (y,), j = layer([x])
    C, H, W = shape
    a, b, c_, d = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    bands = [(a + b + c_ + d) / 4, (a - b + c_ - d) / 4, (a + b - c_ - d) / 4, (a - b - c_ + d) / 4]
    for k, band in enumerate(bands):
        assert torch.allclose(y[:, k * C : (k + 1) * C], band, atol=1e-6)
    freia = Fm.HaarDownsampling([shape], order_by_wavelet=True, rebalance=0.5)
    y_f, j_f = freia([x])
    assert torch.equal(y, y_f[0])
    assert torch.allclose(j, torch.full((batch,), float(j_f)), rtol=1e-6)
    assert torch.allclose(j, torch.full((batch,), -(C * H * W / 4) * math.log(16)), rtol=1e-6)
    (x_rec,), j_rev = layer([y], rev=True)
    assert torch.equal(x_rec, freia([y.clone()], rev=True)[0][0])
    assert torch.equal(j_rev, -j)
    assert set(layer.state_dict()) == {"haar_weights"}
    assert layer.haar_weights.shape == (4 * C, 1, 2, 2) and not layer.haar_weights.requires_grad
    assert torch.equal(layer.haar_weights, freia.haar_weights)


def test_haar_reverse_is_differentiable_and_non_mutating(float64):
    layer = HaarDownsampling([(1, 2, 2)])
    z = torch.randn(1, 4, 1, 1, requires_grad=True)
    (x,), _ = layer([z], rev=True)  # FrEIA 0.2 (order_by_wavelet=False) raises here: in-place op on a leaf
    x.sum().backward()
    jac = torch.func.jacrev(lambda v: layer([v.reshape(1, 4, 1, 1)], rev=True)[0][0].reshape(-1))(
        z.detach().reshape(-1)
    )
    assert torch.allclose(torch.linalg.slogdet(jac).logabsdet, torch.tensor(math.log(16)))


# --------------------------------------------------------------------------------------------
# quantisation
# --------------------------------------------------------------------------------------------


def test_quantize_values_and_straight_through_gradient():
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.3, 1.0, 1.7], requires_grad=True)
    q = quantize(x)
    expected = torch.round(torch.clamp(x.detach(), 0, 1) * 255) / 255
    assert torch.equal(q, expected)
    assert q[2] == 0.0 and q[3] == 2 / 255  # round half to even
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # identity, also outside [0, 1]
    assert torch.equal(quantize(torch.tensor([0.26]), levels=4), torch.tensor([0.25]))


@given(
    shape=ft.image_shapes(sizes=st.integers(1, 6)),
    batch=ft.batch_sizes(),
    levels=st.sampled_from([1, 3, 32, 64, 255, 256]),
    seed=ft.seeds(),
    centred=st.booleans(),
)
def test_quantization_properties(shape, batch, levels, seed, centred):
    x = ft.tensors((batch, *shape), seed=seed, scale=0.7).add(0.5).requires_grad_(True)
    x_before = x.detach().clone()
    q = quantize(x, levels)
    assert torch.equal(x.detach(), x_before)
    assert float(q.detach().min()) >= 0 and float(q.detach().max()) <= 1
    grid = q.detach() * levels
    assert torch.allclose(grid, grid.round(), atol=1e-9)
    assert float((q.detach() - x.detach().clamp(0, 1)).abs().max()) <= 0.5 / levels + 1e-12
    assert torch.equal(quantize(q.detach(), levels), q.detach())  # idempotent
    (q * torch.arange(q.numel(), dtype=q.dtype).view_as(q)).sum().backward()
    assert torch.equal(x.grad, torch.arange(q.numel(), dtype=q.dtype).view_as(q))  # straight through
    img = q.detach()
    y, logdet = dequantize(img, levels, generator=torch.Generator().manual_seed(seed), centred=centred)
    assert torch.equal(img, q.detach())
    assert logdet.shape == (batch,) and logdet.dtype == img.dtype
    assert torch.allclose(logdet, torch.full((batch,), -math.log(levels) * shape[1] * shape[2], dtype=img.dtype))
    low, high = (-0.5, 0.5) if centred else (0.0, 1.0)
    u = (y - img) * levels
    assert float(u.min()) >= low - 1e-9 and float(u.max()) < high + 1e-9
    if not centred:  # dequantised values stay in their quantisation bin
        assert torch.equal(torch.floor(y * levels + 1e-9).clamp(max=levels), torch.round(img * levels))


SUBNETS: dict[str, Callable[[int, int], nn.Module]] = {
    "fcn": functools.partial(FCN, hidden=8),
    "fcn_srflow_init": functools.partial(FCN, hidden=8, weight_std=0.05),
    "conv_actnorm_1x1": functools.partial(ConvActNorm, kernel_size=1),
    "conv_actnorm_3x3": functools.partial(ConvActNorm, kernel_size=3),
    "zero_conv": ZeroConv2d,
    "dense": functools.partial(DenseBlock, gc=4),
    "dense_nonzero": functools.partial(DenseBlock, gc=4, zero_init=False),
    "rdb": lambda c_in, c_out: ResidualDenseBlock(c_in, 4),
    "rrdb": lambda c_in, c_out: RRDB(c_in, 4),
}


@pytest.mark.parametrize("subnet_name", sorted(SUBNETS))
@given(
    c_in=st.integers(1, 6),
    c_out=st.integers(1, 6),
    size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    batch=st.integers(2, 3),
    seed=ft.seeds(),
)
def test_subnet_properties(subnet_name, c_in, c_out, size, batch, seed, float64):
    """Shapes, zero output at init where promised, batch independence (eval), no input mutation."""
    residual = subnet_name in ("rdb", "rrdb")
    if residual:
        c_out = c_in
    net = SUBNETS[subnet_name](c_in, c_out)
    x = ft.tensors((batch, c_in, *size), seed=seed)
    x_before = x.clone()
    if subnet_name in ("fcn", "fcn_srflow_init", "zero_conv", "dense"):
        assert torch.equal(net(x), torch.zeros(batch, c_out, *size))
    ft.perturb_parameters(net, seed=seed, scale=0.2)
    net.eval()
    y = net(x)
    assert y.shape == (batch, c_out, *size)
    assert torch.equal(x, x_before)
    single = torch.cat([net(x[b : b + 1]) for b in range(batch)])
    assert torch.allclose(y, single, atol=1e-12)
    # gradients reach every trainable parameter
    net.train()
    net(x).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name


def test_dequantize():
    x = torch.rand(3, 3, 4, 5)
    gen = torch.Generator().manual_seed(0)
    y, logdet = dequantize(x, 64, generator=gen)
    assert logdet.shape == (3,) and torch.allclose(logdet, torch.full((3,), -math.log(64) * 20))
    u = (y - x) * 64
    assert float(u.min()) >= -1e-4 and float(u.max()) < 1 + 1e-4
    y2, _ = dequantize(x, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)
    yc, _ = dequantize(x, 32, generator=torch.Generator().manual_seed(0), centred=True)
    uc = (yc - x) * 32
    assert float(uc.min()) >= -0.5 - 1e-4 and float(uc.max()) < 0.5 + 1e-4
    noise = torch.full_like(x, 0.5)
    y3, _ = dequantize(x, 2, noise=noise)
    assert torch.equal(y3, x + 0.25)
    with pytest.raises(ValueError, match="noise"):
        dequantize(x, 2, noise=noise[:1])


# --------------------------------------------------------------------------------------------
# subnets
# --------------------------------------------------------------------------------------------


def test_subnet_parameter_names_and_zero_init():
    fcn = FCN(5, 6, hidden=8)
    assert list(fcn.state_dict()) == [
        "conv1.weight",
        "conv1.actnorm.bias",
        "conv1.actnorm.logs",
        "conv2.weight",
        "conv2.actnorm.bias",
        "conv2.actnorm.logs",
        "conv3.weight",
        "conv3.bias",
        "conv3.logs",
    ]
    assert fcn.conv1.weight.shape == (8, 5, 3, 3) and fcn.conv2.weight.shape == (8, 8, 1, 1)
    assert fcn.conv3.logs.shape == (6, 1, 1)
    x = torch.randn(2, 5, 4, 4)
    assert torch.equal(fcn(x), torch.zeros(2, 6, 4, 4))
    dense = DenseBlock(3, 7, gc=4)
    assert [k for k in dense.state_dict()] == [f"conv{i}.{p}" for i in range(1, 6) for p in ("weight", "bias")]
    assert dense.conv5.weight.shape == (7, 3 + 16, 3, 3)
    assert torch.equal(dense(torch.randn(2, 3, 4, 4)), torch.zeros(2, 7, 4, 4))
    assert float(DenseBlock(3, 7, gc=4, zero_init=False).conv5.weight.detach().abs().sum()) > 0
    rrdb = RRDB(6, 4)
    assert {k.split(".")[0] for k in rrdb.state_dict()} == {"rdb1", "rdb2", "rdb3"}
    assert "rdb2.conv5.weight" in rrdb.state_dict()
    # functools.partial-bound constructors pickle with the whole module
    net = functools.partial(FCN, hidden=4)(2, 4)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    assert isinstance(torch.load(buf, weights_only=False), FCN)


def test_subnet_math(float64):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5)
    z = ft.perturb_parameters(ZeroConv2d(4, 2, logscale_factor=3.0), seed=0)
    assert torch.allclose(z(x), F.conv2d(x, z.weight, z.bias, padding=1) * torch.exp(3 * z.logs))
    ca = ConvActNorm(4, 6, 3)
    y = ca(x)  # training: data init of the inner ActNorm
    assert ca.actnorm.is_initialized
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-10)
    ca.eval()
    assert torch.allclose(ca(x), y)
    assert torch.allclose(ConvActNorm(4, 6, 3, weight_std=0.05).weight.std(), torch.tensor(0.05), rtol=0.3)
    dense = ft.perturb_parameters(DenseBlock(4, 3, gc=2), seed=1)
    lrelu = functools.partial(F.leaky_relu, negative_slope=0.2)
    x1 = lrelu(dense.conv1(x))
    x2 = lrelu(dense.conv2(torch.cat([x, x1], 1)))
    x3 = lrelu(dense.conv3(torch.cat([x, x1, x2], 1)))
    x4 = lrelu(dense.conv4(torch.cat([x, x1, x2, x3], 1)))
    assert torch.equal(dense(x), dense.conv5(torch.cat([x, x1, x2, x3, x4], 1)))
    rdb = ResidualDenseBlock(4, 2)
    assert torch.equal(rdb(x), DenseBlock.forward(rdb, x) * 0.2 + x)
    rrdb = RRDB(4, 2)
    assert torch.equal(rrdb(x), rrdb.rdb3(rrdb.rdb2(rrdb.rdb1(x))) * 0.2 + x)


# --------------------------------------------------------------------------------------------
# FlowSequence, Inverse, adapter
# --------------------------------------------------------------------------------------------


def test_flow_sequence_fixes(float64):
    empty = FlowSequence(3, 4, 4)
    x = torch.randn(2, 3, 4, 4)
    out, j = empty(x)
    assert isinstance(out, tuple) and torch.equal(out[0], x) and torch.equal(j, torch.zeros(2))
    assert empty.output_dims([(3, 4, 4)]) == [(3, 4, 4)]
    seq = FlowSequence(3, 4, 4)
    seq.add(Squeeze([(3, 4, 4)]))
    with pytest.raises(ValueError, match="current shape"):
        seq.add(ActNorm([(3, 4, 4)]))
    seq.append(ActNorm)
    assert seq.output_dims() == [(12, 2, 2)] and seq.output_dims([(3, 8, 6)]) == [(12, 4, 3)]
    out, j = seq([x])
    assert isinstance(out, tuple) and out[0].shape == (2, 12, 2, 2) and j.shape == (2,)
    out2, _ = seq((x,))
    assert torch.equal(out[0], out2[0])
    with pytest.raises(ValueError, match="FlowSequence"):
        seq([x, x])
    with pytest.raises(ValueError, match="FlowSequence"):
        seq([torch.randn(2, 12, 2, 2)], rev=False)


def test_flow_sequence_conditions(float64):
    shape, cshape = (4, 4, 4), (2, 4, 4)
    seq = FlowSequence(*shape)
    seq.add(nflows_coupling([shape], [cshape]), cond=0)
    seq.append(InvConv1x1, seed=1)
    seq.append(nflows_coupling, cond=1, cond_shape=(3, 4, 4))
    assert seq.dims_c == [cshape, (3, 4, 4)]
    with pytest.raises(ValueError, match="cond"):
        seq.add(nflows_coupling([shape], [cshape]))  # conditional layer without cond
    with pytest.raises(ValueError, match="condition 0"):
        seq.add(nflows_coupling([shape], [(5, 4, 4)]), cond=0)  # shape clash
    ft.perturb_parameters(seq, seed=0)
    x, c = torch.randn(2, *shape), [torch.randn(2, *cshape), torch.randn(2, 3, 4, 4)]
    ft.check_all(seq, x, c)
    with pytest.raises(ValueError, match=r"^FlowSequence: expected 2 condition\(s\), got 1"):
        seq([x], c=c[:1])
    with pytest.raises(ValueError, match=r"^FlowSequence: expected 2 condition\(s\), got 3"):
        seq([x], c=[*c, c[0]])


def test_inverse_swaps_directions(float64):
    haar = HaarDownsampling([(2, 4, 6)])
    inv = Inverse(module=haar)
    assert inv.dims_in == [(8, 2, 3)] and inv.output_dims(inv.dims_in) == [(2, 4, 6)]
    assert inv.output_dims([(8, 4, 5)]) == [(2, 8, 10)]
    z = torch.randn(2, 8, 2, 3)
    (x,), j = inv([z])
    (x_ref,), j_ref = haar([z], rev=True)
    assert torch.equal(x, x_ref) and torch.equal(j, j_ref)
    (z_rec,), j_rev = inv([x], rev=True)
    assert torch.allclose(z_rec, z) and torch.allclose(j_rev, -j)
    # as a FrEIA node built from the class, with module= as the node argument
    inp = InputNode(8, 2, 3, name="in")
    node = Node(inp, Inverse, {"module": HaarDownsampling([(2, 4, 6)])}, name="inv")
    out = OutputNode(node, name="out")
    graph = GraphINN([inp, node, out], force_tuple_output=True)
    assert graph.global_out_shapes == [(2, 4, 6)]
    ft.check_all(graph, z)
    with pytest.raises(ValueError, match="output dims"):
        Inverse([(4, 2, 3)], module=haar)
    with pytest.raises(TypeError):
        Inverse(module=nn.Linear(2, 2))


def test_nflows_adapter_output_shape_and_context(float64):
    from nflows.transforms import SqueezeTransform

    sq = NflowsTransform([(3, 4, 6)], transform=SqueezeTransform(), output_shape=(12, 2, 3))
    x = torch.randn(2, 3, 4, 6)
    assert torch.equal(sq([x])[0][0], Squeeze([(3, 4, 6)])([x])[0][0])
    assert sq.output_dims([(3, 4, 6)]) == [(12, 2, 3)]
    with pytest.raises(TypeError):
        NflowsTransform([(3, 4, 6)], transform=nn.Identity())
    coupling = ft.perturb_parameters(nflows_coupling([(4, 3, 3)], [(1, 3, 3), (2, 3, 3)]), seed=1)
    c = [torch.randn(2, 1, 3, 3), torch.randn(2, 2, 3, 3)]
    x = torch.randn(2, 4, 3, 3)
    (y,), j = coupling([x], c=c)
    y_ref, j_ref = coupling.transform(x, torch.cat(c, 1))
    assert torch.equal(y, y_ref) and torch.equal(j, j_ref)
    with pytest.raises(ValueError, match="condition"):
        coupling([x])


# --------------------------------------------------------------------------------------------
# official numerics (golden fixtures of the official IRN / HCFlow code, float32)
# --------------------------------------------------------------------------------------------


def test_irn_golden_haar_and_dense_block(golden_dir):
    """Haar + DenseBlock reproduce the official IRN trace; the Haar log-det convention gives its log-det."""
    g = torch.load(golden_dir / "irn_small_golden.pt", weights_only=True)
    sd = g["state_dict"]
    gc = int(g["opt"]["network_G"]["gc"])
    x = g["hr"]
    logdet = torch.zeros(x.shape[0], dtype=torch.float64)
    for i, (name, expected) in enumerate(g["fwd_trace"]):
        assert name.startswith(f"op{i}_")
        if name.endswith("HaarDownsampling"):
            layer = HaarDownsampling([tuple(x.shape[1:])])
            layer.load_state_dict({"haar_weights": sd[f"operations.{i}.haar_weights"]})
            (x,), j = layer([x])
        else:  # InvBlockExp (split 3, clamp 1) written out with flowsr DenseBlocks
            c = x.shape[1]
            nets = {}
            for n, (c_in, c_out) in {"F": (c - 3, 3), "G": (3, c - 3), "H": (3, c - 3)}.items():
                nets[n] = DenseBlock(c_in, c_out, gc=gc)
                prefix = f"operations.{i}.{n}."
                nets[n].load_state_dict({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
            x1, x2 = x[:, :3], x[:, 3:]
            y1 = x1 + nets["F"](x2)
            s = 1.0 * (torch.sigmoid(nets["H"](y1)) * 2 - 1)
            y2 = x2.mul(torch.exp(s)) + nets["G"](y1)
            x, j = torch.cat((y1, y2), 1), s.sum(dim=(1, 2, 3))
        logdet = logdet + j.double()
        # Haar is exact; convolutions differ by a few float32 ulps between CPU kernels (oneDNN / ISA)
        assert torch.allclose(x, expected, rtol=0, atol=2e-6), name
        if i == 0:
            assert torch.equal(x, expected)
    assert torch.allclose(logdet, g["fwd_logdet_per_sample"], rtol=1e-6)


def test_hcflow_golden_dequantisation(golden_dir):
    g = torch.load(golden_dir / "hcflow_sr_small_golden.pt", weights_only=True)
    hr_dequant, logdet = dequantize(g["hr"], g["quant"], noise=g["dequant_noise"])
    assert torch.equal(hr_dequant, g["hr_dequant"])
    assert torch.equal(logdet, g["logdet_init"])
