"""What continuing a run may change of its recipe: the flags given with ``--resume``
onto the saved config (only where and how fast it runs), the first command given again
(``--preset``/``--config`` and the flags) compared with the saved settings, and the
comparison of two configs setting by setting (:func:`differing`, :func:`flatten`) that
sweeps use too.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from collections.abc import Set as AbstractSet
from typing import Any

from simclr.config import Config
from simclr.errors import SimCLRError
from simclr.inert import inert_settings
from simclr.settings import _absolute, absolute_paths, flag_of, set_path


def apply_resume_flags(cfg: Config, flags: dict[str, Any], allowed: AbstractSet[str],
                       inert_ok: Collection[str] = (),
                       reads: Collection[str | None] = ()) -> None:
    """The flags given with ``--resume`` onto the saved config: only ``allowed`` settings
    (where and how fast the run goes, not what it computes) may change, and each value
    is checked as a new run's would be, so a resumed run never saves an invalid config.
    Any other flag is refused unless it gives the saved value (the first command with
    ``--resume`` added)."""
    _check_same_out(cfg.out, flags.get("out"))
    trial, unfit = copy.deepcopy(cfg), set()
    for path, value in flags.items():
        try:
            set_path(trial, path, value, "flag")
        except SimCLRError:  # a value it cannot take: a change (said below if allowed)
            unfit.add(path)
    changed = unfit | set(differing(cfg, trial))  # ('16' is 16, a folder its full path)
    refused = sorted(f"--{flag_of(path)}" for path in set(flags) - allowed if path in changed)
    if refused:
        raise SimCLRError(f"--resume continues the saved settings; cannot change "
                          f"{', '.join(refused)}")
    for path, value in flags.items():
        if path in allowed:
            set_path(cfg, path, value, "flag")
    from simclr.inert import refuse_inert
    from simclr.validate import check_knn_every, validate

    validate(cfg)
    if "knn_every" in flags:  # (a new value: held as a new run's)
        check_knn_every(cfg)

    refuse_inert(cfg, set(flags) - set(inert_ok), reads)  # (as build_config's)


def _check_same_out(run_dir: str, out: Any) -> None:
    """``--out`` with ``--resume`` must name the resumed run's folder (``run_dir``, as
    found now): another is most often where the run was before it was moved, given
    again with the first command, and the run continues only where its files are."""
    if out is None or _absolute(str(out)) == _absolute(run_dir):
        return
    raise SimCLRError(f"--out {out} is not the folder of the run --resume names, which is "
                      f"{run_dir} now (moved since it started?); resume it there: drop "
                      f"--out, or give --out {run_dir}")


def check_same_recipe(saved: Config, given: Config, allowed: AbstractSet[str],
                      flags: Collection[str] = ()) -> None:
    """``--resume`` with ``--preset``/``--config`` (the first command again): accepted
    where they, with the flags, give the saved settings (those ``allowed`` to change
    aside), refused naming what they would change: the ``flags`` given first (a setting
    they change, --lr under another --lr-scaling, is not what the user typed), at most
    a few."""
    changed = recipe_changes(saved, given, allowed)
    if set(changed) == {"optim.lr"} and "optim.lr" not in flags \
            and earlier_adamw_lr(changed["optim.lr"][0], given):
        raise SimCLRError(f"--resume continues the saved settings: the run trained AdamW at "
                          f"{earlier_adamw_default(changed['optim.lr'][0], given)}; "
                          f"`simclr pretrain --resume {saved.out}` alone, without "
                          "--preset/--config and the flags, continues the run as it was")
    if changed:
        paths = sorted(changed, key=lambda p: p not in flags)  # (stable: the config's order)
        said = ", ".join(f"--{flag_of(p)} ({value_text(changed[p][0])} saved, "
                         f"{value_text(changed[p][1])} asked)" for p in paths[:_MOST_NAMED])
        more = f" and {len(paths) - _MOST_NAMED} more" if len(paths) > _MOST_NAMED else ""
        raise SimCLRError(f"--resume continues the saved settings; cannot change {said}"
                          f"{more} (asked by --preset/--config and the flags)")


def earlier_adamw_lr(saved_lr: Any, given: Config) -> bool:
    """Whether ``saved_lr``, an AdamW run's, is a LARS-sized default of a release before
    2026-12-06 (it gave AdamW a preset's or file's lr) where ``given``, AdamW too, has
    this release's default (config.ADAMW_BASE_LR): a change no --lr asked for."""
    if given.optim.name != "adamw" or not isinstance(saved_lr, (int, float)):
        return False
    default = given.optim.default_lr()
    return given.optim.lr == default and saved_lr > default


def earlier_adamw_default(saved_lr: float, given: Config) -> str:
    """What a message says of an :func:`earlier_adamw_lr`: the run's lr, and the default
    of this release at ``given``'s scaling rule (--lr 1 ...; ... 0.001 x B/256 ...)."""
    rule = given.optim.lr_scaling
    scaled = {"linear": " x B/256", "sqrt": " x sqrt(B)"}.get(rule, "")
    return (f"--lr {value_text(saved_lr)}, a default of a release before 2026-12-06 (a "
            f"preset's or file's LARS-sized lr kept for AdamW); this release's AdamW default "
            f"is {value_text(given.optim.lr)}{scaled} (LARS-sized rates collapse AdamW)")


def value_text(value: Any) -> str:
    """A setting's value in a message: a float to 6 digits (0.0883883), None and a
    switch as flags and YAML spell them (none, true, false), an empty text quoted (''),
    others as is."""
    if isinstance(value, bool):  # (before float: a bool is an int)
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value) or "''"


_MOST_NAMED = 4  # changes a refusal names (another preset changes dozens)


def recipe_changes(saved: Config, given: Config, allowed: AbstractSet[str]
                   ) -> dict[str, tuple[Any, Any]]:
    """{setting: (saved, given)} of the settings ``given`` changes that continuing the
    ``saved`` run may not (``allowed`` aside; --out neither: the continued run's folder
    is named, and a preset's own --out is no change of it). A saved first_op that changes
    no view (the pipeline's own first group: a release accepted --first-op crop) is no
    first_op: the same run (inert.first_op_moves)."""
    changed = differing(saved, given)
    if "augment.first_op" in changed and given.augment.first_op == "" \
            and "augment.first_op" in inert_settings(saved):
        del changed["augment.first_op"]
    return {p: v for p, v in changed.items() if p not in allowed and p != "out"}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config's nested dict as {dotted path: value}, tuples as lists (as YAML reads
    them back)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def differing(saved: Config, given: Config) -> dict[str, tuple[Any, Any]]:
    """The settings (dotted path -> (saved value, given value)) in which ``given`` differs
    from ``saved``, its local paths made absolute first as a run's are."""
    absolute_paths(given)
    before, now = flatten(saved.to_dict()), flatten(given.to_dict())
    return {p: (v, now.get(p)) for p, v in before.items() if v != now.get(p)}
