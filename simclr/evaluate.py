"""Linear evaluation of a frozen encoder: a linear classifier on its features.

Protocols of Chen et al. 2020 (Sec. 2.3 and App. B.6, B.8), applied to the
representation h = f(x) (the encoder's pooled output) by default, or to a layer of the
projection head (``layer='z'`` or ``'gK'``: Fig. 8 compares them):

* ``run_linear_eval(protocol="lbfgs")``: the paper's transfer protocol (App. B.8):
  center-crop features computed once, L2-regularised multinomial logistic regression
  fitted by L-BFGS (:mod:`simclr.logistic`), the regularisation chosen on a held-out
  split of the training set.
* ``run_linear_eval(protocol="sgd")``: the paper's ImageNet protocol (App. B.6): a linear
  layer on the frozen encoder, trained with Nesterov SGD on crop + flip views.

The weighted kNN protocol is :mod:`simclr.knn`. Features come from
:mod:`simclr.features`, accuracies and files from :mod:`simclr.results`.
The encoder is never modified: it runs in eval mode (BatchNorm uses its running
statistics and does not update them) without gradients, and its train/eval flags are
restored afterwards. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from simclr import distributed as dist
from simclr.backbones import TorchvisionEncoder
from simclr.checkpoint import CHECKPOINTS, new_run_id
from simclr.classifier_setup import (
    crop_flip_config,
    earlier_total_steps,
    fitted_batch,
    init_linear,
    nesterov_sgd,
    run_folder,
    scheduled_lr,
    total_steps,
)
from simclr.classify import evaluate_classifier, train_classifier
from simclr.errors import SimCLRError
from simclr.features import (
    channels_last_weights,
    check_labeled,
    extract_features,
    resolve_runtime,
    restore_flags,
    train_flags,
)
from simclr.logistic import check_l2, logistic_regression
from simclr.models import Classifier, LinearProbe, ResNet
from simclr.partial import PartialRun, partial_weights_digest, read_anew
from simclr.results import (
    RESULTS,
    Ranked,
    accuracy_summary,
    feature_sizes,
    finish_results,
    log,
)


def linear_eval_sgd(
    encoder: nn.Module, train: Any, test: Any, num_classes: int, *, image_size: int,
    epochs: float = 90, batch_size: int = 256, lr: float = 0.1, momentum: float = 0.9,
    crop_scale: tuple[float, float] = (0.08, 1.0), crop_sampler: str = "torchvision",
    seed: int = 0, device: str | torch.device = "cpu", precision: str = "fp32",
    channels_last: bool = True, workers: int | None = None, verbose: bool = True,
    partial_run: PartialRun | None = None, checkpoint_every: int = 0,
    checkpoint_minutes: float = 0.0,
    on_step: Callable[[int, Any], None] | None = None, config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Ranked | None, np.ndarray | None, nn.Linear]:
    """The ImageNet linear protocol (App. B.6) on a frozen encoder.

    Each step: crop + flip views (B,3,S,S) -> frozen encoder (eval mode, no grad) ->
    h (B,D) -> linear layer (models.LinearProbe), cross-entropy, Nesterov SGD with lr
    ``lr`` x B/256, no weight decay, cosine decay per step without warm-up (the loop of
    classify.train_classifier). Test: center-crop features. ``partial_run``: where the
    unfinished training is kept (every ``checkpoint_every`` steps or
    ``checkpoint_minutes``, on SIGTERM/SIGINT/SIGHUP/SIGUSR1, and once finished, before the test: a
    stop during the test leaves the same command only the test) and continued from.
    ``channels_last``: views and the encoder's weights in that memory format (the
    faster), the encoder's own layout restored after.
    Returns (summary,
    what the results need of the test logits (M, C) (:class:`simclr.results.Ranked`,
    each batch reduced as it came: classify.evaluate_classifier), test labels (M,), the
    linear layer on CPU); those and the labels are None if a signal stopped the training
    (summary ``status`` 'preempted'). In a process group (torchrun) each process takes
    its share of every batch, DDP averages the layer's gradients and rank 0 tests (the
    others get None for both).
    The summary's ``earlier_s``: the training seconds of earlier sessions (resumed).
    """
    device = torch.device(device)
    batch = fitted_batch(batch_size, train.num_images, "training", verbose)
    total = total_steps(epochs, train.num_images, batch)
    aug_cfg = crop_flip_config(image_size, crop_scale, crop_sampler)
    probe = _new_probe(encoder, num_classes, image_size, seed, device)
    optimizer = nesterov_sgd(probe.fc.parameters(), lr, batch, momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    partial_run = partial_run or linear_partial(None)
    step, elapsed = partial_run.resume(probe.fc, optimizer, scaler, verbose, prefix="fc.",
                                       total=total, earlier_total=earlier_total_steps(
                                           epochs, train.num_images, batch))
    total = partial_run.total or total  # (a continued run's own length)
    save_partial = partial(_save_layer, partial_run, probe.fc, optimizer, scaler,
                           config, train.classes)
    # (the caller's encoder: its layout restored after, as the test's pass restores it)
    with channels_last_weights(encoder, channels_last), _frozen(encoder):
        stats = train_classifier(
            dist.wrap_ddp(probe, device), train, np.arange(train.num_images), aug_cfg,
            total_steps=total, batch_size=batch, optimizer=optimizer,
            lr_fn=lambda step, p: scheduled_lr(step, total, p), seed=seed, device=device,
            precision=precision, channels_last=channels_last, workers=workers,
            verbose=verbose, name="linear eval", start_step=step, elapsed=elapsed,
            scaler=scaler, tally=partial_run.tally,
            checkpointing=None if partial_run.out is None else partial_run.checkpointing(
                save_partial, checkpoint_every, on_step, checkpoint_minutes))
    stats = partial_run.trained_stats(stats, step)
    summary = {"epochs": epochs, "batch_size": batch, "lr": lr,
               "peak_lr": optimizer.param_groups[0]["peak_lr"], "momentum": momentum,
               "crop_scale": list(crop_scale), "crop_sampler": crop_sampler,
               "processes": dist.world_size(), "earlier_s": elapsed, **stats}
    if partial_run.out is not None and stats["steps"] > step:  # kept, finished too: a stop
        # during the test loses only the test (see finetune)
        checkpoint = save_partial(stats["steps"], stats["train_s"], stats)
        if stats["status"] == "preempted":
            summary["checkpoint"] = checkpoint
    if stats["status"] == "preempted" or not dist.is_main():  # rank 0 tests
        return summary, None, None, probe.fc
    with partial_run.testing():  # stopped: the same command only tests again
        ranked, test_y = evaluate_classifier(probe, test, image_size,
                                             batch_size=batch // dist.world_size(),
                                             device=device, precision=precision,
                                             channels_last=channels_last, workers=workers)
    return summary, ranked, test_y, probe.fc.float().cpu()


def _new_probe(encoder: nn.Module, num_classes: int, image_size: int, seed: int,
               device: torch.device) -> LinearProbe:
    """A new linear layer (:func:`classifier_setup.init_linear`, its weights drawn from ``seed``)
    on the frozen encoder's features, on ``device``."""
    probe = LinearProbe(encoder, num_classes, fc=init_linear(
        feature_width(encoder, image_size), num_classes, torch.Generator().manual_seed(seed)))
    return probe.to(device)


