"""Tests for simclr.plan: a run's length in steps, re-planned to a time budget."""

from __future__ import annotations

import math

import pytest
import torch

from simclr.errors import SimCLRError
from simclr.plan import (
    FIRST_REFIT,
    NO_RAMP_GUESS,
    Plan,
    budget_spent,
    budget_within_warmup,
    check_batch_fits,
    end_if_spent,
    epoch_steps,
    plan_schedule,
    refit_to_budget,
    set_lr,
    warmup_notes,
)
from simclr.settings import build_config


def test_a_time_budget_sets_the_length_whatever_the_epochs():
    """The epochs are the schedule's first guess under a budget: even a guess shorter
    than the first re-plan runs until it (before, 1 epoch of 3 steps ended a 4-s budget
    at once, while 3 epochs were re-planned to the budget), its lr still ramping there
    (a guess of 4 steps without warm-up had decayed to half the peak by step 3, and a
    re-plan may not raise it again). Its ramp is the longest the budget's could be (10
    epochs of 3 steps): a re-plan shortens a ramp under way, never lengthens it past the
    last step's lr. Without warm-up (--warmup-epochs 0) none: a guess of NO_RAMP_GUESS
    steps, near the peak at the first re-plan (before, a ramp to the first re-plan)."""
    cfg = build_config(flags={"batch_size": 8, "epochs": 1})
    assert plan_schedule(cfg, 24).total_steps == 3
    cfg.time_budget = 4.0
    plan = plan_schedule(cfg, 24)
    assert (plan.total_steps, plan.warmup_steps) == (31, 30)
    cfg.optim.warmup_epochs = 0
    plan = plan_schedule(cfg, 24)
    assert (plan.total_steps, plan.warmup_steps) == (NO_RAMP_GUESS, 0)
    cfg.max_steps = 2  # a cap stays a cap
    assert plan_schedule(cfg, 24).total_steps == 2


def test_a_refit_ends_the_schedule_at_the_deadline():
    """At 1 s per step with 80 s left at step 20, the run should last 100 steps; the
    warm-up follows the new length (10 epochs of 10 steps, capped at 10% of it) but never
    shrinks below what already ran; the next refit comes 10 steps later (step/2 early in
    the run, a quarter of what is left near its end)."""
    cfg = build_config(flags={"batch_size": 8, "epochs": 1, "time_budget": 100.0})
    plan = plan_schedule(cfg, 80)  # 10 steps per epoch; the first guess reaches the refit
    assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps) == (10, 101, 100)
    plan.total_steps, plan.warmup_steps = 10, 4  # (a ramp that has ended by step 20)
    assert refit_to_budget(plan, cfg, step=20, elapsed=20.0) == 30
    assert (plan.total_steps, plan.warmup_steps) == (100, 10)
    assert refit_to_budget(plan, cfg, step=6, elapsed=6.0) == 9  # young: every step/2
    assert refit_to_budget(plan, cfg, step=90, elapsed=90.0) == 92  # 10 left: every 2
    # Slower now (2 s per step on average over 40 steps, 20 s left): 10 more steps;
    # the warm-up of 10 already ran and stays.
    refit_to_budget(plan, cfg, step=40, elapsed=80.0)
    assert (plan.total_steps, plan.warmup_steps) == (50, 10)
    # Past the deadline: the next step is the last, and no refit comes after it.
    assert refit_to_budget(plan, cfg, step=41, elapsed=120.0) == 43
    assert plan.total_steps == 42
    # --max-steps caps a budget's refit.
    cfg.max_steps = 60
    plan = plan_schedule(cfg, 80)
    refit_to_budget(plan, cfg, step=20, elapsed=2.0)  # 0.1 s per step: 980 more would fit
    assert plan.total_steps == 60


