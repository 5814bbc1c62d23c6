"""Property tests for any FrEIA 0.2 ``InvertibleModule``, and the contracts flowsr's layers and
model families pass.

**Checks** (:mod:`flowsr.testing.checks`, :mod:`flowsr.testing.jacobian`) -- point them at your own
invertible layer, a FrEIA module or a whole graph:

* :func:`assert_invertible` -- ``f^-1(f(x)) == x`` (and ``f(f^-1(z)) == z``), inputs not modified;
* :func:`assert_logdet_matches_autograd` -- the returned log-det equals ``log|det df/dx|`` of the
  full Jacobian computed by autograd (one sample, float64, ``D <= 2048``);
* :func:`assert_reverse_logdet_negates` -- the reverse log-det at ``z = f(x)`` is minus the forward one;
* :func:`assert_batch_independent` -- a batch gives the same result as per-sample calls;
* :func:`assert_output_dims` -- ``output_dims`` agrees with the real output shapes;
* :func:`check_all` -- all of the above in one call.

**Set-up** (:mod:`flowsr.testing.calling`, :mod:`flowsr.testing.prepare`): :func:`run_module`
(calls a module with FrEIA's conventions and normalises its outputs and log-det),
:func:`perturb_parameters` (move zero-initialised layers away from the identity),
:func:`default_dtype` (build modules in float64), :func:`tensors` (seeded random tensors).

**Strategies** (:mod:`flowsr.testing.strategies`; Hypothesis is imported only when one is
requested): :func:`image_shapes`, :func:`batch_sizes`, :func:`seeds`, :func:`layer_inputs`.

**Contracts** -- what flowsr's own tests run, open to your code:

* :func:`check_layer` (:mod:`flowsr.testing.contract`) runs the layer contract -- every property
  above on drawn shapes, batches, conditions and hyper-parameters, the layer as a ``GraphINN``
  node, float32, and clear errors on bad input -- on one layer in one call; a coupling class is
  built the way the hierarchy builder builds it. :func:`register_layer_case` adds a layer to the
  run of ``tests/test_contract_layers.py`` (:mod:`flowsr.testing.cases`); registered couplings
  join it by themselves.
* :func:`check_family` (:mod:`flowsr.testing.families`) runs the model-family contract on a tiny
  model of a registered family: exact round trip, latent shapes, sampling, save / load, config,
  training losses with a gradient for every parameter, clear errors on bad input.

Typical use (float64, randomised weights)::

    import torch
    from FrEIA.modules import GLOWCouplingBlock
    from flowsr import testing as ft

    def subnet(c_in, c_out):
        return torch.nn.Conv2d(c_in, c_out, 3, padding=1)

    with ft.default_dtype(torch.float64):
        layer = GLOWCouplingBlock([(4, 8, 8)], [(2, 8, 8)], subnet_constructor=subnet, clamp=2.0)
    ft.perturb_parameters(layer, seed=0)
    x = ft.tensors((2, 4, 8, 8), seed=1)
    c = ft.tensors((2, 2, 8, 8), seed=2)
    ft.check_all(layer, x, [c])

Conventions (FrEIA 0.2): ``module(x_list, c=c_list, rev=False, jac=True) -> (outputs, log_det)``;
``c`` is only passed when there are conditions (many FrEIA modules do not accept it); outputs may be
a tuple, a list or (``GraphINN``/``SequenceINN`` without ``force_tuple_output``) a bare tensor; the
log-det may be a ``(B,)`` tensor, a 0-dim or ``(1,)`` tensor, a Python or numpy number.
:func:`run_module` turns all of these into ``(tuple_of_tensors, (B,) tensor)``.

Precision: exact checks need float64 *and* modules built under ``default_dtype(torch.float64)``.
Run float64 FrEIA 0.2 ``GraphINN``s under ``default_dtype(torch.float64)`` as well: ``GraphINN``
turns Python-number log-dets of its nodes (Haar, Split, PermuteRandom, ...) into tensors of the
default dtype, so outside the context they are rounded to float32 (about 1e-7 relative error,
which :func:`assert_logdet_matches_autograd` reports).
"""

# flowsr's own layers join the contract run (each registers its case on import)
import flowsr.testing.builtin_cases  # noqa: F401  # isort: skip
from flowsr.testing.calling import run_module
from flowsr.testing.cases import LAYER_CASES, LayerCase, coupling_case, layer_cases, register_layer_case
from flowsr.testing.checks import (
    assert_batch_independent,
    assert_invertible,
    assert_output_dims,
    assert_reverse_logdet_negates,
    check_all,
)
from flowsr.testing.contract import LAYER_CHECKS, check_layer
from flowsr.testing.families import FAMILY_CHECKS, check_family, tiny_model
from flowsr.testing.jacobian import MAX_AUTOGRAD_DIM, assert_logdet_matches_autograd
from flowsr.testing.prepare import default_dtype, perturb_parameters, tensors
from flowsr.testing.strategies import LayerInputs, batch_sizes, image_shapes, layer_inputs, seeds

__all__ = [
    "FAMILY_CHECKS",
    "LAYER_CASES",
    "LAYER_CHECKS",
    "MAX_AUTOGRAD_DIM",
    "LayerCase",
    "LayerInputs",
    "assert_batch_independent",
    "assert_invertible",
    "assert_logdet_matches_autograd",
    "assert_output_dims",
    "assert_reverse_logdet_negates",
    "batch_sizes",
    "check_all",
    "check_family",
    "check_layer",
    "coupling_case",
    "default_dtype",
    "image_shapes",
    "layer_cases",
    "layer_inputs",
    "perturb_parameters",
    "register_layer_case",
    "run_module",
    "seeds",
    "tensors",
    "tiny_model",
]
