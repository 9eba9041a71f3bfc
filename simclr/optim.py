"""LARS, parameter groups and the learning-rate schedule (Chen et al. 2020, Sec. 2.2, 2.3;
the lr scaling rules App. B.1).

LARS follows the official ``lars_optimizer.py`` (classic momentum, no Nesterov):

    g <- g + wd * w                       (decayed parameters only)
    trust = eta * |w| / |g|               (1 if |w| = 0 or |g| = 0; adapted parameters only)
    v <- m * v + lr * trust * g
    w <- w - v

BatchNorm and bias parameters are excluded from weight decay *and* from the
trust-ratio adaptation (plain momentum SGD for them).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any, cast

import torch
from torch import Tensor, nn

from simclr.config import OptimConfig
from simclr.errors import SimCLRError


def _check_settings(settings: dict[str, float]) -> None:
    """LARS's numbers: finite, lr and weight decay >= 0, momentum in [0, 1), eta > 0
    (a NaN would pass every comparison and poison the weights at the first step)."""
    bounds = {"lr": (0, math.inf), "momentum": (0, 1), "weight_decay": (0, math.inf),
              "eta": (0, math.inf)}
    for name, value in settings.items():
        lo, hi = bounds[name]
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
            math.isfinite(value) and value >= lo and (value < hi or hi == math.inf)
        if not ok or (name == "eta" and value == 0):
            raise ValueError(f"invalid LARS setting {name}={value!r} (lr and weight_decay "
                             ">= 0, momentum in [0, 1), eta > 0, all finite)")


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) as used by SimCLR.

    A parameter is *excluded* (no weight decay, trust = 1) when its group's
    ``lars_exclude`` is True, or, when that key is None/absent, when ``p.ndim <= 1``
    (biases and BatchNorm scales/shifts). Group keys: lr, momentum, weight_decay,
    eta, lars_exclude. The update runs as a few batched (``torch._foreach``) kernels
    per group and never synchronises with the host.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
    ) -> None:
        _check_settings(dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                        lars_exclude=None)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's, with a group's own settings checked as the defaults are."""
        _check_settings({k: param_group[k] for k in ("lr", "momentum", "weight_decay", "eta")
                         if k in param_group})
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            adapted: dict[tuple, list[Tensor]] = defaultdict(list)
            plain: dict[tuple, list[Tensor]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                exclude = group["lars_exclude"]
                if exclude is None:
                    exclude = p.ndim <= 1
                (plain if exclude else adapted)[(p.device, p.dtype)].append(p)
            for params in adapted.values():
                self._update(params, group, adapt=True)
            for params in plain.values():
                self._update(params, group, adapt=False)
        return loss

    def _update(self, params: list[Tensor], group: dict[str, Any], adapt: bool) -> None:
        """One LARS step for parameters sharing a device and dtype."""
        lr, m, wd, eta = group["lr"], group["momentum"], group["weight_decay"], group["eta"]
        # (step() grouped only parameters that have a gradient)
        grads: list[Tensor] | tuple[Tensor, ...] = cast(list[Tensor], [p.grad for p in params])
        if adapt:
            if wd != 0:
                grads = torch._foreach_add(grads, params, alpha=wd)
            w_norm = torch.stack(torch._foreach_norm(params))
            g_norm = torch.stack(torch._foreach_norm(grads))
            both = (w_norm > 0) & (g_norm > 0)
            # Division guarded so zero norms give trust 1, not nan.
            trust = torch.where(both, eta * w_norm / torch.where(both, g_norm, 1.0), 1.0)
            steps = torch._foreach_mul(grads, list((trust * lr).to(params[0].dtype).unbind()))
        else:
            steps = torch._foreach_mul(grads, lr)
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        torch._foreach_mul_(bufs, m)
        torch._foreach_add_(bufs, steps)
        torch._foreach_sub_(params, bufs)


# Parameters added to activations, like biases: a ViT's class token and position
# embeddings, Swin's relative position biases; and per-channel scales shaped (C, 1, 1),
# which ndim cannot tell from weights: ConvNeXt's layer_scale (from 1e-6: LARS-adapted
# it changes by ~lr*eta of its own norm a step, its blocks near off for long) and Swin
# V2's attention logit_scale; their papers' code does not decay either (torchvision's
# names; simclr.backbones).
# The scales are those an earlier simclr decayed and adapted with the weights (ndim 3):
# a run it saved keeps that grouping (load_optimizer_state), its momenta indexed by it.
_SCALES = ("layer_scale", "logit_scale")
_ADDITIVE = ("class_token", "pos_embedding", "relative_position_bias_table", *_SCALES)


def _is_bias_or_norm(module: nn.Module, name: str, p: Tensor, scales_decayed: bool) -> bool:
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    additive = name in _ADDITIVE and not (scales_decayed and name in _SCALES)
    return isinstance(module, norms) or name == "bias" or additive or p.ndim <= 1


def param_groups(
    model: nn.Module, weight_decay: float, exclude_bias_and_norm: bool = True,
    scales_decayed: bool = False,
) -> list[dict[str, Any]]:
    """Parameter groups: weights (decayed, LARS-adapted) and biases/norm params.

    With ``exclude_bias_and_norm`` biases and normalisation parameters go to a group
    with ``weight_decay=0`` and ``lars_exclude=True``; otherwise every parameter is
    decayed and adapted (``lars_exclude=False``). Frozen parameters are left out;
    empty groups are dropped. ``scales_decayed``: ConvNeXt's layer_scale and Swin V2's
    logit_scale in the decayed group, as an earlier simclr grouped them (the runs it
    saved continue so: :func:`load_optimizer_state`).
    """
    decay: list[Tensor] = []
    excluded: list[Tensor] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if exclude_bias_and_norm and _is_bias_or_norm(module, name, p, scales_decayed):
                excluded.append(p)
            else:
                decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": excluded, "weight_decay": 0.0, "lars_exclude": True},
    ]
    return [g for g in groups if g["params"]]


