"""Channel mixing: invertible 1x1 convolution (Glow) and fixed channel permutations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowsr.layers.base import FlowModule
from flowsr.layers.fastpath import inference_key

__all__ = ["FixedPermutation", "InvConv1x1"]


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def _image_channels(layer: FlowModule) -> int:
    if len(layer.dims_in) != 1 or len(layer.dims_in[0]) != 3:
        raise ValueError(f"{layer._name}: dims_in must be [(C, H, W)], got {list(layer.dims_in)}")
    layer._require_no_conditions()
    return layer.dims_in[0][0]


class InvConv1x1(FlowModule):
    r"""Invertible 1x1 convolution: a learned ``C x C`` channel-mixing matrix (Glow).

    **Forward**: :math:`y_{:, i} = \sum_j W_{ij} x_{:, j}` at every pixel, i.e.
    ``conv2d(x, W[:, :, None, None])``.

    **Inverse**: :math:`x = W^{-1} y`, with :math:`W^{-1}` computed as
    ``torch.linalg.inv(W.double()).to(W.dtype)`` (the official HCFlow / SRFlow numerics).

    **Log-det** (per sample): :math:`H \cdot W \cdot \log|\det W|` forward, its negative in reverse.

    Shapes: ``[(B, C, H, W)] -> [(B, C, H, W)]``; any ``H, W``.

    Parametrisations:

    * ``lu=False`` (HCFlow, SRFlow): parameter ``weight`` ``(C, C)``, initialised to the Q factor
      of the QR decomposition of a standard normal matrix (a random rotation/reflection, so the
      initial log-det is 0), drawn from a ``torch.Generator`` seeded with ``seed`` (``None``: the
      global torch RNG). The official code draws it with numpy's RNG, so it is not reproduced
      bit-for-bit from a seed -- load the weights instead.
    * ``lu=True`` (Glow's LU-decomposed variant): :math:`W = P L (U + \mathrm{diag}(\mathrm{sign}_s
      e^{\log s}))` with parameters ``lower`` (strictly lower part used, unit diagonal added),
      ``upper`` (strictly upper part used) and ``log_s`` ``(C,)``; buffers ``perm`` (long,
      :math:`P_{i, \mathrm{perm}[i]} = 1`), ``sign_s``, ``lower_mask`` (strictly lower ones) and
      ``eye``. Log-det :math:`H W \sum \log s` without a determinant; the inverse
      :math:`U^{-1} L^{-1} P^T` uses triangular solves (``torch.linalg.solve_triangular``).
      Initialised from the same random rotation. No official checkpoint uses it.

    In eval mode, when no gradient is needed for the parameters (``torch.no_grad()`` or frozen
    weights), the inverse matrix and the log-det are cached; the cache is keyed on the
    parameters' ``_version`` counters, storage pointers, dtypes and devices, so in-place
    updates, ``load_state_dict`` and ``.to()`` invalidate it. The cached values are bitwise
    identical to recomputed ones.

    Papers: Glow (Kingma & Dhariwal, NeurIPS 2018); used by SRFlow (Lugmayr et al., ECCV 2020)
    and HCFlow (Liang et al., ICCV 2021).
    """

    def __init__(
        self,
        dims_in: Sequence[Sequence[int]],
        dims_c: Sequence[Sequence[int]] | None = None,
        *,
        seed: int | None = None,
        lu: bool = False,
    ):
        super().__init__(dims_in, dims_c)
        channels = _image_channels(self)
        self.lu = bool(lu)
        dtype = torch.get_default_dtype()
        gaussian = torch.randn(channels, channels, generator=_generator(seed), dtype=torch.float64)
        q = torch.linalg.qr(gaussian).Q
        if not self.lu:
            self.weight = nn.Parameter(q.to(dtype))
        else:
            p, lower, upper = torch.linalg.lu(q)
            s = torch.diagonal(upper)
            self.register_buffer("perm", p.argmax(dim=1))  # P[i, perm[i]] = 1
            self.register_buffer("sign_s", torch.sign(s).to(dtype))
            self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels, dtype=dtype), -1))
            self.register_buffer("eye", torch.eye(channels, dtype=dtype))
            self.lower = nn.Parameter(lower.to(dtype))
            self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
            self.log_s = nn.Parameter(torch.log(torch.abs(s)).to(dtype))
        self._cache_key: tuple | None = None
        self._cache: tuple[Tensor, Tensor] | None = None

    # -- matrices --------------------------------------------------------------------------------
    def _lu_factors(self) -> tuple[Tensor, Tensor]:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.transpose(0, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return lower, upper

    def matrix(self) -> Tensor:
        """The ``(C, C)`` matrix ``W`` of the forward transform."""
        if not self.lu:
            return self.weight
        lower, upper = self._lu_factors()
        return (lower @ upper)[self.perm]  # P @ L @ U

    def _compute_logdet_per_pixel(self) -> Tensor:
        if not self.lu:
            return torch.linalg.slogdet(self.weight).logabsdet
        return torch.sum(self.log_s)

    def _compute_inverse(self) -> Tensor:
        if not self.lu:
            w = self.weight
            return torch.linalg.inv(w.double()).to(w.dtype)
        lower, upper = self._lu_factors()
        eye = self.eye
        lower_inv = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        upper_inv = torch.linalg.solve_triangular(upper, eye, upper=True)
        return (upper_inv @ lower_inv)[:, self.perm]  # U^-1 L^-1 P^T

    def _tensors(self) -> list[Tensor]:
        if not self.lu:
            return [self.weight]
        return [self.lower, self.upper, self.log_s, self.perm, self.sign_s]

    def _current_key(self) -> tuple | None:
        """Cache key, or ``None`` when caching is not allowed (fast paths off, training, grads,
        torch.func tensors): the inference fast paths' key."""
        return inference_key(self, self._tensors())

    def _cached(self) -> tuple[Tensor, Tensor] | None:
        key = self._current_key()
        if key is None:
            return None
        if self._cache is None or self._cache_key != key:
            with torch.no_grad():
                self._cache = (self._compute_inverse(), self._compute_logdet_per_pixel())
            self._cache_key = key
        return self._cache

    def inverse_matrix(self) -> Tensor:
        """``W^{-1}`` as used by the reverse pass (cached in eval mode without grads)."""
        cached = self._cached()
        return cached[0] if cached is not None else self._compute_inverse()

    def logdet_per_pixel(self) -> Tensor:
        """``log|det W|`` (0-dim), cached in eval mode without grads."""
        cached = self._cached()
        return cached[1] if cached is not None else self._compute_logdet_per_pixel()

    # -- FrEIA protocol --------------------------------------------------------------------------
    def forward(
        self, x: Sequence[Tensor], c: Sequence[Tensor] | None = None, rev: bool = False, jac: bool = True
    ) -> tuple[tuple[Tensor], Tensor]:
        self._check_input(x, rev)
        self._check_conditions(c, x[0])
        x0 = x[0]
        channels = x0.shape[1]
        hw = x0.shape[2] * x0.shape[3]
        logdet = (self.logdet_per_pixel() * hw).repeat(x0.shape[0])
        if not rev:
            return (F.conv2d(x0, self.matrix().view(channels, channels, 1, 1)),), logdet
        return (F.conv2d(x0, self.inverse_matrix().view(channels, channels, 1, 1)),), -logdet

    def extra_repr(self) -> str:
        return f"channels={self.dims_in[0][0]}, lu={self.lu}"

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state["_cache"], state["_cache_key"] = None, None  # derived data, recomputed on demand
        return state


class FixedPermutation(FlowModule):
    r"""A fixed (non-learned) permutation of the channels.

    **Forward**: :math:`y_{:, i} = x_{:, \pi(i)}` (``y = x[:, perm]``).

    **Inverse**: :math:`x = y_{:, \pi^{-1}}` (``x = y[:, argsort(perm)]``).

    **Log-det**: 0 (a permutation matrix has :math:`|\det| = 1`), returned as ``(B,)`` zeros.

    Shapes: ``[(B, C, H, W)] -> [(B, C, H, W)]``; any ``H, W``.

    ``kind="reverse"`` reverses the channel order (RealNVP / Glow "reverse" permutation);
    ``kind="random"`` draws ``torch.randperm(C)`` from a generator seeded with ``seed`` (``None``:
    the global torch RNG). The permutation is the long buffer ``perm`` (saved in the
    ``state_dict``). Papers: RealNVP (Dinh et al., ICLR 2017), Glow (Kingma & Dhariwal, 2018;
    the "reverse" / "shuffle" baselines of the 1x1 convolution).
    """

    def __init__(
        self,
        dims_in: Sequence[Sequence[int]],
        dims_c: Sequence[Sequence[int]] | None = None,
        *,
        kind: Literal["reverse", "random"] = "reverse",
        seed: int | None = None,
    ):
        super().__init__(dims_in, dims_c)
        channels = _image_channels(self)
        if kind == "reverse":
            perm = torch.arange(channels - 1, -1, -1)
        elif kind == "random":
            perm = torch.randperm(channels, generator=_generator(seed))
        else:
            raise ValueError(f"FixedPermutation: kind must be 'reverse' or 'random', got {kind!r}")
        self.kind = kind
        self.register_buffer("perm", perm.long())

    def forward(
        self, x: Sequence[Tensor], c: Sequence[Tensor] | None = None, rev: bool = False, jac: bool = True
    ) -> tuple[tuple[Tensor], Tensor]:
        self._check_input(x, rev)
        self._check_conditions(c, x[0])
        x0 = x[0]
        index = torch.argsort(self.perm) if rev else self.perm
        return (x0.index_select(1, index),), self._zero_logdet(x0)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, channels={self.perm.numel()}"
