"""Property-test helpers for any FrEIA 0.2 ``InvertibleModule`` (flowsr layers, FrEIA's own modules, graphs).

Point these helpers at your own invertible layer to check the properties every normalizing-flow
layer must have:

* :func:`assert_invertible` -- ``f^-1(f(x)) == x`` (and ``f(f^-1(z)) == z``), inputs not modified;
* :func:`assert_logdet_matches_autograd` -- the returned log-det equals ``log|det df/dx|`` of the
  full Jacobian computed by autograd (one sample, float64, ``D <= 2048``);
* :func:`assert_reverse_logdet_negates` -- the reverse log-det at ``z = f(x)`` is minus the forward one;
* :func:`assert_batch_independent` -- a batch gives the same result as per-sample calls;
* :func:`assert_output_dims` -- ``output_dims`` agrees with the real output shapes;
* :func:`check_all` -- all of the above in one call.

Helpers to set tests up: :func:`run_module` (calls a module with FrEIA's conventions and normalises
its outputs and log-det), :func:`perturb_parameters` (move zero-initialised layers away from the
identity), :func:`default_dtype` (build modules in float64), :func:`tensors` (seeded random tensors)
and Hypothesis strategies :func:`image_shapes`, :func:`batch_sizes`, :func:`seeds`,
:func:`layer_inputs` (Hypothesis is imported only when a strategy is requested).

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

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover - typing only
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "MAX_AUTOGRAD_DIM",
    "LayerInputs",
    "assert_batch_independent",
    "assert_invertible",
    "assert_logdet_matches_autograd",
    "assert_output_dims",
    "assert_reverse_logdet_negates",
    "batch_sizes",
    "check_all",
    "default_dtype",
    "image_shapes",
    "layer_inputs",
    "perturb_parameters",
    "run_module",
    "seeds",
    "tensors",
]

#: Largest flattened sample size ``D`` for which :func:`assert_logdet_matches_autograd` builds the
#: full ``D x D`` Jacobian (cost grows like ``D`` backward passes plus an ``O(D^3)`` determinant).
MAX_AUTOGRAD_DIM = 2048

TensorArg = Tensor | Sequence[Tensor]
OptTensorArg = Tensor | Sequence[Tensor] | None


# --------------------------------------------------------------------------------------------
# calling modules
# --------------------------------------------------------------------------------------------


def _as_list(x: OptTensorArg) -> list[Tensor]:
    if x is None:
        return []
    if isinstance(x, Tensor):
        return [x]
    return list(x)


def _name(module: nn.Module) -> str:
    return type(module).__name__


def run_module(
    module: nn.Module, x: TensorArg, c: OptTensorArg = None, rev: bool = False, jac: bool = True
) -> tuple[tuple[Tensor, ...], Tensor]:
    """Call ``module`` with FrEIA conventions and normalise what it returns.

    Args:
        module: a FrEIA ``InvertibleModule`` (a flowsr layer, a FrEIA module, a ``GraphINN`` or
            ``SequenceINN``).
        x: the input tensor(s) (``z`` if ``rev``); a bare tensor is wrapped in a list.
        c: condition tensor(s); passed as ``c=[...]`` only if given and non-empty, because many
            FrEIA modules have no ``c`` argument.
        rev: run the inverse.
        jac: ask for the log-det (a module returning ``None`` gets a zeros log-det).

    Returns:
        ``(outputs, log_det)``: a tuple of tensors (also for a single output or a bare-tensor
        return) and a ``(B,)`` tensor with the inputs' dtype and device.

    Raises:
        AssertionError: the module does not return ``(outputs, log_det)``, or the log-det has a
            shape that is neither a scalar nor ``(B,)`` (e.g. ``(B, H, W)``).

    Example:
        >>> import torch
        >>> from FrEIA.modules import HaarDownsampling
        >>> haar = HaarDownsampling([(2, 4, 4)], order_by_wavelet=True, rebalance=0.5)
        >>> z, log_det = run_module(haar, torch.randn(3, 2, 4, 4))
        >>> [tuple(t.shape) for t in z], tuple(log_det.shape)
        ([(3, 8, 2, 2)], (3,))
    """
    xs = _as_list(x)
    if not xs:
        raise ValueError(f"run_module({_name(module)}): need at least one input tensor")
    cs = _as_list(c)
    if cs:
        result = module(xs, c=cs, rev=rev, jac=jac)
    else:
        result = module(xs, rev=rev, jac=jac)
    if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[0], (Tensor, tuple, list))):
        raise AssertionError(
            f"{_name(module)}: forward(rev={rev}) must return (outputs, log_det), got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        )
    outputs, log_det = result
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    if not outputs or not all(isinstance(t, Tensor) for t in outputs):
        raise AssertionError(f"{_name(module)}: outputs must be a non-empty tuple of tensors")
    batch = xs[0].shape[0]
    ref = outputs[0]
    if log_det is None:
        return outputs, ref.new_zeros(batch)
    log_det = torch.as_tensor(log_det, device=ref.device)
    if not log_det.is_floating_point():
        log_det = log_det.to(ref.dtype)
    elif log_det.dtype != ref.dtype and log_det.dim() == 0 and not isinstance(result[1], Tensor):
        log_det = log_det.to(ref.dtype)  # Python / numpy numbers: take the data's dtype
    if log_det.numel() == 1:
        log_det = log_det.reshape(()).expand(batch)
    elif tuple(log_det.shape) != (batch,):
        raise AssertionError(
            f"{_name(module)}: log-det must be a scalar or have shape ({batch},) (one value per sample), "
            f"got shape {tuple(log_det.shape)}"
        )
    return outputs, log_det


# --------------------------------------------------------------------------------------------
# tolerances and comparison
# --------------------------------------------------------------------------------------------


def _max_abs(ts: Sequence[Tensor]) -> float:
    return max((float(t.detach().abs().max()) if t.numel() else 0.0) for t in ts) if ts else 0.0


def _default_tol(dtype: torch.dtype, scale: float, atol: float | None, rtol: float | None) -> tuple[float, float]:
    """Default (atol, rtol): float64 1e-10 / 1e-10; other dtypes rtol 1e-5, atol 1e-5 * max|ref|."""
    if dtype == torch.float64:
        return (1e-10 if atol is None else atol), (1e-10 if rtol is None else rtol)
    return (1e-5 * max(scale, 1e-12) if atol is None else atol), (1e-5 if rtol is None else rtol)


def _logdet_atol(dtype: torch.dtype, dim: int, log_det: Tensor, atol: float | None) -> float:
    """Default absolute tolerance of a log-det: ``1000 * eps(dtype) * max(1, D, max|log_det|)``."""
    if atol is not None:
        return atol
    eps = torch.finfo(dtype).eps
    return 1000.0 * eps * max(1.0, float(dim), _max_abs([log_det]))


def _compare(
    module: nn.Module,
    what: str,
    got: Sequence[Tensor],
    expected: Sequence[Tensor],
    atol: float,
    rtol: float,
) -> float:
    """Assert ``|got - expected| <= atol + rtol * |expected|`` element-wise; return the max error."""
    if len(got) != len(expected):
        raise AssertionError(f"{_name(module)}: {what}: got {len(got)} tensors, expected {len(expected)}")
    worst = 0.0
    for i, (g, e) in enumerate(zip(got, expected)):
        if g.shape != e.shape:
            raise AssertionError(
                f"{_name(module)}: {what}: tensor {i} has shape {tuple(g.shape)}, expected {tuple(e.shape)}"
            )
        g, e = g.detach(), e.detach()
        if not bool(torch.isfinite(g).all()):
            raise AssertionError(f"{_name(module)}: {what}: tensor {i} contains NaN or Inf")
        err = (g - e).abs()
        max_err = float(err.max()) if err.numel() else 0.0
        worst = max(worst, max_err)
        if err.numel() and not bool((err <= atol + rtol * e.abs()).all()):
            raise AssertionError(
                f"{_name(module)}: {what}: max abs error {max_err:.3e} in tensor {i} "
                f"exceeds atol={atol:.1e} + rtol={rtol:.1e}*|expected| (dtype {g.dtype}, shape {tuple(g.shape)})"
            )
    return worst


def _clone_all(ts: Sequence[Tensor]) -> list[Tensor]:
    return [t.detach().clone() for t in ts]


def _check_unmodified(module: nn.Module, what: str, before: Sequence[Tensor], after: Sequence[Tensor]) -> None:
    for i, (b, a) in enumerate(zip(before, after)):
        if not torch.equal(b, a.detach()):
            raise AssertionError(
                f"{_name(module)}: {what} tensor {i} was modified in place "
                f"(max change {float((b - a.detach()).abs().max()):.3e}); layers must not modify their inputs"
            )


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------


def assert_invertible(
    module: nn.Module,
    x: TensorArg,
    c: OptTensorArg = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """Assert ``f^-1(f(x)) == x`` and ``f(f^-1(z)) == z`` for ``z = f(x)``.

    Also checks that neither direction modifies its input tensors (or the conditions) in place
    and that outputs and log-dets are finite.

    Tolerances (element-wise ``|err| <= atol + rtol*|expected|``): float64 ``atol=rtol=1e-10``;
    other dtypes ``rtol=1e-5`` and ``atol=1e-5 * max|x|`` (``max|z|`` for the re-forward check).

    Args:
        module: the invertible module.
        x: input tensor(s), batch first.
        c: condition tensor(s) or ``None``.
        atol: absolute tolerance (overrides the default).
        rtol: relative tolerance (overrides the default).

    Returns:
        The forward ``(outputs, log_det)`` as from :func:`run_module`.

    Raises:
        AssertionError: with the module name and the maximum error.

    Example:
        >>> import torch
        >>> from FrEIA.modules import HaarDownsampling
        >>> with default_dtype(torch.float64):
        ...     haar = HaarDownsampling([(2, 4, 4)], order_by_wavelet=True, rebalance=0.5)
        >>> z, log_det = assert_invertible(haar, tensors((2, 2, 4, 4), seed=0))
    """
    xs, cs = _as_list(x), _as_list(c)
    x_before, c_before = _clone_all(xs), _clone_all(cs)
    with torch.no_grad():
        z, log_det = run_module(module, xs, cs, rev=False, jac=True)
        _check_unmodified(module, "forward input", x_before, xs)
        _check_unmodified(module, "condition", c_before, cs)
        _compare_finite(module, "forward", z, log_det)
        z_before = _clone_all(z)
        x_rec, log_det_rev = run_module(module, list(z), cs, rev=True, jac=True)
        _check_unmodified(module, "reverse input", z_before, z)
        _check_unmodified(module, "condition", c_before, cs)
        _compare_finite(module, "reverse", x_rec, log_det_rev)
        a, r = _default_tol(xs[0].dtype, _max_abs(xs), atol, rtol)
        _compare(module, "reconstruction f^-1(f(x)) vs x", x_rec, xs, a, r)
        z_again, _ = run_module(module, list(x_rec), cs, rev=False, jac=True)
        a, r = _default_tol(xs[0].dtype, _max_abs(z), atol, rtol)
        _compare(module, "re-forward f(f^-1(z)) vs z", z_again, z, a, r)
    return z, log_det


def _compare_finite(module: nn.Module, direction: str, outs: Sequence[Tensor], log_det: Tensor) -> None:
    for i, t in enumerate(outs):
        if not bool(torch.isfinite(t).all()):
            raise AssertionError(f"{_name(module)}: {direction} output {i} contains NaN or Inf")
    if not bool(torch.isfinite(log_det).all()):
        raise AssertionError(f"{_name(module)}: {direction} log-det contains NaN or Inf: {log_det.tolist()}")


def assert_reverse_logdet_negates(
    module: nn.Module, x: TensorArg, c: OptTensorArg = None, *, atol: float | None = None
) -> tuple[Tensor, Tensor]:
    """Assert that the reverse log-det at ``z = f(x)`` equals minus the forward log-det at ``x``.

    Args:
        module: the invertible module.
        x: input tensor(s), batch first.
        c: condition tensor(s) or ``None``.
        atol: absolute tolerance; default ``1000 * eps(dtype) * max(1, D, max|log_det|)`` with
            ``D`` the number of elements of one sample (about 1e-10 in float64 for D = 512).

    Returns:
        ``(forward_log_det, reverse_log_det)``, both ``(B,)``.

    Example:
        >>> import torch
        >>> from FrEIA.modules import HaarDownsampling
        >>> with default_dtype(torch.float64):
        ...     haar = HaarDownsampling([(2, 4, 4)], order_by_wavelet=True, rebalance=0.5)
        >>> fwd, rev = assert_reverse_logdet_negates(haar, tensors((2, 2, 4, 4), seed=0))
    """
    xs, cs = _as_list(x), _as_list(c)
    with torch.no_grad():
        z, log_det = run_module(module, xs, cs, rev=False, jac=True)
        _, log_det_rev = run_module(module, list(z), cs, rev=True, jac=True)
    dim = sum(t[0].numel() for t in xs)
    tol = _logdet_atol(xs[0].dtype, dim, log_det, atol)
    err = (log_det + log_det_rev).abs()
    if not bool(torch.isfinite(err).all()) or float(err.max()) > tol:
        raise AssertionError(
            f"{_name(module)}: reverse log-det does not negate the forward log-det: max |fwd + rev| = "
            f"{float(err.max()):.3e} > atol={tol:.1e} (forward {log_det.tolist()}, reverse {log_det_rev.tolist()})"
        )
    return log_det, log_det_rev


def assert_batch_independent(
    module: nn.Module,
    x: TensorArg,
    c: OptTensorArg = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    """Assert that outputs and log-dets of a batch equal those of per-sample (batch of 1) calls.

    Checks both directions (the reverse at ``z = f(x)``). Catches layers that mix batch
    elements (batch statistics, wrong ``view``/``reshape``, reductions over dim 0). Needs a
    batch of at least 2 to be meaningful. Tolerances as in :func:`assert_invertible` relative to
    the largest output magnitude; log-dets as in :func:`assert_reverse_logdet_negates`.

    Example:
        >>> import torch
        >>> from FrEIA.modules import HaarDownsampling
        >>> with default_dtype(torch.float64):
        ...     haar = HaarDownsampling([(2, 4, 4)], order_by_wavelet=True, rebalance=0.5)
        >>> assert_batch_independent(haar, tensors((3, 2, 4, 4), seed=0))
    """
    xs, cs = _as_list(x), _as_list(c)
    batch = xs[0].shape[0]
    dim = sum(t[0].numel() for t in xs)
    with torch.no_grad():
        z, log_det = run_module(module, xs, cs, rev=False, jac=True)
        x_rec, log_det_rev = run_module(module, list(z), cs, rev=True, jac=True)
        for direction, inputs, outs, lds in (("forward", xs, z, log_det), ("reverse", list(z), x_rec, log_det_rev)):
            a, r = _default_tol(outs[0].dtype, _max_abs(outs), atol, rtol)
            ld_tol = _logdet_atol(outs[0].dtype, dim, lds, atol)
            for b in range(batch):
                single, ld_single = run_module(
                    module, [t[b : b + 1] for t in inputs], [t[b : b + 1] for t in cs], rev=direction == "reverse"
                )
                try:
                    _compare(module, f"{direction} output of sample {b}", [t[b : b + 1] for t in outs], single, a, r)
                except AssertionError as e:
                    msg = f"{e} -- batched call differs from a per-sample call (batch mixing?)"
                    raise AssertionError(msg) from None
                err = float((ld_single[0] - lds[b]).abs())
                if not err <= ld_tol:
                    raise AssertionError(
                        f"{_name(module)}: {direction} log-det of sample {b} differs between the batched call "
                        f"({float(lds[b]):.6g}) and a per-sample call ({float(ld_single[0]):.6g}): "
                        f"error {err:.3e} > atol={ld_tol:.1e} (batch mixing?)"
                    )


def assert_output_dims(module: nn.Module, x: TensorArg, c: OptTensorArg = None) -> list[tuple[int, ...]]:
    """Assert that ``output_dims`` agrees with the shapes of the real outputs.

    Two checks:

    * ``module.output_dims([tuple(t.shape[1:]) for t in x])`` (the actual input shapes) must equal
      the real output shapes exactly (count, channels and spatial sizes);
    * ``module.output_dims(module.dims_in)`` (the nominal shapes) must give the real channel counts
      for outputs that keep spatial dimensions.

    FrEIA 0.2 ``GraphINN.output_dims`` ignores its argument (returns the nominal graph output
    shapes): use inputs of the nominal shape. ``SequenceINN.output_dims`` is broken in 0.2
    (returns the input dims); for a ``SequenceINN`` this helper uses ``module.shapes[-1]``.

    Returns:
        The real output shapes (without the batch dimension).

    Example:
        >>> import torch
        >>> from FrEIA.modules import HaarDownsampling
        >>> haar = HaarDownsampling([(2, 4, 4)], order_by_wavelet=True, rebalance=0.5)
        >>> assert_output_dims(haar, torch.randn(2, 2, 8, 8))
        [(8, 4, 4)]
    """
    xs, cs = _as_list(x), _as_list(c)
    with torch.no_grad():
        z, _ = run_module(module, xs, cs, rev=False, jac=False)
    real = [tuple(t.shape[1:]) for t in z]
    actual_in = [tuple(int(s) for s in t.shape[1:]) for t in xs]
    nominal_in = [tuple(int(s) for s in d) for d in getattr(module, "dims_in", None) or []]
    seq_shapes = _sequence_inn_shapes(module)
    if seq_shapes is not None:
        if actual_in == nominal_in:
            expected = [tuple(seq_shapes[-1])]
        else:
            expected = None  # cannot infer the actual shapes of a 0.2 SequenceINN
        nominal_out = [tuple(seq_shapes[-1])]
    else:
        expected = [tuple(int(s) for s in d) for d in module.output_dims(actual_in)]
        nominal_out = [tuple(int(s) for s in d) for d in module.output_dims(nominal_in)] if nominal_in else None
    if expected is not None and expected != real:
        raise AssertionError(
            f"{_name(module)}: output_dims({actual_in}) = {expected} but the real outputs have shapes {real}"
        )
    if nominal_out is not None:
        if len(nominal_out) != len(real):
            raise AssertionError(
                f"{_name(module)}: output_dims(dims_in={nominal_in}) lists {len(nominal_out)} outputs, "
                f"the module returns {len(real)}"
            )
        for i, (n, r) in enumerate(zip(nominal_out, real)):
            if len(n) != len(r) or (len(r) > 1 and n[0] != r[0]) or (actual_in == nominal_in and n != r):
                raise AssertionError(
                    f"{_name(module)}: output {i}: output_dims(dims_in={nominal_in}) gives {n}, "
                    f"the real output has shape {r}"
                )
    return real


def _sequence_inn_shapes(module: nn.Module) -> list[tuple[int, ...]] | None:
    try:
        from FrEIA.framework import SequenceINN
    except ImportError:  # pragma: no cover
        return None
    return list(module.shapes) if isinstance(module, SequenceINN) else None


@contextlib.contextmanager
def _finite_checks_off(module: nn.Module) -> Iterator[None]:
    """The NaN/Inf input checks of ``module``'s layers off (they cannot run under ``torch.func``)."""
    saved = [(m, m.check_finite_inputs) for m in module.modules() if hasattr(m, "check_finite_inputs")]
    for m, _ in saved:
        m.check_finite_inputs = False
    try:
        yield
    finally:
        for m, value in saved:
            m.check_finite_inputs = value