def scaled_lr(base_lr: float, batch_size: int, scaling: str) -> float:
    """Peak learning rate (App. B.1): linear base*B/256, sqrt base*sqrt(B), or none."""
    if scaling == "linear":
        return base_lr * batch_size / 256
    if scaling == "sqrt":
        return base_lr * math.sqrt(batch_size)
    if scaling == "none":
        return base_lr
    raise SimCLRError(f"--lr-scaling: unknown value {scaling!r} (choose from linear, sqrt, none)")


def lr_notes(cfg: OptimConfig, batch_size: int, resumed: bool = False) -> list[str]:
    """A note when AdamW's peak lr is over 10 times its base's at this batch
    (config.ADAMW_BASE_LR): a LARS-sized rate, as a run's config.yaml of the release
    before 2026-12-06 carries (the digits demo's 1.0 collapsed at once). Not refused: an
    lr given is the user's. ``resumed``: the run continues at its lr (--resume cannot
    change it), so the way to another is a new run."""
    if cfg.name != "adamw" or cfg.lr is None:
        return []
    peak = scaled_lr(cfg.lr, batch_size, cfg.lr_scaling)
    base = cfg.default_lr()
    default = scaled_lr(base, batch_size, cfg.lr_scaling)
    if peak <= 10 * default:
        return []
    return [f"note: AdamW at a peak lr of {peak:.3g}, {peak / default:.0f} times its default "
            f"(base {base:g} under --lr-scaling {cfg.lr_scaling}): Adam's steps are about the "
            "lr's size for every weight, and LARS-sized rates collapse it; "
            f"{'a new run with --lr' if resumed else '--lr'} sets another"]


