"""Settings that change nothing under the others: ``--margin`` with NT-Xent, ``--eta``
with SGD, ``--head-layers`` with a linear head, ``--blur-sigma`` with ``--no-blur``.

Accepted silently, such a setting makes a run look like what it is not, and a sweep over
it trains the same run under several labels (Table 4 crossed with temperature would
give margin_triplet cells that differ only in name). A setting the user gives
explicitly is therefore refused when it is inert (:func:`refuse_inert`), as
``--semi-hard`` with NT-Xent already is; values that presets and config files carry for
every field are not, since a file written by ``--print-config`` holds them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from simclr.config import ARCHS, COLOR_OPS, FIG5_OPS, AugmentConfig, Config
from simclr.folders import NAMED_DATASETS, named_dataset, torchvision_dataset
from simclr.settings import SettingError, flag_of

# An augmentation switch -> the settings it gates, its probability first (App. A's ops
# and Fig. 5's extras).
GATED_BY: dict[str, tuple[str, ...]] = {
    "flip": ("flip_p",),
    "color": ("color_p", "color_strength", "brightness", "contrast", "saturation", "hue",
              "color_random_order", "color_ops"),
    "grayscale": ("grayscale_p",),
    "blur": ("blur_p", "blur_sigma", "blur_kernel_frac"),
    "cutout": ("cutout_p", "cutout_frac"),
    "rotate": ("rotate_p",),
    "noise": ("noise_p", "noise_std"),
    "sobel": ("sobel_p",),
}
CROP_DRAW = ("crop_scale", "crop_ratio", "crop_sampler")  # how a resized crop is drawn
JITTER = ("brightness", "contrast", "saturation", "hue")
# How an image folder's files are read (data.open_folder): the digits demo and
# torchvision's sets are arrays in memory, opened before any of them is looked at.
FOLDER_READING = ("cache", "cache_dir", "load_size", "store", "strict", "max_pixels",
                  "decoder")


def reads_folder(cfg: Config, reads: Iterable[str | None] = ()) -> bool:
    """Whether ``cfg`` reads an image folder: ``--data``, or the kNN monitor's
    ``--knn-train`` / ``--knn-test`` (monitor.py opens them through ``cfg.data``), or one
    of the data specs ``reads`` that ``cfg`` does not name (supervised's ``--train`` and
    ``--test``, read through ``cfg.data`` too)."""
    specs = (cfg.data.path, cfg.knn_train, cfg.knn_test, *reads)
    return not named_dataset(cfg.data.path) or any(
        spec is not None and not named_dataset(spec) for spec in specs)


def inert_settings(cfg: Config, reads: Iterable[str | None] = ()) -> dict[str, str]:
    """Dotted path -> why its value changes nothing under ``cfg``'s other settings (and
    the data specs ``reads``, read through ``cfg.data``: :func:`reads_folder`)."""
    reads = tuple(reads)
    inert: dict[str, str] = {}
    loss, model = cfg.loss, cfg.model
    if loss.name == "margin_triplet":  # loss.py: a hinge on similarities, no temperature
        inert["loss.temperature"] = "--loss margin_triplet has no temperature"
    else:
        inert["loss.margin"] = f"it is --loss margin_triplet's, and --loss is {loss.name}"
    if loss.name != "nt_xent":  # (loss.contrastive_loss passes it to NT-Xent alone)
        inert["loss.one_view_negatives"] = (f"--loss {loss.name} takes its negatives from "
                                            "the other view only")
    inert.update(_inert_optim(cfg))
    if model.arch not in ARCHS:  # backbones.py builds torchvision's network as it is
        for name in ("cifar_stem", "zero_init_residual", "projection_shortcuts"):
            inert[f"model.{name}"] = f"{model.arch} is torchvision's network, built as it is"
    elif cfg.init_from:  # loaded strictly (pretrained.py): every weight, BN scales too
        inert["model.zero_init_residual"] = "--init-from replaces every encoder weight"
    if model.arch in ARCHS and model.arch not in ("resnet18", "resnet34"):
        inert["model.projection_shortcuts"] = (f"{model.arch}'s first blocks project their "
                                               "shortcuts already (they widen 4x)")
    if model.head == "none":
        for name in ("head_layers", "head_hidden_dim", "head_out_dim", "head_batch_norm"):
            inert[f"model.{name}"] = "--head none is the identity (z = h)"
    elif model.head == "linear":
        for name in ("head_layers", "head_hidden_dim"):
            inert[f"model.{name}"] = "--head linear is one layer, without hidden ones"
    # (an mlp head of one layer is refused for a new run: validate.check_scale)
    if cfg.time_budget and cfg.max_steps is not None:  # plan.plan_schedule
        inert["epochs"] = "--time-budget sets the length, --max-steps caps it"
    if cfg.knn_train is None:
        # (the digits demo, no --data, ends with a kNN report at --knn-k and
        # --knn-temperature: pretrain_command, commands.digits_knn_report)
        report = () if cfg.data.path is None else ("knn_k", "knn_temperature")
        for name in ("knn_every", *report):
            inert[name] = "there is no kNN monitor: --knn-train and --knn-test make one"
    if cfg.checkpoint_every == 0 and cfg.checkpoint_minutes == 0:  # (train.SaveSchedule)
        inert["keep_checkpoints"] = ("--checkpoint-every 0 and --checkpoint-minutes 0 save "
                                     "no periodic checkpoint")
    if cfg.nan_policy == "stop":
        inert["max_bad_steps"] = "it counts the steps --nan-policy skip skips"
    specs = (cfg.data.path, cfg.knn_train, cfg.knn_test, *reads)
    if not any(map(torchvision_dataset, specs)):
        for name in ("download", "root"):  # (data.py: where torchvision's sets are kept)
            inert[f"data.{name}"] = (f"it is for torchvision's {', '.join(NAMED_DATASETS)}, "
                                     "and the data flags name none of them")
    inert.update(_inert_data(cfg, reads))
    # (the pictures views are drawn from: --data's, or supervised's --train's)
    photos = any(not named_dataset(spec) for spec in (cfg.data.path, *reads) if spec)
    inert.update(_inert_augment(cfg, photos))
    return inert


def _inert_data(cfg: Config, reads: tuple[str | None, ...]) -> dict[str, str]:
    """How images are read: only an image folder's are read by these settings, and a
    folder's cache only where one may be kept."""
    data, inert = cfg.data, {}
    if data.cache == "on":  # (data.py: a cached folder is decoded once, by PIL)
        inert["data.decoder"] = "--cache on decodes each image once, into the cache"
    elif data.cache == "off":  # (data.open_folder: nothing is cached, read or written)
        inert["data.cache_dir"] = "--cache off keeps no decoded cache"
    if not reads_folder(cfg, reads):  # (said last: the reason behind the others)
        inert.update({f"data.{name}": "it sets how an image folder is read, and the data "
                      f"flags name none (the digits demo and {', '.join(NAMED_DATASETS)} are "
                      "arrays in memory)" for name in FOLDER_READING})
    return inert


