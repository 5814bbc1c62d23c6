"""The log-det check against autograd: the full Jacobian of one sample and its ``slogdet``."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from flowsr.testing.calling import OptTensorArg, TensorArg, as_list, module_name, run_module

__all__ = ["MAX_AUTOGRAD_DIM", "assert_logdet_matches_autograd"]

#: Largest flattened sample size ``D`` for which :func:`assert_logdet_matches_autograd` builds the
#: full ``D x D`` Jacobian (cost grows like ``D`` backward passes plus an ``O(D^3)`` determinant).
MAX_AUTOGRAD_DIM = 2048


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
    xs, cs = as_list(x), as_list(c)
    bad = [str(t.dtype) for t in xs if t.dtype != torch.float64]
    if bad:
        raise TypeError(
            f"assert_logdet_matches_autograd({module_name(module)}): inputs must be float64, got {bad}. float32 "
            "Jacobian determinants are too inexact to compare; build the module under "
            "`with flowsr.testing.default_dtype(torch.float64):` (not `.double()` afterwards: modules that "
            "precompute inverses at construction would keep float32 precision) and pass float64 inputs."
        )
    bad_params = sorted(
        {str(p.dtype) for p in module.parameters() if p.is_floating_point() and p.dtype != torch.float64}
    )
    if bad_params:
        raise TypeError(
            f"assert_logdet_matches_autograd({module_name(module)}): module has {bad_params} parameters; build it "
            "under `with flowsr.testing.default_dtype(torch.float64):`"
        )
    sizes = [t[sample].numel() for t in xs]
    dim = sum(sizes)
    if dim > max_dim:
        raise ValueError(
            f"assert_logdet_matches_autograd({module_name(module)}): one sample has D = {dim} elements; the "
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
            f"{module_name(module)}: Jacobian has shape {tuple(jac.shape)}: outputs have {jac.shape[0]} elements per "
            f"sample but inputs have {dim}; an invertible module must preserve the dimension"
        )
    sign, logabs = torch.linalg.slogdet(jac.detach())
    if float(sign) == 0.0 or not math.isfinite(float(logabs)):
        raise AssertionError(
            f"{module_name(module)}: the Jacobian (via {method}) is singular; the module is not invertible"
        )
    expected, got = float(logabs), float(log_det[sample])
    if not abs(expected - got) <= atol:
        raise AssertionError(
            f"{module_name(module)}: log-det of sample {sample} is {got:.10g} but log|det J| from autograd "
            f"({method}, D={dim}) is {expected:.10g}: error {abs(expected - got):.3e} > atol={atol:.1e}"
        )
    return expected, got