def warmup_steps(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up length in steps (Sec. 2.3: 10 epochs of linear warm-up).

    ``warmup_epochs`` (10 in the paper, for runs of 100+ epochs) but at most 10% of the
    run, so short runs keep the paper's warm-up proportion instead of never reaching
    the peak rate; ``warmup_fraction`` sets the proportion explicitly, rounded but
    leaving the last step after the warm-up (0.9 of 4 steps rounded to all 4: the rate
    never reached its peak, nor decayed; 0.6 of 1 step trained that step at rate 0).
    """
    if cfg.warmup_fraction is not None:
        return min(share_of(cfg.warmup_fraction, total_steps), max(total_steps - 1, 0))
    return min(share_of(cfg.warmup_epochs, steps_per_epoch), share_of(0.1, total_steps))


def share_of(share: float, count: int) -> int:
    """``share * count`` rounded, multiplied as written (a Fraction of the decimal):
    --warmup-epochs 1.15 of 10 steps is 11.5, rounded to 12, where the float product
    11.499999999999998 rounded to 11. Ties go to the even count, as Python's round."""
    return round(Fraction(str(share)) * count)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float,
          final_lr: float = 0.0) -> float:
    """Learning rate at a global step (0-based): linear warm-up, then cosine decay.

    Warm-up: peak * step / warmup for step < warmup (0 at step 0, as in the official
    code); then final + (peak - final) * (1 + cos(pi * t)) / 2 with
    t = (step - warmup) / (total - warmup), reaching final_lr at total_steps and
    staying there after. A pure function of the step, so resuming is exact.
    """
    step = max(0, step)
    warmup = max(0, warmup_steps)
    if step < warmup and step < total_steps:
        # (a ramp longer than the run, left by a --time-budget re-plan that cut the run:
        # it ends within the ramp at the ramp's slope, not a steeper one fitted into it)
        return peak_lr * step / warmup
    if step >= total_steps:
        return final_lr
    t = (step - warmup) / (total_steps - warmup)
    return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def gradients_finite(optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """Whether every gradient ``optimizer`` holds is finite: a bool device scalar, from
    one batched norm kernel (no host sync). The max norm: an L2 norm overflows float32
    past 1.8e19 with every entry finite. A finite loss can still give NaN/inf gradients
    (bf16 convolutions over 1x1 inputs on a CPU did): a training checks both. Under an
    enabled (fp16) ``scaler`` always True: it skips such a step itself (an overflow of
    its scale, not a fault)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or (scaler is not None and scaler.is_enabled()):
        # (on the parameters' device: a mask for their losses)
        return torch.tensor(True, device=params[0].device if params else None)
    return torch.isfinite(torch.stack(torch._foreach_norm(grads, float("inf")))).all()


def build_optimizer(cfg: OptimConfig, model: nn.Module, batch_size: int) -> torch.optim.Optimizer:
    """LARS, SGD (Nesterov momentum, as the official 'momentum' optimizer) or AdamW.

    Each group stores the scaled peak lr as ``group["peak_lr"]``; its ``lr`` starts at
    the peak and the training loop sets ``group["lr"] = lr_at(...)`` every step.
    """
    lr = scaled_lr(cfg.base_lr(), batch_size, cfg.lr_scaling)
    groups = param_groups(model, cfg.weight_decay, cfg.exclude_bias_and_norm)
    if cfg.name == "lars":
        opt: torch.optim.Optimizer = LARS(groups, lr=lr, momentum=cfg.momentum,
                                          weight_decay=cfg.weight_decay, eta=cfg.eta)
    elif cfg.name == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum,
                              nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    elif cfg.name == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    else:
        raise SimCLRError(f"--optimizer: unknown value {cfg.name!r} (choose from lars, sgd, adamw)")
    for group in opt.param_groups:
        group["peak_lr"] = lr
    return opt


def load_optimizer_state(optimizer: torch.optim.Optimizer, ckpt: Mapping[str, Any],
                         model: nn.Module, verbose: bool = True) -> None:
    """``ckpt["optimizer"]`` loaded into ``optimizer`` (built by :func:`build_optimizer`
    for ``model``). A run saved by an earlier simclr, which decayed ConvNeXt's
    layer_scale and Swin V2's logit_scale with the weights, saved groups of other sizes
    than this grouping's: where they are that grouping's sizes the optimizer is regrouped
    so and the run continues as it started (a note says so; new runs exclude them).
    Other states that do not fit raise torch's ValueError as ever, and so does a saved
    per-parameter state of another shape than its parameter's (:func:`check_state_shapes`),
    which torch would load and the first step die on."""
    saved = ckpt["optimizer"]
    sizes = [len(group["params"]) for group in saved["param_groups"]]
    grouped = all("lars_exclude" in group for group in optimizer.param_groups)  # (ours)
    if grouped and sizes != [len(group["params"]) for group in optimizer.param_groups]:
        exclude = any(group["lars_exclude"] for group in optimizer.param_groups)
        earlier = param_groups(model, 0.0, exclude, scales_decayed=True)
        if sizes == [len(group["params"]) for group in earlier]:
            # (the groups' settings, weight decay too, are the saved ones: load_state_dict)
            optimizer.param_groups.clear()
            for group in earlier:
                optimizer.add_param_group(group)
            if verbose:
                print(f"note: {ckpt.get('file', 'the checkpoint')}: the run keeps the "
                      "parameter grouping it started with (ConvNeXt's layer_scale and Swin "
                      "V2's logit_scale decayed and LARS-adapted with the weights); new runs "
                      "exclude them with biases and norms", file=sys.stderr, flush=True)
    check_state_shapes(optimizer, saved, model)
    optimizer.load_state_dict(saved)


def check_state_shapes(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any],
                       model: nn.Module) -> None:
    """Raise ValueError naming the first per-parameter tensor of ``saved`` (an optimizer
    state_dict: a momentum_buffer, AdamW's exp_avg and exp_avg_sq) whose shape is not
    its parameter's: torch's load_state_dict pairs them by position without a look at
    shapes (a damaged or edited checkpoint), and the first step then dies inside torch.
    Scalars (AdamW's ``step``) are no per-parameter tensor. Groups of other sizes are
    left to load_state_dict, which says so."""
    names = {p: name for name, p in model.named_parameters()}
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        return
    for group, ours in zip(groups, optimizer.param_groups, strict=True):
        if len(group["params"]) != len(ours["params"]):
            return
        for index, param in zip(group["params"], ours["params"], strict=True):
            state = saved["state"].get(index)
            for key, value in (state.items() if isinstance(state, Mapping) else ()):
                if isinstance(value, torch.Tensor) and value.dim() > 0 \
                        and value.shape != param.shape:
                    raise ValueError(f"the saved {key} of {names.get(param, index)} has "
                                     f"shape {list(value.shape)}, the parameter "
                                     f"{list(param.shape)}")