def test_a_short_budgets_warmup_is_its_share_of_the_real_length():
    """A 100-epoch first guess plans 30 warm-up steps; the budget turns out to hold 20
    steps in all (0.1 s each of 2 s): re-planned at step 3, the ramp is cut towards its
    share of the real length (2 steps) as far as a rise of one step of a 4-step ramp
    allows (before, it ended at step 3: the lr went from 7% of the peak to all of it in
    one step), nearer it at each re-plan; a ramp under way follows a longer run no
    further than keeps the lr at the last step's (before, 5/8 of the peak at step 5 fell
    to 6/20 at step 6, then rose again); a ramp that has ended is never started again."""
    from simclr.optim import lr_at

    cfg = build_config(flags={"batch_size": 8, "epochs": 100, "time_budget": 2.0})
    plan = plan_schedule(cfg, 24)  # 3 steps per epoch
    assert (plan.total_steps, plan.warmup_steps) == (300, 30)
    assert FIRST_REFIT == 3
    refit_to_budget(plan, cfg, step=3, elapsed=0.3)
    assert (plan.total_steps, plan.warmup_steps) == (20, 10)  # 2/30 -> 3/10 of the peak
    assert lr_at(3, 20, 10, 1.0) - lr_at(2, 300, 30, 1.0) <= 1 / (FIRST_REFIT + 1)
    refit_to_budget(plan, cfg, step=4, elapsed=0.2)  # faster: 40 steps now, fresh 4
    assert (plan.total_steps, plan.warmup_steps) == (40, 8)  # 3/10 -> 4/8
    refit_to_budget(plan, cfg, step=6, elapsed=0.06)  # much faster: 200 steps, fresh 20
    assert (plan.total_steps, plan.warmup_steps) == (200, 9)  # 5/8 -> 6/9, not 6/20
    refit_to_budget(plan, cfg, step=20, elapsed=0.2)  # the ramp has ended, and stays so
    assert plan.warmup_steps == 9
    plan.total_steps, plan.warmup_steps = 200, 30  # slower: 20 steps, a ramp under way
    refit_to_budget(plan, cfg, step=10, elapsed=1.0)
    assert (plan.total_steps, plan.warmup_steps) == (20, 19)  # 9/30 -> 10/19, not 10/10


def test_the_speed_is_measured_after_the_sessions_first_step():
    """A first step of 5 s (torch.compile, loader start-up) then 0.1 s steps, a 60-s
    budget: measured from step 0 the run would look 20x slower than it is, plan 13 steps
    and end the warm-up at step 3 (the lr jumping to its peak)."""
    from simclr.plan import note_first_step

    cfg = build_config(flags={"batch_size": 8, "epochs": 100, "time_budget": 60.0})
    plan = plan_schedule(cfg, 800)  # 100 steps per epoch
    note_first_step(plan, 1, 5.0)
    note_first_step(plan, 2, 5.1)  # only the first counts
    assert plan.anchor == (1, 5.0)
    refit_to_budget(plan, cfg, step=3, elapsed=5.2)
    assert abs(plan.total_steps - (3 + 548)) <= 1  # (548 steps of 0.1 s in 54.8 s)
    # the ramp goes on, cut from 1000 steps towards its 10% (55) by a rise at step 3 of
    # one step of a 55-step ramp
    assert plan.warmup_steps == 149


