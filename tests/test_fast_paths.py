"""The inference fast paths (``flowsr.layers.fastpath``) compute what the plain layers compute.

Fast path vs plain path (``fast_paths(False)``) on every layer that has one and on a tiny model
of every preset of every registered family, with random non-trivial weights: equal to ``1e-5``.
Training mode and gradients are untouched (bitwise), the folded weights follow in-place
updates and ``load_state_dict``, and ``state_dict`` / checkpoints are unchanged.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from flowsr.layers import FCN, RRDB, ConvActNorm, DenseBlock, FlowStep, ResidualDenseBlock, ZeroConv2d
from flowsr.layers.coupling import AffineCoupling
from flowsr.layers.fastpath import (
    fast_paths,
    fast_paths_enabled,
    inference_key,
    set_fast_paths,
    step_folding,
    step_folding_enabled,
)
from flowsr.models import FAMILIES, load, save
from flowsr.testing import perturb_parameters
from flowsr.testing.families import family_images, tiny_model

TOL = 1e-5
PRESETS = [(name, preset) for name, cls in sorted(FAMILIES.items()) for preset in cls.presets]


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


def _both(fn, fold: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``fn()``'s tensors with the fast paths off and on (twice on: the second call uses the cache)."""
    with fast_paths(False):
        plain = _flat(fn())
    with fast_paths(True), step_folding(fold):
        fast = _flat(fn())
        again = _flat(fn())
    for a, b in zip(fast, again):
        assert torch.equal(a, b)
    return plain, fast


def _assert_close(plain, fast, tol=TOL):
    assert len(plain) == len(fast)
    for a, b in zip(plain, fast):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= tol * max(1.0, float(a.abs().max()))


def _subnets():
    yield ConvActNorm(5, 7, 3)
    yield ConvActNorm(5, 7, 1, weight_std=0.05)
    yield ZeroConv2d(6, 4, 3)
    yield FCN(6, 8, hidden=16)
    yield DenseBlock(6, 5, gc=4)
    yield ResidualDenseBlock(8, 4)
    yield RRDB(8, 4)


@pytest.mark.parametrize("net", list(_subnets()), ids=lambda n: type(n).__name__)
@pytest.mark.parametrize("batch", [1, 3])
def test_subnet_fast_path_equals_plain(net, batch):
    perturb_parameters(net, seed=1, scale=0.3).eval()
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(batch, first.in_channels, 9, 7)
    with torch.no_grad():
        plain, fast = _both(lambda: net(x))
    _assert_close(plain, fast)
    assert fast_paths_enabled()


@pytest.mark.parametrize("permutation", ["invconv", "lu"])
@pytest.mark.parametrize("rev", [False, True])
def test_flow_step_fusion_equals_plain(permutation, rev):
    coupling_kwargs = {"subnet_constructor": FCN, "scale": "atan"}
    step = FlowStep([(6, 8, 8)], [(3, 8, 8)], permutation=permutation, coupling=AffineCoupling,
                    coupling_kwargs=coupling_kwargs, seed=0)
    perturb_parameters(step, seed=2, scale=0.2).eval()
    x, c = torch.randn(2, 6, 8, 8), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        plain, fast = _both(lambda: step([x], [c], rev=rev), fold=True)
        _assert_close(plain, fast)
        assert not torch.equal(plain[0], fast[0]) or torch.equal(x, plain[0])  # the fold really ran
        # the fused step is still the inverse of itself, log-dets negated
        with step_folding():
            (y,), j = step([x], [c])
            (x_back,), j_back = step([y], [c], rev=True)
    assert float((x_back - x).abs().max()) < 1e-5
    assert float((j + j_back).abs().max()) < 1e-3


