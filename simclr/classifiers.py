"""Classifiers to and from checkpoints: what linear evaluation, fine-tuning and the
supervised baseline save (the encoder's ``encoder.*`` weights, ``fc.*``, ``neck.*``
where fine-tuning kept a head layer, and their ``classes``), the classifier a
``--checkpoint`` names, whether it is stale, and the note that a model is of an
unfinished training.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simclr.checkpoint import CLASSIFIER_FILES, LAST, PARTIAL_SUFFIX, is_complete, save_checkpoint
from simclr.checkpoint_read import checkpoint_file, load_checkpoint, load_weights
from simclr.config import Config
from simclr.errors import SimCLRError, is_amount
from simclr.launch import shell_quote
from simclr.models import Classifier, ProjectionHead, build_model
from simclr.pretrained import config_at_side, encoder_from_checkpoint
from simclr.settings import config_from_dict


def encoder_config(encoder: nn.Module, image_size: int, base: dict[str, Any] | None,
                   head: ProjectionHead | None = None) -> dict:
    """The ``config`` of a checkpoint: ``base`` (the source checkpoint's) or one that
    describes the encoder (and ``head``, whose first layer a classifier may keep), so
    :func:`encoder_from_checkpoint` and :func:`classifier_from_checkpoint` rebuild them."""
    if base is not None:  # at the side it runs at now
        # (the ignores: an encoder's attributes, which nn.Module's typing cannot name)
        return config_at_side(base, encoder.cifar_stem, image_size)  # type: ignore[arg-type]
    cfg = Config()
    cfg.model.arch, cfg.model.width = encoder.arch, float(encoder.width)  # type: ignore[assignment, arg-type]
    cfg.model.cifar_stem = bool(encoder.cifar_stem)
    if head is not None and len(head.layers) > 0:
        first = head.layers[0]
        cfg.model.head = "mlp" if len(head.layers) > 1 else "linear"
        cfg.model.head_layers = len(head.layers)
        cfg.model.head_hidden_dim = int(first[0].out_features)  # type: ignore[index]  # (a block)
        cfg.model.head_out_dim = int(head.out_dim)
        cfg.model.head_batch_norm = first[0].bias is None  # type: ignore[index]  # BN heads have bias-free Linears
    cfg.augment.size = image_size
    return cfg.to_dict()


def classifier_checkpoint(
    kind: str, model: nn.Module, config: dict[str, Any], classes: list[str], step: int,
    elapsed: float, metrics: dict[str, Any], optimizer: torch.optim.Optimizer | None = None,
    encoder_step: int | None = None, features: str = "pretrained", run_id: str | None = None,
    encoder_unfinished: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A simclr-checkpoint holding a Classifier: 'encoder.*' (+ 'neck.*') and 'fc.*';
    ``step``: its own training's, ``encoder_step``: the pretraining step of the encoder
    it started from (the provenance of what it computes), unless ``features`` says it
    started from none ('random init': the baseline, recorded as such); ``run_id``: the
    training's (supervised, fine-tuning: checkpoint.new_run_id); ``encoder_unfinished``:
    {step, total_steps} of the unfinished training the encoder came from (the
    evaluation's ``source["unfinished"]``), which predict and export then say."""
    blob = {
        "format": "simclr-checkpoint", "version": 1, "kind": kind, "config": config,
        "model": model.state_dict(),  # save_checkpoint moves it to the CPU
        "classes": list(classes), "num_classes": len(classes), "step": step,
        "elapsed": elapsed, "rng": {"torch": torch.get_rng_state()},
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
    }
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    if features != "pretrained":
        blob["features"] = features
    elif encoder_step is not None:
        blob["encoder_step"] = int(encoder_step)
    if run_id is not None:
        blob["run_id"] = run_id
    if encoder_unfinished is not None and features == "pretrained":
        blob["encoder_unfinished"] = dict(encoder_unfinished)
    return blob


def save_classifier(blob: dict[str, Any], out: Path, name: str, overwrite: bool = True) -> str:
    """Write a :func:`classifier_checkpoint` as ``out/checkpoints/name``; returns its path
    (``overwrite`` False: one another process wrote meanwhile is kept, refused:
    :func:`simclr.checkpoint.save_checkpoint`'s ``replace``)."""
    return str(save_checkpoint(blob, out / "checkpoints", name, None, replace=overwrite))


CLASSIFIER_KINDS = ("linear", "finetune", "supervised")
# The results file each classifier's evaluation writes into the same --out, recording
# the checkpoint (and step) the classifier's encoder came from.
_RESULTS_BESIDE = {"linear.pt": ("linear_eval.json", "simclr linear-eval"),
                   "finetune.pt": ("finetune.json", "simclr finetune")}


def classifier_file(path: str | os.PathLike) -> Path:
    """The file a classifier's ``--checkpoint`` names: :func:`checkpoint_file`, except
    that a run folder that also holds the classifier an evaluation wrote into it
    (``simclr linear-eval --checkpoint RUN --out RUN``) gives that classifier, not the
    pretraining run's own last checkpoint. Such a classifier must be of the run's encoder
    as it is now: one fitted on an earlier step (the run trained on since) is refused,
    naming both steps; naming the file itself uses it as it is."""
    found = checkpoint_file(path)
    if not Path(path).expanduser().is_dir() or found.name in CLASSIFIER_FILES:
        return found
    beside = [found.parent / n for n in CLASSIFIER_FILES if is_complete(found.parent / n)]
    if beside and _kind(found) in CLASSIFIER_KINDS:  # a supervised run's: its own model
        beside.insert(0, found)  # (it was passed over for the evaluation's, unsaid)
    if len(beside) > 1:
        raise SimCLRError(f"{found.parent} holds several classifiers "
                          f"({', '.join(f.name for f in beside)}); name one")
    if beside:
        stale = why_stale(beside[0], found)
        if stale:
            run = shell_quote(str(Path(path)))
            raise SimCLRError(
                f"{beside[0]} {stale}: fit it again (`{_RESULTS_BESIDE[beside[0].name][1]} "
                f"--checkpoint {run} --out {run} --overwrite` with the data flags it was "
                "fitted with) or pass that file as --checkpoint to use it as it is")
    return beside[0] if beside else found


def _kind(path: Path) -> str | None:
    """The kind of checkpoint ``path`` is, read without its tensors (None: unreadable,
    which its loading says)."""
    try:
        return load_checkpoint(path, mmap=True).get("kind")
    except SimCLRError:
        return None


def classifier_source(classifier: Path) -> dict[str, Any]:
    """The ``source`` (checkpoint, step) that the results file written with the
    classifier ``RUN/checkpoints/{linear,finetune}.pt`` records; {} where there is none."""
    name = _RESULTS_BESIDE.get(classifier.name, ("", ""))[0]
    try:
        results = (classifier.parent.parent / name).read_text(encoding="utf-8")
        source = json.loads(results).get("source")
    except (OSError, ValueError, AttributeError):
        return {}
    return source if isinstance(source, dict) else {}


def why_stale(classifier: Path, run_checkpoint: Path) -> str | None:
    """Why the classifier a run folder holds is not of the run's encoder as it is now
    (``run_checkpoint``, its last.pt): 'was fitted on step S of this run, which has
    trained on to step N'; None when it is, or when nothing records its step. (Another
    run's encoder is never evaluated into a run's folder: the commands refuse that.)"""
    step = classifier_source(classifier).get("step")
    try:
        now = load_checkpoint(run_checkpoint, mmap=True).get("step")
    except SimCLRError:
        return None
    if isinstance(step, int) and isinstance(now, int) and step != now:
        return f"was fitted on step {step} of this run, which has trained on to step {now}"
    return None


def classifier_from_checkpoint(ckpt: dict[str, Any]) -> tuple[Classifier, dict[str, Any],
                                                               list[str]]:
    """The classifier of a linear-eval, fine-tuning or supervised checkpoint, in eval mode.

    Returns (model: images (B,3,S,S) -> logits (B,C), encoder spec, the C class names).
    """
    kind = ckpt.get("kind")
    if kind not in CLASSIFIER_KINDS:
        raise SimCLRError(f"this checkpoint ({kind or 'unknown kind'}) holds no classifier; "
                          "train one with `simclr linear-eval --out RUN` or `simclr finetune`")
    classes = ckpt.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its classes are "
                          "not a list of names")
    if len(classes) < 2:  # (linear-eval and fine-tuning need two classes to tell apart)
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its classifier "
                          f"has {len(classes)} class{'es' * (len(classes) != 1)} (it tells "
                          "2 or more apart)")
    # one name on two outputs: predict would score a folder's class against one of them
    repeated = next((c for i, c in enumerate(classes) if c in classes[:i]), None) \
        if len(set(classes)) < len(classes) else None
    if repeated is not None:
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its class "
                          f"{repeated!r} is named twice")
    encoder, spec = encoder_from_checkpoint(ckpt)
    state = ckpt["model"]
    neck = None
    if any(k.startswith("neck.") for k in state):  # fine-tuned from the head's first layer
        head = build_model(config_from_dict(ckpt["config"]).model, spec["image_size"]).head
        neck = head.layers[0]
    weight = state.get("fc.weight")
    classes = [str(c) for c in ckpt.get("classes", [])]
    if weight is None or weight.dim() != 2 or len(classes) != weight.shape[0]:
        raise SimCLRError("the checkpoint's classifier is incomplete (no fc weights matching "
                          "its class list)")
    if not all(torch.isfinite(state[k]).all() for k in ("fc.weight", "fc.bias")
               if isinstance(state.get(k), torch.Tensor)):
        # (nan probabilities and no class predicted, as embed refuses non-finite features)
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its "
                          "classifier's weights are not finite")
    # (a narrower fc built around the file's width loaded strictly, and predict failed
    # on the first matrix product only after embedding the whole folder)
    gives = int(encoder.feature_dim) if neck is None else \
        int(neck[0].out_features)  # type: ignore[index]  # (the head's block: a Linear first)
    if weight.shape[1] != gives:
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its classifier "
                          f"reads {weight.shape[1]} features, not the {gives} its "
                          f"{'head layer' if neck is not None else 'encoder'} gives")
    model = Classifier(encoder, len(classes), neck=neck, in_dim=gives)
    load_weights(model, ckpt)
    return model.eval(), spec, classes