def test_a_replan_in_the_decay_never_climbs_back_up_the_cosine():
    """Resumed with a 30-s budget, two steps measured on a machine whose load had just
    dropped: a run planned to end at step 21 (lr 4% of the peak at step 20) was
    lengthened to 33 steps, its lr back at 47%, then cut at the deadline at 40%. Once
    the warm-up is over, a re-plan lengthens the run only as far as keeps the lr at
    most the last step's (a rise of 1% of the peak at each re-plan, allowed before,
    added up late in a run); shortening it is never held back."""
    from simclr.optim import lr_at

    cfg = build_config(flags={"batch_size": 8, "epochs": 1, "time_budget": 30.0})
    plan = plan_schedule(cfg, 80)
    plan.total_steps, plan.warmup_steps = 21, 2
    before = lr_at(20, 21, 2, 1.0)
    refit_to_budget(plan, cfg, step=21, elapsed=10.0)  # 20 s left at 0.5 s a step: 61
    assert plan.total_steps == 22  # (23: 2.2% of the peak at step 21, above 20's 0.7%)
    assert lr_at(21, plan.total_steps, plan.warmup_steps, 1.0) <= before
    plan.total_steps = 30  # shorter is always allowed: 40 s a step now
    refit_to_budget(plan, cfg, step=22, elapsed=29.0)
    assert plan.total_steps == 23
    # Near the peak (step 30 of a 1000-step run after 10 steps of warm-up) the cosine
    # still falls slowly: the run may grow by the share its decay has run (20/19).
    plan = plan_schedule(cfg, 80)
    plan.total_steps, plan.warmup_steps = 1000, 10
    refit_to_budget(plan, cfg, step=30, elapsed=0.3)  # 0.01 s a step: 2,970 more
    assert plan.total_steps == 1052
    assert lr_at(30, 1052, 10, 1.0) <= lr_at(29, 1000, 10, 1.0) < lr_at(30, 1053, 10, 1.0)
    # A re-plan that shortens the run and moves a warm-up end up is held to it too: 90
    # steps, whose fresh ramp of 9 would start the cosine again at step 9 (99.96% of
    # the peak at step 10, after 99.06% at step 9 of the 100-step run ramped for 3).
    plan.total_steps, plan.warmup_steps = 100, 3
    before = lr_at(9, 100, 3, 1.0)
    refit_to_budget(plan, cfg, step=10, elapsed=3.3)  # 0.33 s a step, 26.7 s left: 90
    assert (plan.total_steps, plan.warmup_steps) == (90, 3)
    assert lr_at(10, 90, 3, 1.0) <= before


def test_a_supervised_budget_never_refits_past_its_last_step():
    from simclr.supervised import budget_refit

    cfg = build_config(flags={"batch_size": 8, "time_budget": 100.0, "max_steps": 3})
    plan = plan_schedule(cfg, 80)
    refit = budget_refit(cfg, plan, 0, torch.device("cpu"))
    assert [refit(step, float(step)) for step in (1, 2, 3)] == [3, 3, 3]  # --max-steps 3


def test_set_lr_follows_the_schedule_in_every_group():
    """Each group's lr is the warm-up + cosine value of its own peak at the given step."""
    cfg = build_config(flags={"batch_size": 8, "epochs": 10})
    plan = plan_schedule(cfg, 80)  # 100 steps, warm-up 10 (10% of the run)
    assert (plan.total_steps, plan.warmup_steps) == (100, 10)
    weights = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [weights[0]], "peak_lr": 1.0},
                                 {"params": [weights[1]], "peak_lr": 0.5}], lr=0.0)
    expected = {0: 0.0, 5: 0.5, 10: 1.0, 55: 0.5, 100: 0.0, 120: 0.0,
                82: 0.5 * (1 + math.cos(math.pi * 0.8))}
    for step, fraction in expected.items():
        set_lr(optimizer, plan, 0.0, step)
        lrs = [group["lr"] for group in optimizer.param_groups]
        assert lrs == pytest.approx([fraction, 0.5 * fraction], abs=1e-12), step
    set_lr(optimizer, plan, 0.01, 100)  # a final lr is where the cosine ends
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.01])


def test_a_folder_none_of_whose_files_decodes_is_said_so_not_its_batch(tmp_path):
    """Counted by name before decoding, three broken files were 'a batch larger than
    the data set; try --batch-size 2', which then failed on the files."""
    from simclr.folders import scan_folder
    from tests.image_files import save_image

    (tmp_path / "t.png").write_text("not an image")
    (tmp_path / "z.jpg").write_bytes(b"")
    (tmp_path / "y.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(SimCLRError, match=rf"^none of the 3 images in {tmp_path} could be "
                                          r"read \(first: .*t.png: not an image file"):
        check_batch_fits(8, 3, scan_folder(tmp_path))
    save_image(tmp_path / "ok.png")  # one that decodes: the batch is the problem again
    with pytest.raises(SimCLRError, match=r"--batch-size 8 is larger than the data set"):
        check_batch_fits(8, 4, scan_folder(tmp_path))


