"""The property checks every flow layer must pass (invertibility, log-dets, batch independence,
shape inference) and :func:`check_all`, which runs every one that applies."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowsr.testing.calling import OptTensorArg, TensorArg, as_list, module_name, run_module
from flowsr.testing.jacobian import MAX_AUTOGRAD_DIM, assert_logdet_matches_autograd

__all__ = [
    "assert_batch_independent",
    "assert_invertible",
    "assert_output_dims",
    "assert_reverse_logdet_negates",
    "check_all",
]


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
        raise AssertionError(f"{module_name(module)}: {what}: got {len(got)} tensors, expected {len(expected)}")
    worst = 0.0
    for i, (g, e) in enumerate(zip(got, expected)):
        if g.shape != e.shape:
            raise AssertionError(
                f"{module_name(module)}: {what}: tensor {i} has shape {tuple(g.shape)}, expected {tuple(e.shape)}"
            )
        g, e = g.detach(), e.detach()
        if not bool(torch.isfinite(g).all()):
            raise AssertionError(f"{module_name(module)}: {what}: tensor {i} contains NaN or Inf")
        err = (g - e).abs()
        max_err = float(err.max()) if err.numel() else 0.0
        worst = max(worst, max_err)
        if err.numel() and not bool((err <= atol + rtol * e.abs()).all()):
            raise AssertionError(
                f"{module_name(module)}: {what}: max abs error {max_err:.3e} in tensor {i} "
                f"exceeds atol={atol:.1e} + rtol={rtol:.1e}*|expected| (dtype {g.dtype}, shape {tuple(g.shape)})"
            )
    return worst


def _clone_all(ts: Sequence[Tensor]) -> list[Tensor]:
    return [t.detach().clone() for t in ts]


def _check_unmodified(module: nn.Module, what: str, before: Sequence[Tensor], after: Sequence[Tensor]) -> None:
    for i, (b, a) in enumerate(zip(before, after)):
        if not torch.equal(b, a.detach()):
            raise AssertionError(
                f"{module_name(module)}: {what} tensor {i} was modified in place "
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
    xs, cs = as_list(x), as_list(c)
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
            raise AssertionError(f"{module_name(module)}: {direction} output {i} contains NaN or Inf")
    if not bool(torch.isfinite(log_det).all()):
        raise AssertionError(f"{module_name(module)}: {direction} log-det contains NaN or Inf: {log_det.tolist()}")


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
    xs, cs = as_list(x), as_list(c)
    with torch.no_grad():
        z, log_det = run_module(module, xs, cs, rev=False, jac=True)
        _, log_det_rev = run_module(module, list(z), cs, rev=True, jac=True)
    dim = sum(t[0].numel() for t in xs)
    tol = _logdet_atol(xs[0].dtype, dim, log_det, atol)
    err = (log_det + log_det_rev).abs()
    if not bool(torch.isfinite(err).all()) or float(err.max()) > tol:
        raise AssertionError(
            f"{module_name(module)}: reverse log-det does not negate the forward log-det: max |fwd + rev| = "
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
    xs, cs = as_list(x), as_list(c)
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
                        f"{module_name(module)}: {direction} log-det of sample {b} differs between the batched call "
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
    xs, cs = as_list(x), as_list(c)
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
            f"{module_name(module)}: output_dims({actual_in}) = {expected} but the real outputs have shapes {real}"
        )
    if nominal_out is not None:
        if len(nominal_out) != len(real):
            raise AssertionError(
                f"{module_name(module)}: output_dims(dims_in={nominal_in}) lists {len(nominal_out)} outputs, "
                f"the module returns {len(real)}"
            )
        for i, (n, r) in enumerate(zip(nominal_out, real)):
            if len(n) != len(r) or (len(r) > 1 and n[0] != r[0]) or (actual_in == nominal_in and n != r):
                raise AssertionError(
                    f"{module_name(module)}: output {i}: output_dims(dims_in={nominal_in}) gives {n}, "
                    f"the real output has shape {r}"
                )
    return real


def _sequence_inn_shapes(module: nn.Module) -> list[tuple[int, ...]] | None:
    try:
        from FrEIA.framework import SequenceINN
    except ImportError:  # pragma: no cover
        return None
    return list(module.shapes) if isinstance(module, SequenceINN) else None


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
    xs, cs = as_list(x), as_list(c)
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