@contextmanager
def _frozen(encoder: nn.Module) -> Iterator[None]:
    """The encoder frozen while a layer on it trains: its parameters take no gradient (so
    DDP averages the layer's gradients only, never the encoder's: none), and its
    train/eval flags and ``requires_grad`` are restored afterwards."""
    flags = train_flags(encoder)
    frozen = [p for p in encoder.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)
        yield
    finally:
        restore_flags(flags)
        for p in frozen:
            p.requires_grad_(True)


def _save_layer(partial_run: PartialRun, fc: nn.Linear, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, config: dict[str, Any] | None,
                classes: Sequence[str], step: int, seconds: float,
                stats: dict[str, Any] | None = None) -> str:
    """An unfinished SGD linear evaluation's state (``checkpoints/linear-partial.pt``):
    the layer ``fc`` and its optimizer, after ``step`` steps and ``seconds`` of training
    (the training's ``stats`` when it finished, for its results after a stop in the
    test); returns its path."""
    from simclr.classifiers import classifier_checkpoint
    from simclr.config import Config

    layer = nn.ModuleDict({"fc": fc})  # the frozen encoder comes from --checkpoint
    return partial_run.save(classifier_checkpoint(
        "linear-partial", layer, config or Config().to_dict(), list(classes), step,
        seconds, stats or {}, optimizer, run_id=partial_run.run_id), scaler)