def _jacobian(fn: Any, flat: Tensor) -> tuple[Tensor, str]:
    """Full Jacobian of ``fn`` at ``flat``: ``torch.func.jacrev``, then autograd fallbacks."""
    errors = []
    try:
        return torch.func.jacrev(fn)(flat), "torch.func.jacrev"
    except Exception as e:  # noqa: BLE001 - in-place ops, data-dependent control flow, ...
        errors.append(f"jacrev: {type(e).__name__}: {e}")
    for vectorize in (True, False):
        try:
            jac = torch.autograd.functional.jacobian(fn, flat, vectorize=vectorize)
            return jac, f"torch.autograd.functional.jacobian(vectorize={vectorize})"
        except Exception as e:  # noqa: BLE001
            errors.append(f"jacobian(vectorize={vectorize}): {type(e).__name__}: {e}")
    raise RuntimeError("could not compute the Jacobian:\n  " + "\n  ".join(errors))


def assert_logdet_matches_autograd(
    module: nn.Module,
    x: TensorArg,
    c: OptTensorArg = None,
    *,
    atol: float = 1e-8,
    sample: int = 0,
    max_dim: int = MAX_AUTOGRAD_DIM,
) -> tuple[float, float]:
    """Assert that the module's forward log-det equals ``log|det J|`` of the autograd Jacobian.

    The Jacobian of the flattened, concatenated outputs with respect to the flattened,
    concatenated inputs of one sample (``x[i][sample]``) is computed with
    ``torch.func.jacrev`` (falling back to ``torch.autograd.functional.jacobian`` for modules
    that ``torch.func`` cannot trace, e.g. in-place ops), its log-abs-determinant with
    ``torch.linalg.slogdet``, and compared with the module's forward log-det of that sample from
    a call on the whole batch. Conditions are held fixed.

    Args:
        module: the invertible module, with float64 parameters (build it under
            ``with default_dtype(torch.float64):``).
        x: float64 input tensor(s), batch first.
        c: condition tensor(s) or ``None``.
        atol: absolute tolerance on the log-det.
        sample: which sample of the batch to differentiate.
        max_dim: refuse samples with more than this many elements (the Jacobian is D x D).

    Returns:
        ``(autograd_log_det, module_log_det)`` of the sample.

    Raises:
        TypeError: the input is not float64 (float32 Jacobians are too inexact to compare).
        ValueError: ``D`` exceeds ``max_dim``.
        AssertionError: the log-dets differ, the Jacobian is singular or not square.

    Example:
        >>> import torch
        >>> from FrEIA.modules import HaarDownsampling
        >>> with default_dtype(torch.float64):
        ...     haar = HaarDownsampling([(2, 4, 4)], order_by_wavelet=True, rebalance=0.5)
        >>> auto, mod = assert_logdet_matches_autograd(haar, tensors((2, 2, 4, 4), seed=0))
    """
    xs, cs = _as_list(x), _as_list(c)
    bad = [str(t.dtype) for t in xs if t.dtype != torch.float64]
    if bad:
        raise TypeError(
            f"assert_logdet_matches_autograd({_name(module)}): inputs must be float64, got {bad}. float32 "
            "Jacobian determinants are too inexact to compare; build the module under "
            "`with flowsr.testing.default_dtype(torch.float64):` (not `.double()` afterwards: modules that "
            "precompute inverses at construction would keep float32 precision) and pass float64 inputs."
        )
    bad_params = sorted(
        {str(p.dtype) for p in module.parameters() if p.is_floating_point() and p.dtype != torch.float64}
    )
    if bad_params:
        raise TypeError(
            f"assert_logdet_matches_autograd({_name(module)}): module has {bad_params} parameters; build it "
            "under `with flowsr.testing.default_dtype(torch.float64):`"
        )
    sizes = [t[sample].numel() for t in xs]
    dim = sum(sizes)
    if dim > max_dim:
        raise ValueError(
            f"assert_logdet_matches_autograd({_name(module)}): one sample has D = {dim} elements; the "
            f"D x D Jacobian is limited to D <= {max_dim}. Use a smaller input (e.g. C*H*W <= 512) -- the "
            "layers are fully convolutional, so small inputs exercise the same code."
        )
    shapes = [t[sample : sample + 1].shape for t in xs]
    cs_one = [t[sample : sample + 1].detach() for t in cs]
    flat = torch.cat([t[sample].detach().reshape(-1) for t in xs])

    def fn(v: Tensor) -> Tensor:
        parts = torch.split(v, sizes)
        ins = [p.reshape(s) for p, s in zip(parts, shapes)]
        outs, _ = run_module(module, ins, cs_one, rev=False, jac=True)
        return torch.cat([o.reshape(-1) for o in outs])

    with torch.no_grad():
        _, log_det = run_module(module, xs, cs, rev=False, jac=True)
    with _finite_checks_off(module):
        jac, method = _jacobian(fn, flat)
    if jac.dim() != 2 or jac.shape[0] != jac.shape[1]:
        raise AssertionError(
            f"{_name(module)}: Jacobian has shape {tuple(jac.shape)}: outputs have {jac.shape[0]} elements per "
            f"sample but inputs have {dim}; an invertible module must preserve the dimension"
        )
    sign, logabs = torch.linalg.slogdet(jac.detach())
    if float(sign) == 0.0 or not math.isfinite(float(logabs)):
        raise AssertionError(f"{_name(module)}: the Jacobian (via {method}) is singular; the module is not invertible")
    expected, got = float(logabs), float(log_det[sample])
    if not abs(expected - got) <= atol:
        raise AssertionError(
            f"{_name(module)}: log-det of sample {sample} is {got:.10g} but log|det J| from autograd "
            f"({method}, D={dim}) is {expected:.10g}: error {abs(expected - got):.3e} > atol={atol:.1e}"
        )
    return expected, got