def _inert_optim(cfg: Config) -> dict[str, str]:
    optim, inert = cfg.optim, {}
    if optim.name != "lars":
        inert["optim.eta"] = f"it is LARS's trust coefficient, and --optimizer is {optim.name}"
        if optim.weight_decay == 0:  # optim.param_groups: the groups differ in nothing else
            inert["optim.exclude_bias_and_norm"] = (f"--optimizer {optim.name} without weight "
                                                    "decay treats every parameter alike")
    if optim.name == "adamw":
        inert["optim.momentum"] = "AdamW's moment decays are --betas"
    else:
        inert["optim.betas"] = f"they are AdamW's, and --optimizer is {optim.name}"
    if optim.warmup_fraction is not None:
        inert["optim.warmup_epochs"] = "--warmup-fraction sets the warm-up"
    return inert


def _inert_augment(cfg: Config, photos: bool) -> dict[str, str]:
    """The augmentation's (``photos``: an image folder's pictures are read)."""
    aug, inert = cfg.augment, {}
    for switch, (chance, *params) in GATED_BY.items():
        if not getattr(aug, switch):
            inert.update({f"augment.{name}": f"{switch} is off (--{switch} turns it on)"
                          for name in (chance, *params)})
        elif getattr(aug, chance) == 0:  # augment_params._coin: never drawn
            inert.update({f"augment.{name}": f"--{flag_of('augment.' + chance)} 0 never "
                          "applies it" for name in (switch, *params)})
    if aug.blur and aug.blur_p > 0 and blur_taps(aug.size, aug.blur_kernel_frac) == 1:
        # (augment._stages skips it; --blur-kernel-frac itself acts: a larger one blurs)
        inert.update({f"augment.{name}": f"--blur-kernel-frac {aug.blur_kernel_frac:g} "
                      f"gives a 1-tap kernel at {aug.size}-px views: no blur"
                      for name in ("blur", "blur_p", "blur_sigma")})
    if aug.noise and aug.noise_p > 0 and tuple(aug.noise_std) == (0.0, 0.0):
        inert["augment.noise"] = inert["augment.noise_p"] = "--noise-std 0,0 adds nothing"
    if aug.color and aug.color_p > 0:
        acting = sum(amount != 0 for amount in aug.jitter())  # augment.py skips zero ones
        if acting == 0:
            for name in ("color", "color_p", "color_random_order"):
                inert[f"augment.{name}"] = "every colour jitter amount is 0"
        elif acting == 1:
            inert["augment.color_random_order"] = "only one colour jitter amount is not 0"
        if len({acting_color_ops(replace(aug, color_ops=ops)) for ops in COLOR_OPS}) == 1:
            inert["augment.color_ops"] = ("it defines brightness, contrast and saturation, "
                                          "all 0 here")
        if all(getattr(aug, name) is not None for name in JITTER):
            inert["augment.color_strength"] = "--brightness, --contrast, --saturation and " \
                                              "--hue are all given"
    if not aug.crop and not aug.asymmetric:  # Fig. 5's shared crop still draws from them
        inert.update({f"augment.{name}": "--no-crop resizes the whole image"
                      for name in (*CROP_DRAW, "crop_resize")})
    elif not aug.crop_resize:  # augment_params._crop_boxes: a fixed window, drawn before
        inert.update({f"augment.{name}": "--no-crop-resize takes a window of the view's "
                      "side" for name in CROP_DRAW})
        # That window is resampled to the view's side: pixel for pixel from a stored
        # square; a picture squeezed into one (--store full, a photo not square) is
        # stretched back, which resamples. (--asymmetric: its shared crop resizes.)
        if not aug.asymmetric and (not photos or cfg.data.store == "center"):
            inert["augment.interpolation"] = ("--no-crop-resize takes a window of the view's "
                                              "side, resampled pixel for pixel")
    if aug.first_op and aug.asymmetric:  # (validate: it needs --asymmetric)
        # (a switch that does nothing here, --color-p 0 or a 1-tap blur: no stage to move)
        def acts(name: str) -> bool:
            return bool(getattr(aug, name)) and f"augment.{name}" not in inert

        why = _first_op_inert(aug.first_op, acts)
        if why:
            inert["augment.first_op"] = why
    return inert


