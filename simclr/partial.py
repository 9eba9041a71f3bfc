"""An evaluation's unfinished training (fine-tuning, the SGD linear protocol), saved in
its ``--out`` as ``checkpoints/<name>-partial.pt`` and continued when the same command runs
again: ``PartialRun`` (other settings are refused, or started over with --overwrite) and
``partial_weights_digest``, the fingerprint of the network it trains on.

Under torchrun rank 0 alone writes and holds ``--out``; every process reads the state.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simclr import distributed as dist
from simclr.checkpoint import CHECKPOINTS, PARTIAL_SUFFIX, new_run_id, save_checkpoint
from simclr.checkpoint_read import (
    load_checkpoint,
    load_scaler,
    load_weights,
    readable_state,
    stopped_while_finishing,
)
from simclr.classify import Checkpointing, saved_tally
from simclr.errors import SimCLRError
from simclr.files import lock_folder, set_aside, taken
from simclr.launch import path_word, working_folder
from simclr.optim import check_state_shapes
from simclr.results import log
from simclr.resume import split_read_anew_why
from simclr.runtime import StopFlag, command_line


def partial_weights_digest(*modules: nn.Module | None) -> str:
    """A short fingerprint of the modules' weights and buffers, kept in a
    :class:`PartialRun`'s settings so an unfinished run is never continued on another
    network (e.g. a checkpoint pretrained again in place). Not
    :func:`simclr.pretrained.weights_digest` (the embeddings' key: dtypes and shapes
    too): its value, saved in partial runs, stays as it was."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in ([] if module is None else module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8)
                          .numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class PartialRun:
    """An evaluation's unfinished training, kept in its ``--out`` as
    ``checkpoints/<name>-partial.pt`` and continued by the same command.

    ``settings`` (plain data) fix the run: the training set, subset, budget, optimizer,
    views and source checkpoint. A saved run whose settings differ (or that cannot be
    read) is refused, never continued, and written over only with ``overwrite`` (the
    command's --overwrite; "keep": set aside as ``NAME-partial.previous-K.pt``, as a
    sweep keeps what it evaluates anew); ``out`` None keeps nothing.
    """

    out: Path | None
    name: str  # "finetune", "linear"
    what: str  # in messages: "fine-tuning", "linear evaluation"
    settings: dict[str, Any]
    overwrite: bool | str = False
    held: Any = None  # the lock on ``out`` while the training runs (files.lock_folder)
    metrics: dict[str, Any] = field(default_factory=dict)  # those saved with the state
    run_id: str = field(default_factory=new_run_id)  # the training's: the saved one's, continued
    results: tuple[str, ...] = ()  # what the finished run writes in ``out`` (results.RESULTS)
    # The running epoch's tally (_EpochTally.state) at the state saved or resumed: a
    # continued epoch's loss and top-1 count its steps before the stop too.
    tally: dict[str, float] | None = None
    # ``out``'s results are this training's, stopped while it wrote them (resumed: see
    # checkpoint_read.stopped_while_finishing): they are written anew, without --overwrite.
    finishing: bool = False
    # The unreadable files (path, reason) the saved sessions met (the state's
    # ``skipped_images``, as pretraining's; an older file has none): the caller's source
    # remembers them, so what it records trained on is an uninterrupted run's.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # The training's length in steps: the caller's, or the saved one's where continued
    # (saved with the state: a rule of counting changed since cannot move it mid-run).
    total: int | None = None
    # The training set (source.ImageSource; None: not told): its folder names a split
    # this release reads where the saved run's release read the whole folder.
    train: Any = None

    @property
    def path(self) -> Path | None:
        return None if self.out is None else self.out / CHECKPOINTS / f"{self.name}{PARTIAL_SUFFIX}"

    def _listed_subset_hint(self, differ_keys: list[str], saved: dict[str, Any]) -> str:
        """How to continue a run whose labeled subset alone differs, where it listed it
        (fine-tuning's labeled_subset.txt): its own command draws another subset where
        the draw changed since (an earlier simclr's draw by class index); the list, with
        the epochs saved (--subset's default follows the list's share, not the fraction
        asked), continues it. Else rerunning its own command does."""
        from simclr.subsets import SUBSET_FILE, read_subset_list

        own = "rerun its own command to continue it"
        listed = None if self.out is None else Path(self.out) / SUBSET_FILE
        if differ_keys != ["subset"] or listed is None or not listed.is_file():
            return own
        try:  # (a source without files, the digits, lists `#index N` lines: no --subset)
            read_subset_list(listed)
        except SimCLRError:
            return own
        epochs = f" --epochs {saved['epochs']}" if saved.get("epochs") is not None else ""
        return (f"{own}, with --subset {path_word(listed)}{epochs} (the images it trains "
                "on) in place of --label-fraction / --labels-per-class")

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, verbose: bool,
               prefix: str = "", total: int | None = None,
               earlier_total: int | None = None) -> tuple[int, float]:
        """Load the saved state into the run (``model`` from the weights under
        ``prefix``): (step, training seconds); (0, 0.0) if nothing was saved. A state
        saved after the last of ``total`` steps (a run stopped in its test) is only
        tested again; one stopped while its results were written (:attr:`finishing`)
        writes them again. Rank 0 holds ``out`` from here on: a second command training
        into it is refused, and so is this one where another finished there meanwhile
        (its ``results``, unless ``overwrite``). :attr:`total` is ``total``, or the
        saved run's length (``earlier_total`` for a file that recorded none: an earlier
        simclr's count)."""
        self.total = total
        if self.out is not None and dist.is_main() and self.out.is_dir():
            self.held = lock_folder(self.out)
            self.finishing = stopped_while_finishing(self.out, self.results)
            self._check_results_free()
        if self.path is None or not self.path.exists():
            return 0, 0.0
        try:
            ckpt = load_checkpoint(self.path)
        except SimCLRError as exc:  # kept for the user to look at, unless told otherwise
            if self.overwrite:
                return self.start_over("cannot be read")
            raise SimCLRError(f"{exc}; delete it or pass --overwrite to start the "
                              f"{self.what} in {self.out} again") from None
        # (a setting added since reads as what the saved training did: its default)
        saved = {**ADDED_SETTINGS, **(ckpt.get("settings") or {})}
        # The same weights under another path: the run folder was moved or renamed since
        moved = saved.get("weights") is not None and saved.get("weights") == \
            self.settings.get("weights")
        differ_keys = [k for k, v in self.settings.items()
                       if not _same_setting(k, saved.get(k), v, moved)]
        differ = [_difference(k, saved.get(k), self.settings[k]) for k in differ_keys]
        anew = read_anew(saved, self.train) if differ else None
        if differ and self.overwrite:
            return self.start_over(f"has other settings ({'; '.join(differ)})")
        if anew is not None:  # (its own command is this one: it would not continue it)
            raise SimCLRError(f"{self.out} holds an unfinished {self.what} ({self.path.name}) "
                              f"that cannot continue: {anew}; pass --overwrite to start "
                              "this one over it, or choose another --out")
        if differ:
            way = self._listed_subset_hint(differ_keys, saved)
            raise SimCLRError(f"{self.out} holds an unfinished {self.what} ({self.path.name}) "
                              f"with other settings ({'; '.join(differ)}); {way}, pass "
                              "--overwrite to start this one over it, or choose another --out")
        load_weights(model, ckpt, prefix)
        with readable_state(ckpt, "optimizer or step state"):
            check_state_shapes(optimizer, ckpt["optimizer"], model)  # (torch does not)
            optimizer.load_state_dict(ckpt["optimizer"])
            load_scaler(scaler, ckpt["scaler"])
            step, elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
            self.tally = saved_tally(ckpt.get("epoch_tally"))  # (None: an older file's)
            self.skipped = [(str(path), str(reason))
                            for path, reason in ckpt.get("skipped_images") or []]
        self.metrics = dict(ckpt.get("metrics") or {})
        self.run_id = str(ckpt.get("run_id") or self.run_id)
        saved_total = ckpt.get("total_steps", earlier_total)
        if total is not None and isinstance(saved_total, int) and saved_total != total:
            log(f"note: the {self.what} keeps the length it started with, {saved_total} "
                f"steps ({total} as counted now)", verbose)
            self.total = total = saved_total
        if total is not None and step >= total:
            log(f"the {self.what} in {self.out} finished its {step} steps before it was "
                "stopped: testing it again", verbose)
        else:
            log(f"resuming the {self.what} in {self.out} from step {step}", verbose)
        return step, elapsed

    def _check_results_free(self) -> None:
        """The command checked ``results`` free before it took ``out``; another one that
        held it meanwhile may have finished there: refused, its results kept."""
        # (the ignores here and below: called only for a run with an out)
        found = next((self.out / name for name in self.results  # type: ignore[operator]
                      if os.path.lexists(self.out / name)), None)  # type: ignore[operator]
        if found is not None and not self.overwrite and not self.finishing:
            self.release()
            raise taken(found)

    def trained_stats(self, stats: dict[str, Any], start_step: int) -> dict[str, Any]:
        """``stats`` of :func:`simclr.classify.train_classifier` from ``start_step``; a run
        resumed after its last step trained nothing now: its loss and top-1 are the saved
        ones."""
        if start_step > 0 and stats["steps"] == start_step:
            stats.update({k: self.metrics.get(k) for k in ("train_loss", "train_top1")})
        return stats

    @contextmanager
    def testing(self) -> Iterator[None]:
        """The test of a finished training, saved before it (:meth:`save`), and the
        writing of its results: a stop during them (Ctrl-C; SIGTERM, interrupts.Terminated)
        leaves that state for the same command to test again and write the results
        (:attr:`finishing`), and the exception names it (``kept_training``: the cli
        says so); ``out`` is let go."""
        try:
            yield
        except KeyboardInterrupt as exc:
            if self.path is not None and self.path.exists():
                exc.kept_training = str(self.path)  # type: ignore[attr-defined]
            self.release()
            raise

    def start_over(self, why: str) -> tuple[int, float]:
        """--overwrite: the saved unfinished run, which ``why`` says cannot be
        continued, is deleted (set aside with ``overwrite`` "keep") and this one starts
        at step 0. (The same settings are
        continued even then: an exact resume ends where a new start would.)"""
        if dist.is_main() and self.overwrite == "keep":
            kept = set_aside(self.out, (self.path.relative_to(self.out).as_posix(),))  # type: ignore[arg-type, union-attr]
            print(f"note: the unfinished {self.what} in {self.out} ({self.path.name}) {why}; "  # type: ignore[union-attr]
                  f"kept as {kept}, starting over", file=sys.stderr)
        elif dist.is_main():
            print(f"note: --overwrite: the unfinished {self.what} in {self.out} "
                  f"({self.path.name}) {why}; deleted, starting over", file=sys.stderr)  # type: ignore[union-attr]
            self.path.unlink(missing_ok=True)  # type: ignore[union-attr]
        self.finishing = False  # (the results there are then another run's)
        return 0, 0.0

    def checkpointing(self, save: Callable[[int, float], Any], every: int,
                      on_step: Callable[[int, StopFlag], None] | None,
                      minutes: float) -> Checkpointing:
        """The training's :class:`Checkpointing`: ``save`` every ``every`` steps or
        ``minutes``, each with the running epoch's tally; the state it continues from, if
        any, is the latest kept, and the same command continues from it."""
        kept = self.path if self.path is not None and self.path.exists() else None
        return Checkpointing(save, every, on_step, every_s=60 * minutes,
                             keep_tally=self.keep_tally, last=kept,
                             again="run the same command again")

    def keep_tally(self, tally: dict[str, float]) -> None:
        """The running epoch's tally, stored by the next :meth:`save`
        (:attr:`Checkpointing.keep_tally`)."""
        self.tally = tally

    def save(self, blob: dict[str, Any], scaler: torch.amp.GradScaler) -> str:
        """Write a classifier checkpoint (classifiers.classifier_checkpoint, with its
        optimizer) as the partial run, with the running epoch's :attr:`tally` (rank 0
        only: every process holds the same state); returns its path."""
        if dist.is_main():  # argv: the command that continues it (simclr info shows it)
            blob.update(scaler=scaler.state_dict(), settings=self.settings,
                        argv=command_line(), cwd=working_folder())  # (its paths may be relative)
            if self.total is not None:
                blob["total_steps"] = self.total
            if self.tally is not None:
                blob["epoch_tally"] = self.tally
            save_checkpoint(blob, self.path.parent, self.path.name)  # type: ignore[union-attr]
        return str(self.path)

    def discard(self) -> None:
        """The finished run's own files, all written, supersede the partial one (kept
        until then: see :attr:`finishing`); ``out`` is let go."""
        if self.path is not None and dist.is_main():
            self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """``out`` is let go (a second command may write into it)."""
        if self.held is not None:
            self.held.close()
            self.held = None