def check_all(
    module: nn.Module,
    x: TensorArg,
    c: OptTensorArg = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    logdet_atol: float | None = None,
    autograd_atol: float = 1e-8,
    max_dim: int = MAX_AUTOGRAD_DIM,
    output_dims: bool = True,
) -> list[str]:
    """Run all property checks that apply; return the names of the checks that ran.

    Runs :func:`assert_invertible`, :func:`assert_reverse_logdet_negates`,
    :func:`assert_batch_independent` (if the batch has at least 2 samples),
    :func:`assert_output_dims` (if ``output_dims``) and :func:`assert_logdet_matches_autograd`
    (if the input is float64 and one sample has at most ``max_dim`` elements).

    Example:
        >>> import torch
        >>> from FrEIA.modules import HaarDownsampling
        >>> with default_dtype(torch.float64):
        ...     haar = HaarDownsampling([(2, 4, 4)], order_by_wavelet=True, rebalance=0.5)
        >>> check_all(haar, tensors((2, 2, 4, 4), seed=0))
        ['invertible', 'reverse_logdet_negates', 'batch_independent', 'output_dims', 'logdet_matches_autograd']
    """
    xs, cs = _as_list(x), _as_list(c)
    ran = []
    assert_invertible(module, xs, cs, atol=atol, rtol=rtol)
    ran.append("invertible")
    assert_reverse_logdet_negates(module, xs, cs, atol=logdet_atol)
    ran.append("reverse_logdet_negates")
    if xs[0].shape[0] > 1:
        assert_batch_independent(module, xs, cs, atol=atol, rtol=rtol)
        ran.append("batch_independent")
    if output_dims:
        assert_output_dims(module, xs, cs)
        ran.append("output_dims")
    dim = sum(t[0].numel() for t in xs)
    if all(t.dtype == torch.float64 for t in xs) and dim <= max_dim:
        assert_logdet_matches_autograd(module, xs, cs, atol=autograd_atol, max_dim=max_dim)
        ran.append("logdet_matches_autograd")
    return ran