def _first_op_inert(first_op: str, switch: Callable[[str], object]) -> str | None:
    """Why ``first_op`` changes no view (None: it does; :func:`first_op_moves`)."""
    if first_op_moves(first_op, switch):
        return None
    if switch("crop") or own_first_op(switch) == first_op:
        return f"{first_op} comes first in the pipeline's order already"
    if first_op == "crop":
        return "crop has nothing to move without --crop: the flip stays at the shared crop, first"
    return f"{first_op} does nothing here, and without --crop no crop follows it"


def own_first_op(switch: Callable[[str], object]) -> str | None:
    """The Fig. 5 group the pipeline's own order puts first (augment.op_order) among
    those with something to move (``switch``: an augmentation switch's name -> whether
    it acts; :func:`_moves`); None where none has."""
    return next((op for op in FIG5_OPS if _moves(op, switch)), None)


def first_op_moves(first_op: str, switch: Callable[[str], object]) -> bool:
    """Whether ``first_op`` changes the views (``switch`` as :func:`own_first_op` takes
    it). With --crop, any group but the crop's put first crops the view again after it
    (augment_params._asymmetric_boxes: a second resampling), whatever that group does;
    without, the group must have something to move and not be the first that has."""
    if not first_op:
        return False
    if switch("crop"):
        return first_op != "crop"
    return _moves(first_op, switch) and own_first_op(switch) != first_op


