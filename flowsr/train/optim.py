"""One optimiser with its schedule and safeguards: :class:`Updater` (Adam, the multi-step
learning-rate schedule, gradient clipping, skipping non-finite steps) and :class:`StepEvents`
(what the steps of an iteration did: skipped steps, the gradient norm).

The official HCFlow order is kept: the schedule steps *before* the iteration's updates (so a
milestone ``m`` applies from iteration ``m`` on), and every backward is followed by
``clip_grad_value_`` and then ``clip_grad_norm_``.
"""

from __future__ import annotations

import math
import warnings
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from flowsr.train.distribution import Distribution

__all__ = ["StepEvents", "Updater"]


class StepEvents:
    """The outcome of the optimiser steps of the current iteration and of the run so far."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.skipped = 0  # this iteration
        self.grad_norm = float("nan")  # of the last generator step of this iteration
        self.taken = 0  # optimiser steps taken by this process object (all iterations)
        self.skipped_total = 0  # steps skipped in the run (restored on resume)

    def begin(self) -> None:
        """A new iteration starts."""
        self.skipped = 0
        self.grad_norm = float("nan")

    def skip(self, iteration: int, why: str) -> None:
        self.skipped += 1
        self.skipped_total += 1
        self.log(f"iteration {iteration}: skipped the {why}")


class Updater:
    """Adam on ``params`` with a multi-step schedule, optional clipping and a non-finite guard.

    Args:
        params: the parameters (those with ``requires_grad``).
        lr, betas, eps, weight_decay: Adam's.
        milestones, gamma: the learning rate of iteration ``i`` is ``lr * gamma ** (number of
            milestones <= i)`` once :meth:`schedule` was called ``i`` times (a milestone listed
            twice applies twice).
        clip_value, clip_norm: ``clip_grad_value_`` then ``clip_grad_norm_`` after each
            backward (``None``: not applied). With ``measure_norm`` the gradient norm is computed
            even without ``clip_norm``, logged, and a non-finite norm skips the step.
        dist: the processes that must agree to skip a step.
        events: where skipped steps and gradient norms are recorded.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        *,
        lr: float,
        betas: Sequence[float],
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        milestones: Sequence[int] = (),
        gamma: float = 0.5,
        clip_value: float | None = None,
        clip_norm: float | None = None,
        measure_norm: bool = True,
        dist: Distribution | None = None,
        events: StepEvents | None = None,
    ):
        self.params = list(params)
        self.optimizer = torch.optim.Adam(self.params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(milestones), gamma=gamma)
        self.clip_value, self.clip_norm, self.measure_norm = clip_value, clip_norm, measure_norm
        self.dist = dist or Distribution()
        self.events = events or StepEvents(lambda message: None)

    # -- the schedule ---------------------------------------------------------------------------
    def schedule(self) -> None:
        """Advance the learning-rate schedule by one iteration (before the iteration's updates)."""
        with warnings.catch_warnings():
            # torch warns when a scheduler steps before its optimiser: that order is the point
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            self.scheduler.step()

    @property
    def lr(self) -> float:
        """The learning rate in force."""
        return float(self.optimizer.param_groups[0]["lr"])

    def follow_schedule(self, milestones: Sequence[int], gamma: float) -> str | None:
        """Make a restored schedule use ``milestones`` and ``gamma``; returns a note when it changed.

        A scheduler's state carries its milestones, so without this a resumed run would keep the
        old schedule after ``train.iterations`` (with ``milestones_rel``), ``milestones`` or
        ``gamma`` changed. The learning rate becomes the one the new schedule gives at the current
        iteration, so resuming before the first changed milestone equals having trained with the
        new schedule from the start.
        """
        sched, wanted = self.scheduler, Counter(milestones)
        if sched.milestones == wanted and sched.gamma == gamma:
            return None
        note = (
            f"note: the learning-rate schedule follows the config: milestones {sorted(wanted.elements())} "
            f"gamma {gamma} (the checkpoint had {sorted(sched.milestones.elements())} gamma {sched.gamma})"
        )
        sched.milestones, sched.gamma = wanted, gamma
        passed = bisect_right(sorted(wanted.elements()), sched.last_epoch)
        for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
            group["lr"] = base * gamma**passed
        sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]
        return note

    # -- steps ----------------------------------------------------------------------------------
    def zero_grad(self) -> None:
        # in place (not set_to_none): the same arithmetic as every earlier flowsr run; identical to
        # the official code whenever every parameter receives a gradient in every phase
        self.optimizer.zero_grad(set_to_none=False)

    def step(self, loss: Tensor, what: str, iteration: int) -> bool:
        """``backward`` + clipping + Adam, unless ``loss`` (on any process) or the gradient norm is
        not finite: then the gradients are zeroed, the step is skipped and logged. Returns
        whether the step was taken."""
        if not self.dist.all_finite(loss):
            self.zero_grad()
            self.events.skip(iteration, f"{what} loss is not finite ({float(loss.detach()):.4g})")
            return False
        loss.backward()
        if self.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, self.clip_value)
        if self.measure_norm or self.clip_norm is not None:
            max_norm = self.clip_norm if self.clip_norm is not None else float("inf")
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
            if self.measure_norm:
                self.events.grad_norm = norm
            if not math.isfinite(norm):
                self.zero_grad()
                self.events.skip(iteration, f"{what} gradient norm is not finite")
                return False
        self.optimizer.step()
        self.events.taken += 1
        return True

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict, dict]:
        """``(optimizer state, scheduler state)``."""
        return self.optimizer.state_dict(), self.scheduler.state_dict()

    def load_state_dict(self, optimizer: dict, scheduler: dict) -> None:
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(scheduler)
