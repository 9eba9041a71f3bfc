"""What a sweep refuses before its first cell trains (:mod:`simclr.sweep`): cells that
would train the same run (values alike on this machine, a setting with no effect in a
cell, a flag also swept), and each cell's inputs and batch, checked as its pretraining
would check them only once it starts, perhaps hours into the sweep.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from simclr.config import ARCHS, Config
from simclr.errors import SimCLRError, user_message
from simclr.folders import holds_jpegs, list_folder
from simclr.recipe import flatten
from simclr.settings import flag_of
from simclr.sweep_report import PAIR_AXIS

if TYPE_CHECKING:  # (the grid's classes, for annotations only)
    from simclr.folders import ImageList
    from simclr.sweep_grid import Axis, Cell

T = TypeVar("T")


class FolderLooks:
    """What the checks learn of each folder the cells read, learned once for all of them:
    its files as :func:`simclr.folders.list_folder` lists them (None: a named data set;
    a folder of 200k files takes seconds to list) and the sides (w, h) of up to 64 of
    them, read from their headers (:func:`simclr.data.probe_sizes`)."""

    def __init__(self) -> None:
        self._listed: dict[tuple[str | None, bool], ImageList | None] = {}
        self._sides: dict[tuple[str | None, bool], list[tuple[int, int]]] = {}

    def listing(self, folder: str | None, train: bool = True) -> ImageList | None:
        if (folder, train) not in self._listed:
            self._listed[folder, train] = list_folder(folder, train, unlabeled=True)
        return self._listed[folder, train]

    def sides(self, folder: str | None, train: bool = True) -> list[tuple[int, int]]:
        if (folder, train) not in self._sides:
            from simclr.data import probe_sizes

            listed = self.listing(folder, train)
            self._sides[folder, train] = [] if listed is None else probe_sizes(listed.paths)
        return self._sides[folder, train]


def per_cell(cells: list[Cell], check: Callable[[int], T],
             unswept: Callable[[str], bool] | None = None) -> list[T]:
    """``check(k)`` of each cell k, in order: their results. A failure names its cell
    ('cell lr=0.1: ...') where it is that cell's, but is said once, without a cell's name,
    where it is the whole sweep's: an unswept setting or a folder every cell reads
    ('cell seed=0: --betas ...' blamed the first cell for a flag wrong in all). It is
    the sweep's where the first cell fails and every other cell fails alike (the same
    message); in a sweep of one cell, where ``unswept(message)`` says the settings
    without any swept value fail so. (Not asked of more cells: those settings hold the
    defaults in place of the swept values, so fail like a first cell whose value is the
    default, --semi-hard beside ``loss=nt_xent,nt_logistic``, where other cells pass.)"""
    results = []
    for k in range(len(cells)):
        try:
            results.append(check(k))
        except SimCLRError as exc:
            message = user_message(exc)
            if len(cells) > 1:
                whole = k == 0 and all(_fails_with(check, j, message)
                                       for j in range(1, len(cells)))
            else:
                whole = unswept is not None and unswept(message)
            if whole:
                raise SimCLRError(message) from None
            raise SimCLRError(f"cell {cells[k].name}: {message}") from None
    return results


def _fails_with(check: Callable[[int], Any], k: int, message: str) -> bool:
    """Whether ``check(k)`` fails with ``message``."""
    try:
        check(k)
    except SimCLRError as exc:
        return user_message(exc) == message
    return False


def check_cell_inputs(cfg: Config, processes: int | None = None,
                      read: dict[str, Any] | None = None) -> tuple[str, str]:
    """What a cell's launch by ``processes`` (GPUs, batch shares) and its pretraining
    (device, precision, kNN monitor folders, initial weights, a model that fits in
    memory) would check before or while it decodes: here before the first cell trains.
    Returns the (device, precision) the cell's ``auto`` values resolve to on this
    machine. ``read``: the ``--init-from`` files read by earlier cells
    (:func:`_check_init_from`), each read once."""
    import torch

    from simclr.distributed import check_divisible
    from simclr.models import check_model_fits
    from simclr.monitor import check_knn_folders
    from simclr.runtime import check_gpu_per_process, resolve_device, resolve_precision

    launched = bool(processes and processes > 1)
    if processes and processes > 1:
        check_gpu_per_process(cfg.device, processes)
        check_divisible(cfg.batch_size, processes)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    check_knn_folders(cfg)
    if cfg.init_from:
        _check_init_from(cfg, {} if read is None else read)
    # Counted on the meta device. Cells launched as processes train on GPUs this process
    # never uses (asking one's free memory would hold a CUDA context on it all sweep
    # long): their weights alone are checked against RAM, where they are built first.
    if launched and device.type != "cpu":
        check_model_fits(cfg.model, cfg.augment.size, torch.device("cpu"), enforce=False)
    else:
        check_model_fits(cfg.model, cfg.augment.size, device, cfg.memory_check)
    return str(device), precision


def _check_init_from(cfg: Config, read: dict[str, Any]) -> None:
    """``--init-from`` read and checked against the cell's network as its pretraining
    does before decoding (:func:`simclr.pretrained.check_initial_weights`): a file
    that does not fit one cell (a width axis) is found before any cell trains.
    ``read``: by path, a file's weights and the networks already found to fit them, or
    the error its reading gave (a file read in vain is not read again: :func:`per_cell`
    asks every cell whether it fails alike, and the file may be gigabytes)."""
    from simclr.pretrained import check_initial_weights, initial_weights

    given = str(cfg.init_from)  # (called where it is set)
    path = os.path.abspath(os.path.expanduser(given))
    if path not in read:
        try:
            read[path] = initial_weights(given), set()
        except SimCLRError as exc:
            read[path] = exc
    if isinstance(read[path], SimCLRError):
        raise read[path]
    (weights, what), fitted = read[path]
    network = repr((cfg.model, cfg.augment.size))  # (all that build_model reads)
    if network not in fitted:
        check_initial_weights(cfg, weights, what)
        fitted.add(network)


RESOLVED = ("device", "precision")  # settings whose `auto` becomes one of the others here


# What sets a run's length and warm-up: compared as the plan they give (max_steps or the
# warm-up's 10% cap can make other values plan the same steps).
LENGTH = ("epochs", "max_steps", "optim.warmup_epochs", "optim.warmup_fraction")


def check_cells_differ(cells: list[Cell], configs: list[Config],
                       resolved: list[tuple[str, str]],
                       sizes: list[int | None] | None = None,
                       reads: Iterable[tuple[str | None, bool]] = (),
                       reads_device: str | None = None,
                       looks: FolderLooks | None = None,
                       processes: int | None = None) -> None:
    """Cells whose settings differ only in values that resolve alike on this machine
    (``precision=auto,fp32`` on a CPU without bf16, ``device=auto,cpu`` without a GPU,
    ``sync-bn=true,false`` trained by one process each: ``processes``),
    or in lengths that plan the same steps (``epochs=10,20`` under ``--max-steps 5``)
    would train the same run twice: refused, naming both, before anything trains.
    ``resolved``: each cell's (device, precision) from :func:`check_cell_inputs`;
    ``sizes``: each cell's number of images (None: not known before decoding);
    ``reads``: other folders read with the cells' data settings (the evaluation ones),
    each with whether it is read as a training split, decoded on ``reads_device`` (the
    scoring's; None: each cell's device); ``looks``: what :func:`check_batches` learned
    of the folders (None: looked at here)."""
    from simclr.inert import acting_color_ops
    from simclr.plan import plan_schedule

    seen: dict[str, tuple[Cell, Config, dict[str, Any]]] = {}
    caching, decodings = _read_choices(configs, [device for device, _ in resolved],
                                       tuple(reads), reads_device, looks or FolderLooks())
    for k, (cell, cfg, values) in enumerate(zip(cells, configs, resolved, strict=True)):
        flat = flatten(cfg.to_dict())
        settings = {**flat, **dict(zip(RESOLVED, values, strict=True))}
        del settings["out"]
        settings["augment.color_ops"] = acting_color_ops(cfg.augment)  # alike at 0 amounts
        settings["data.cache"] = caching[k]
        # (its data and the other folders it reads with its data settings: decoded alike?)
        settings["data.decoder"] = list(decodings[k])
        settings.update(_resolved_automatic(cfg))
        one_process = not (processes and processes > 1)
        if one_process:  # (BatchNorm sees the whole batch either way: distributed.py)
            settings["model.sync_bn"] = None
        size = sizes[k] if sizes else None
        plan = plan_schedule(cfg, size) if size and not cfg.time_budget else None
        if plan is not None:
            for name in LENGTH:
                settings.pop(name)
            settings["plan"] = [plan.total_steps, plan.warmup_steps]
        key = json.dumps(settings, sort_keys=True, default=str)
        if key in seen:
            other, other_cfg, other_flat = seen[key]
            alike = [f"--{name} {getattr(other_cfg, name)} and {getattr(cfg, name)} are both "
                     f"{value} here" for name, value in zip(RESOLVED, values, strict=True)
                     if getattr(other_cfg, name) != getattr(cfg, name)]
            for name, value in (("cache", caching[k]), ("decoder", settings["data.decoder"][0])):
                before, now = getattr(other_cfg.data, name), getattr(cfg.data, name)
                if before != now:
                    alike.append(f"--{name} {before} and {now} are both {value} here")
            if one_process and other_cfg.model.sync_bn != cfg.model.sync_bn:
                alike.append(f"--sync-bn {str(other_cfg.model.sync_bn).lower()} and "
                             f"{str(cfg.model.sync_bn).lower()} are alike in one process, "
                             "whose BatchNorm sees the whole batch either way")
            if other_cfg.augment.color_ops != cfg.augment.color_ops:
                alike.append(f"--color-ops {other_cfg.augment.color_ops} and "
                             f"{cfg.augment.color_ops} compute the same colour jitter under "
                             "its amounts here")
            if plan is not None and any(flat[n] != other_flat[n] for n in LENGTH):
                alike.append(f"both are {plan.total_steps} steps with {plan.warmup_steps} of "
                             f"warm-up on these {size} images")
            if not alike:  # equal once defaults resolve (--lr none: its batch's own lr)
                alike = [f"--{flag_of(path)} {other.values.get(path, 'none')} and {value} "
                         "give the same settings here" for path, value in cell.values.items()
                         if other.values.get(path) != value]
            raise SimCLRError(f"cells {other.name} and {cell.name} would train the same run on "
                              f"this machine ({'; '.join(alike)}); leave one of the values out")
        seen[key] = (cell, cfg, flat)


def _resolved_automatic(cfg: Config) -> dict[str, Any]:
    """The automatic (None) settings of ``cfg`` that the views' side and the network
    resolve, as the run resolves them: ``cifar-stem=auto,true`` at 32 px, or
    ``head-hidden-dim=none,2048`` on a ResNet-50, trains one run twice."""
    from simclr.models import feature_dim_of, resolve_cifar_stem

    model = cfg.model
    resolved: dict[str, Any] = {}
    resolved["model.cifar_stem"] = resolve_cifar_stem(model.cifar_stem, cfg.augment.size,
                                                      model.arch)
    resolved["augment.eval_size"] = cfg.augment.evaluation_size()
    if model.head_hidden_dim is None and model.arch in ARCHS and model.width > 0:
        resolved["model.head_hidden_dim"] = feature_dim_of(model)  # (h's dimension)
    return resolved


def _read_choices(configs: list[Config], devices: list[str],
                  reads: tuple[tuple[str | None, bool], ...],
                  reads_device: str | None, looks: FolderLooks,
                  ) -> tuple[list[str], list[tuple[str, ...]]]:
    """Each cell's --cache as it resolves for its data (``auto``: on for small pictures),
    and how it decodes each folder it reads with its data settings: its data ('cached'
    where decoded once), its kNN monitor's (on its device ``devices[k]``) and ``reads``
    (its scoring's, on ``reads_device`` or its own): 'device' where a folder is left
    uncached under its --cache, holds JPEGs and its --decoder decodes them on that
    device, else 'pil' (an evaluation's folder, cached or not, is decoded alike by PIL:
    it gives the same features). Probed where the cells differ in --cache or --decoder
    (inert under a cache); else the --cache and --decoder as asked. Each folder is
    listed and probed once, in ``looks``, for all its cells."""
    from simclr.data import cache_choice

    if len({(cfg.data.cache, cfg.data.decoder) for cfg in configs}) < 2:
        return [cfg.data.cache for cfg in configs], [(cfg.data.decoder,) for cfg in configs]

    def choice(folder: str | None, cache: str, train: bool) -> str:
        return cache_choice(folder, cache, train,
                            looks.sides(folder, train) if cache == "auto" else None)

    def decoded(cfg: Config, folder: str | None, train: bool, device: str) -> str:
        listed = looks.listing(folder, train)  # (None: a named data set, arrays)
        return _decoder_on(cfg, device) if listed is not None and holds_jpegs(listed.paths) \
            else "pil"

    caching = [choice(cfg.data.path, cfg.data.cache, True) for cfg in configs]
    decodings = [("cached" if cache in ("on", "in memory") else
                  decoded(cfg, cfg.data.path, True, device),
                  *(decoded(cfg, folder, train, on)
                    if choice(folder, cfg.data.cache, train) == "off" else "pil"
                    for folder, train, on in ((cfg.knn_train, True, device),
                                              (cfg.knn_test, False, device),
                                              *((f, t, reads_device or device)
                                                for f, t in reads)) if folder))
                 for cfg, device, cache in zip(configs, devices, caching, strict=True)]
    return caching, decodings


def _decoder_on(cfg: Config, device: str) -> str:
    """'device' where the cell's --decoder decodes uncached JPEGs on ``device``, else 'pil'."""
    import torch

    from simclr.source import decode_device

    return "pil" if decode_device(cfg.data.decoder, torch.device(device)) is None else "device"


def check_not_swept_twice(axes: list[Axis], flags: dict[str, Any]) -> None:
    """A flag given beside an axis that sets it would be silently replaced in every cell
    (``simclr sweep``; callers of :func:`run_sweep` may layer axes over common flags)."""
    for axis in axes:
        for path in sorted({p for setting in axis.settings for p in setting} & set(flags)):
            raise SimCLRError(f"--{flag_of(path)} is also swept (by {axis.name}), which "
                              "would replace it in every cell; give it once")


def _given_as(axis: Axis) -> str:
    """How the user gave ``axis``: ``--set NAME``, or ``--pairs`` (Fig. 5's axis)."""
    return "--pairs" if axis.name == PAIR_AXIS else f"--set {axis.name}"


def check_settings_act(axes: list[Axis], cells: list[Cell], configs: list[Config],
                       flags: dict[str, Any], reads: Iterable[str | None] = ()) -> None:
    """Refuse an axis value with no effect in some cell (:mod:`simclr.inert`): those
    cells would train the same run under different labels (temperature crossed with
    margin_triplet); and a common flag with no effect in any cell, as pretrain does.
    ``reads``: other folders read with the cells' data settings (the evaluation ones)."""
    from simclr.inert import VALUE_INERT

    reads = tuple(reads)
    inert = [_inert_here(cfg, reads) for cfg in configs]
    for axis in axes:
        paths = {p for setting in axis.settings for p in setting}
        everywhere = [p for p in sorted(paths) if all(p in i for i in inert)]
        if everywhere:
            raise SimCLRError(f"{_given_as(axis)}: --{flag_of(everywhere[0])} has no effect "
                              f"in any cell: {inert[0][everywhere[0]]}; leave it out")
        if "epochs" in paths and any(cfg.time_budget for cfg in configs):
            raise SimCLRError(f"{_given_as(axis)}: under --time-budget the budget sets each "
                              "cell's length (--epochs is only its first guess); drop "
                              "--time-budget to sweep epochs")
        for cell, cell_inert in zip(cells, inert, strict=True):
            label = cell.labels[axis.name]
            acting = axis.settings[axis.labels.index(label)]
            for path in sorted(set(acting) & set(cell_inert) - VALUE_INERT):
                raise SimCLRError(f"{_given_as(axis)}: --{flag_of(path)} has no effect in "
                                  f"cell {cell.name} ({cell_inert[path]}), so its values "
                                  "would train the same run there; sweep those cells "
                                  "separately")
    for path in sorted(flags):
        if all(path in cell_inert for cell_inert in inert):
            raise SimCLRError(f"--{flag_of(path)} has no effect in any cell: "
                              f"{inert[0][path]}; leave it out")


# What of a cell's data settings the sweep's --eval folders are read with (the scoring
# copies these alone: sweep_command._scoring_data)
READING = ("cache", "strict", "decoder", "max_pixels", "cache_dir", "root", "download")


def _inert_here(cfg: Config, reads: tuple[str | None, ...]) -> dict[str, str]:
    """:func:`simclr.inert.inert_settings` of a cell, a setting that acts only on the
    folders ``reads`` (the --eval ones) not inert if they are read with it (--strict
    acts on them whatever the cells train on; --store or --interpolation never)."""
    from simclr.inert import inert_settings

    inert = inert_settings(cfg)
    if not reads:
        return inert
    acting = inert_settings(cfg, reads)
    return {path: why for path, why in inert.items()
            if path in acting or path.removeprefix("data.") not in READING}


def check_batches(cells: list[Cell], configs: list[Config],
                  looks: FolderLooks | None = None) -> list[int | None]:
    """Each cell's data folder and batch: a folder none of whose images decodes (at the
    cell's --max-pixels and size) is refused, as its pretraining would refuse it once started,
    and a batch larger than the set, from the file names; a named data set (cifar10)
    not under its --data-root is refused as its pretraining says it
    (:func:`_named_size`). Each folder is listed once and read until one image decodes
    (one image, for a readable folder), in ``looks`` (kept for the checks after this).
    Returns each cell's number of images: its folder's files, or those its named data
    set holds."""
    from simclr.data import check_some_readable, reading_draft
    from simclr.plan import check_batch_fits

    looks = FolderLooks() if looks is None else looks
    # (folder, max_pixels, side decoded at) found readable, and found not: each once
    readable: set[tuple[str | None, int, int]] = set()
    unreadable: dict[tuple[str | None, int, int], SimCLRError] = {}
    opened: dict[tuple[str, str, bool], int] = {}  # (name, root, download): its size
    for cfg in configs:  # (a folder not found: the sweep's, named by its flag)
        looks.listing(cfg.data.path)

    def check(k: int) -> int | None:
        cfg = configs[k]
        listed = looks.listing(cfg.data.path)
        # (its JPEGs decoded at the size the cell decodes them at: the limit is on that)
        draft = 8 if listed is None else reading_draft(
            listed, cfg.augment.size, cfg.data, evaluation=False, sizes=looks.sides(cfg.data.path))
        key = (cfg.data.path, cfg.data.max_pixels, draft)
        size = _named_size(cfg, opened) if listed is None else len(listed.paths)
        if key in unreadable:  # (a folder read whole in vain is not read again)
            raise unreadable[key]
        if listed is not None and key not in readable:
            try:
                check_some_readable(listed, limit=None, max_pixels=cfg.data.max_pixels,
                                    draft=draft)
            except SimCLRError as exc:
                unreadable[key] = exc
                raise
            readable.add(key)
        check_batch_fits(cfg.batch_size, size)
        return size

    return per_cell(cells, check)


def _named_size(cfg: Config, opened: dict[tuple[str, str, bool], int]) -> int:
    """The number of images a cell's pretraining reads from its named data set: the
    digits demo's 1797, a torchvision set's training split
    (:func:`simclr.named_data.named_train_size`: its files checked, not read), which is
    refused, with the way to fetch it, when missing under --data-root (fetched with
    --download). Each (name, root, download) counted once, in ``opened``."""
    from simclr.data import open_source
    from simclr.named_data import is_digits, named_train_size

    name = "digits" if is_digits(cfg.data.path) else str(cfg.data.path).lower()
    root = "" if name == "digits" else os.path.abspath(os.path.expanduser(cfg.data.root))
    key = (name, root, cfg.data.download and name != "digits")
    if key not in opened:
        opened[key] = open_source(cfg.data.path, cfg.data, train=True).num_images \
            if name == "digits" else named_train_size(name, cfg.data)
    return opened[key]