# --------------------------------------------------------------------------------------------
# set-up helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype = torch.float64) -> Iterator[None]:
    """Temporarily set ``torch``'s default dtype (build float64 modules for exact checks).

    Building under float64 is better than ``module.double()`` afterwards: modules that
    precompute inverses or log-dets at construction would otherwise keep float32 precision.

    Example:
        >>> import torch
        >>> with default_dtype(torch.float64):
        ...     conv = torch.nn.Conv2d(2, 2, 1)
        >>> conv.weight.dtype
        torch.float64
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def perturb_parameters(module: nn.Module, *, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Add seeded ``N(0, scale^2)`` noise to every trainable floating-point parameter, in place.

    Why: flows initialise their last subnet convolution to zero (Glow's / SRFlow's
    ``Conv2dZeros``, FrEIA's ``AllInOneBlock`` with ``gin``-style init, IRN), which makes every
    coupling the identity with log-det 0 -- invertibility and log-det tests then pass whatever
    the coupling maths is. Perturbing all weights (zero tensors included) makes the tests
    exercise the real transformation.

    * Parameters that are not floating point or have ``requires_grad=False`` (FrEIA's
      ``PermuteRandom`` permutation, Haar weights) are left alone; buffers are not touched.
    * The noise comes from a CPU ``torch.Generator`` seeded with ``seed`` and is drawn in
      ``named_parameters()`` order, so it is reproducible for a given module structure (note
      that FrEIA 0.2 ``GraphINN`` registers parallel branches in a process-dependent order).
    * Data-dependent initialisation is switched off, so no ``ActNorm`` re-initialises itself
      from the first test batch: sub-modules with an ``initialized`` attribute or buffer (flowsr's
      ActNorm) are marked initialised, FrEIA 0.2 ``ActNorm.init_on_next_batch`` is set ``False``.

    Args:
        module: the module to modify (in place).
        seed: generator seed.
        scale: noise standard deviation.

    Returns:
        ``module`` itself (for chaining).

    Example:
        >>> import torch
        >>> layer = torch.nn.Conv2d(2, 2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.weight.zero_()
        >>> bool(perturb_parameters(layer, seed=0).weight.abs().sum() > 0)
        True
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module.named_parameters():
            if not p.is_floating_point() or not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64) * scale
            p.add_(noise.to(device=p.device, dtype=p.dtype))
        for m in module.modules():
            flag = getattr(m, "initialized", None)
            if isinstance(flag, Tensor):
                flag.fill_(True)
            elif isinstance(flag, bool):
                m.initialized = True
            if getattr(m, "init_on_next_batch", None) is True:
                m.init_on_next_batch = False
    return module


def tensors(
    shape: Sequence[int],
    seed: int,
    dtype: torch.dtype = torch.float64,
    *,
    scale: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """A reproducible ``N(0, scale^2)`` tensor from ``seed`` (CPU generator, then moved to ``device``).

    Use this with a Hypothesis-drawn seed instead of drawing tensors element-wise (far too slow).

    Example:
        >>> torch.equal(tensors((2, 3), seed=7), tensors((2, 3), seed=7))
        True
    """
    generator = torch.Generator().manual_seed(int(seed))
    t = torch.randn(tuple(int(s) for s in shape), generator=generator, dtype=torch.float64) * scale
    return t.to(dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# Hypothesis strategies (hypothesis is only imported when a strategy is requested)
# --------------------------------------------------------------------------------------------


def _st() -> Any:
    try:
        from hypothesis import strategies as st
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "flowsr.testing strategies need the 'hypothesis' package (a test dependency): pip install hypothesis"
        ) from e
    return st


def image_shapes(
    channels: SearchStrategy[int] | None = None,
    sizes: SearchStrategy[int] | None = None,
    divisible_by: int = 1,
    max_dims: int = 512,
    *,
    square: bool = False,
) -> SearchStrategy[tuple[int, int, int]]:
    """Strategy for per-sample image shapes ``(C, H, W)``.

    Args:
        channels: strategy for ``C`` (default ``st.integers(1, 8)``).
        sizes: strategy for ``H`` and ``W`` (default ``st.sampled_from([2, 4, 8])``), drawn independently
            unless ``square``.
        divisible_by: ``C`` is rounded up to a multiple of this (2 for couplings that split channels).
        max_dims: only shapes with ``C*H*W <= max_dims`` (keeps autograd log-det checks fast).
        square: draw ``W = H``.

    Example:
        >>> from hypothesis import given
        >>> @given(image_shapes(divisible_by=2))
        ... def test_shape(shape):
        ...     assert shape[0] % 2 == 0 and shape[0] * shape[1] * shape[2] <= 512
        >>> test_shape()
    """
    st = _st()
    channels = st.integers(1, 8) if channels is None else channels
    sizes = st.sampled_from([2, 4, 8]) if sizes is None else sizes
    if divisible_by < 1:
        raise ValueError(f"divisible_by must be >= 1, got {divisible_by}")

    @st.composite
    def _shapes(draw: Any) -> tuple[int, int, int]:
        c = draw(channels)
        c = divisible_by * max(1, -(-c // divisible_by))
        h = draw(sizes)
        w = h if square else draw(sizes)
        return (c, h, w)

    return _shapes().filter(lambda s: s[0] * s[1] * s[2] <= max_dims)


def batch_sizes(max_batch: int = 3) -> SearchStrategy[int]:
    """Strategy for batch sizes ``1..max_batch``.

    Example:
        >>> from hypothesis import given
        >>> @given(batch_sizes(2))
        ... def test_batch(b):
        ...     assert 1 <= b <= 2
        >>> test_batch()
    """
    return _st().integers(1, max_batch)


def seeds() -> SearchStrategy[int]:
    """Strategy for generator seeds (``0 .. 2**31 - 1``), for :func:`tensors` and :func:`perturb_parameters`."""
    return _st().integers(0, 2**31 - 1)


@dataclasses.dataclass(frozen=True)
class LayerInputs:
    """A drawn test case: per-sample input shape, batch size, condition shapes and a seed.

    Attributes:
        shape: ``(C, H, W)`` of the input.
        batch: batch size.
        condition_shapes: ``[(Cc, H, W), ...]``, same spatial size as the input.
        seed: seed for the input and conditions (see :meth:`make`) and for parameter noise.
    """

    shape: tuple[int, ...]
    batch: int
    condition_shapes: tuple[tuple[int, ...], ...]
    seed: int

    @property
    def dims_in(self) -> list[tuple[int, ...]]:
        """``[shape]`` -- the ``dims_in`` argument of a layer constructor."""
        return [self.shape]

    @property
    def dims_c(self) -> list[tuple[int, ...]]:
        """The ``dims_c`` argument of a layer constructor."""
        return list(self.condition_shapes)

    def make(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Reproducible tensors ``([x], [c1, ...])`` with batch dimension, from ``seed``."""
        x = tensors((self.batch, *self.shape), self.seed, dtype, device=device)
        cs = [
            tensors((self.batch, *s), self.seed + 1 + i, dtype, device=device)
            for i, s in enumerate(self.condition_shapes)
        ]
        return [x], cs


