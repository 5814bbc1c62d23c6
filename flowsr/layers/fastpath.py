"""Exact inference fast paths: when they apply, how to turn them off, and their weight cache.

In inference -- a module in eval mode with no gradient needed for its parameters
(``torch.no_grad()`` / ``torch.inference_mode()`` or frozen weights) -- several layers run a
cheaper but mathematically identical computation (results agree with the plain path to float32
round-off, ``<= 1e-5`` on whole models; ``tests/test_fast_paths.py``); the default ones are
bitwise exact, so inference gives the same bits with and without autograd:

* :class:`~flowsr.layers.subnets.ConvActNorm` folds its ActNorm into the convolution
  (``W * e^s``, bias ``b * e^s``) and :class:`~flowsr.layers.subnets.ZeroConv2d` its output
  scale ``exp(3 logs)`` into weight and bias: one convolution instead of a convolution and two
  or three element-wise passes;
* the dense blocks (:class:`~flowsr.layers.subnets.DenseBlock` and the RRDB blocks of every
  encoder) write each layer's activation straight into one preallocated feature buffer instead
  of concatenating growing tensors (``torch.cat`` was ~10% of an HCFlow SR encode), and do
  their activations and residual sums in place;
* opt-in (:func:`set_step_folding` / :func:`step_folding`), exact to round-off only:
  :class:`~flowsr.layers.step.FlowStep` folds its ActNorm into the following 1x1 invertible
  convolution (forward ``W diag(e^s)`` with bias ``W (b e^s)``; reverse
  ``diag(e^-s) W^-1`` with bias ``-b``), log-det unchanged;
* :class:`~flowsr.layers.invconv.InvConv1x1` caches its inverse (it always did).

The folded weights are cached on the module, keyed on the ``_version`` counters, storage
pointers, dtypes and devices of the parameters they come from, so in-place updates (an
optimiser step), ``load_state_dict`` and ``.to()`` invalidate them; they are never part of the
``state_dict`` and are not pickled or deep-copied with a module. In training mode, or whenever autograd
needs the parameters' gradients, the plain path runs (training and gradients are untouched).

``set_fast_paths(False)`` (or ``with fast_paths(False):``) turns every fast path off -- the
reference for the exactness tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "cached_inference",
    "fast_paths",
    "fast_paths_enabled",
    "inference_key",
    "set_fast_paths",
    "set_step_folding",
    "step_folding",
    "step_folding_enabled",
]

_ENABLED = True
# Off by default: the folded step is exact only to round-off, and flowsr promises that inference
# gives bitwise the same result with and without autograd (e.g. flowsr.inference vs model.sample).
_FOLD_STEPS = False
# module -> {name: (key, value)}; weak, so the cache lives exactly as long as its module and is
# never pickled, deep-copied or saved with it.
_CACHES: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple, list, Any]]] = weakref.WeakKeyDictionary()


def set_fast_paths(enabled: bool) -> None:
    """Turn the inference fast paths of every flowsr layer on (the default) or off."""
    global _ENABLED
    _ENABLED = bool(enabled)


def fast_paths_enabled() -> bool:
    """Whether the inference fast paths are on."""
    return _ENABLED


@contextlib.contextmanager
def fast_paths(enabled: bool = True) -> Iterator[None]:
    """``with fast_paths(False): ...`` runs the block with the fast paths off (or on), then restores."""
    previous = _ENABLED
    set_fast_paths(enabled)
    try:
        yield
    finally:
        set_fast_paths(previous)


def set_step_folding(enabled: bool) -> None:
    """Turn the (round-off exact, opt-in) ActNorm + 1x1-conv folding of flow steps on or off."""
    global _FOLD_STEPS
    _FOLD_STEPS = bool(enabled)


def step_folding_enabled() -> bool:
    """Whether flow steps fold their ActNorm into the 1x1 conv in inference (off by default)."""
    return _FOLD_STEPS


@contextlib.contextmanager
def step_folding(enabled: bool = True) -> Iterator[None]:
    """``with step_folding(): ...`` runs the block with flow-step folding on (or off), then restores."""
    previous = _FOLD_STEPS
    set_step_folding(enabled)
    try:
        yield
    finally:
        set_step_folding(previous)


def inference_key(module: nn.Module, tensors: Sequence[Tensor]) -> tuple | None:
    """Cache key of ``tensors`` for ``module``'s inference fast path, or ``None`` when the plain
    path must run: fast paths off, training mode, gradients needed, or tensors that are not plain
    storage (``torch.func`` transforms, meta tensors)."""
    if not _ENABLED or module.training:
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None
    try:
        return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)
    except (RuntimeError, AttributeError, NotImplementedError):  # e.g. functorch-wrapped parameters
        return None


def cached_inference(
    module: nn.Module, name: str, tensors: Sequence[Tensor], compute: Callable[[], Any]
) -> Any | None:
    """``compute()`` (run without grad), cached on ``module`` under ``name`` and keyed on
    :func:`inference_key`; ``None`` when the fast path does not apply."""
    key = inference_key(module, tensors)
    if key is None:
        return None
    cache = _CACHES.setdefault(module, {})
    hit = cache.get(name)
    # the weak references make a key unique: a freed tensor's address (and id) can be reused by a
    # new tensor with the same version counter, but not while the old tensor is alive
    if hit is not None and hit[0] == key and all(r() is t for r, t in zip(hit[1], tensors)):
        return hit[2]
    with torch.no_grad():
        value = compute()
    cache[name] = (key, [weakref.ref(t) for t in tensors], value)
    return value