def test_a_batch_larger_than_the_data_set_is_refused_with_one_that_fits():
    check_batch_fits(24, 24)
    with pytest.raises(SimCLRError, match=r"--batch-size 25 is larger than the data set "
                                          r"\(24 images\); try --batch-size 16$"):
        check_batch_fits(25, 24)
    for images, batch, named in ((0, 8, "0 images"), (1, 8, "1 image"), (1, 2, "1 image")):
        with pytest.raises(SimCLRError, match=rf"^the data set has {named}; training needs "
                                              r"at least 2$"):  # not "try --batch-size 1"
            check_batch_fits(batch, images)


def test_a_batch_too_large_for_several_processes_is_told_one_they_can_share(monkeypatch):
    """Under --processes 3 a batch that fits is one each takes a whole share of (24 of
    24 images), not the power of two one process is told."""
    from simclr import distributed

    monkeypatch.setattr(distributed, "launched_processes", lambda: 3)
    with pytest.raises(SimCLRError, match=r"\(24 images\); try --batch-size 24$"):
        check_batch_fits(25, 24)


def test_epochs_are_whole_batches_rounded_up_and_max_steps_only_caps_them():
    """An epoch is the full batches the set holds (31 images of batch 8: 3, the 7 left
    over wait for the next epoch); a fraction of an epoch that ends inside a step runs
    that step (1.5 steps: 2); without a time budget --max-steps shortens a run of
    epochs, never lengthens it."""
    cfg = build_config(flags={"batch_size": 8, "epochs": 2})
    plan = plan_schedule(cfg, 31)
    assert (plan.steps_per_epoch, plan.total_steps) == (3, 6)
    cfg.epochs = 0.5
    assert plan_schedule(cfg, 24).total_steps == 2
    cfg.epochs, cfg.max_steps = 10, 7  # 30 steps of epochs, capped
    assert plan_schedule(cfg, 24).total_steps == 7
    cfg.max_steps = 100
    assert plan_schedule(cfg, 24).total_steps == 30
    # under a time budget --max-steps is the first plan's length (the refits' cap)
    budget = build_config(flags={"batch_size": 8, "max_steps": 500,
                                 "time_budget": "60s"})
    assert plan_schedule(budget, 24).total_steps == 500


def test_epochs_are_counted_as_written_not_as_their_float_product():
    """1.1 epochs of 390 steps are 429 steps: the float product 429.00000000000006 was
    rounded up to 430 (a step more than asked); the epochs are now multiplied as
    written (a Fraction of their decimal)."""
    cfg = build_config(flags={"batch_size": 128, "epochs": 1.1})
    assert plan_schedule(cfg, 390 * 128).total_steps == 429
    cfg.epochs = 2.2  # (2.2 x 25 = 55.00000000000001)
    assert plan_schedule(cfg, 25 * 128).total_steps == 55
    cfg.epochs = 1.15  # (a fraction of a step still runs that step: 4.6 -> 5)
    assert plan_schedule(cfg, 4 * 128).total_steps == 5



def test_epochs_of_no_full_batch_still_run_one_step():
    """At least one step, as documented: a classifier whose images fill no batch
    (simclr.classifier_setup.total_steps: ``images // batch`` is 0) trains one step, not none."""
    assert epoch_steps(3, 0) == 1
    assert epoch_steps(0.001, 10) == 1  # (0.01 steps: the step it ends in)
    assert epoch_steps(1.1, 390) == 429


def test_a_budgets_short_ramp_still_rises_at_the_first_replan():
    """--warmup-epochs 0.2 of 10 steps (2 steps) under a time budget: the first plan's
    ramp is FIRST_REFIT + 1 = 4 steps, so the step after the first re-plan (0-based
    step 3) is still in it, at 3/4 of the peak; a 3-step ramp had ended there, and a
    re-plan never restarts one that has ended."""
    from simclr.optim import lr_at

    cfg = build_config(flags={"batch_size": 8, "epochs": 1})
    cfg.optim.warmup_epochs = 0.2
    cfg.time_budget = 60.0
    plan = plan_schedule(cfg, 80)
    assert (plan.total_steps, plan.warmup_steps) == (10, FIRST_REFIT + 1)
    assert lr_at(FIRST_REFIT, plan.total_steps, plan.warmup_steps, 1.0) == 0.75