def note_unfinished(path: Path, ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """Say on stderr that the model ``path`` holds is from a training that has not
    finished (:func:`unfinished_of`): the results of the evaluations, predict's
    predictions and an export's weights are those of a half-trained model, which nothing
    else in them shows. Returns {step, total_steps} of that training where it said so
    (what a card or an export records of it), else None."""
    found = unfinished_of(path, ckpt)
    if found is None:
        return None
    print(f"note: {path} is {found[0]}", file=sys.stderr)
    return found[1]


def unfinished_of(path: Path, ckpt: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Whether the model ``path`` holds is from a training that has not finished (a
    pretraining or supervised run stopped or still training, an evaluation's partial
    state, an export of one, a classifier fitted on one): what it is, in words, and
    {step, total_steps} of that training (:func:`unfinished_state`); None: finished."""
    step, total = ckpt.get("step"), ckpt.get("total_steps")
    kind = ckpt.get("kind")
    if kind == "encoder" or (kind in ("linear", "finetune")
                             and not path.name.endswith(PARTIAL_SUFFIX)):
        # an export, or a finished classifier: its source's stopped training, if any
        at = ckpt.get("unfinished" if kind == "encoder" else "encoder_unfinished")
        if not isinstance(at, dict):
            return None
        at = _whole_amounts(at)
        what = "an export" if kind == "encoder" else "a classifier on an encoder"
        return f"{what} of {unfinished_training(at['step'], at['total_steps'])}", at
    if path.name.endswith(PARTIAL_SUFFIX):
        then = "; its command continues it when run again"
    elif kind == "pretrain" and path.name != LAST:
        return None  # a step of a run chosen on purpose (accuracy against steps)
    elif kind in ("supervised", "pretrain") and isinstance(step, int) \
            and isinstance(total, int) and step < total:
        # (the run's state: a periodic checkpoint named may be of a run finished since)
        then = _how_it_goes_on(path, kind) if path.name == LAST else ""
    else:
        return None
    return f"{unfinished_training(step, total)}{then}", unfinished_state(ckpt)


def unfinished_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """{step, total_steps} of the training whose weights ``ckpt`` holds: its own, or an
    exported encoder's record of its source's (``unfinished``); each None where not a
    whole number. (A classifier's record of its encoder's: :func:`unfinished_of`.)"""
    at = ckpt.get("unfinished") if ckpt.get("kind") == "encoder" else ckpt
    return _whole_amounts(at if isinstance(at, dict) else {})


def _whole_amounts(at: dict[str, Any]) -> dict[str, Any]:
    return {k: at.get(k) if is_amount(at.get(k), whole=True) else None
            for k in ("step", "total_steps")}


def _how_it_goes_on(last: Path, kind: str) -> str:
    """'; its run is still training' (its folder held), '; its run diverged' (its
    summary says so: resuming trains into the same blow-up), else the command that
    continues the run whose ``last.pt`` is ``last``."""
    from simclr.files import folder_holder, read_json

    run = last.parent.parent
    if folder_holder(run):
        return "; its run is still training"
    if (read_json(run / "summary.json") or {}).get("status") == "diverged":
        return "; its run diverged"
    from simclr.info_text import resume_command

    how = resume_command(run, kind)  # (as info says it: --processes, a sweep's cell)
    if how.startswith(("simclr sweep", "the sweep")):
        return f"; continue it with: {how}"
    return f"; `{how}` continues it"


def unfinished_training(step: Any, total: Any) -> str:
    """'an unfinished training (step 4 of 9)', as predict and export say it and info
    shows a program's (the planned steps where known)."""
    # A received file's step of another kind is never printed as it is: a terminal's
    # escapes, or a list nested 24 deep that printed as a 117 MB line.
    if not is_amount(step, whole=True):
        return "an unfinished training (its recorded step is damaged)"
    of = f" of {total}" if is_amount(total, whole=True) else ""
    return f"an unfinished training (step {step}{of})"