def layer_inputs(
    shapes: SearchStrategy[tuple[int, ...]] | None = None,
    batch: SearchStrategy[int] | None = None,
    n_conditions: int | SearchStrategy[int] = 0,
    condition_channels: SearchStrategy[int] | None = None,
) -> SearchStrategy[LayerInputs]:
    """Composite strategy: input shape + batch size + condition shapes + seed -> :class:`LayerInputs`.

    Args:
        shapes: strategy for the per-sample input shape (default :func:`image_shapes`).
        batch: strategy for the batch size (default :func:`batch_sizes`).
        n_conditions: number of condition tensors (an int or a strategy).
        condition_channels: strategy for each condition's channel count (default ``st.integers(1, 4)``);
            conditions share the input's spatial size.

    Example:
        >>> from hypothesis import given
        >>> @given(layer_inputs(n_conditions=1))
        ... def test_inputs(case):
        ...     x, c = case.make()
        ...     assert c[0].shape[2:] == x[0].shape[2:] and c[0].shape[0] == case.batch
        >>> test_inputs()
    """
    st = _st()
    shapes = image_shapes() if shapes is None else shapes
    batch = batch_sizes() if batch is None else batch
    n_cond = st.just(n_conditions) if isinstance(n_conditions, int) else n_conditions
    condition_channels = st.integers(1, 4) if condition_channels is None else condition_channels

    @st.composite
    def _inputs(draw: Any) -> LayerInputs:
        shape = tuple(draw(shapes))
        b = draw(batch)
        n = draw(n_cond)
        conds = tuple((draw(condition_channels), *shape[1:]) for _ in range(n))
        return LayerInputs(shape=shape, batch=b, condition_shapes=conds, seed=draw(seeds()))

    return _inputs()