def test_a_replan_at_the_end_of_the_warmup_may_lengthen_the_run():
    """At the step the warm-up ends the lr is the peak whatever the length (the cosine
    starts there), so a re-plan there lengthens the run as far as the budget allows: 5
    steps in 0.5 s of a 10-s budget leave 95 more at 0.1 s, 100 in all; the ramp of 5
    has ended and stays (a fresh plan's 10 would lower the lr at step 5)."""
    cfg = build_config(flags={"batch_size": 8, "epochs": 1, "time_budget": 10.0})
    plan = plan_schedule(cfg, 80)
    plan.total_steps, plan.warmup_steps = 20, 5
    refit_to_budget(plan, cfg, step=5, elapsed=0.5)
    assert (plan.total_steps, plan.warmup_steps) == (100, 5)


def test_a_chosen_warmup_cut_to_a_tenth_of_the_run_is_said():
    """--warmup-epochs 20 of 100 epochs trains 10 epochs of warm-up (the cap of
    optim.warmup_steps): said, as a value the user gave and does not get; the paper's
    default 10, cut in every short run by design, and --warmup-fraction are not."""
    def notes(**flags):
        cfg = build_config(flags={"batch_size": 10, "epochs": 100, **flags})
        return warmup_notes(cfg, plan_schedule(cfg, 100))

    assert notes(**{"optim.warmup_epochs": 20}) == [
        "note: --warmup-epochs 20 is cut to 10% of the run: 100 warm-up steps of 1000 "
        "(10 epochs); --warmup-fraction sets a longer one"]
    one = build_config(flags={"batch_size": 10, "epochs": 1, "optim.warmup_epochs": 20})
    assert warmup_notes(one, Plan(steps_per_epoch=10, total_steps=10, warmup_steps=1)) == [
        "note: --warmup-epochs 20 is cut to 10% of the run: 1 warm-up step of 10 "
        "(0.1 epochs); --warmup-fraction sets a longer one"]
    assert notes(**{"optim.warmup_epochs": 10, "epochs": 50}) == []  # the default
    assert notes(**{"optim.warmup_epochs": 5}) == []  # within the cap
    assert notes(**{"optim.warmup_fraction": 0.2}) == []
    assert notes(**{"optim.warmup_epochs": 20, "time_budget": "1m"}) == []
    budget = build_config(flags={"batch_size": 10, "optim.warmup_epochs": 20,
                                 "time_budget": "1m"})  # (nor its re-plans' shorter ramp)
    assert warmup_notes(budget, Plan(steps_per_epoch=10, total_steps=50, warmup_steps=5)) == []


def _budget_lrs(cfg, num_images: int, seconds, first_step_s: float = 0.0) -> list[float]:
    """The lr (peak 1) of each step of a --time-budget run whose ``step``th step takes
    ``seconds(step)``, re-planned as train.run_session does: a pure function of the step
    and the plan as it stands, so a simulation needs no training."""
    from simclr.optim import lr_at
    from simclr.plan import note_first_step

    plan = plan_schedule(cfg, num_images)
    lrs, step, elapsed, next_refit = [], 0, 0.0, FIRST_REFIT
    while step < plan.total_steps:
        assert step < 100_000  # (the deadline ends every run)
        lrs.append(lr_at(step, plan.total_steps, plan.warmup_steps, 1.0))
        elapsed += seconds(step) + (first_step_s if step == 0 else 0.0)
        step += 1
        if elapsed >= plan.deadline:
            plan.total_steps = step  # (the budget is spent: train.py ends the run here)
        note_first_step(plan, step, elapsed)
        if step >= next_refit and step < plan.total_steps:
            next_refit = refit_to_budget(plan, cfg, step, elapsed)
    return lrs