def read_anew(saved: dict[str, Any], train: Any) -> str | None:
    """Why a saved unfinished training (its ``settings``) cannot continue on ``train``
    (read of DIR/Train) where its release read the training folder's splits as its
    classes and this one reads DIR as its split (resume.split_read_anew_why); else None."""
    classes = saved.get("classes") or (saved.get("train") or [None, None])[1]  # (linear's)
    folder = getattr(train, "name", None)
    if not isinstance(folder, str) or not isinstance(classes, list) \
            or list(train.classes) == classes:
        return None
    return split_read_anew_why(str(Path(folder).parent), classes, f"{train.num_images} images",
                               "unfinished training's", reads=Path(folder))


# Settings added after trainings were saved without them, each with the value those
# trainings had (a fine-tuning saved before --weight-decay trained without decay).
ADDED_SETTINGS: dict[str, Any] = {"weight_decay": 0.0}


def _same_setting(key: str, saved: Any, now: Any, moved: bool) -> bool:
    """Whether a continuation's setting matches the saved one; ``moved``: the encoder's
    weights are the same (its digest), so its checkpoint's path may differ (a moved run:
    it was refused, and --overwrite threw the training away)."""
    if key == "source" and moved and isinstance(saved, list) and isinstance(now, list):
        return saved[1:] == now[1:]  # (source: [checkpoint path, step, ...])
    return saved == now


def _difference(key: str, saved: Any, now: Any) -> str:
    """A setting that differs, with both values (a mapping's differing entries, each;
    a long value by its end, where a path differs: 'source file: '...a/last.pt' saved,
    '...b/last.pt' now'); a key alone said nothing of which encoder was which."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return "; ".join(_difference(f"{key} {k}", saved.get(k), now.get(k))
                         for k in sorted({*saved, *now}, key=str) if saved.get(k) != now.get(k))

    def shown(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else repr("..." + str(value)[-50:])

    return f"{key}: {shown(saved)} saved, {shown(now)} now"