@pytest.mark.parametrize("fold", [False, True], ids=["default", "step_folding"])
@pytest.mark.parametrize(("family", "preset"), PRESETS, ids=[f"{f}-{p}" for f, p in PRESETS])
def test_models_fast_path_equals_plain(family, preset, fold):
    cls = FAMILIES[family]
    model = tiny_model(cls, preset, seed=3)  # every weight perturbed: no layer is the identity
    hr, lr = family_images(model)
    with torch.no_grad():
        plain, fast = _both(lambda: model.encode(hr, lr), fold)
        _assert_close(plain, fast)
        if not fold:  # the default fast paths are bitwise exact
            assert all(torch.equal(a, b) for a, b in zip(plain, fast))
        zs = model.sample_latents(lr, 0.8, torch.Generator().manual_seed(0))
        start = plain[0] if model.task == "rescaling" else lr
        plain, fast = _both(lambda: model.decode(start, zs), fold)
        _assert_close(plain, fast)
        if not fold:
            assert all(torch.equal(a, b) for a, b in zip(plain, fast))


def _grads(model, hr, lr):
    model.zero_grad(set_to_none=True)
    _, _, logdet = model.encode(hr, lr)
    logdet.sum().backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_training_and_gradients_untouched(family):
    cls = FAMILIES[family]
    model = tiny_model(cls, seed=5)
    hr, lr = family_images(model)
    for mode in (True, False):  # training mode, and eval mode with grads (no fast path either way)
        model.train(mode)
        with fast_paths(False):
            plain = _flat(model.encode(hr, lr))
            g_plain = _grads(model, hr, lr)
        with fast_paths(True):
            fast = _flat(model.encode(hr, lr))
            g_fast = _grads(model, hr, lr)
        assert all(torch.equal(a, b) for a, b in zip(plain, fast))
        assert len(g_plain) == len(g_fast) and all(torch.equal(a, b) for a, b in zip(g_plain, g_fast))


def test_fast_path_only_without_grads_in_eval():
    net = ConvActNorm(3, 4).eval()
    assert inference_key(net, list(net.parameters())) is None  # grads needed for the parameters
    with torch.no_grad():
        assert inference_key(net, list(net.parameters())) is not None
        with fast_paths(False):
            assert inference_key(net, list(net.parameters())) is None
        net.train()
        assert inference_key(net, list(net.parameters())) is None


def test_folded_weights_follow_updates_and_loading():
    net = FCN(4, 6, hidden=8)
    perturb_parameters(net, seed=6, scale=0.3).eval()
    other = copy.deepcopy(net)
    perturb_parameters(other, seed=7, scale=0.3)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        before = net(x)
        net.conv1.actnorm.logs.add_(0.5)  # an in-place update (an optimiser step)
        with fast_paths(False):
            expected = net(x)
        assert not torch.allclose(before, expected)
        _assert_close([expected], [net(x)])
        net.load_state_dict(other.state_dict())
        with fast_paths(False):
            expected = other(x)
        _assert_close([expected], [net(x)])


def test_state_dict_pickle_and_checkpoints_unchanged(tmp_path):
    cls = FAMILIES[sorted(FAMILIES)[0]]
    model = tiny_model(cls, seed=8)
    hr, lr = family_images(model)
    keys = list(model.state_dict())
    with torch.no_grad():
        out = _flat(model.encode(hr, lr))  # fills the caches
    state = model.state_dict()
    assert list(state) == keys
    clone = pickle.loads(pickle.dumps(model))
    save(model, tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors").eval()
    with torch.no_grad():
        for m in (clone, loaded, copy.deepcopy(model)):
            assert list(m.state_dict()) == keys
            assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
            _assert_close(out, _flat(m.encode(hr, lr)))


def test_set_fast_paths_is_global_and_restored():
    assert fast_paths_enabled() and not step_folding_enabled()
    with step_folding():
        assert step_folding_enabled()
    assert not step_folding_enabled()
    with fast_paths(False):
        assert not fast_paths_enabled()
    assert fast_paths_enabled()
    set_fast_paths(False)
    try:
        assert not fast_paths_enabled()
    finally:
        set_fast_paths(True)