def _moves(op: str, switch: Callable[[str], object]) -> bool:
    """Whether the Fig. 5 group ``op`` is a stage an order can move: one of its switches
    acts, but the flip, drawn with the targeted crop (augment_params._asymmetric_boxes):
    without --crop it is drawn at the crop every view starts with, first whatever the
    order (one group on, --no-crop with the flip on: views alike with first_op or not)."""
    return any(switch(name) for name in FIG5_OPS[op] if name != "flip")


# Settings without effect at some values only: the value that spells what the pipeline
# does anyway (--first-op crop). In a sweep that value is the axis's baseline cell, not a
# second label of another cell's run (:func:`simclr.sweep_checks.check_settings_act`).
VALUE_INERT = frozenset({"augment.first_op"})


def blur_taps(size: int, frac: float) -> int:
    """The side of the blur kernel of ``size``-px views, as the official code's
    ``2 * (int(size * frac) // 2) + 1`` (augment_params.blur_kernel_size, which imports
    torch): 1 below 20 px at the default 10%, a single tap."""
    return 2 * (int(size * frac) // 2) + 1


def acting_color_ops(aug: AugmentConfig) -> str:
    """The colour ops ``aug.color_ops`` computes under its jitter amounts: official_v1
    differs from official only in brightness, official from torchvision only in
    contrast and saturation (augment._stages), so a zero amount makes two of them alike."""
    b, c, s, _ = aug.jitter()
    ops = aug.color_ops
    if ops == "official_v1" and b == 0:
        ops = "official"
    if ops == "official" and c == 0 and s == 0:
        ops = "torchvision"
    return ops


class InertSettingError(SettingError):
    """A setting refused as inert, named as it was given: a boolean given off is the
    ``--no-NAME`` flag (the path alone names it ``--NAME``, which the user did not type)."""

    def __init__(self, path: str, detail: str, negated: bool) -> None:
        self.negated = negated
        super().__init__(path, detail)

    def named(self, name: Callable[[str], str]) -> str:
        def spelled(path: str) -> str:
            flag = name(path)  # (a config file's key is named as it is)
            return f"--no-{flag[2:]}" if path == self.path and self.negated and \
                flag.startswith("--") else flag

        return super().named(spelled)


def refuse_inert(cfg: Config, given: Iterable[str], reads: Iterable[str | None] = ()) -> None:
    """Raise for the first of the ``given`` dotted settings that is inert under ``cfg``
    (and the data specs ``reads``: :func:`inert_settings`): an augmentation's switch
    last, so that ``--blur --blur-p 0 --blur-sigma 0.1,2`` names --blur-sigma (what has
    no effect, given to act), not --blur."""
    inert = inert_settings(cfg, reads)
    switches = {f"augment.{switch}" for switch in GATED_BY}
    for path in sorted(given, key=lambda p: (p in switches, p)):
        if path in inert:
            section, _, name = path.rpartition(".")
            value = getattr(getattr(cfg, section) if section else cfg, name, None)
            raise InertSettingError(path, f" has no effect: {inert[path]}; leave it out",
                                    negated=value is False)