def _speeds():
    """Seconds per step that change as a run goes: alternating, speeding up, slowing
    down, jittered (a shared machine), and a machine that gets 3x faster midway."""
    import random

    jitter = random.Random(0)
    noise = [jitter.uniform(0.02, 0.08) for _ in range(10_000)]
    return {
        "alternating": lambda s: 0.02 if (s // 3) % 2 else 0.06,
        "speeding up": lambda s: max(0.01, 0.1 / (1 + s / 10)),
        "slowing down": lambda s: 0.01 * (1 + s / 20),
        "jittered": lambda s: noise[s],
        "3x faster midway": lambda s: 0.06 if s < 30 else 0.02,
    }


@pytest.mark.parametrize("speed", list(_speeds()))
@pytest.mark.parametrize("epochs, max_steps, budget", [
    (1, None, 3.0),  # a first guess far shorter than the budget (4 steps of ~70)
    (100, None, 3.0),  # one far longer (400 steps, a 40-step ramp)
    (100, 1_000_000, 1.0),  # a cap far above it: its ramp of 40 steps was cut to 3
    (100, None, 30.0),
])
def test_under_a_time_budget_the_lr_rises_gently_then_never_again(speed, epochs, max_steps,
                                                                   budget):
    """Re-planned as the measured speed changes, a budget's lr is a warm-up then a cosine
    decay. Before, a re-plan could raise the lr after its peak by 1% of the peak each
    time: late in a run 17 rises of up to 27% of an lr already small, up and down (1
    epoch of 4 steps as the first guess of a 3-s budget: half the peak by step 3, flat,
    then 7.4e-4 -> 9.3e-4 -> 1.1e-3 -> 8.6e-4 ...); and a ramp of 40 steps cut to 3 at
    step 3 took the lr from 5% of the peak to all of it in one step. Now a re-plan after
    the peak never raises the lr, and one within the ramp raises it by at most a ramp's
    step of FIRST_REFIT + 1 steps."""
    flags = {"batch_size": 16, "epochs": epochs, "time_budget": budget}
    if max_steps is not None:
        flags = {**flags, "max_steps": max_steps}
        del flags["epochs"]  # (inert beside both: the default's 100 plan the first guess)
    cfg = build_config(flags=flags)
    lrs = _budget_lrs(cfg, 72, _speeds()[speed])  # 4 steps per epoch
    assert len(lrs) > 10
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1.0, abs=0.02)  # (the peak reached: a real decay)
    rises = [later - before for before, later in zip(lrs[:peak + 1], lrs[1:peak + 1],
                                                      strict=False)]
    assert max(rises) <= 1 / (FIRST_REFIT + 1) + 1e-12, (peak, lrs[:peak + 1])
    decay = lrs[peak:]
    assert all(later <= before for before, later in zip(decay, decay[1:], strict=False)), \
        [f"{lr:.3g}" for lr in decay]
    assert lrs[-1] < 0.05  # (the cosine reaches its end at the deadline, or near it)


@pytest.mark.parametrize("epochs", [0.25, 1, 100, 1000])  # first guesses of 1 to 4000 steps
@pytest.mark.parametrize("budget, seconds_per_step", [
    (1.0, 0.001), (3.0, 0.01), (3.0, 0.3), (30.0, 0.01), (30.0, 0.05)])  # 10 to 3000 steps
@pytest.mark.parametrize("warmup_fraction", [None, 0.05])
def test_a_budgets_lr_rises_through_the_warmup_and_falls_after_it_whatever_the_guess(
        epochs, budget, seconds_per_step, warmup_fraction):
    """The lr step by step (a steady speed: step * seconds_per_step on the clock), for
    first guesses far shorter and far longer than the budget allows: it never falls in
    the warm-up, never rises after its peak, and the run ends at the deadline. Before, a
    guess of 1 epoch (a 4-step ramp: 0, 25%, 50% of the peak) was re-planned at step 3
    to a budget of 300 steps, its ramp lengthened to 30: 10% at step 3, a dip, then up."""
    flags = {"batch_size": 16, "epochs": epochs, "time_budget": budget}
    if warmup_fraction is not None:
        flags["optim.warmup_fraction"] = warmup_fraction
    cfg = build_config(flags=flags)
    lrs = _budget_lrs(cfg, 72, lambda step: seconds_per_step)  # 4 steps per epoch
    peak = lrs.index(max(lrs))
    ramp, decay = lrs[:peak + 1], lrs[peak:]
    assert all(later >= before for before, later in zip(ramp, ramp[1:], strict=False)), \
        [f"{lr:.3g}" for lr in ramp[:12]]
    assert all(later <= before for before, later in zip(decay, decay[1:], strict=False)), \
        [f"{lr:.3g}" for lr in decay]
    # the last step ends at the deadline, or a little before it (a re-plan may end the
    # run early rather than raise the lr after its peak)
    assert budget - max(seconds_per_step, 0.05 * budget) <= len(lrs) * seconds_per_step \
        < budget + seconds_per_step


