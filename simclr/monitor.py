"""What a pretraining run says of itself as it goes, beside its progress (progress.py).

Notes at its start on likely slips (views upsampled from thumbnails, a crop that takes
the whole picture, small views left with the ImageNet recipe); the metrics log's
``--log-every`` windows (:class:`Meter`: sums kept on the device, read back once per
line, and the last window's means in the summary: :data:`FINAL_METRICS`); the guard
that stops a run at its first non-finite loss, or counts the steps ``--nan-policy skip``
left out (:func:`check_finite`, :func:`count_skipped`); and the online kNN monitor
(:func:`knn_monitor`, rank 0 alone), whose folders are checked before the first step:
within the run (:func:`knn_within_run`, a measure a stop skipped taken when resumed:
:func:`knn_missed`), at its end (:func:`final_knn`), and an encoder found diverged
by it (:func:`outputs_diverged`); and the note on a run whose NT-Xent loss sits at the
value of a collapsed representation (:class:`CollapseWatch`). The loop that calls these
is train.py's.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr import distributed as dist
from simclr.augment_params import blur_kernel_size
from simclr.checkpoint import CHECKPOINTS, LAST, latest_checkpoint, periodic_name, what_is_kept
from simclr.config import MIN_SIZE, Config, LossConfig
from simclr.data import open_source, reading_draft
from simclr.errors import DivergedError, NonFiniteOutputs, SimCLRError
from simclr.features import check_labeled_folders
from simclr.launch import continue_run
from simclr.memory import allocation_failure_is
from simclr.progress import said_once
from simclr.resume import RunState, unwrap
from simclr.rundir import MetricsLog
from simclr.source import ImageSource

_SAID: set[Any] = said_once()  # (run folder, k) of the kNN monitor's note on its k


def log_line(message: str) -> None:
    """A line for the person running it, printed by rank 0 alone (the others' would
    repeat it once per process)."""
    if dist.is_main():
        print(message, flush=True)


def upsampling_notes(cfg: Config, source: ImageSource) -> list[str]:
    """A note when the views are much larger than the (cached, small) pictures: likely
    the ImageNet default of 224 px applied to a folder of thumbnails."""
    side = max(source.image_hw)
    if not source.cached or cfg.augment.size < 2 * side:
        return []
    return [f"note: {cfg.augment.size}-px views are drawn from pictures of {side} px "
            f"(each view upsampled {cfg.augment.size / side:.1f}x); for small images "
            f"--image-size {max(side, MIN_SIZE)} is likelier what you want"]


def window_notes(cfg: Config, source: ImageSource) -> list[str]:
    """A note when --no-crop-resize's window (the view's side, taken from the stored
    picture without resizing) is the whole picture, so that the crop does nothing: CIFAR
    at --image-size 32, whose 32-px pictures are stored as they are."""
    a = cfg.augment
    if not a.crop or a.crop_resize or min(source.image_hw) != a.size or not source.cached:
        return []
    if (source.aspect_of(np.arange(source.num_images)) != 1).any():
        return []  # squares standing for wider pictures: windows of those move
    return [f"note: --no-crop-resize takes {a.size}-px windows of pictures stored at "
            f"{a.size} px: each is the whole picture, so the crop does nothing; a smaller "
            "--image-size, or a larger --load-size, leaves it room"]


def recipe_notes(cfg: Config) -> list[str]:
    """A note when small views keep the ImageNet recipe's augmentation and loss (the
    defaults): the official CIFAR-10 recipe (App. B.9) turns blur off and halves the
    colour strength, a known trap for runs on small images without a preset."""
    a = cfg.augment
    if a.size > 32 or not a.blur or a.color_strength != 1.0 or cfg.loss.temperature != 0.1:
        return []
    recipe = ("blur, colour strength 1 and tau 0.1"
              if blur_kernel_size(a.size, a.blur_kernel_frac) > 1 else
              "colour strength 1 and tau 0.1 (its blur, one tap at this side, does nothing)")
    return [f"note: {a.size}-px views with the ImageNet recipe's {recipe}; for small images "
            "the official CIFAR-10 recipe is --preset cifar10 (no blur, strength 0.5, tau "
            "0.5), on a CPU --preset cifar10-cpu"]


# What a run's summary.json keeps of its last metrics line.
FINAL_METRICS = ("loss", "pos_top1", "contrast_entropy", "contrast_acc")


# A run is said to have collapsed once this many consecutive windows after the warm-up,
# spanning at least COLLAPSE_STEPS steps, have a mean loss within COLLAPSE_TOLERANCE nats
# of the collapsed value and (NT-Xent's Table 5 entropy, where logged) an entropy within
# it of ln N. Measured on tiny runs (64 images, 16 px, N = 8, one step a window): a
# collapsed one (--lr 1e4) sits within 3e-3 nats of ln(2N-1), most steps within 2e-4;
# healthy ones move 0.03 to 0.9 below it after the warm-up, but a single step can land
# near it by chance (5e-3 once in 45 steps at tau 0.1): hence several windows, ten steps,
# and the entropy, which is near ln N only when every logit is alike.
COLLAPSE_TOLERANCE = 0.01
COLLAPSE_WINDOWS = 3
COLLAPSE_STEPS = 10


def collapsed_loss(cfg: LossConfig, batch_size: int) -> float | None:
    """The NT-Xent loss (eq. 1) of a collapsed representation, every z alike, so every
    logit equal: ln(2N - 1) for the global batch N (an anchor's candidates are the other
    2N - 1 views of every process), ln N with --one-view-negatives (the other view's N).
    None for the Table 4 losses, which are not watched."""
    if cfg.name != "nt_xent":
        return None
    return math.log(batch_size if cfg.one_view_negatives else 2 * batch_size - 1)


class CollapseWatch:
    """Whether a run's windows show a collapsed representation (:func:`collapsed_loss`),
    fed each window's record as it is logged (host floats: no sync); says so once."""

    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        """A new watch, or the one ``saved`` (:meth:`saved`, from a checkpoint's log
        window) continued: a resumed run goes on with its streak, and says the note
        at the step an uninterrupted run would, and never twice."""
        self.windows, self.steps, self.since = 0, 0, 0  # the current streak
        self.said = False
        if saved is not None:
            self.windows, self.steps = saved["windows"], saved["steps"]
            self.since, self.said = saved["since"], saved["said"]

    def saved(self) -> dict[str, Any]:
        """The watch's state as plain values, for a checkpoint."""
        return {"windows": self.windows, "steps": self.steps, "since": self.since,
                "said": self.said}

    def see(self, record: dict[str, Any], collapsed: float | None, batch_size: int,
            warmup_steps: int) -> str | None:
        """The note, the first time the streak of collapsed windows that ends with
        ``record`` (its ``step``, ``window_steps``, ``loss``, maybe
        ``contrast_entropy``) is long enough; windows that began in the warm-up (whose
        lr is too small to have moved a random encoder's near-collapsed start) are
        not counted; None otherwise."""
        start = record["step"] - record["window_steps"]
        if collapsed is None or self.said or start < warmup_steps:
            return None
        entropy = record.get("contrast_entropy")
        alike = _near(record["loss"], collapsed) and \
            (entropy is None or _near(entropy, math.log(batch_size)))
        if not alike:
            self.windows, self.steps = 0, 0
            return None
        if self.windows == 0:
            self.since = start
        self.windows, self.steps = self.windows + 1, self.steps + record["window_steps"]
        if self.windows < COLLAPSE_WINDOWS or self.steps < COLLAPSE_STEPS:
            return None
        self.said = True
        value = "ln(N)" if math.isclose(collapsed, math.log(batch_size)) else "ln(2N-1)"
        return (f"note: the loss has stayed at {value} = {collapsed:.3f} (N = {batch_size}) "
                f"for {self.steps} steps (steps {self.since + 1}-{record['step']}): the "
                "embeddings are all alike (collapsed), the run learns nothing; a lower --lr "
                "or --temperature, or milder augmentations, is likelier to learn")


def _near(value: float | None, target: float) -> bool:
    """Within COLLAPSE_TOLERANCE nats (a null window's NaN never is)."""
    return value is not None and abs(value - target) <= COLLAPSE_TOLERANCE


def collapse_note(watch: CollapseWatch, cfg: Config, record: dict[str, Any],
                  warmup_steps: int) -> dict[str, Any]:
    """``record`` (a window's), with the collapse note where :class:`CollapseWatch`
    says it now: printed to stderr by rank 0 and kept as its ``note``."""
    note = watch.see(record, collapsed_loss(cfg.loss, cfg.batch_size), cfg.batch_size,
                     warmup_steps)
    if note is None:
        return record
    if dist.is_main():
        print(note, file=sys.stderr, flush=True)
    return {**record, "note": note}


class Meter:
    """A step's metrics (the loss, positive top-1, Table 5's contrast entropy and
    accuracy) summed on the device over a ``--log-every`` window, read back once per log
    line. A ``.item()`` per step would stall the GPU queue: the meter adds none (fp16's
    GradScaler reads its inf check once a step, and ``--nan-policy skip`` its finite
    check: their own). Each step's metrics are already means over the processes
    (:func:`simclr.train.train_step`), so every process holds the run's sums, and rank
    0's checkpoint can carry a window that a stop or a kill cut (:meth:`saved`): the
    resumed run continues it, and logs what an uninterrupted run would have. A step
    ``--nan-policy skip`` skipped adds nothing but its count (:attr:`skipped`): the
    window's means are its finite steps', not NaN for one bad step of many.
    """

    def __init__(self, step: int, elapsed: float, saved: dict[str, Any] | None = None,
                 device: torch.device | None = None) -> None:
        """A window from ``step``, at ``elapsed`` training seconds; or the one ``saved``
        (:meth:`saved`, from a checkpoint) continued, its sums put on ``device``."""
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.first_step, self.start = 0, step, elapsed
        self.untimed = 0  # steps of the window whose seconds are not counted (compiling)
        self.skipped = 0  # steps of the window skipped (not finite): out of its means
        # (the run's windows, all sessions: checkpoints before 2026-12-06 saved none)
        self.collapse = CollapseWatch(None if saved is None else saved.get("collapse"))
        if saved is not None and saved["steps"] > 0:
            self.sums = {name: torch.tensor(value, dtype=torch.float32, device=device)
                         for name, value in saved["sums"].items()}
            self.steps, self.first_step = saved["steps"], saved["first_step"]
            self.start = saved["elapsed"]
            self.untimed = saved.get("untimed", 0)  # (checkpoints before 2026-12-05: none)
            # (none saved before 2026-12-06: a skipped step's NaN is in the sums then, and
            # the window logs null, as it did)
            self.skipped = saved.get("skipped", 0)

    def add(self, metrics: dict[str, torch.Tensor], skipped: bool = False) -> None:
        """A step's metrics (0-d device tensors) into the window's sums; a ``skipped``
        step's (--nan-policy skip: not finite, so NaN) as zeros, counted apart. Its
        names are kept: a window of skipped steps alone logs them as null."""
        for name, value in metrics.items():  # (the same names every step of a run)
            value = value.detach().float()
            if skipped:  # (on the device: the step's finite flag is on the host already)
                value = torch.zeros_like(value)
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.steps += 1
        self.skipped += int(skipped)

    def untimed_step(self) -> None:
        """The step just added took no training seconds (it compiled: they were taken
        off ``elapsed``): its views are left out of the window's views/s too."""
        self.untimed += 1

    def record(self, step: int, views_per_step: int, elapsed: float) -> dict[str, float]:
        """The window's means over its finite steps (NaN, logged as null, where every
        step was skipped) and views/s (over its training seconds, of every session it
        spans; NaN for a window of a compiling step alone), how many steps it spans
        (``window_steps``: --log-every's, but fewer at the run's end, and more where a
        resume with a smaller --log-every carried on a window opened under a larger one)
        and, where --nan-policy skip left some out, how many (``window_skipped``); then a
        new window starts."""
        sums = torch.stack(list(self.sums.values())).tolist()
        finite = self.steps - self.skipped
        out = {name: total / finite if finite > 0 else math.nan
               for name, total in zip(self.sums, sums, strict=True)}
        timed = step - self.first_step - self.untimed
        out["views_per_s"] = (views_per_step * timed / max(elapsed - self.start, 1e-9)
                              if timed > 0 else float("nan"))
        out["window_steps"] = self.steps  # (a count on the host: no sync)
        if self.skipped:
            out["window_skipped"] = self.skipped
        self.sums = {}
        self.steps, self.start, self.first_step, self.untimed, self.skipped = \
            0, elapsed, step, 0, 0
        return out

    def saved(self) -> dict[str, Any]:
        """The open window as plain numbers, for a checkpoint (the float32 sums exactly),
        with the collapse watch's state (``collapse``: it spans windows)."""
        sums = torch.stack(list(self.sums.values())).tolist() if self.sums else []
        return {"sums": dict(zip(self.sums, sums, strict=True)), "steps": self.steps,
                "first_step": self.first_step, "elapsed": self.start, "untimed": self.untimed,
                "skipped": self.skipped, "collapse": self.collapse.saved()}


def count_skipped(cfg: Config, state: RunState, last_good: Path | None) -> None:
    """Count a step ``nan_policy='skip'`` skipped; too many mean the run has diverged."""
    state.bad_steps += 1
    if state.bad_steps > cfg.max_bad_steps:
        raise DivergedError(f"more than {cfg.max_bad_steps} non-finite steps; stopping "
                            f"(last good checkpoint: {last_good or 'none yet'})",
                            state.step + 1)


def check_finite(first_bad: torch.Tensor, last_good: Path | None, cfg: Config,
                 precision: str) -> None:
    """Stop at the first non-finite step (its loss or a gradient), before anything bad
    reaches a checkpoint (``precision``: the run's, fp32 or a mixed one, which may be
    the cause)."""
    bad_step = int(first_bad.item())
    if bad_step >= 0 and cfg.nan_policy == "stop":
        kept = what_is_kept(last_good)
        fp32 = "" if precision == "fp32" else "use --precision fp32, "
        raise DivergedError(
            f"the loss or its gradients became non-finite (NaN/inf) at step {bad_step + 1}; "
            f"stopping: {kept}. Lower --lr, {fp32}or pass --nan-policy skip", bad_step + 1
        )


def weights_diverged(first_bad: torch.Tensor, cfg: Config) -> bool:
    """Whether the model may hold a non-finite step's update: one was met (``first_bad``,
    its step, -1: none) under ``--nan-policy stop``. Under ``skip`` such a step changed no
    weight (:func:`simclr.train.train_step`), so saves go on (read without a host sync)."""
    return cfg.nan_policy == "stop" and int(first_bad.item()) >= 0


def check_knn_folders(cfg: Config) -> None:
    """The kNN monitor's folders are first read after an epoch: check them before (that
    some image of each decodes too, which a run would meet only then)."""
    size = cfg.augment.evaluation_size()  # (read as knn_monitor opens them)
    check_labeled_folders(cfg.knn_train, cfg.knn_test, ("--knn-train", "--knn-test"),
                          train_split=True, max_pixels=cfg.data.max_pixels,
                          draft=lambda files, _: reading_draft(files, size, cfg.data, True))


def knn_out_of_memory(step: int, last_good: Path | None,
                      ) -> contextlib.AbstractContextManager[None]:
    """The kNN monitor after ``step`` running out of memory: one line, as a step's
    (:func:`simclr.memory.out_of_memory_is_an_error`), naming the checkpoint that
    survives. Nothing is saved then (writing one needs memory too)."""
    return allocation_failure_is(
        lambda failed: f"kNN monitor: out of memory at step {step} ({failed}): "
                       f"{what_is_kept(last_good)}; free memory and --resume, or start a new "
                       "run with fewer --knn-train or --knn-test images")


def knn_monitor(
    cfg: Config, model: torch.nn.Module, device: torch.device, precision: str, step: int,
    log: MetricsLog,
) -> float:
    """Online weighted-kNN top-1 on h (same code as `simclr knn`), measured by rank 0
    alone: the encoder runs in eval mode, so no collective is involved."""
    from simclr.features import extract_features
    from simclr.knn import k_past_memory, knn_accuracy

    encoder, side = unwrap(model).encoder, cfg.augment.evaluation_size()

    def open_split(folder: str, train: bool) -> ImageSource:
        return open_source(folder, cfg.data, train=train, image_size=side, evaluation=True,
                           held_out=True)  # (the digits' memory: none of the queries)

    memory, queries = open_split(cfg.knn_train, True), open_split(cfg.knn_test, False)  # type: ignore[arg-type]  # (set: it runs)
    # (in the training's memory format: NCHW images met channels_last weights, converted
    # at every layer; decoded by the --decoder they were opened with, cfg.data's)
    train_x, train_y = extract_features(encoder, memory, side, 512, device, precision,  # type: ignore[arg-type]  # (a Module)
                                        channels_last=cfg.channels_last)
    test_x, test_y = extract_features(encoder, queries, side, 512, device, precision,  # type: ignore[arg-type]
                                      channels_last=cfg.channels_last)
    note = k_past_memory(cfg.knn_k, len(train_y), "--knn-k", "--knn-train images")
    if note and (cfg.out, cfg.knn_k) not in _SAID:  # (once a run)
        _SAID.add((cfg.out, cfg.knn_k))
        log_line(note)
    top1 = knn_accuracy(train_x, train_y, test_x, test_y, k=cfg.knn_k,
                        temperature=cfg.knn_temperature, device=device)
    log.write({"step": step, "knn_top1": top1})
    log_line(f"step {step}: kNN top-1 {100 * top1:.2f}%")
    return top1


def knn_missed(cfg: Config, step: int, knn_every_steps: int, log: MetricsLog) -> bool:
    """Whether this process (rank 0) measures the kNN monitor before a resumed session's
    first step: it was due at ``step``, where the session starts, and the log has no
    measure of it (the earlier session was stopped there, which skips the monitor as a
    kill may follow, or killed while measuring), so the log reads as one run's."""
    return bool(cfg.knn_train) and dist.is_main() and step > 0 \
        and step % knn_every_steps == 0 \
        and not any("knn_top1" in record for record in log.resumed_records)


def knn_within_run(
    cfg: Config, model: torch.nn.Module, device: torch.device, precision: str, step: int,
    log: MetricsLog, first_bad: torch.Tensor, last_good: Path | None,
    save_periodic: Callable[[], Path | None], run_dir: Path, resumed: bool = False,
) -> float:
    """The kNN monitor after ``step`` (rank 0 alone), as the run goes: out of memory, one
    line naming ``last_good``; its folders' images, first read now, failing: the steps
    are saved first (``save_periodic``, unless :func:`weights_diverged`) and the message
    says how to go on. ``resumed``: measured before a resumed session's first step, on
    the weights of ``last_good``, the checkpoint it resumed from."""
    with knn_out_of_memory(step, last_good):
        try:
            return knn_monitor(cfg, model, device, precision, step, log)
        except NonFiniteOutputs:  # the encoder, not the folder: nothing saved, no resume
            raise outputs_diverged(step, run_dir, precision,
                                   also=last_good if resumed else None) from None
        except SimCLRError as exc:  # its folder's images, first read now: keep the steps
            kept = not weights_diverged(first_bad, cfg) and save_periodic()
            raise SimCLRError(f"kNN monitor: {exc}" + (
                f" (the run is saved at step {step}: `{continue_run(run_dir)}`"
                " continues it once the folder is mended)" if kept else "")) from None


def outputs_diverged(step: int, run_dir: Path, precision: str, final: bool = False,
                     also: Path | None = None) -> DivergedError:
    """The kNN monitor met non-finite features after ``step``: the run diverged (its
    loss may still be finite: bf16 activations overflow first), not its folder. The
    checkpoints of this step's weights (its periodic one; ``final``: last.pt too, saved
    just before the final measure; ``also``: the one a resumed session started from)
    are set aside as ``*.diverged``, so that --resume, embed and export take the last
    good one, which the message names."""
    folder = run_dir / CHECKPOINTS
    aside = []
    names = {periodic_name(step), *([LAST] if final else []), *([also.name] if also else [])}
    if dist.is_main():
        for name in sorted(names, key=lambda n: n == LAST):  # (last.pt named last)
            if (folder / name).is_file():
                (folder / name).replace(folder / f"{name}.diverged")
                aside.append(f"{name}.diverged")
    good = latest_checkpoint(folder)
    kept = (f"the last good checkpoint is {good}" if good is not None else
            "no checkpoint of an earlier step is kept")
    fp32 = "" if precision == "fp32" else "use --precision fp32, "
    return DivergedError(
        f"kNN monitor at step {step}: the encoder's outputs on the kNN images are not "
        f"finite (NaN/inf): the run diverged; stopping"
        f"{' (set aside: ' + ', '.join(aside) + ')' if aside else ''}: {kept}. "
        f"Lower --lr, {fp32}or check --optimizer's settings", step)


def logged_knn(log: MetricsLog, step: int) -> tuple[int, float | None]:
    """(step, kNN top-1) of the measure the log holds at ``step``, where a resumed
    session starts ((-1, None): none): a run killed after its final measure, before its
    summary, takes it from there, not from a second feature pass logged twice."""
    top1 = next((r["knn_top1"] for r in log.resumed_records if "knn_top1" in r), None)
    return (step, top1) if top1 is not None else (-1, None)


def final_knn(
    cfg: Config, model: torch.nn.Module, device: torch.device, precision: str, step: int,
    log: MetricsLog, monitored: tuple[int, float | None], last_good: Path | None,
    run_dir: Path,
) -> float | None:
    """The kNN top-1 of the run's final model (rank 0 alone, after ``last_good``, the
    final checkpoint, is written): ``monitored``'s (step, top-1) where the monitor has
    just measured this ``step``, else measured now; out of memory, one line naming
    ``last_good``; non-finite features set this step's checkpoints aside
    (:func:`outputs_diverged`)."""
    if monitored[0] == step:
        return monitored[1]
    with knn_out_of_memory(step, last_good):
        try:
            return knn_monitor(cfg, model, device, precision, step, log)
        except NonFiniteOutputs:
            raise outputs_diverged(step, run_dir, precision, final=True) from None