def linear_partial(out: Path | None, settings: dict[str, Any] | None = None,
                   overwrite: bool | str = False, train: Any = None) -> PartialRun:
    """Where an unfinished SGD linear evaluation is kept: ``out/checkpoints/linear-partial.pt``
    (``train``: the training set, PartialRun.train)."""
    return PartialRun(out, "linear", "linear evaluation", settings or {}, overwrite,
                      results=RESULTS["linear-eval"], train=train)


def feature_width(encoder: nn.Module, image_size: int) -> int:
    """The width of what ``encoder`` returns for (B,3,S,S) images: its ``feature_dim``, or
    measured on two blank images in eval mode (raw pixels)."""
    if hasattr(encoder, "feature_dim"):
        return int(encoder.feature_dim)  # type: ignore[arg-type]  # (an int)
    flags = train_flags(encoder)
    encoder.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
            return int(encoder(torch.zeros(2, 3, image_size, image_size, device=device))
                       .flatten(1).shape[1])
    finally:
        restore_flags(flags)


def _check_linear_eval(protocol: str, run_dir: str | Path | None, batch_size: int,
                       val_fraction: float, epochs: float, lr: float, image_size: int,
                       crop_scale: tuple[float, float], crop_sampler: str,
                       overwrite: bool, l2: float | None = None, train: Any = None) -> None:
    """The linear evaluation's settings, checked before any work (one line each).
    ``overwrite``: an unfinished sgd run in ``run_dir`` is replaced when an lbfgs one
    finishes there (``train``: the training set, which may say it cannot continue)."""
    if protocol not in ("lbfgs", "sgd"):
        raise SimCLRError(f"--protocol: unknown value {protocol!r} (choose from lbfgs, sgd)")
    _positive(batch_size, "batch-size")
    if protocol == "sgd":
        _positive(epochs, "epochs")
        _positive(lr, "lr")
        crop_flip_config(image_size, crop_scale, crop_sampler)
        return
    if not 0 < val_fraction < 1:
        raise SimCLRError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    if l2 is not None:  # (before the features: the fit's own check comes after them)
        check_l2(l2)
    if dist.world_size() > 1:
        raise SimCLRError("--protocol lbfgs runs in one process; with several use "
                          "--protocol sgd")
    unfinished = linear_partial(None if run_dir is None else Path(run_dir).expanduser()).path
    if unfinished is not None and unfinished.exists() and not overwrite:
        anew = _unfinished_read_anew(unfinished, train)
        way = f" that cannot continue: {anew};" if anew else \
            "; rerun its own command to continue it,"
        raise SimCLRError(f"{run_dir} holds an unfinished linear evaluation --protocol sgd "
                          f"({unfinished.name}){way} pass --overwrite to replace it, or "
                          "choose another --out")


def _unfinished_read_anew(path: Path, train: Any) -> str | None:
    """partial.read_anew of the unfinished sgd training at ``path`` (None where it cannot
    be read: the sgd command names that)."""
    from simclr.checkpoint_read import load_checkpoint

    try:
        saved = load_checkpoint(path, mmap=True).get("settings")  # (not its tensors)
    except SimCLRError:
        return None
    return read_anew(saved, train) if isinstance(saved, dict) else None