@pytest.mark.parametrize("no_ramp", [{"optim.warmup_epochs": 0},
                                     {"optim.warmup_fraction": 0}])
@pytest.mark.parametrize("epochs", [0.25, 1, 100])  # first guesses of 1 to 400 steps
@pytest.mark.parametrize("budget, seconds_per_step", [(1.0, 0.1), (3.0, 0.01), (30.0, 0.01)])
def test_a_budget_asked_for_no_warmup_starts_at_the_peak_and_only_decays(
        no_ramp, epochs, budget, seconds_per_step):
    """--warmup-epochs 0 / --warmup-fraction 0 under --time-budget: no ramp, as with
    --max-steps or --epochs. Before, the first guess forced a ramp of FIRST_REFIT + 1
    steps (lr 0, 25%, 50%, 75% of the peak) or, for a fraction, of 10 epochs (a 7-step
    ramp). The guess is long enough that the lr is still near its peak at the first
    re-plan (which may not raise it again), then it decays to the deadline."""
    cfg = build_config(flags={"batch_size": 16, "epochs": epochs, "time_budget": budget,
                              **no_ramp})
    assert plan_schedule(cfg, 72).warmup_steps == 0
    lrs = _budget_lrs(cfg, 72, lambda step: seconds_per_step)  # 4 steps per epoch
    assert lrs[0] == 1.0 and min(lrs[:FIRST_REFIT]) > 0.99, lrs[:FIRST_REFIT + 1]
    assert all(later <= before for before, later in zip(lrs, lrs[1:], strict=False)), \
        [f"{lr:.3g}" for lr in lrs[:12]]
    assert budget - max(seconds_per_step, 0.05 * budget) <= len(lrs) * seconds_per_step \
        < budget + seconds_per_step
    if len(lrs) > 20:  # (the cosine reaches its end at the deadline, or near it)
        assert lrs[-1] < 0.05



def test_a_budget_is_spent_once_its_seconds_are_reached():
    """A 6-s budget is spent at 6 s of training (not only past them); a run without a
    budget never is."""
    assert budget_spent(Plan(3, 10, 1, deadline=6.0), 6.0)
    assert budget_spent(Plan(3, 10, 1, deadline=6.0), 7.5)
    assert not budget_spent(Plan(3, 10, 1, deadline=6.0), 5.99)
    assert not budget_spent(Plan(3, 10, 1), 1e9)

def test_a_spent_budget_ends_the_schedule_at_that_step():
    """``end_if_spent`` with the budget spent ends the schedule there (``total_steps``:
    the step, so that the run stops and its last save is the end); not spent: nothing."""
    plan = Plan(steps_per_epoch=10, total_steps=1000, warmup_steps=50, deadline=60.0)
    assert not end_if_spent(plan, 100, False) and plan.total_steps == 1000
    assert end_if_spent(plan, 123, True) and plan.total_steps == 123


def test_a_budget_ending_on_the_last_warmup_step_is_within_the_warmup():
    """A run ended by its budget after 50 steps of a 50-step warm-up ran every one within
    the ramp (0 .. 49/50 of the peak rate, :func:`simclr.optim.lr_at`): it gets the note;
    one step more reached the peak, and a run without a budget or unfinished gets none."""
    plan = Plan(steps_per_epoch=10, total_steps=1000, warmup_steps=50, deadline=60.0)
    note = budget_within_warmup(plan, 50, True)
    assert note is not None and "within the warm-up (step 50 of its 50)" in note
    assert budget_within_warmup(plan, 51, True) is None
    assert budget_within_warmup(plan, 50, False) is None
    plan.deadline = None
    assert budget_within_warmup(plan, 10, True) is None
