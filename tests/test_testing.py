"""Tests of ``flowsr.testing`` itself: the helpers pass correct modules and catch broken ones."""

from __future__ import annotations

import ast
import dataclasses
import doctest
import importlib
import importlib.util
import math
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from FrEIA import framework as Ff
from FrEIA import modules as Fm
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from flowsr import testing as ft

# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------


class SmallNet(nn.Module):
    """Small conv subnet (a class, not a lambda, so modules pickle)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # zero-initialised output, as in Glow / SRFlow
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x)))


def glow(shape=(4, 4, 4), cond_channels=2) -> nn.Module:
    dims_c = [(cond_channels, *shape[1:])] if cond_channels else []
    with ft.default_dtype(torch.float64):
        layer = Fm.GLOWCouplingBlock([shape], dims_c, subnet_constructor=SmallNet, clamp=2.0)
    return ft.perturb_parameters(layer, seed=0)


def haar(shape=(2, 4, 4)) -> nn.Module:
    with ft.default_dtype(torch.float64):
        return Fm.HaarDownsampling([shape], order_by_wavelet=True, rebalance=0.5)


def graph_inn(force_tuple_output: bool = False) -> Ff.GraphINN:
    """Two inputs, one condition: Concat -> Haar -> conditional GLOW -> Split into two outputs."""
    with ft.default_dtype(torch.float64):
        in1 = Ff.InputNode(1, 4, 4, name="in1")
        in2 = Ff.InputNode(1, 4, 4, name="in2")
        cond = Ff.ConditionNode(3, 2, 2, name="cond")
        cat = Ff.Node([(in1, 0), (in2, 0)], Fm.Concat, {}, name="cat")
        down = Ff.Node(cat, Fm.HaarDownsampling, {"order_by_wavelet": True, "rebalance": 0.5}, name="haar")
        coupling = Ff.Node(
            down, Fm.GLOWCouplingBlock, {"subnet_constructor": SmallNet, "clamp": 2.0}, conditions=cond, name="glow"
        )
        perm = Ff.Node(coupling, Fm.PermuteRandom, {"seed": 0}, name="perm")
        split = Ff.Node(perm, Fm.Split, {"section_sizes": [3, 5]}, name="split")
        out1 = Ff.OutputNode((split, 0), name="out1")
        out2 = Ff.OutputNode((split, 1), name="out2")
        net = Ff.GraphINN([in1, in2, cond, cat, down, coupling, perm, split, out1, out2], force_tuple_output)
    return ft.perturb_parameters(net, seed=1)


class ElementwiseAffine(Fm.InvertibleModule):
    """``y = x * exp(s) + t`` with per-channel ``s, t``; log-det ``H*W*sum(s)``. Correct by default.

    The ``bug`` argument breaks one thing on purpose, to check that the helpers notice.
    """

    def __init__(self, dims_in, dims_c=None, bug: str | None = None):
        super().__init__(dims_in, dims_c)
        channels = dims_in[0][0]
        self.s = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.t = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.bug = bug

    def forward(self, x, c=None, rev=False, jac=True):
        x = x[0]
        pixels = x[0, 0].numel()
        log_det = (self.s.sum() * pixels).expand(x.shape[0])
        if self.bug == "logdet_constant":
            log_det = log_det + 0.5
        elif self.bug == "logdet_missing_factor":
            log_det = self.s.sum().expand(x.shape[0])  # forgot the H*W pixels
        if not rev:
            if self.bug == "mix_batch":
                x = x + 0.5 * x.mean(dim=0, keepdim=True)
            if self.bug == "in_place":
                x.mul_(1.0)
                x.add_(0.0)
                x.mul_(torch.exp(self.s)).add_(self.t)
                return (x,), log_det
            return (x * torch.exp(self.s) + self.t,), log_det
        if self.bug == "wrong_inverse":
            y = x * torch.exp(-self.s) - self.t  # wrong order of operations
        else:
            y = (x - self.t) * torch.exp(-self.s)
        if self.bug == "mix_batch":
            y = y - (0.5 / 1.5) * y.mean(dim=0, keepdim=True)
        if self.bug == "rev_logdet_sign":
            return (y,), log_det
        if self.bug == "logdet_shape":
            return (y,), -log_det[:, None, None].expand(-1, *x.shape[2:])
        return (y,), -log_det

    def output_dims(self, input_dims):
        if self.bug == "output_dims":
            return [(input_dims[0][0] + 1, *input_dims[0][1:])]
        return input_dims


def affine(bug: str | None = None, shape=(3, 4, 4)) -> ElementwiseAffine:
    with ft.default_dtype(torch.float64):
        layer = ElementwiseAffine([shape], bug=bug)
    return ft.perturb_parameters(layer, seed=3, scale=0.3)


class NumpyScale(Fm.InvertibleModule):
    """Scales by a data-dependent constant computed through numpy: ``torch.func`` cannot trace it."""

    def forward(self, x, c=None, rev=False, jac=True):
        x = x[0]
        k = 1.5 + 0.0 * float(np.asarray(x.detach()).sum())  # constant, but forces a numpy round trip
        y = x / k if rev else x * k
        log_det = x.new_full((x.shape[0],), x[0].numel() * math.log(k))
        return (y,), (-log_det if rev else log_det)

    def output_dims(self, input_dims):
        return input_dims


def x64(shape, seed=0):
    return ft.tensors(shape, seed=seed, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# correct modules pass
# --------------------------------------------------------------------------------------------


def test_check_all_glow_coupling_with_condition():
    layer = glow()
    ran = ft.check_all(layer, x64((3, 4, 4, 4)), [x64((3, 2, 4, 4), seed=1)])
    assert ran == [
        "invertible",
        "reverse_logdet_negates",
        "batch_independent",
        "output_dims",
        "logdet_matches_autograd",
    ]
    auto, mod = ft.assert_logdet_matches_autograd(layer, x64((2, 4, 4, 4)), x64((2, 2, 4, 4), seed=1), sample=1)
    assert abs(auto) > 1e-3  # the perturbed coupling is not the identity
    assert auto == pytest.approx(mod, abs=1e-8)


def test_check_all_haar():
    layer = haar((2, 4, 4))
    out, log_det = ft.run_module(layer, x64((3, 2, 4, 4)))
    assert [tuple(t.shape) for t in out] == [(3, 8, 2, 2)]
    assert log_det.shape == (3,) and log_det.dtype == torch.float64  # FrEIA returns a numpy float here
    assert len(ft.check_all(layer, x64((3, 2, 4, 4)))) == 5
    # fully convolutional: another spatial size than the nominal one
    assert ft.assert_output_dims(layer, x64((2, 2, 8, 6))) == [(8, 4, 3)]


@pytest.mark.parametrize("force_tuple_output", [False, True])
def test_check_all_graph_inn_multi_input_multi_output(force_tuple_output):
    net = graph_inn(force_tuple_output)
    x = [x64((2, 1, 4, 4), seed=0), x64((2, 1, 4, 4), seed=1)]
    c = [x64((2, 3, 2, 2), seed=2)]
    # FrEIA 0.2 GraphINN turns Python-number log-dets of its nodes (Haar, Split, ...) into tensors of
    # the *default* dtype: run float64 graphs under default_dtype(float64), as the `float64` fixture does.
    with ft.default_dtype(torch.float64):
        out, log_det = ft.run_module(net, x, c)
        assert [tuple(t.shape) for t in out] == [(2, 3, 2, 2), (2, 5, 2, 2)]
        assert len(ft.check_all(net, x, c)) == 5
    # ... and outside it, the autograd check notices the float32 rounding of the Haar log-det
    with pytest.raises(AssertionError, match="GraphINN: log-det of sample 0"):
        ft.assert_logdet_matches_autograd(net, x, c)


def test_graph_inn_single_bare_output_is_normalised():
    with ft.default_dtype(torch.float64):
        inp = Ff.InputNode(2, 4, 4, name="in")
        node = Ff.Node(inp, Fm.HaarDownsampling, {"order_by_wavelet": True, "rebalance": 0.5}, name="haar")
        out = Ff.OutputNode(node, name="out")
        net = Ff.GraphINN([inp, node, out])  # returns a bare tensor
    for batch in (1, 3):  # list(bare tensor) would iterate the batch; run_module must not
        outputs, log_det = ft.run_module(net, x64((batch, 2, 4, 4)))
        assert len(outputs) == 1 and outputs[0].shape == (batch, 8, 2, 2) and log_det.shape == (batch,)
    ft.assert_invertible(net, x64((3, 2, 4, 4)))
    ft.assert_batch_independent(net, x64((3, 2, 4, 4)))


def test_check_all_sequence_inn():
    with ft.default_dtype(torch.float64):
        seq = Ff.SequenceINN(2, 4, 4, force_tuple_output=True)
        seq.append(Fm.HaarDownsampling, order_by_wavelet=True, rebalance=0.5)
        seq.append(Fm.GLOWCouplingBlock, subnet_constructor=SmallNet, clamp=2.0, cond=0, cond_shape=(3, 2, 2))
        seq.append(Fm.PermuteRandom, seed=0)
    ft.perturb_parameters(seq, seed=2)
    assert len(ft.check_all(seq, x64((2, 2, 4, 4)), [x64((2, 3, 2, 2), seed=1)])) == 5


def test_all_in_one_block_float32_precision_needs_looser_tolerances():
    # AllInOneBlock builds its permutation as a FloatTensor: exact only to ~1e-7 even in float64.
    with ft.default_dtype(torch.float64):
        block = Fm.AllInOneBlock([(4, 4, 4)], [(2, 4, 4)], subnet_constructor=SmallNet).double()
    ft.perturb_parameters(block, seed=0)
    ft.check_all(block, x64((2, 4, 4, 4)), [x64((2, 2, 4, 4), 1)], atol=1e-6, logdet_atol=1e-5, autograd_atol=1e-5)


def test_float32_tolerances():
    with ft.default_dtype(torch.float32):
        layer = Fm.GLOWCouplingBlock([(4, 8, 8)], [], subnet_constructor=SmallNet, clamp=2.0)
    ft.perturb_parameters(layer, seed=0)
    x = ft.tensors((2, 4, 8, 8), seed=0, dtype=torch.float32)
    assert ft.check_all(layer, x) == ["invertible", "reverse_logdet_negates", "batch_independent", "output_dims"]


def test_autograd_fallback_when_torch_func_fails():
    with ft.default_dtype(torch.float64):
        layer = NumpyScale([(2, 2, 2)])
    auto, mod = ft.assert_logdet_matches_autograd(layer, x64((2, 2, 2, 2)))
    assert auto == pytest.approx(8 * math.log(1.5), abs=1e-12)


def test_run_module_does_not_pass_empty_conditions():
    with ft.default_dtype(torch.float64):
        perm = Fm.PermuteRandom([(4, 2, 2)], seed=0)  # forward has no `c` argument
    out, log_det = ft.run_module(perm, x64((2, 4, 2, 2)), c=[])
    assert torch.equal(log_det, torch.zeros(2, dtype=torch.float64))
    ft.check_all(perm, x64((2, 4, 2, 2)), c=None)


# --------------------------------------------------------------------------------------------
# broken modules fail
# --------------------------------------------------------------------------------------------


def test_correct_reference_layer_passes():
    assert len(ft.check_all(affine(), x64((2, 3, 4, 4)))) == 5


@pytest.mark.parametrize("bug", ["logdet_constant", "logdet_missing_factor"])
def test_wrong_logdet_is_caught_by_autograd_check(bug):
    layer = affine(bug)
    ft.assert_invertible(layer, x64((2, 3, 4, 4)))  # the maps themselves are fine
    with pytest.raises(AssertionError, match=r"ElementwiseAffine: log-det of sample 0 .* autograd"):
        ft.assert_logdet_matches_autograd(layer, x64((2, 3, 4, 4)))
    with pytest.raises(AssertionError):
        ft.check_all(layer, x64((2, 3, 4, 4)))


def test_reverse_logdet_sign_is_caught():
    layer = affine("rev_logdet_sign")
    with pytest.raises(AssertionError, match="does not negate"):
        ft.assert_reverse_logdet_negates(layer, x64((2, 3, 4, 4)))


def test_wrong_inverse_is_caught():
    with pytest.raises(AssertionError, match=r"ElementwiseAffine: reconstruction .* max abs error"):
        ft.assert_invertible(affine("wrong_inverse"), x64((2, 3, 4, 4)))


def test_wrong_inverse_is_caught_in_float32():
    layer = affine("wrong_inverse").float()
    with pytest.raises(AssertionError, match="reconstruction"):
        ft.assert_invertible(layer, ft.tensors((2, 3, 4, 4), seed=0, dtype=torch.float32))


def test_batch_mixing_is_caught():
    layer = affine("mix_batch")
    ft.assert_invertible(layer, x64((3, 3, 4, 4)))  # invertible as a map of the whole batch
    with pytest.raises(AssertionError, match="batch mixing"):
        ft.assert_batch_independent(layer, x64((3, 3, 4, 4)))


def test_in_place_modification_is_caught():
    with pytest.raises(AssertionError, match="modified in place"):
        ft.assert_invertible(affine("in_place"), x64((2, 3, 4, 4)))


def test_wrong_output_dims_is_caught():
    with pytest.raises(AssertionError, match="output_dims"):
        ft.assert_output_dims(affine("output_dims"), x64((2, 3, 4, 4)))


def test_wrong_logdet_shape_is_caught():
    with pytest.raises(AssertionError, match=r"log-det must be a scalar or have shape \(2,\)"):
        ft.assert_invertible(affine("logdet_shape"), x64((2, 3, 4, 4)))


def test_zero_initialised_coupling_needs_perturbation():
    # Unperturbed, the zero-initialised subnets make the coupling the identity: log-det exactly 0.
    with ft.default_dtype(torch.float64):
        layer = Fm.GLOWCouplingBlock([(4, 4, 4)], [], subnet_constructor=SmallNet, clamp=2.0)
    x = x64((2, 4, 4, 4))
    out, log_det = ft.run_module(layer, x)
    assert torch.equal(out[0], x) and torch.equal(log_det, torch.zeros(2, dtype=torch.float64))
    ft.perturb_parameters(layer)
    out, log_det = ft.run_module(layer, x)
    assert not torch.allclose(out[0], x) and bool((log_det != 0).all())


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def test_autograd_check_refuses_float32_and_large_inputs():
    with pytest.raises(TypeError, match="float64"):
        ft.assert_logdet_matches_autograd(haar(), ft.tensors((1, 2, 4, 4), seed=0, dtype=torch.float32))
    with pytest.raises(ValueError, match="D = 4096"):
        ft.assert_logdet_matches_autograd(haar((4, 32, 32)), x64((1, 4, 32, 32)))
    # check_all skips the autograd check for large inputs instead of failing
    assert "logdet_matches_autograd" not in ft.check_all(haar((4, 32, 32)), x64((2, 4, 32, 32)))


# --------------------------------------------------------------------------------------------
# perturb_parameters
# --------------------------------------------------------------------------------------------


class FakeActNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 2, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))


def test_perturb_parameters_is_deterministic_and_skips_fixed_parameters():
    with ft.default_dtype(torch.float64):
        net = nn.ModuleDict(
            {
                "perm": Fm.PermuteRandom([(4, 2, 2)], seed=0),
                "haar": Fm.HaarDownsampling([(1, 2, 2)], order_by_wavelet=True, rebalance=0.5),
                "conv": nn.Conv2d(2, 2, 1),
                "actnorm": FakeActNorm(),
                "freia_actnorm": Fm.ActNorm([(2, 2, 2)]),
            }
        )
    frozen = {k: v.clone() for k, v in net.named_parameters() if not v.requires_grad or not v.is_floating_point()}
    assert frozen  # PermuteRandom's index tensors, Haar weights
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ft.perturb_parameters(net, seed=5, scale=0.1)
    after = {k: v.clone() for k, v in net.state_dict().items()}
    for name, value in frozen.items():
        assert torch.equal(after[name], value), name
    assert not torch.equal(after["actnorm.bias"], before["actnorm.bias"])  # zero tensor refilled
    assert bool(net["actnorm"].initialized)
    assert net["freia_actnorm"].init_on_next_batch is False
    assert float((after["conv.weight"] - before["conv.weight"]).std()) == pytest.approx(0.1, rel=0.9)

    net.load_state_dict(before)
    ft.perturb_parameters(net, seed=5, scale=0.1)
    for k, v in net.state_dict().items():
        assert torch.equal(v, after[k]), k


# --------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------


@given(ft.image_shapes(divisible_by=2, max_dims=128), ft.batch_sizes(3))
def test_image_shapes_respect_constraints(shape, batch):
    c, h, w = shape
    assert c % 2 == 0 and c * h * w <= 128 and h in (2, 4, 8) and w in (2, 4, 8)
    assert 1 <= batch <= 3


@given(ft.layer_inputs(n_conditions=st.integers(0, 2)))
def test_layer_inputs_are_reproducible(case):
    x, c = case.make()
    x2, c2 = case.make()
    assert torch.equal(x[0], x2[0]) and all(torch.equal(a, b) for a, b in zip(c, c2))
    assert x[0].shape == (case.batch, *case.shape) and x[0].dtype == torch.float64
    assert [tuple(t.shape[1:]) for t in c] == case.dims_c and all(t.shape[2:] == x[0].shape[2:] for t in c)


@given(ft.layer_inputs(shapes=ft.image_shapes(divisible_by=2, max_dims=256), n_conditions=1), ft.seeds())
def test_property_glow_coupling_passes_check_all(case, seed):
    with ft.default_dtype(torch.float64):
        layer = Fm.GLOWCouplingBlock(case.dims_in, case.dims_c, subnet_constructor=SmallNet, clamp=2.0)
    ft.perturb_parameters(layer, seed=seed)
    x, c = case.make()
    ft.check_all(layer, x, c)


# --------------------------------------------------------------------------------------------
# the documented example (docs/layers.md) stays in sync with docs/examples and keeps passing
# --------------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_example_is_in_sync_and_passes():
    example = DOCS / "examples" / "custom_layer_test.py"
    text = (DOCS / "layers.md").read_text()
    section = text.split("## Write your own conditional layer and test it with flowsr.testing", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code == example.read_text().rstrip() + "\n", "docs/layers.md example differs from docs/examples"
    spec = importlib.util.spec_from_file_location("custom_layer_example", example)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.test_conditional_affine_properties()
    module.test_conditional_affine_float32_smoke()
    module.test_conditional_affine_contract()


# --------------------------------------------------------------------------------------------
# the newcomer path (docs/layers.md): a coupling defined, registered, checked and used by name in
# one file, and the recipe that trains it with `flowsr train`
# --------------------------------------------------------------------------------------------

ROOT = DOCS.parent
CUSTOM_COUPLING = DOCS / "examples" / "custom_coupling.py"
CUSTOM_RECIPE = ROOT / "flowsr" / "recipes" / "custom_coupling_tiny.yaml"


def _example_spec_yaml() -> str:
    """``SPEC_YAML`` of the example, read without importing it (importing registers its coupling
    under this module's name; the trainer imports the same file under its own)."""
    tree = ast.parse(CUSTOM_COUPLING.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["SPEC_YAML"]:
            return ast.literal_eval(node.value)
    raise AssertionError("docs/examples/custom_coupling.py defines no SPEC_YAML")


def test_custom_coupling_example_is_in_sync_and_runs():
    text = (DOCS / "layers.md").read_text()
    section = text.split("## Write a new coupling and use it by name", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code == CUSTOM_COUPLING.read_text().rstrip() + "\n", "docs/layers.md example differs from docs/examples"
    # its own process, as a newcomer runs it (and its coupling registers nowhere else)
    result = subprocess.run(
        [sys.executable, str(CUSTOM_COUPLING)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "contract checks passed: ['properties', 'graph_node', 'float32', 'bad_input', 'bad_conditions']" in (
        result.stdout
    )
    assert "latents [(2, 45, 8, 6), (2, 12, 16, 12), (2, 6, 32, 24)]" in result.stdout
    error = float(result.stdout.split("round-trip error", 1)[1].split()[0])
    assert error < 1e-5


def test_custom_coupling_recipe_trains_the_example_model():
    recipe = yaml.safe_load(CUSTOM_RECIPE.read_text())
    assert recipe["model"]["spec"] == yaml.safe_load(_example_spec_yaml())  # the example's model
    assert [(CUSTOM_RECIPE.parent / p).resolve() for p in recipe["imports"]] == [CUSTOM_COUPLING.resolve()]


def test_custom_coupling_recipe_runs_with_flowsr_train(tmp_path):
    """``flowsr train`` on the recipe from another folder: the recipe imports the example's file,
    which registers the coupling; nothing in flowsr names it."""
    from flowsr.train.config import TrainingConfig

    if "imports" not in {f.name for f in dataclasses.fields(TrainingConfig)}:
        pytest.skip("pending: the recipe key `imports` (trainer branch) has not landed here yet")
    overrides = ["train.iterations=2", "val.every=0", "checkpoint.every=2", "data.patch_size=32", "train.device=cpu"]
    overrides += ["log.tensorboard=false", "log.plot=false", "log.progress=false"]
    command = [sys.executable, "-m", "flowsr", "train", str(CUSTOM_RECIPE), "--run-dir", str(tmp_path / "run")]
    for item in overrides:
        command += ["--set", item]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "checkpoints" / "iter_00000002.safetensors").is_file()


@pytest.mark.parametrize("name", ["compose_conditional_flow.py", "hcflow_three_levels.py"])
def test_docs_example_scripts_run(name):
    """The examples README.md and docs/hcflow.md point to (the others have their own tests)."""
    result = subprocess.run(
        [sys.executable, str(DOCS / "examples" / name)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_docstring_examples_run():
    """The ``Example:`` blocks in flowsr.testing's docstrings run, in the package's namespace."""
    for info in pkgutil.iter_modules(ft.__path__, "flowsr.testing."):
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, extraglobs=dict(vars(ft)), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, f"{info.name}: {result.failed} failing docstring example(s)"