@dist.process_group()
def run_linear_eval(
    encoder: nn.Module, train: Any, test: Any, run_dir: str | Path | None, *,
    image_size: int, protocol: str = "lbfgs", batch_size: int = 256,
    device: str | torch.device = "auto", precision: str = "auto", workers: int | None = None,
    channels_last: bool = True, seed: int = 0,
    # lbfgs protocol
    l2: float | None = None, l2_grid: Sequence[float] | None = None,
    val_fraction: float = 0.1, max_iter: int = 1000,
    # sgd protocol
    epochs: float = 90, lr: float = 0.1, momentum: float = 0.9,
    crop_scale: tuple[float, float] = (0.08, 1.0), crop_sampler: str = "torchvision",
    verbose: bool = True, config: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None, checkpoint_every: int = 500,
    checkpoint_minutes: float = 30.0, on_step: Callable[[int, Any], None] | None = None,
    overwrite: bool | str = False,
) -> dict[str, Any]:
    """``simclr linear-eval``: a linear classifier on the frozen encoder's h (or a head layer).

    Its flags: ``simclr linear-eval --help`` (lbfgs: an l2 grid of 13 values in [1e-6, 1]
    chosen on 10% held out; sgd: 90 epochs at lr 0.1 x B/256). The sgd training's 90
    epochs of ImageNet survive interruptions, as fine-tuning does (an unfinished training
    is kept in ``--out`` and the same command continues it; results ``status``
    'preempted').

    ``lbfgs`` (default): features of the evaluation transform, computed once, then
    :func:`logistic_regression`. ``sgd``: :func:`linear_eval_sgd`. Writes
    ``linear_eval.json``, ``linear_eval_confusion.png`` and the classifier
    (:func:`save_linear_classifier`, ``config``: the source checkpoint's) under
    ``run_dir`` (``overwrite``: replacing those of an earlier run there, and an
    unfinished sgd training that cannot be continued, deleted once this run is saved;
    "keep": that one set aside as it starts, as a sweep keeps what it evaluates anew);
    returns the results dict.
    """
    _check_linear_eval(protocol, run_dir, batch_size, val_fraction, epochs, lr, image_size,
                       crop_scale, crop_sampler, bool(overwrite), l2, train)
    verbose = verbose and dist.is_main()  # rank 0 speaks for all the processes
    num_classes = check_labeled(train, test)
    out = run_folder(run_dir, RESULTS["linear-eval"], bool(overwrite))  # rank 0 writes
    unfinished = linear_partial(out, overwrite=overwrite)
    if protocol == "lbfgs" and overwrite == "keep" and unfinished.path is not None \
            and unfinished.path.exists():  # (--overwrite: deleted once this one is saved)
        unfinished.start_over("is of --protocol sgd")
    dev, prec = resolve_runtime(device, precision)
    run = _LinearEval(encoder=encoder, train=train, test=test, num_classes=num_classes, out=out,
                      image_size=image_size, batch_size=batch_size, device=dev, precision=prec,
                      channels_last=channels_last, workers=workers, seed=seed, verbose=verbose,
                      config=config, source=source, overwrite=bool(overwrite))
    start = time.perf_counter()
    if protocol == "lbfgs":
        fitted = _fit_lbfgs(run, l2, l2_grid, val_fraction, max_iter)
    else:
        fitted = _fit_sgd(run, epochs, lr, momentum, crop_scale, crop_sampler,
                          checkpoint_every, checkpoint_minutes, on_step, overwrite)
        if fitted.details["status"] == "preempted":
            return {"command": "linear-eval", "protocol": protocol, **fitted.details}
        if not dist.is_main():
            return {"command": "linear-eval", "protocol": protocol, **fitted.details,
                    "rank": dist.rank()}
    return _finish_linear_eval(run, protocol, fitted, start)


@dataclass
class _LinearEval:
    """What the two protocols of :func:`run_linear_eval` share, their inputs checked: the
    frozen encoder, the labeled sets, where it runs, and the run folder (``out``; None:
    nothing is written)."""

    encoder: nn.Module
    train: Any
    test: Any
    num_classes: int
    out: Path | None
    image_size: int
    batch_size: int
    device: torch.device
    precision: str
    channels_last: bool
    workers: int | None
    seed: int
    verbose: bool
    config: dict[str, Any] | None  # the source checkpoint's, stored with the classifier
    source: dict[str, Any] | None  # what the encoder came from, recorded in the results
    overwrite: bool = False  # an earlier run's results replaced; else never another's

    def features(self, images: Any, flag: str) -> tuple[np.ndarray, np.ndarray]:
        """h float32 (N, D) and labels (N,) of ``images`` (``flag``'s, named in the
        progress shown when verbose): the evaluation transform."""
        return extract_features(self.encoder, images, self.image_size, self.batch_size,
                                self.device, self.precision, channels_last=self.channels_last,
                                workers=self.workers,
                                progress=f"features of {flag}" if self.verbose else None)


