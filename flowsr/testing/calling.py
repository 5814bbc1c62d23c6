"""Calling any FrEIA 0.2 ``InvertibleModule`` the same way: :func:`run_module` normalises what
modules return (bare tensors, Python / numpy / 0-dim log-dets) so the checks see one form."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["OptTensorArg", "TensorArg", "as_list", "module_name", "run_module"]

TensorArg = Tensor | Sequence[Tensor]
OptTensorArg = Tensor | Sequence[Tensor] | None


# --------------------------------------------------------------------------------------------
# calling modules
# --------------------------------------------------------------------------------------------


def as_list(x: OptTensorArg) -> list[Tensor]:
    """``x`` as a list of tensors (a bare tensor wrapped, ``None`` as ``[]``)."""
    if x is None:
        return []
    if isinstance(x, Tensor):
        return [x]
    return list(x)


def module_name(module: nn.Module) -> str:
    """The class name used in assertion messages."""
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
    xs = as_list(x)
    if not xs:
        raise ValueError(f"run_module({module_name(module)}): need at least one input tensor")
    cs = as_list(c)
    if cs:
        result = module(xs, c=cs, rev=rev, jac=jac)
    else:
        result = module(xs, rev=rev, jac=jac)
    if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[0], (Tensor, tuple, list))):
        raise AssertionError(
            f"{module_name(module)}: forward(rev={rev}) must return (outputs, log_det), got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        )
    outputs, log_det = result
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    if not outputs or not all(isinstance(t, Tensor) for t in outputs):
        raise AssertionError(f"{module_name(module)}: outputs must be a non-empty tuple of tensors")
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
            f"{module_name(module)}: log-det must be a scalar or have shape ({batch},) (one value per sample), "
            f"got shape {tuple(log_det.shape)}"
        )
    return outputs, log_det
