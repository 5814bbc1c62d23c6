"""Activation normalisation (Glow's ActNorm2d, in the HCFlow / SRFlow parametrisation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowsr.layers.base import FlowModule

__all__ = ["ActNorm", "skip_data_init"]


class ActNorm(FlowModule):
    r"""Per-channel affine normalisation with data-dependent initialisation (Glow ActNorm).

    **Forward**: :math:`y = (x + b) \odot e^{s}` with ``bias`` :math:`b` and ``logs`` :math:`s`,
    both of shape ``(1, C, 1, 1)`` (broadcast over batch and space).

    **Inverse**: :math:`x = y \odot e^{-s} - b`.

    **Log-det** (per sample): :math:`H \cdot W \cdot \sum_c s_c` forward, its negative in reverse.

    Shapes: ``[(B, C, H, W)] -> [(B, C, H, W)]``; any ``H, W``.

    Data-dependent initialisation (Glow, Kingma & Dhariwal 2018; HCFlow / SRFlow semantics):
    on the first **forward** call in **training** mode, if ``bias`` is all zeros,
    :math:`b = -\mathrm{mean}_{b,h,w}(x)` and
    :math:`s = \log(1 / (\sqrt{\mathrm{mean}_{b,h,w}((x + b)^2)} + 10^{-6}))`, so the output of
    that batch has zero mean and unit variance per channel. If ``bias`` already holds a non-zero
    entry (e.g. weights set by hand), the layer is only marked initialised. No initialisation
    ever happens in eval mode or on a reverse call (the first reverse call in training mode just
    uses the current parameters). :meth:`initialize` triggers it explicitly (and is the way to
    re-initialise: once the layer has seen ``initialized == True`` in a training call it keeps
    that in a Python attribute, so that later calls need no host-device sync to read the buffer).

    The flag is the boolean buffer ``initialized``. It is **non-persistent** (not in the
    ``state_dict``, whose keys are exactly the official ``bias`` / ``logs``), and loading a
    ``state_dict`` that contains this layer's ``bias`` or ``logs`` marks the layer initialised,
    so a model loaded from a checkpoint never re-initialises from data (unlike the official
    SRFlow code, which re-initialises zero-bias ActNorms of a checkpoint loaded in train mode).

    Once initialised the transform is a pure function of ``x`` (no in-place ops, no
    data-dependent branches), so it works under ``torch.func`` (``jacrev``, ``vmap``).

    Papers: Glow (Kingma & Dhariwal, NeurIPS 2018); used as-is by SRFlow (Lugmayr et al.,
    ECCV 2020) and HCFlow (Liang et al., ICCV 2021), also inside their coupling subnets (see
    :meth:`normalize`).
    """

    def __init__(self, dims_in: Sequence[Sequence[int]], dims_c: Sequence[Sequence[int]] | None = None):
        super().__init__(dims_in, dims_c)
        if len(self.dims_in) != 1 or len(self.dims_in[0]) != 3:
            raise ValueError(f"ActNorm: dims_in must be [(C, H, W)], got {self.dims_in}")
        self._require_no_conditions()
        channels = self.dims_in[0][0]
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False), persistent=False)
        # Python mirror of a True flag: after initialisation, training forwards skip reading the
        # buffer (a host-device sync per layer and call on GPUs).
        self._init_done = False

    # -- initialisation --------------------------------------------------------------------------
    @property
    def is_initialized(self) -> bool:
        """Whether the data-dependent initialisation has happened (or was skipped / loaded)."""
        return bool(self.initialized)

    @torch.no_grad()
    def initialize(self, x: Tensor | Sequence[Tensor]) -> None:
        """Initialise ``bias`` and ``logs`` from the batch ``x`` now (always, whatever their values).

        After this the layer maps ``x`` to per-channel zero mean and (up to the ``1e-6``) unit
        variance over batch and space, and is marked initialised.

        Args:
            x: a ``(B, C, H, W)`` tensor or a one-element list of it.
        """
        if not isinstance(x, Tensor):
            x = list(x)
            if len(x) != 1:
                raise ValueError(f"ActNorm.initialize: expected one tensor, got {len(x)}")
            x = x[0]
        self._check_input([x], rev=False)
        x = x.detach().to(self.bias.dtype)
        bias = -x.mean(dim=(0, 2, 3), keepdim=True)
        var = ((x + bias) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        logs = torch.log(1.0 / (torch.sqrt(var) + 1e-6))
        self.bias.copy_(bias)
        self.logs.copy_(logs)
        self.mark_initialized()

    @torch.no_grad()
    def mark_initialized(self) -> None:
        """Keep the current ``bias`` / ``logs`` and never initialise from data.

        With zero parameters the layer stays the identity, which suits short trainings of
        models whose untrained flow is already close to the target (e.g. rescaling flows whose
        Haar low-pass is a good LR image at initialisation); see :func:`skip_data_init`.
        """
        self.initialized.fill_(True)
        self._init_done = True

    def _maybe_initialize(self, x: Tensor) -> None:
        """Glow rule: init from this batch on the first training call unless ``bias`` is non-zero."""
        if not self.training or self._init_done:
            return
        if bool(self.initialized) or bool((self.bias != 0).any()):
            self.mark_initialized()
            return
        self.initialize(x)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if prefix + "bias" in state_dict or prefix + "logs" in state_dict:
            self.mark_initialized()

    # -- transform -------------------------------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        """The forward transform ``(x + bias) * exp(logs)`` without log-det or input validation.

        Used by the conv + ActNorm blocks inside coupling subnets (HCFlow / SRFlow), where the
        ActNorm is a normalisation layer, not a flow step. Performs the data-dependent
        initialisation like :meth:`forward` (training mode, first call).
        """
        if x.dim() != 4 or x.shape[1] != self.bias.shape[1]:
            raise ValueError(f"ActNorm: input must have shape (B, {self.bias.shape[1]}, H, W), got {tuple(x.shape)}")
        self._maybe_initialize(x)
        return (x + self.bias) * torch.exp(self.logs)

    def _logdet(self, x: Tensor) -> Tensor:
        hw = x.shape[2] * x.shape[3]
        return (torch.sum(self.logs) * hw).repeat(x.shape[0])

    def forward(
        self, x: Sequence[Tensor], c: Sequence[Tensor] | None = None, rev: bool = False, jac: bool = True
    ) -> tuple[tuple[Tensor], Tensor]:
        self._check_input(x, rev)
        self._check_conditions(c, x[0])
        x0 = x[0]
        if not rev:
            self._maybe_initialize(x0)
            return ((x0 + self.bias) * torch.exp(self.logs),), self._logdet(x0)
        return (x0 * torch.exp(-self.logs) - self.bias,), -self._logdet(x0)

    def extra_repr(self) -> str:
        return f"channels={self.bias.shape[1]}"


def skip_data_init(module: nn.Module) -> nn.Module:
    """Mark every :class:`ActNorm` in ``module`` initialised (no data-dependent init); returns ``module``."""
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.mark_initialized()
    return module
