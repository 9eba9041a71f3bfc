"""How long a pretraining run lasts, in optimizer steps: epochs, a step cap or a time
budget turned into the step counts the schedule is a function of (Sec. 2.3: linear
warm-up, then cosine decay, per step).

A time budget is met by re-planning as the run goes: the total is re-estimated from
the measured speed, so the cosine reaches its end at the deadline.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import torch

from simclr import distributed as dist
from simclr.config import Config, OptimConfig
from simclr.decode import DEFAULT_MAX_PIXELS
from simclr.errors import SimCLRError
from simclr.optim import lr_at, share_of, warmup_steps

if TYPE_CHECKING:
    from simclr.folders import ImageList


@dataclass
class Plan:
    """How long the run lasts, in optimizer steps (the schedule is a function of these)."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    deadline: float | None = None  # seconds of training allowed (time budget)
    num_images: int = 0  # the data set it was planned for (a resumed run checks it)
    # (step, elapsed s) after this session's first step: the speed a time budget is
    # re-planned from is measured after it, without its one-off costs (torch.compile,
    # loader start-up, cuDNN's autotuning), which would read as a slow run
    anchor: tuple[int, float] | None = None


def check_batch_fits(batch_size: int, num_images: int, files: ImageList | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """The batch is the user's choice: one larger than the set (an epoch without a
    step) is refused. ``files``: the folder's listing, counted before decoding: where
    none of them decodes (within the run's ``max_pixels``), that is said instead."""
    if num_images < 2 <= batch_size:  # the smallest batch (a pair for NT-Xent, BN's 2)
        problem = (f"the data set has {num_images} image{'s' * (num_images != 1)}; "
                   "training needs at least 2")
    elif batch_size > num_images:
        processes = dist.launched_processes()  # a batch they can share
        fits = (2 ** int(math.log2(num_images)) if processes == 1 else
                num_images // processes * processes) if num_images > 0 else 0
        problem = (f"--batch-size {batch_size} is larger than the data set ({num_images} "
                   "images)" + (f"; try --batch-size {fits}" if fits else ""))
    else:
        return
    if files is not None:
        from simclr.data import check_some_readable

        check_some_readable(files, max_pixels=max_pixels)
    raise SimCLRError(problem)


def epoch_steps(epochs: float, steps_per_epoch: int) -> int:
    """``epochs`` (fractions allowed) of ``steps_per_epoch`` steps, rounded up, at least
    one step; multiplied as written (a Fraction of the decimal, as
    :func:`simclr.logistic.half_up`): 1.1 x 390 is 429 steps, where the float product
    429.00000000000006 rounded up to 430."""
    return max(1, math.ceil(Fraction(str(epochs)) * steps_per_epoch))


# Steps: a time budget's first re-plan, from the speed measured so far. Early, so that
# a short budget's warm-up follows its real length rather than the epochs' first guess
# (re-plans come often while the run is young: see refit_to_budget).
FIRST_REFIT = 3
# Steps: the shortest first guess of a budget without warm-up, whose cosine is then at
# 99.99% of the peak at the first re-plan (a 4-step guess was at 15%, and a re-plan may
# not raise the lr again: _without_raising_lr).
NO_RAMP_GUESS = 400


def plan_schedule(cfg: Config, num_images: int, total_steps: int | None = None) -> Plan:
    """Turn epochs / max steps / a time budget into step counts (Sec. 2.3 schedule).

    Warm-up: :func:`simclr.optim.warmup_steps`.
    """
    check_batch_fits(cfg.batch_size, num_images)
    steps_per_epoch = num_images // cfg.batch_size
    guess = total_steps is None and cfg.time_budget is not None and cfg.max_steps is None
    if total_steps is None:
        total_steps = epoch_steps(cfg.epochs, steps_per_epoch)
        if cfg.max_steps is not None:  # with a time budget, max_steps caps the refit
            total_steps = cfg.max_steps if cfg.time_budget else min(total_steps, cfg.max_steps)
    warmup = warmup_steps(cfg.optim, steps_per_epoch, total_steps)
    if guess:  # the budget sets the length; the epochs are only the first guess, whose
        # lr must still be ramping at the first re-plan: a guess shorter than the budget
        # (1 epoch of 4 steps, no warm-up) had decayed to half the peak by step 3, and
        # a re-plan may not raise it again (_without_raising_lr). Its ramp is the longest
        # the budget's could be, --warmup-epochs (a --warmup-fraction's share of a length
        # not known yet: the paper's 10 epochs): a re-plan shortens a ramp under way
        # gently, but lengthens it no further than keeps the last step's lr
        # (_refit_warmup); from a 4-step guess's 50% at step 2, a 40-step ramp fell to
        # 7.5% at step 3, then rose again.
        # No warm-up asked (--warmup-epochs 0, --warmup-fraction 0): none, as with
        # --epochs or --max-steps; the lr starts at the peak, on a guess long enough that
        # it is still near it at the first re-plan (a re-plan shortens it at once).
        o = cfg.optim
        if (o.warmup_epochs if o.warmup_fraction is None else o.warmup_fraction) == 0:
            return Plan(steps_per_epoch, max(total_steps, NO_RAMP_GUESS), 0,
                        cfg.time_budget, num_images)
        epochs = o.warmup_epochs if o.warmup_fraction is None else OptimConfig.warmup_epochs
        warmup = max(warmup, share_of(epochs, steps_per_epoch), FIRST_REFIT + 1)
        total_steps = max(total_steps, warmup + 1)
    return Plan(steps_per_epoch, total_steps, warmup, cfg.time_budget, num_images)


def warmup_notes(cfg: Config, plan: Plan) -> list[str]:
    """A note when a chosen ``--warmup-epochs`` is cut to 10% of the run
    (:func:`simclr.optim.warmup_steps`), which the user would not see otherwise. Not
    for the paper's default 10 (cut in every short run, by design), nor under a time
    budget, whose length the first plan only guesses."""
    o = cfg.optim
    if o.warmup_fraction is not None or o.warmup_epochs == OptimConfig.warmup_epochs \
            or cfg.time_budget:
        return []
    if plan.warmup_steps >= share_of(o.warmup_epochs, plan.steps_per_epoch):
        return []
    steps = plan.warmup_steps
    return [f"note: --warmup-epochs {o.warmup_epochs:g} is cut to 10% of the run: {steps} "
            f"warm-up step{'s' * (steps != 1)} of {plan.total_steps} "
            f"({steps / plan.steps_per_epoch:.3g} epochs); --warmup-fraction sets a longer one"]


def refit_to_budget(plan: Plan, cfg: Config, step: int, elapsed: float) -> int:
    """Re-estimate total steps from the measured speed so the cosine ends at the deadline;
    returns the step of the next refit.

    Called periodically: the estimate only moves by the drift of the step time, so the
    learning rate stays smooth while the schedule still reaches its end on time. The
    warm-up follows the new length (:func:`simclr.optim.warmup_steps`) but never ends
    before the current step while it runs, nor starts again once it has ended. Re-plans
    come every max(10, total/50) steps, more often early on (every step/2: the speed
    of the first steps is the least sure) and near the end (every quarter of what is
    left), so that short runs meet both the deadline and the warm-up's share. Every
    process must stop at the same step: rank 0's clock decides (between re-plans too:
    :func:`end_if_spent`).
    """
    if plan.deadline is not None and step >= FIRST_REFIT:
        remaining = max(plan.deadline - elapsed, 0.0)
        since_step, since_s = plan.anchor if plan.anchor and step > plan.anchor[0] else (0, 0.0)
        seconds_per_step = max(elapsed - since_s, 1e-9) / (step - since_step)
        total = step + int(remaining / seconds_per_step)
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        total = max(total, step + 1)
        fresh = plan_schedule(cfg, plan.steps_per_epoch * cfg.batch_size, total)
        warmup = _refit_warmup(plan.warmup_steps, fresh.warmup_steps, step)
        plan.total_steps, plan.warmup_steps = _without_raising_lr(plan, step, total, warmup)
    plan.total_steps, plan.warmup_steps = dist.broadcast_object(
        (plan.total_steps, plan.warmup_steps))
    left = plan.total_steps - step  # (from rank 0's plan: every process refits alike)
    if left <= 1:  # the next step is the last: no refit after it (each would add a step)
        return plan.total_steps + 1
    return step + max(1, min(max(10, plan.total_steps // 50), step // 2, left // 4))


def _without_raising_lr(plan: Plan, step: int, total: int, warmup: int) -> tuple[int, int]:
    """(total, warm-up) of a re-plan at ``step``, once the warm-up is over, lengthened no
    further than keeps the learning rate at most the last step's: the lr after the peak
    never rises (the run then ends before its deadline rather than climb back up the
    cosine). A rise allowed at every re-plan (1% of the peak, before) added up late in
    a run: 17 rises of up to 27% of an lr already small, up and down as the speed read
    varied. Shortening is never held back, but a warm-up end the re-plan moves up is
    checked too (its cosine starts later: higher)."""
    old_total, old_warmup = plan.total_steps, plan.warmup_steps
    if step <= old_warmup or step - 1 >= old_total:
        return total, warmup  # still warming up (_refit_warmup), or a first plan
    most = lr_at(step - 1, old_total, old_warmup, 1.0)
    for ramp in (warmup, old_warmup):  # (a warm-up end moved up to the step: the peak)
        longest = _longest_at_most(step, ramp, most)
        if longest >= min(total, max(step + 1, old_total)):  # (never shorter than planned
            return min(total, longest), ramp  # to keep a moved warm-up end)
    return old_total, old_warmup  # (its lr at ``step`` is at most the last step's)


def _longest_at_most(step: int, warmup: int, most: float) -> int:
    """The longest run whose cosine (after ``warmup`` steps, peak 1, final 0) is at
    most ``most`` at ``step``; sys.maxsize where any length is."""
    if most >= 1.0:
        return sys.maxsize
    progress = math.acos(max(2.0 * most - 1.0, -1.0)) / math.pi  # the least it may be
    if progress <= 0.0:
        return step  # (below 1 by less than a float's cosine can tell: no longer run)
    longest = warmup + math.floor((step - warmup) / progress)
    if lr_at(step, longest, warmup, 1.0) <= most:
        return longest
    # the arc cosine's rounding: the learning rate itself decides, by bisection (a run
    # ending at ``step`` has the final lr there: the shortest is always within)
    low, high = step, longest
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if lr_at(step, middle, warmup, 1.0) <= most else \
            (low, middle)
    return low


def note_first_step(plan: Plan, step: int, elapsed: float) -> None:
    """Called after every step: the first of this session sets :attr:`Plan.anchor`."""
    if plan.anchor is None:
        plan.anchor = (step, elapsed)


def _refit_warmup(planned: int, fresh: int, step: int) -> int:
    """The warm-up after a re-plan at ``step``: ``fresh`` (that of the new length) as far
    as the learning rate allows. A ramp under way never ends before ``step``, and a
    shorter one rises at ``step`` by at most one step of the fresh ramp above the last
    step's lr, a ramp of at least FIRST_REFIT + 1 steps (the shortest a budget's first
    plan has): cut from 40 steps to 3 at step 3 (a 14-step run's fresh ramp: 1), the lr
    went from 5% of the peak to all of it in one step. A longer one never lowers the
    lr below the last step's (a 4-step ramp at 50% of the peak at step 2, lengthened to
    40 at step 3, fell to 7.5%, then rose again): the lr stays flat meanwhile. Later
    re-plans bring the ramp nearer the fresh length, a step's rise at a time. One that
    has ended never restarts (the lr would fall back), though it may move up to ``step``
    when the run has grown longer."""
    if step < planned:
        # the least ramp w with step / w <= (step - 1) / planned + 1 / one, in integers
        # (the lr is peak * step / w in a ramp: one through 0, of one slope), and the
        # longest with step / w >= (step - 1) / planned: the lr never falls in a ramp
        one = max(fresh, FIRST_REFIT + 1)
        bounded = -(-step * planned * one // ((step - 1) * one + planned))
        longest = step * planned // (step - 1) if step > 1 else planned
        return min(max(fresh, step, bounded), max(longest, step))
    return min(max(fresh, planned), step)


def set_lr(optimizer: torch.optim.Optimizer, plan: Plan, final_lr: float, step: int) -> None:
    """The learning rate of ``step``: a function of the step and the plan alone (a
    --time-budget run re-plans: :func:`refit_to_budget`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, plan.total_steps, plan.warmup_steps, group["peak_lr"],
                            final_lr)


def budget_spent(plan: Plan, elapsed: float) -> bool:
    """Whether a --time-budget's seconds are spent by this process's clock (``elapsed``
    training seconds); under torchrun rank 0's decides (:func:`end_if_spent`)."""
    return plan.deadline is not None and elapsed >= plan.deadline


def end_if_spent(plan: Plan, step: int, spent: bool) -> bool:
    """End the schedule at ``step`` (``plan.total_steps``) when the budget is ``spent``,
    between re-plans too: whether it did. ``spent``: the same answer on every process,
    rank 0's :func:`budget_spent` told to all by ``distributed.StopVote(...).main_flag``
    (one process: its own, at once), so that all stop at the same step. Before, only a
    single process did: under torchrun a run went on past its deadline until the next
    re-plan, up to max(10, total/50) steps later."""
    if not spent:
        return False
    plan.total_steps = step
    return True


def budget_within_warmup(plan: Plan, step: int, finished: bool) -> str | None:
    """The note when a --time-budget ended a finished training (at ``step``) within its
    warm-up, else None: a budget of seconds, said, not only "finished" (pretraining's
    and the supervised baseline's)."""
    if plan.deadline is None or not finished or step > plan.warmup_steps:
        return None
    return (f"note: the --time-budget ended within the warm-up (step {step} of its "
            f"{plan.warmup_steps}): the learning rate never reached its peak, the encoder "
            "is barely trained; give a longer budget")