class _Fitted(NamedTuple):
    """A protocol's linear classifier on h and its test (None where nothing was tested:
    a training stopped by a signal, or another process than rank 0)."""

    details: dict[str, Any]  # the protocol's own part of the results
    scores: torch.Tensor | Ranked | None  # test scores (M, C) on CPU, or what the results
    # need of them
    test_y: np.ndarray | None  # test labels (M,)
    linear: nn.Linear  # the layer on h
    sizes: dict[str, int] | None  # num_train, num_test, num_classes (, feature_dim)
    earlier_s: float = 0.0  # training seconds of earlier sessions (a continued SGD run)
    run_id: str | None = None  # an SGD training's (kept when continued); None: a new one
    # An SGD training's unfinished state, kept until its results are all written.
    partial_run: PartialRun | None = None


def _fit_lbfgs(run: _LinearEval, l2: float | None, l2_grid: Sequence[float] | None,
               val_fraction: float, max_iter: int) -> _Fitted:
    """The transfer protocol (App. B.8): features of the evaluation transform, computed
    once, then :func:`logistic_regression` (lambda ``l2``, or chosen on a held-out split)."""
    train_x, train_y = run.features(run.train, "--train")
    test_x, test_y = run.features(run.test, "--test")
    details, scores, linear = logistic_regression(
        train_x, train_y, test_x, run.num_classes, l2=l2, l2_grid=l2_grid,
        val_fraction=val_fraction, seed=run.seed, max_iter=max_iter, device=run.device,
        verbose=run.verbose, test_y=test_y)  # (each block ranked: no (M, C) scores kept)
    return _Fitted(details, scores, test_y, linear,
                   feature_sizes(train_x, test_x, run.num_classes))


def _fit_sgd(run: _LinearEval, epochs: float, lr: float, momentum: float,
             crop_scale: tuple[float, float], crop_sampler: str, checkpoint_every: int,
             checkpoint_minutes: float, on_step: Callable[[int, Any], None] | None,
             overwrite: bool | str) -> _Fitted:
    """The ImageNet protocol (App. B.6): :func:`linear_eval_sgd`, its unfinished training
    kept in the run folder with the settings a continuation must match (``overwrite``:
    one saved with others is deleted, not refused; "keep": set aside)."""
    source, train = run.source or {}, run.train
    settings = {"test_fraction": (source.get("test") or {}).get("fraction"),
                "train": [int(train.num_images), list(train.classes)], "epochs": epochs,
                "batch_size": run.batch_size, "lr": lr, "momentum": momentum,
                "crop": [*crop_scale, crop_sampler], "seed": run.seed,
                "image_size": run.image_size,
                "source": [str(source.get(k)) for k in ("checkpoint", "step", "features")],
                "layer": source.get("layer"), "precision": run.precision,
                "weights": partial_weights_digest(run.encoder)}
    partial_run = linear_partial(run.out, settings, overwrite, train)
    details, scores, test_y, linear = linear_eval_sgd(
        run.encoder, train, run.test, run.num_classes, image_size=run.image_size,
        epochs=epochs, batch_size=run.batch_size, lr=lr, momentum=momentum,
        crop_scale=crop_scale, crop_sampler=crop_sampler, seed=run.seed, device=run.device,
        precision=run.precision, channels_last=run.channels_last, workers=run.workers,
        verbose=run.verbose, partial_run=partial_run,
        checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
        on_step=on_step, config=run.config)
    earlier_s = details.pop("earlier_s")  # elapsed_s counts the earlier sessions too
    # (the images read: an uncached folder's unreadable files, substituted in training,
    # are counted in skipped_images, as the L-BFGS protocol's features leave them out)
    sizes = None if test_y is None else {"num_train": int(train.readable_images),
                                         "num_test": int(len(test_y)),
                                         "num_classes": run.num_classes}
    return _Fitted(details, scores, test_y, linear, sizes, earlier_s, partial_run.run_id,
                   partial_run)


