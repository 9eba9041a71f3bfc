"""A pretraining run's state: what its checkpoints hold, and how a run continues from
one exactly (weights, optimizer, scaler, step, the time budget's plan, RNG state).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simclr import distributed as dist
from simclr.checkpoint import new_run_id, periodic_name, save_checkpoint
from simclr.checkpoint_read import load_scaler, load_weights, readable_state
from simclr.config import RESUME_SETTINGS, Config
from simclr.config_file import load_yaml
from simclr.errors import SimCLRError
from simclr.files import read_json
from simclr.folders import named_dataset, scan_folder, split_name, split_read_anew
from simclr.launch import path_word
from simclr.optim import load_optimizer_state
from simclr.plan import Plan
from simclr.recipe import differing
from simclr.resume_target import resume_checkpoint
from simclr.runtime import provenance
from simclr.settings import absolute_paths, config_from_dict, flag_of, is_null


@dataclass
class RunState:
    """Everything that moves during training and goes into a checkpoint (but
    ``session``, this session's own)."""

    step: int = 0
    elapsed: float = 0.0  # wall seconds so far, summed over resumed segments
    # Of those, the seconds each --compile session's first step took (torch.compile
    # compiles then, anew each session): not training time (train.train_loop)
    compile_s: float = 0.0
    bad_steps: int = 0
    all_images: bool = True  # images beside class folders count (see train_setup.open_data)
    num_files: int | None = None  # the image files listed, readable or not (a folder's)
    files_digest: str | None = None  # of their names (folders.ImageList.names_digest)
    data_split: str | None = None  # the split of --data they are in (folders.split_name)
    cached: bool | None = None  # whether the images were decoded once (--cache's choice)
    # The unreadable files met so far, all sessions (the source's own list, which grows)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    run_id: str = field(default_factory=new_run_id)  # the saved one's, once resumed
    # The splits the kNN monitor reads of --knn-train and --knn-test (None: the folder
    # itself; no list: no monitor): a resumed run is told where they differ from its own
    knn_splits: list[str | None] | None = None
    # The metrics log's open --log-every window (monitor.Meter.saved: its float32 sums,
    # steps, first step, training seconds at its start and untimed steps; the collapse
    # watch's state); None: none saved
    log_window: dict[str, Any] | None = None
    # Which start of the run this session is (session_number): its summary.json says, so
    # that `simclr info` can tell an earlier session's summary from this one's
    session: int = 1


def checkpoint_state(
    cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, state: RunState, plan: Plan,
) -> dict[str, Any]:
    """A checkpoint of plain data and tensors only, so it loads with weights_only=True."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():  # this process's GPU only: a run may resume on fewer
        rng["cuda"] = torch.cuda.get_rng_state()
    return {
        "format": "simclr-checkpoint",
        "version": 1,
        "kind": "pretrain",
        "config": cfg.to_dict(),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "step": state.step,
        "epoch": state.step // plan.steps_per_epoch,
        "step_in_epoch": state.step % plan.steps_per_epoch,
        "num_images": plan.num_images,
        "all_images": state.all_images,
        # data_split: the split read of --data (None: all of it), so that a resume tells
        # this release's read of DIR/Train from an earlier one's of DIR whole
        **({} if state.num_files is None else {"num_files": state.num_files,
                                                "files_digest": state.files_digest,
                                                "data_split": state.data_split}),
        **({} if state.cached is None else {"cached": state.cached}),
        **({"skipped_images": [list(s) for s in state.skipped]} if state.skipped else {}),
        "total_steps": plan.total_steps,
        "warmup_steps": plan.warmup_steps,
        "elapsed": state.elapsed,
        "compile_s": state.compile_s,
        "bad_steps": state.bad_steps,
        "rng": rng,
        "cpu_threads": torch.get_num_threads(),
        "processes": dist.world_size(),
        # (on each machine: a run over several continues with torchrun on each of them)
        "local_processes": dist.machine_processes() if dist.world_size() > 1 else 1,
        "run_id": state.run_id,
        **({} if state.knn_splits is None else {"knn_splits": state.knn_splits}),
        **({} if state.log_window is None else {"log_window": state.log_window}),
    }


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def restore(
    ckpt: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, state: RunState, plan: Plan,
) -> None:
    load_weights(unwrap(model), ckpt)  # one line, not a traceback, when they do not fit
    with readable_state(ckpt, "optimizer, step, RNG state or log window"):
        load_optimizer_state(optimizer, ckpt, unwrap(model), verbose=dist.is_main())
        load_scaler(scaler, ckpt["scaler"])
        state.step, state.elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
        state.bad_steps = int(ckpt.get("bad_steps", 0))
        state.compile_s = float(ckpt.get("compile_s", 0.0))  # (none saved before it was)
        # (a checkpoint from before run ids: the run is given one from here on)
        state.run_id = str(ckpt.get("run_id") or state.run_id)
        # The saved plan, not a new one: a time budget's refits and its early end live
        # there (the settings that fix the length are the saved ones: rundir.check_run_length).
        plan.total_steps = int(ckpt["total_steps"])
        plan.warmup_steps = int(ckpt["warmup_steps"])
        state.log_window = saved_window(ckpt.get("log_window"), state.step)
        torch.set_rng_state(ckpt["rng"]["torch"])
        restore_cuda_rng(ckpt["rng"].get("cuda"))


def saved_window(saved: Any, step: int) -> dict[str, Any] | None:
    """A checkpoint's open log window, checked to end at the saved ``step`` (a damaged
    one raises what :func:`restore` reports as a state that does not fit); None where
    the checkpoint has none (saved before windows were kept: the resumed run starts a
    window of its own, its first line averaging fewer steps)."""
    if saved is None:
        return None
    window: dict[str, Any]
    window = {"sums": {str(name): float(value) for name, value in dict(saved["sums"]).items()},
              "steps": int(saved["steps"]), "first_step": int(saved["first_step"]),
              "elapsed": float(saved["elapsed"]),
              # (steps of the window that compiled: out of its views/s; none saved before)
              "untimed": int(saved.get("untimed", 0)),
              # (steps --nan-policy skip left out of its sums; none saved before: its
              # sums hold their NaN, and the window logs null as it did)
              "skipped": int(saved.get("skipped", 0))}
    watch = saved.get("collapse")  # (monitor.CollapseWatch's; none saved before it was)
    if watch is not None:
        window["collapse"] = {"windows": int(watch["windows"]), "steps": int(watch["steps"]),
                              "since": int(watch["since"]), "said": bool(watch["said"])}
    if not 0 <= window["skipped"] <= window["steps"]:
        raise ValueError(f"a log window of {window['steps']} steps that skipped "
                         f"{window['skipped']}")
    if window["first_step"] + window["steps"] != step:
        raise ValueError(f"a log window of {window['steps']} steps from step "
                        f"{window['first_step']}, saved at step {step}")
    return window


def restore_cuda_rng(saved: Any) -> None:
    """The GPU generator's state as saved: one state (this process's GPU), or one per
    GPU visible then (checkpoints before that), of which this GPU's if it had one. The
    views' randomness is drawn on the host (augment_params), so this only matters to
    layers that draw on the GPU themselves (none in the ResNets)."""
    if saved is None or not torch.cuda.is_available():
        return
    if isinstance(saved, (list, tuple)):
        index = torch.cuda.current_device()
        if index >= len(saved):
            return
        saved = saved[index]
    torch.cuda.set_rng_state(saved)


def check_same_images(ckpt: dict[str, Any], plan: Plan) -> None:
    """A resumed run continues exactly only on the images it started with: the order of
    every epoch and the steps per epoch depend on their number (checkpoints before this
    check recorded it only through their epoch and step)."""
    saved = ckpt.get("num_images")
    if saved is None and int(ckpt.get("epoch") or 0) > 0:
        epochs = int(ckpt["epoch"])
        per_epoch = (int(ckpt["step"]) - int(ckpt.get("step_in_epoch") or 0)) // epochs
        if per_epoch != plan.steps_per_epoch:
            saved = f"{per_epoch} steps per epoch"
    if saved is not None and saved != plan.num_images:
        # (the files were counted alike already, where the checkpoint records them)
        raise _other_images(plan.num_images, saved,
                            readable=isinstance(saved, int) and "num_files" in ckpt)


def check_files_listed(ckpt: dict[str, Any], now: int, digest: str | None,
                       folder: str | None = None) -> list[str]:
    """:func:`check_same_images` before any image is decoded, from the ``now`` image files
    the folder lists and their names' ``digest`` (folders.ImageList.names_digest):
    another number than the run's is refused (checkpoints before it was recorded: fewer
    files than the run's readable images); the same number under other names is a note
    (the plan holds; the batches are no longer the first run's)."""
    files, saved = ckpt.get("num_files"), ckpt.get("num_images")
    if isinstance(files, int) and now != files:
        raise _other_images(now, files, folder, ckpt)
    if isinstance(saved, int) and now < saved:
        raise _other_images(now, saved, folder, ckpt)
    if ckpt.get("files_digest") and ckpt["files_digest"] != digest:
        return [f"note: the data folder's files are not the ones the run started with (the "
                f"same number, {now}, under other names): it continues on them, but not "
                "exactly as it would have"]
    return []


def check_same_runtime(ckpt: dict[str, Any], device: torch.device) -> list[str]:
    """Notes where a run resumes with another thread count (CPU) or number of processes
    than it saved with. Threads: the CPU kernels split their sums by thread, so the
    steps' rounding, and from there the weights, drift from the uninterrupted run's
    (measured: 0.6 apart after 15 steps of a width-1/8 ResNet-18, fp32, --deterministic;
    the default count follows the cores). Processes: the global batch and its order are
    the same, but each process's BatchNorm sums and the gradients' all-reduce add in
    another order (measured: 2.8e-6 apart in weights after 3 more steps)."""
    notes = []
    # (as saved: mypy cannot follow the isinstance checks below to the uses they guard)
    processes: Any
    saved: Any
    processes, now_processes = ckpt.get("processes"), dist.world_size()
    other_processes = isinstance(processes, int) and processes != now_processes
    saved, now = ckpt.get("cpu_threads"), torch.get_num_threads()
    if device.type == "cpu" and isinstance(saved, int) and saved != now:
        exact = f"--threads {saved} keeps it exact" if not other_processes else (
            f"--threads {saved} and {processes} process{'es' if processes > 1 else ''} "
            "keep it exact")
        notes.append(f"note: the run saved its checkpoint with {saved} CPU threads and "
                     f"continues with {now}: not exactly as it would have ({exact})")
    saved, now = processes, now_processes
    if other_processes:
        # Without global BatchNorm each process normalises over its own share of the
        # batch: another count is another method (BN over other batches), not rounding.
        local_bn = not ((ckpt.get("config") or {}).get("model") or {}).get("sync_bn", True)
        how = (f"BatchNorm now normalises over batches of {_share(ckpt, now)} images, not "
               f"{_share(ckpt, saved)} (--no-sync-bn: per process)" if local_bn else
               "the same global batch, but not exactly as it would have")
        notes.append(f"note: the run saved its checkpoint with {saved} process"
                     f"{'es' if saved > 1 else ''} and continues with {now}: {how} ({saved} "
                     f"process{'es' if saved > 1 else ''} keep{'' if saved > 1 else 's'} it "
                     "exact)")
    return notes


def _share(ckpt: dict[str, Any], processes: int) -> int | str:
    """Images per process of the saved run's global batch over ``processes``."""
    batch = (ckpt.get("config") or {}).get("batch_size")
    return batch // processes if isinstance(batch, int) else "other"


def _other_images(now: int, saved: Any, folder: str | None = None,
                  ckpt: dict[str, Any] | None = None, readable: bool = False) -> SimCLRError:
    """Another number of images than the run's; ``folder`` (its --data) and the run's
    checkpoint ``ckpt`` tell whether the run's release read it otherwise: a split in
    capitals, Train/ and Test/ read as two classes before 2026-12-06
    (folders._split_folder, :func:`read_splits_as_classes`). ``readable``: counts of
    the images that decode, the files alike (a file damaged since, or mended)."""
    if readable:
        return SimCLRError(f"--resume: {now} of the data folder's images decode now; {saved} "
                           "did when the run started (a file damaged since, or mended), so "
                           "it cannot continue exactly (start a new run, or restore the "
                           "folder)")
    split = None if folder is None or ckpt is None else split_read_anew(folder)
    if split is not None and read_splits_as_classes(ckpt, folder, saved):  # type: ignore[arg-type]  # (both set with split)
        why = _splits_were_classes(folder, split, f"{now} images", f"{saved} images")  # type: ignore[arg-type]  # (set with split)
        return SimCLRError(f"--resume: {why}; the run cannot continue on its images: start a "
                           "new run")
    return SimCLRError(f"--resume: the data folder now holds {now} images; the run started "
                       f"with {saved}, so it cannot continue exactly (start a new run, or "
                       "restore the folder)")


def read_all_images(saved: dict[str, Any] | None) -> bool:
    """Whether a run reads the images beside its class folders too: a new one (``saved``
    None) does; a saved one as its checkpoint says (``all_images``), one without the
    entry being of a release before such images were kept (it listed the classes')."""
    return saved is None or bool(saved.get("all_images", False))


def read_splits_as_classes(ckpt: dict[str, Any], folder: str, saved: Any) -> bool:
    """Whether the run's release read ``folder``'s splits (Train/, Test/) as two classes,
    by evidence: this release's checkpoints say which split they read (``data_split``;
    earlier ones with a kNN monitor: ``knn_splits``, saved since the change); an
    unmarked one read them as classes where the names of the files it listed
    (``files_digest``) are those of the whole folder (a run of this release saved before
    the mark, on a Train/ since grown or shrunk, is told the plain count); one saved
    before names were recorded, where its ``saved`` count is the whole folder's."""
    if "data_split" in ckpt or "knn_splits" in ckpt:
        return False
    try:  # (the folder's images as that release listed them: the splits as classes)
        whole = scan_folder(folder, unlabeled=read_all_images(ckpt))
    except SimCLRError:
        return False
    if ckpt.get("files_digest"):  # (a count may match by chance: Train/ shrunk by Test/'s)
        return whole.names_digest() == ckpt["files_digest"]
    return len(whole.paths) == saved


def split_read_anew_why(folder: str, classes: list[Any], now: str, whose: str = "run's",
                        reads: Path | None = None) -> str | None:
    """Why a run saved on ``folder`` cannot continue on its images where its release
    (before 2026-12-06) read the folder's splits (DIR/Train, DIR/Test) as its ``classes``
    and this one reads DIR as its split (folders.split_read_anew); else None (no split read
    anew, or one that was none of its classes, or ``reads``, the folder this release
    reads, where known, is another). ``now``: what this release reads there (its classes,
    its images); ``whose``: the saved run as its caller names it. Its classes differ: a
    'classes no longer there: Test, Train' or 'rerun its own command' would be untrue."""
    split = split_read_anew(folder)
    if split is None or split.name not in classes or (reads is not None and split != reads):
        return None
    return _splits_were_classes(folder, split, now, ", ".join(map(str, classes[:3])), whose)


def _splits_were_classes(folder: str, split: Path, now: str, then: str,
                         whose: str = "run's") -> str:
    """That this release reads ``folder`` as its ``split`` (``now``: what it reads
    there) where the saved run's release read its splits as two classes (``then``: what
    that release read: the classes, or the image count)."""
    return (f"this release reads {folder} as its split {split.name}/ ({now}), where the "
            f"{whose} release read its splits as two classes ({then}; the held-out images "
            "trained on too)")


def knn_splits(cfg: Config) -> list[str | None] | None:
    """The split folder each of --knn-train and --knn-test is read as (None: the folder
    itself, a named data set's name too), None without a kNN monitor."""
    if not cfg.knn_train or not cfg.knn_test:
        return None
    return [split_name(cfg.knn_train, True), split_name(cfg.knn_test, False)]


def knn_split_notes(ckpt: dict[str, Any], cfg: Config) -> list[str]:
    """A note where the kNN monitor of a resumed run reads other images of its folders
    than the run did: a release before 2026-12-06 (no ``knn_splits`` saved) read DIR
    holding Train/ and Test/ as two classes (:func:`split_read_anew`), this one scores
    DIR/Train against DIR/Test; the monitor's curve breaks there, the training (on
    --data) is as it was. No note where the run had no monitor."""
    now = knn_splits(cfg)
    if now is None or not (ckpt.get("config") or {}).get("knn_train"):
        return []
    folders = (str(cfg.knn_train), str(cfg.knn_test))  # (both set: knn_splits)
    saved = ckpt.get("knn_splits")
    earlier = saved is None
    if earlier:  # (the previous release: read whole what this one reads as its split)
        saved = [None if split_read_anew(f) is not None else n
                 for f, n in zip(folders, now, strict=True)]
    if not isinstance(saved, list) or len(saved) != 2 or saved == now:
        return []
    changed = [(flag, folder, before, after) for flag, folder, before, after in zip(
        ("--knn-train", "--knn-test"), folders, saved, now, strict=True) if before != after]
    reads = " and ".join(f"{flag} {_read_as(folder, after)}"
                         for flag, folder, _, after in changed)
    read = " and ".join(dict.fromkeys(_read_as(folder, before)
                                      for _, folder, before, _ in changed))
    why = (" (a release before 2026-12-06 read splits named in capitals as two classes)"
           if earlier else "")
    return [f"note: the kNN monitor now reads {reads}, where the run read {read}{why}: its "
            f"kNN curve breaks at step {int(ckpt.get('step') or 0)}; the training is as "
            "it was"]


def _read_as(folder: str, split: Any) -> str:
    """What the monitor reads of ``folder``: its ``split`` or, for None, all of it."""
    return f"{Path(folder).expanduser() / split}" if isinstance(split, str) else \
        f"{folder} whole"


def load_resume_config(target: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The saved config of a run (``target``: its directory, its checkpoints folder or a
    checkpoint file there), with the few settings that may change on resume
    (``overrides``: top-level settings by name, e.g. ``{"threads": 4}``)."""
    run_dir, _, ckpt = resume_checkpoint(target, quiet=True)  # (said when the run starts)
    cfg = config_from_dict(ckpt["config"])
    cfg.out = str(run_dir)
    for key, value in (overrides or {}).items():
        setattr(cfg, key, value)
    # Runs saved before paths were stored absolute resume only from where they started.
    for flag, path in (("--data", cfg.data.path), ("--knn-train", cfg.knn_train),
                       ("--knn-test", cfg.knn_test)):
        if (path and not os.path.isabs(os.path.expanduser(path))
                and not os.path.exists(path) and not named_dataset(path)):
            raise SimCLRError(f"--resume {target}: the run's {flag} folder was saved as the "
                              f"relative path {path!r}, not found from {os.getcwd()}; resume "
                              "from the folder the run was started in")
    absolute_paths(cfg)
    return cfg


def skipped_before(ckpt: dict[str, Any], data_path: str) -> list[tuple[str, str]]:
    """The unreadable files (path, reason) the checkpoint's sessions met, at the place
    the run reads its images now: a run resumed with its folder moved (``--data NEW``)
    saved them under the old one, where its listing would not find them."""
    found = [(str(path), str(reason)) for path, reason in ckpt.get("skipped_images") or []]
    before = ((ckpt.get("config") or {}).get("data") or {}).get("path")
    if not before or not os.path.isabs(before) or before == data_path:
        return found
    return [(os.path.join(data_path, os.path.relpath(path, before))
             if path.startswith(os.path.join(before, "")) else path, reason)
            for path, reason in found]


# The folders a run reads, by setting, with their flags: one moved since is named anew.
_FOLDERS = {"data.path": "--data", "knn_train": "--knn-train", "knn_test": "--knn-test"}


def check_resumed_settings(saved: dict[str, Any], cfg: Config, run_dir: Path,
                           device: torch.device) -> None:
    """``pretrain(cfg, resume=True)`` continues the saved settings: a Config built anew
    that changes one outside :data:`RESUME_SETTINGS` (a folder only where the saved one
    is gone) is refused, as the command line refuses the flag (it went on at the new
    temperature, batch or lr, and config.yaml said so). Compared as the CLI and a sweep
    read a run: its relative paths (runs saved before paths were absolute) from here,
    a precision as it resolves on ``device`` ('auto' is the one it stands for)."""
    from simclr.runtime import resolve_precision

    then = config_from_dict(saved)
    absolute_paths(then)
    gone = {path for path in _FOLDERS if not _still_there(then, path)}
    changed = {path: values for path, values in differing(then, cfg).items()
               if path not in RESUME_SETTINGS | gone | {"out"}}
    if "precision" in changed and resolve_precision(then.precision, device) == \
            resolve_precision(cfg.precision, device):
        del changed["precision"]
    if changed:
        path, (before, now) = next(iter(changed.items()))
        raise SimCLRError(f"{run_dir}: a resumed run continues its saved settings; cannot "
                          f"change --{flag_of(path)} ({before} saved, {now} asked); "
                          "simclr.resume.load_resume_config(RUN) gives the saved ones")


def _folder(cfg: Config, path: str) -> str | None:
    """The value of a folder setting of :data:`_FOLDERS` (``data.path`` or a top-level one)."""
    return getattr(cfg.data if path == "data.path" else cfg, path.split(".")[-1])


def _still_there(cfg: Config, path: str) -> bool:
    """Whether a folder setting is unset, a named data set (the digits too), or a folder
    that exists."""
    return not folder_gone(_folder(cfg, path))


def folder_gone(saved: Any) -> bool:
    """Whether a run's saved folder setting names a folder that is no longer there
    (unset, a named data set, the digits: never gone)."""
    return bool(saved) and isinstance(saved, str) and not named_dataset(saved) and \
        not os.path.exists(os.path.expanduser(saved))


def gone_folders(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(flag, folder) of each folder setting of a run's saved ``config`` (config.yaml
    as read) that is gone: what its ``--resume`` must be given anew
    (:func:`moved_folders` refuses it without)."""
    data = config.get("data")
    values = {"data.path": data.get("path") if isinstance(data, dict) else None,
              "knn_train": config.get("knn_train"), "knn_test": config.get("knn_test")}
    return [(flag, str(values[path])) for path, flag in _FOLDERS.items()
            if folder_gone(values[path])]


def summary_finished(summary: dict[str, Any], cfg: Config, step: int | None = None) -> bool:
    """Whether a run's summary.json (``summary``) says it has nothing left to do: it
    finished (at ``step``, its checkpoint's, where known), with the final kNN measure
    where ``cfg`` asks for one (a stop during the last step skips it: its resume
    measures it, reading the kNN folders)."""
    at_step = step is None or summary.get("steps") == step
    measured = not cfg.knn_train or "knn_top1" in summary
    return summary.get("status") == "finished" and at_step and measured


def _finished(cfg: Config) -> bool:
    """A finished run reads no image: its --resume says so (nothing to do), not that a
    folder of it is gone (read_json: none, or unreadable, is no finished run). Read only
    where a folder is gone."""
    return cfg.out is not None and summary_finished(
        read_json(Path(cfg.out) / "summary.json") or {}, cfg)


def moved_folders(cfg: Config, flags: dict[str, Any], target: str | Path) -> set[str]:
    """The folder settings ``--resume`` may take anew (``flags``): those whose saved
    folder is gone, moved or deleted. One gone and not given is refused now, before
    anything is read, saying how to go on; a new place must hold as many images as the
    run started with (:func:`check_same_images`), so that it continues exactly."""
    gone = set()
    for path, flag in _FOLDERS.items():
        if _still_there(cfg, path):
            continue
        saved = _folder(cfg, path)
        if path not in flags and _finished(cfg):
            continue
        if path not in flags:
            raise SimCLRError(f"--resume {target}: the run's {flag} folder {saved} is gone "
                              f"(moved or deleted); put it back, or give its new place "
                              f"(simclr pretrain --resume {path_word(target)} {flag} NEW_FOLDER)")
        new = flags[path]
        if is_null(new) or named_dataset(new):  # (none: the digits; cifar10: a download)
            raise SimCLRError(f"--resume {target}: the run read the folder {saved}, which is "
                              f"gone; {flag} {new} is not a folder: give the folder's "
                              f"new place ({flag} NEW_FOLDER)")
        gone.add(path)
    return gone


# A start's command line as config.yaml's provenance may hold it, at most: far past
# any shell's (ARG_MAX is 2 MiB on Linux), yet a few KB of YAML aliases nesting lists
# in lists expand past it a millionfold, for info to print and a resume to copy forward.
MAX_ARGV_WORDS = 10_000
MAX_ARGV_CHARS = 1 << 21
_KEPT = ("argv", "git_sha", "git_dirty", "simclr", "torch", "cwd")  # (what an earlier start keeps)


def recorded_argv(value: Any) -> list[str] | None:
    """A command line a run folder's provenance records, as words (None: damaged: not a
    list of plain values within MAX_ARGV_WORDS and MAX_ARGV_CHARS, as a folder received
    from elsewhere may hold; never expanded, printed or copied forward)."""
    if not isinstance(value, list) or len(value) > MAX_ARGV_WORDS or not all(
            isinstance(a, (str, int, float)) for a in value):  # (bools are ints)
        return None
    words = [str(a) for a in value]
    return words if sum(map(len, words)) <= MAX_ARGV_CHARS else None


def recorded_start(entry: dict[str, Any]) -> dict[str, Any]:
    """One start of a run (its provenance, or one of its ``earlier``) as read back: its
    versions where plain values, its argv where :func:`recorded_argv` takes it; what is
    damaged is left out, so no YAML alias bomb is kept or copied into the next record."""
    kept = {k: entry[k] for k in _KEPT[1:] if k in entry and
            (entry[k] is None or isinstance(entry[k], (str, int, float)))}
    argv = recorded_argv(entry.get("argv"))
    return {"argv": argv, **kept} if argv is not None else kept


def start_record(run_dir: Path, resume: bool) -> dict[str, Any]:
    """config.yaml's ``provenance``: versions, git SHA and arguments of this start, and
    for a resumed run those of its earlier starts (``earlier``, oldest first), which
    the rewritten file would otherwise lose (metrics.jsonl logs every start as well).
    Each earlier start is copied as :func:`recorded_start` reads it (a damaged one is
    still a start, as :func:`session_number` counts it)."""
    record = provenance()
    if resume:
        try:
            before = load_yaml(run_dir / "config.yaml").get("provenance")
        except SimCLRError:  # unreadable: this start's record is still worth writing
            before = None
        # (one without its argv, left out or damaged, is a start all the same: its
        # earlier starts are kept, so the session count does not start over)
        if isinstance(before, dict):
            earlier = before.get("earlier")
            earlier = earlier if isinstance(earlier, list) else []
            record["earlier"] = [*(recorded_start(e) for e in earlier if isinstance(e, dict)),
                                 recorded_start(before)]  # (what is no start: left out)
    return record


def recorded_init_from(run_dir: Path) -> dict[str, Any]:
    """What config.yaml records of the weights the run's first start took (--init-from's
    file and step, ``init_from_resolved``), to be written again by a resumed start, which
    rewrites the file: the folder named there may have trained on since, and would no
    longer say which step this run started from. Empty where none is recorded, or the
    file or the entry is unreadable (a received folder's: a plain string alone)."""
    try:
        resolved = load_yaml(run_dir / "config.yaml").get("init_from_resolved")
    except (SimCLRError, AttributeError):  # (unreadable; not a mapping)
        return {}
    if not isinstance(resolved, str) or len(resolved) > MAX_ARGV_CHARS:
        return {}
    return {"init_from_resolved": resolved}


def session_number(record: dict[str, Any]) -> int:
    """Which start of its run a session is (1: the first), by its ``provenance``
    (:func:`start_record`): its earlier starts, and this one. Only the records
    start_record writes count (a hand-damaged entry is none, for `simclr info` too)."""
    earlier = record.get("earlier")
    return 1 + (sum(isinstance(e, dict) for e in earlier) if isinstance(earlier, list) else 0)


def save(
    cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, state: RunState, plan: Plan, run_dir: Path, periodic: bool,
) -> Path | None:
    if not dist.is_main():
        return None
    blob = checkpoint_state(cfg, model, optimizer, scaler, state, plan)
    name = periodic_name(state.step) if periodic else "last.pt"
    keep = cfg.keep_checkpoints if periodic else None
    return save_checkpoint(blob, run_dir / "checkpoints", name, keep)