def _finish_linear_eval(run: _LinearEval, protocol: str, fitted: _Fitted,
                        start: float) -> dict[str, Any]:
    """The results of a tested linear classifier (``start``: when this session's work
    began), written with the classifier (:func:`save_linear_classifier`) and the
    confusion figure into the run folder, if any; returns them. An SGD training's
    finished state is kept until they all are: stopped while they are written, the
    same command tests it again and writes them (over its own)."""
    unfinished = fitted.partial_run
    replace = run.overwrite or (unfinished is not None and unfinished.finishing)
    with unfinished.testing() if unfinished is not None else nullcontext():
        results = _write_linear_eval(run, protocol, fitted, start, replace)
    if protocol == "sgd" or run.overwrite:  # (without, an lbfgs run found none at its
        # start: one there now is another process's, training)
        (unfinished or linear_partial(run.out)).discard()  # (an sgd run's finished, or an
        # --overwrite's)
    log(f"linear eval ({protocol}): top-1 {100 * results['top1']:.2f}%", run.verbose)
    return results


def _write_linear_eval(run: _LinearEval, protocol: str, fitted: _Fitted, start: float,
                       replace: bool) -> dict[str, Any]:
    """:func:`_finish_linear_eval`'s results, written (``replace``: over those there)."""
    results = {"command": "linear-eval", "protocol": protocol,
               **accuracy_summary(fitted.scores, fitted.test_y), **fitted.sizes,  # type: ignore[arg-type, dict-item]  # (tested)
               **fitted.details, "image_size": run.image_size, "precision": run.precision,
               "channels_last": run.channels_last,
               "seed": run.seed, "elapsed_s": time.perf_counter() - (start - fitted.earlier_s)}
    if run.out is not None:
        results["checkpoint"] = save_linear_classifier(run.encoder, fitted.linear,
                                                       run.image_size, run.config,
                                                       run.train.classes, results, run.out,
                                                       (run.source or {}).get("step"),
                                                       (run.source or {}).get("features"),
                                                       fitted.run_id or new_run_id(),
                                                       replace,
                                                       (run.source or {}).get("unfinished"))
    finish_results(results, run.out, "linear_eval", fitted.scores, fitted.test_y, run.train,  # type: ignore[arg-type]
                   run.test, run.source, run.verbose, replace)
    return results


def save_linear_classifier(encoder: nn.Module, linear: nn.Linear, image_size: int,
                           config: dict[str, Any] | None, classes: Sequence[str],
                           results: dict[str, Any], out: Path,
                           encoder_step: int | None = None,
                           features: str | None = None, run_id: str | None = None,
                           overwrite: bool = True,
                           encoder_unfinished: dict[str, Any] | None = None) -> str | None:
    """``out/checkpoints/linear.pt``: the encoder and the fitted layer, a classifier that
    ``simclr predict`` applies to new images. Only classifiers on h are saved (those on
    a head layer or raw pixels are evaluation baselines); returns the path or None.
    ``run_id``: the classifier's (the evaluations of it name it by that). ``overwrite``
    False: one that another process wrote meanwhile is kept (and refused, where this
    one would be saved). ``encoder_unfinished``: the stopped training the encoder is
    from (classifiers.classifier_checkpoint)."""
    from simclr.classifiers import classifier_checkpoint, encoder_config, save_classifier

    if not isinstance(encoder, (ResNet, TorchvisionEncoder)):
        log("linear eval: classifier not saved (only classifiers on h are)")
        if not overwrite:  # (one there now is another process's: its results refuse ours)
            return None
        # An earlier run's classifier there (--overwrite) would pass for this one's.
        earlier = out / CHECKPOINTS / "linear.pt"
        try:
            earlier.unlink(missing_ok=True)
        except OSError as exc:
            raise SimCLRError(f"cannot remove the earlier classifier {earlier}: "
                              f"{exc.strerror}") from None
        return None
    model = Classifier(encoder, len(classes), fc=linear)
    blob = classifier_checkpoint("linear", model, encoder_config(encoder, image_size, config),
                                 list(classes), 0, results["elapsed_s"], results,
                                 encoder_step=encoder_step, features=features or "pretrained",
                                 run_id=run_id, encoder_unfinished=encoder_unfinished)
    return save_classifier(blob, out, "linear.pt", overwrite)


def _positive(value: float, flag: str) -> None:
    if not value > 0:
        raise SimCLRError(f"--{flag} must be positive, got {value}")
