"""LARS against hand-computed steps, parameter groups, lr scaling and the schedule."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from simclr.config import OptimConfig
from simclr.errors import SimCLRError
from simclr.optim import (
    LARS,
    build_optimizer,
    gradients_finite,
    load_optimizer_state,
    lr_at,
    param_groups,
    scaled_lr,
    share_of,
    warmup_steps,
)
from tests.conftest import ScaledNet, earlier_lars


def _param(values) -> nn.Parameter:
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _step(opt, params, grads, lr):
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g, dtype=torch.float64)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()


def test_lars_two_steps_by_hand():
    # eta = 0.001, momentum 0.9, weight decay 0.1; lr 0.2 then 0.1 (a schedule).
    w = _param([[3.0, 0.0], [0.0, 4.0]])  # |w0| = 5
    b = _param([1.0, -2.0])
    opt = LARS([w, b], lr=0.2, momentum=0.9, weight_decay=0.1, eta=0.001)

    # Step 1. Weight: g = [[.3,0],[0,.4]] + 0.1 w0 = [[.6,0],[0,.8]], |g| = 1,
    # trust = 0.001 * 5 / 1 = 0.005, v1 = 0.2 * 0.005 * g = [[.0006,0],[0,.0008]].
    # Bias (1-D): no decay, trust 1: v1 = 0.2 * [.5,.5] = [.1,.1].
    _step(opt, [w, b], [[[0.3, 0.0], [0.0, 0.4]], [0.5, 0.5]], lr=0.2)
    torch.testing.assert_close(w.detach(), torch.tensor([[2.9994, 0.0], [0.0, 3.9992]],
                                                        dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(b.detach(), torch.tensor([0.9, -2.1], dtype=torch.float64),
                               rtol=0, atol=1e-15)

    # Step 2. Weight: g = [[.1,.2],[.3,.4]] + 0.1 w1 = [[.39994,.2],[.3,.79992]].
    g2 = [[0.1 + 0.1 * 2.9994, 0.2], [0.3, 0.4 + 0.1 * 3.9992]]
    w_norm = math.sqrt(2.9994**2 + 3.9992**2)
    g_norm = math.sqrt(sum(x * x for row in g2 for x in row))
    trust = 0.001 * w_norm / g_norm
    v1 = [[0.0006, 0.0], [0.0, 0.0008]]
    v2 = [[0.9 * v1[r][c] + 0.1 * trust * g2[r][c] for c in range(2)] for r in range(2)]
    w1 = [[2.9994, 0.0], [0.0, 3.9992]]
    w2 = [[w1[r][c] - v2[r][c] for c in range(2)] for r in range(2)]
    # Bias: v2 = 0.9 * [.1,.1] + 0.1 * [1,-1] = [.19,-.01]; b2 = [.9-.19, -2.1+.01].
    _step(opt, [w, b], [[[0.1, 0.2], [0.3, 0.4]], [1.0, -1.0]], lr=0.1)
    torch.testing.assert_close(w.detach(), torch.tensor(w2, dtype=torch.float64),
                               rtol=0, atol=1e-15)
    torch.testing.assert_close(b.detach(), torch.tensor([0.71, -2.09], dtype=torch.float64),
                               rtol=0, atol=1e-15)
    # Spelled out: |w1| = sqrt(24.990001) = 4.9990001, |g2| = sqrt(0.92982401) = 0.96427383,
    # trust2 = 0.0051842121; w2 = w1 - (0.9 v1 + 0.1 trust2 g2).
    torch.testing.assert_close(w.detach(), torch.tensor(
        [[2.99865266, -0.00010368], [-0.00015553, 3.99806530]], dtype=torch.float64),
        rtol=0, atol=1e-8)


def test_lars_zero_weight_norm_gives_trust_one():
    w = _param([[0.0, 0.0], [0.0, 0.0]])
    opt = LARS([w], lr=0.5, momentum=0.9, weight_decay=0.1)
    _step(opt, [w], [[[1.0, 2.0], [3.0, 4.0]]], lr=0.5)
    # wd * 0 = 0, trust 1: w = -0.5 * g.
    torch.testing.assert_close(w.detach(), torch.tensor([[-0.5, -1.0], [-1.5, -2.0]],
                                                        dtype=torch.float64))


def test_lars_zero_gradient_norm_is_finite():
    w = _param([[1.0, 2.0], [3.0, 4.0]])
    opt = LARS([w], lr=0.5, momentum=0.9, weight_decay=0.0)
    _step(opt, [w], [[[0.0, 0.0], [0.0, 0.0]]], lr=0.5)
    torch.testing.assert_close(w.detach(), torch.tensor([[1.0, 2.0], [3.0, 4.0]],
                                                        dtype=torch.float64))
    assert torch.isfinite(opt.state[w]["momentum_buffer"]).all()


def test_lars_excludes_1d_from_weight_decay_and_adaptation():
    b = _param([2.0, -2.0])
    opt = LARS([b], lr=0.1, weight_decay=0.5, eta=0.001)
    _step(opt, [b], [[0.0, 0.0]], lr=0.1)  # decay would move it; excluded -> unchanged
    assert b.tolist() == [2.0, -2.0]
    _step(opt, [b], [[1.0, 1.0]], lr=0.1)  # trust 1: plain lr * g
    torch.testing.assert_close(b.detach(), torch.tensor([1.9, -2.1], dtype=torch.float64))


def test_lars_group_override():
    # A 1-D parameter with lars_exclude=False is decayed and adapted.
    b = _param([3.0, 4.0])  # |b| = 5
    # A 2-D parameter with lars_exclude=True is neither.
    w = _param([[3.0, 4.0]])
    opt = LARS([{"params": [b], "lars_exclude": False}, {"params": [w], "lars_exclude": True}],
               lr=0.1, momentum=0.9, weight_decay=0.1, eta=0.01)
    # b: g = [0.2,0.6] + 0.1*[3,4] = [0.5,1.0], |g| = sqrt(1.25); trust = 0.01*5/sqrt(1.25).
    trust = 0.01 * 5 / math.sqrt(1.25)
    _step(opt, [b, w], [[0.2, 0.6], [[1.0, -1.0]]], lr=0.1)
    torch.testing.assert_close(b.detach(), torch.tensor(
        [3.0 - 0.1 * trust * 0.5, 4.0 - 0.1 * trust * 1.0], dtype=torch.float64))
    torch.testing.assert_close(w.detach(), torch.tensor([[2.9, 4.1]], dtype=torch.float64))


def test_lars_skips_parameters_without_grad_and_state_roundtrip():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = LARS(model.parameters(), lr=0.1, weight_decay=1e-2)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    state = copy.deepcopy(opt.state_dict())  # state_dict() holds live buffers
    x = torch.randn(4, 3)
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    after = [p.detach().clone() for p in model.parameters()]

    model2 = nn.Linear(3, 2)
    model2.load_state_dict(saved)
    opt2 = LARS(model2.parameters(), lr=0.1, weight_decay=1e-2)
    opt2.load_state_dict(state)
    model2(x).sum().backward()
    opt2.step()
    for p, q in zip(after, model2.parameters(), strict=True):
        torch.testing.assert_close(p, q.detach())
    frozen = nn.Parameter(torch.ones(2, 2))
    opt3 = LARS([frozen], lr=1.0)
    opt3.step()  # no grad -> untouched
    assert frozen.tolist() == [[1.0, 1.0], [1.0, 1.0]]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.ln = nn.LayerNorm(2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_param_groups_split_bias_and_norm():
    net = _Net()
    groups = param_groups(net, weight_decay=1e-4)
    decay, excluded = groups
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == ids([net.conv.weight, net.fc.weight])
    assert ids(excluded["params"]) == ids([net.bn.weight, net.bn.bias, net.fc.bias,
                                           net.ln.weight, net.ln.bias])
    assert decay["weight_decay"] == 1e-4 and decay["lars_exclude"] is False
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"] is True
    (single,) = param_groups(net, weight_decay=1e-4, exclude_bias_and_norm=False)
    assert len(single["params"]) == 7 and single["lars_exclude"] is False


@pytest.mark.parametrize("name,cls", [("lars", LARS), ("sgd", torch.optim.SGD),
                                      ("adamw", torch.optim.AdamW)])
def test_build_optimizer(name, cls):
    net = _Net()
    cfg = OptimConfig(name=name, lr=0.3, lr_scaling="linear", weight_decay=1e-6, eta=0.002)
    opt = build_optimizer(cfg, net, batch_size=512)
    assert isinstance(opt, cls)
    assert len(opt.param_groups) == 2
    for group in opt.param_groups:
        assert group["peak_lr"] == pytest.approx(0.6) and group["lr"] == pytest.approx(0.6)
    assert opt.param_groups[0]["weight_decay"] == 1e-6
    assert opt.param_groups[1]["weight_decay"] == 0.0
    if name == "lars":
        assert opt.param_groups[0]["eta"] == 0.002 and opt.param_groups[0]["momentum"] == 0.9
    if name == "sgd":  # Nesterov, as the official 'momentum' optimizer
        assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    if name == "adamw":
        assert all(g["betas"] == (0.9, 0.999) for g in opt.param_groups)
        other = build_optimizer(OptimConfig(name="adamw", betas=(0.8, 0.99)), net, 512)
        assert all(g["betas"] == (0.8, 0.99) for g in other.param_groups)
    with pytest.raises(SimCLRError, match="optimizer"):
        build_optimizer(OptimConfig(name="rmsprop"), net, 256)


def test_lars_leaves_batchnorm_without_gradient_unchanged_in_a_real_step():
    net = _Net()
    opt = build_optimizer(OptimConfig(weight_decay=0.5), net, batch_size=256)
    before = net.bn.weight.detach().clone()
    conv_before = net.conv.weight.detach().clone()
    net.bn.weight.grad = torch.zeros_like(net.bn.weight)
    net.conv.weight.grad = torch.zeros_like(net.conv.weight)
    opt.step()
    assert torch.equal(net.bn.weight.detach(), before)  # excluded from decay
    # The conv weight is decayed: g = 0.5 w, trust = eta |w| / |0.5 w| = 2 eta, so
    # w <- w - lr * 2 eta * 0.5 w = w (1 - lr * eta), lr = 0.3 (B = 256), eta = 0.001.
    torch.testing.assert_close(net.conv.weight.detach(), conv_before * (1 - 0.3 * 0.001))


def test_scaled_lr():
    assert scaled_lr(0.3, 4096, "linear") == pytest.approx(4.8)
    assert scaled_lr(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert scaled_lr(1.0, 512, "linear") == pytest.approx(2.0)
    assert scaled_lr(0.5, 512, "none") == 0.5
    with pytest.raises(SimCLRError, match="lr-scaling"):
        scaled_lr(0.3, 256, "cubic")


def test_lr_at_key_steps():
    total, warm, peak, final = 1000, 100, 2.0, 0.1
    assert lr_at(0, total, warm, peak, final) == 0.0
    assert lr_at(50, total, warm, peak, final) == pytest.approx(1.0)
    assert lr_at(100, total, warm, peak, final) == pytest.approx(peak)
    assert lr_at(550, total, warm, peak, final) == pytest.approx((peak + final) / 2)
    # a quarter of the cosine: final + (peak - final) * (1 + cos(pi/4)) / 2
    assert lr_at(325, total, warm, peak, final) == pytest.approx(
        0.1 + 1.9 * (1 + math.sqrt(0.5)) / 2)
    assert lr_at(1000, total, warm, peak, final) == pytest.approx(final)
    assert lr_at(5000, total, warm, peak, final) == pytest.approx(final)
    assert lr_at(0, total, 0, peak) == pytest.approx(peak)  # no warm-up
    assert lr_at(10, 10, 20, peak) == 0.0  # warm-up longer than the run: at its end, final
    # ... and within the run on the ramp's own slope: a --time-budget re-plan that cut the
    # run to 4 steps under an 11-step ramp went from 4% of the peak to 75% in a step
    assert [lr_at(s, 4, 11, 1.0) for s in range(4)] == pytest.approx([0, 1 / 11, 2 / 11, 3 / 11])
    assert lr_at(-3, total, warm, peak, final) == 0.0  # before the first step: its lr


def test_warmup_is_ten_epochs_but_at_most_a_tenth_of_the_run():
    cfg = OptimConfig()  # warmup_epochs 10
    assert warmup_steps(cfg, steps_per_epoch=100, total_steps=100_000) == 1000  # 1000 epochs
    assert warmup_steps(cfg, steps_per_epoch=97, total_steps=485) == 48  # a 5-epoch run
    cfg.warmup_fraction = 0.25
    assert warmup_steps(cfg, steps_per_epoch=100, total_steps=400) == 100


def test_a_warmup_fraction_leaves_the_last_step_after_the_warmup():
    """round(0.9 * 4) = 4 made the whole run warm-up: rates 0, 0.25, 0.5, 0.75 of the
    peak, never the peak nor any decay; 0.6 of a 1-step run trained at rate 0."""
    cfg = OptimConfig(warmup_fraction=0.9)
    assert warmup_steps(cfg, steps_per_epoch=1, total_steps=4) == 3
    rates = [lr_at(s, 4, warmup_steps(cfg, 1, 4), 1.0) for s in range(4)]
    assert rates[:3] == pytest.approx([0.0, 1 / 3, 2 / 3]) and rates[3] == 1.0
    cfg.warmup_fraction = 0.6
    assert warmup_steps(cfg, 1, 1) == 0 and lr_at(0, 1, 0, 1.0) == 1.0
    assert warmup_steps(cfg, 1, 0) == 0  # (no step at all: no warm-up)
    cfg.warmup_fraction = 0.25  # where rounding keeps steps after it: as it was
    assert [warmup_steps(cfg, 1, t) for t in (4, 10, 400)] == [1, 2, 100]


def test_warmup_lengths_multiply_the_decimals_as_written():
    """--warmup-epochs 1.15 of 50 steps per epoch is 57.5 steps, rounded to 58; the float
    product 57.49999999999999 rounded to 57. Same for a --warmup-fraction (0.35 of 90
    steps: 31.499999999999996 gave 31)."""
    assert warmup_steps(OptimConfig(warmup_epochs=1.15), 50, 10_000) == 58
    assert warmup_steps(OptimConfig(warmup_fraction=0.35), 1, 90) == 32
    assert share_of(0.55, 110) == 60  # 60.5 (float 60.50000000000001): ties to even


def test_runs_of_at_most_five_steps_start_at_the_peak():
    """A tenth of 5 steps rounds to no warm-up step: step 0 trains at the peak rate."""
    cfg = OptimConfig()
    assert [warmup_steps(cfg, 1, total) for total in range(1, 7)] == [0, 0, 0, 0, 0, 1]
    assert lr_at(0, 5, warmup_steps(cfg, 1, 5), 2.0) == 2.0
    assert lr_at(0, 6, warmup_steps(cfg, 1, 6), 2.0) == 0.0


def test_lr_at_monotone():
    values = [lr_at(s, 300, 30, 1.0) for s in range(301)]
    assert all(a < b for a, b in zip(values[:30], values[1:31], strict=True))
    assert all(a >= b for a, b in zip(values[30:-1], values[31:], strict=True))
    assert values[30] == 1.0 and values[-1] == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to detect host syncs")
def test_lars_step_does_not_sync_with_host_on_cuda():
    net = _Net().cuda()
    opt = build_optimizer(OptimConfig(weight_decay=1e-4), net, batch_size=256)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("settings", [{"lr": float("nan")}, {"lr": -0.1}, {"momentum": 1.5},
                                      {"momentum": 1.0}, {"weight_decay": -1e-6},
                                      {"eta": 0.0}, {"eta": float("inf")}, {"lr": None},
                                      {"momentum": "0.9"}, {"weight_decay": True}])
def test_lars_refuses_settings_that_would_poison_the_weights(settings):
    """A NaN passes every comparison: each setting is checked finite and in range, in the
    defaults and in a parameter group of its own."""
    w = nn.Parameter(torch.ones(3, 3))
    with pytest.raises(ValueError, match="invalid LARS setting"):
        LARS([w], **{"lr": 0.1, **settings})
    with pytest.raises(ValueError, match="invalid LARS setting"):
        LARS([{"params": [w], **settings}], lr=0.1)


def test_large_finite_gradients_are_finite_and_nan_or_inf_ones_are_not():
    """An L2 norm of 1000 entries of 1e18 overflows float32 to inf: such gradients, all
    finite, stopped a run as 'non-finite'."""
    params = [torch.nn.Parameter(torch.zeros(1000)), torch.nn.Parameter(torch.zeros(3))]
    optimizer = torch.optim.SGD(params, lr=0.1)
    assert bool(gradients_finite(optimizer))  # (no gradient yet)
    params[0].grad, params[1].grad = torch.full((1000,), 1e18), torch.ones(3)
    assert bool(gradients_finite(optimizer))
    for bad in (math.nan, math.inf, -math.inf):
        params[1].grad = torch.tensor([1.0, bad, 1.0])
        assert not bool(gradients_finite(optimizer))
        assert not bool(gradients_finite(optimizer, torch.amp.GradScaler("cpu", enabled=False)))
    # (an fp16 scaler's overflow is its own to skip: no fault)
    assert bool(gradients_finite(optimizer, torch.amp.GradScaler("cpu", enabled=True)))


def test_a_state_saved_with_the_earlier_grouping_continues_with_it(capsys):
    """A run saved before layer_scale/logit_scale were excluded by name (its groups of
    2 and 1 parameters, not 1 and 2) continues with the grouping it started with: the
    same groups, settings and momenta, and a note; a new optimizer groups them anew."""
    torch.manual_seed(0)
    model = ScaledNet()
    old = earlier_lars(model)
    saved = copy.deepcopy(old.state_dict())
    optimizer = build_optimizer(OptimConfig(weight_decay=1e-6), model, 256)
    assert [len(g["params"]) for g in optimizer.param_groups] == [1, 2]  # (new runs)
    load_optimizer_state(optimizer, {"optimizer": saved, "file": "run/last.pt"}, model)
    assert [[id(p) for p in g["params"]] for g in optimizer.param_groups] == \
        [[id(p) for p in g["params"]] for g in old.param_groups]
    assert [(g["weight_decay"], g["lars_exclude"]) for g in optimizer.param_groups] == \
        [(1e-6, False), (0.0, True)]
    for p in model.parameters():
        assert torch.equal(optimizer.state[p]["momentum_buffer"],
                           old.state[p]["momentum_buffer"])
    assert "run/last.pt: the run keeps the parameter grouping it started with" in \
        capsys.readouterr().err
    # A state of other groups still does not fit, as torch says
    two = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))  # (groups of 2 and 2)
    other = build_optimizer(OptimConfig(), two, 256).state_dict()
    fresh = build_optimizer(OptimConfig(), model, 256)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        load_optimizer_state(fresh, {"optimizer": other}, model)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["lars", "sgd", "adamw"])
def test_a_saved_state_of_another_shape_than_its_parameter_is_refused(name):
    """torch loads a momentum cut to [:1] (a damaged or edited file) without a word; the
    run then died at its first step inside torch (_foreach_add_). Refused as loaded, a
    ValueError naming the tensor, which resume.readable_state says in one line."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = build_optimizer(OptimConfig(name=name), model, 256)
    model(torch.randn(5, 3)).square().mean().backward()
    optimizer.step()
    saved = copy.deepcopy(optimizer.state_dict())
    key = "momentum_buffer" if name != "adamw" else "exp_avg_sq"
    packed = [p for group in optimizer.param_groups for p in group["params"]]
    at = next(i for i, p in enumerate(packed) if p is model[2].weight)  # (its index saved)
    saved["state"][at][key] = saved["state"][at][key][:1]
    fresh = build_optimizer(OptimConfig(name=name), model, 256)
    with pytest.raises(ValueError, match=rf"^the saved {key} of 2.weight has shape "
                                         r"\[1, 4\], the parameter \[2, 4\]$"):
        load_optimizer_state(fresh, {"optimizer": saved}, model)
    assert not fresh.state  # nothing loaded
    saved["state"][at][key] = optimizer.state_dict()["state"][at][key]  # whole: it loads
    load_optimizer_state(fresh, {"optimizer": saved}, model)
    fresh.step()
    bias = next(i for i, p in enumerate(packed) if p is model[2].bias)  # a 1-D state too
    saved["state"][bias][key] = saved["state"][bias][key][:1]
    with pytest.raises(ValueError, match=rf"^the saved {key} of 2.bias has shape \[1\], "
                                         r"the parameter \[2\]$"):
        load_optimizer_state(build_optimizer(OptimConfig(name=name), model, 256),
                             {"optimizer": saved}, model)


def test_adamw_at_a_lars_sized_lr_is_noted():
    """A config.yaml of the release before 2026-12-06 carries AdamW at LARS's lr (the
    digits demo's 1.0 collapsed at once): a note names it; AdamW's own base, or any lr
    within 10 times it, says nothing, nor do LARS and SGD."""
    from simclr.optim import lr_notes

    (note,) = lr_notes(OptimConfig(name="adamw", lr=1.0), 256)
    assert note.startswith("note: AdamW at a peak lr of 1, 1000 times its default (base "
                           "0.001 under --lr-scaling linear)")
    assert lr_notes(OptimConfig(name="adamw", lr=0.01), 256) == []
    assert len(lr_notes(OptimConfig(name="adamw", lr=0.05), 256)) == 1  # 50 times: noted
    assert note.endswith("; --lr sets another")
    (resumed,) = lr_notes(OptimConfig(name="adamw", lr=1.0), 256, resumed=True)
    assert resumed.endswith("; a new run with --lr sets another")  # (--resume keeps its lr)
    (note,) = lr_notes(OptimConfig(name="adamw", lr=0.075, lr_scaling="sqrt"), 64)
    assert "300 times its default (base 0.00025 under --lr-scaling sqrt)" in note
    assert lr_notes(OptimConfig(name="lars", lr=1.0), 256) == []
    assert lr_notes(OptimConfig(name="sgd", lr=1.0), 256) == []


class _Mixed(nn.Module):
    """Parameters ndim alone does not sort: a LayerNorm over (C, W) has a 2-D scale, a
    ViT's class token and position embedding are 3-D, ConvNeXt's layer_scale (C, 1, 1);
    a PReLU's slope is 1-D but neither a bias nor a norm; one weight shared twice."""

    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm([3, 4])
        self.gn = nn.GroupNorm(1, 3)
        self.class_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.pos_embedding = nn.Parameter(torch.zeros(1, 5, 4))
        self.layer_scale = nn.Parameter(torch.full((3, 1, 1), 1e-6))
        self.act = nn.PReLU(3)
        self.fc = nn.Linear(4, 4)
        self.tied = nn.Linear(4, 4, bias=False)
        self.tied.weight = self.fc.weight


@pytest.mark.parametrize("scales_decayed", [False, True])
def test_param_groups_sort_by_role_not_only_by_shape(scales_decayed):
    net = _Mixed()
    decay, excluded = param_groups(net, weight_decay=1e-4, scales_decayed=scales_decayed)
    ids = lambda ps: sorted(id(p) for p in ps)  # noqa: E731 (each parameter once)
    scales = [net.layer_scale]
    assert ids(decay["params"]) == ids([net.fc.weight, *(scales if scales_decayed else [])])
    assert ids(excluded["params"]) == ids([
        net.ln.weight, net.ln.bias, net.gn.weight, net.gn.bias, net.class_token,
        net.pos_embedding, net.act.weight, net.fc.bias, *([] if scales_decayed else scales)])


def test_the_run_s_last_step_and_after_are_at_the_final_rate_whatever_the_ramp():
    """A ramp exactly as long as the run (a --time-budget re-plan can cut the run to its
    warm-up) still ends at final_lr at total_steps, as a shorter or longer ramp does."""
    for warm in (3, 10, 20):
        assert lr_at(10, 10, warm, 2.0, 0.1) == 0.1
        assert lr_at(11, 10, warm, 2.0, 0.1) == 0.1


@pytest.mark.parametrize("name", ["lars", "sgd", "adamw"])
def test_build_optimizer_without_the_exclusion_decays_and_adapts_every_parameter(name):
    net = _Net()
    cfg = OptimConfig(name=name, weight_decay=1e-6, exclude_bias_and_norm=False)
    (group,) = build_optimizer(cfg, net, batch_size=256).param_groups
    assert len(group["params"]) == 7 and group["weight_decay"] == 1e-6
    assert group["lars_exclude"] is False


def test_lars_momentum_is_the_one_given():
    """Momentum 0.5, two steps by hand (every other test ran at 0.9): v2 = 0.5 v1 + lr g2."""
    b = _param([1.0, -1.0])
    opt = LARS([b], lr=0.1, momentum=0.5)
    _step(opt, [b], [[1.0, 2.0]], lr=0.1)  # v1 = [.1, .2]
    _step(opt, [b], [[1.0, 2.0]], lr=0.1)  # v2 = [.15, .3]
    torch.testing.assert_close(b.detach(), torch.tensor([0.75, -1.5], dtype=torch.float64))


def test_build_optimizer_scales_the_lr_as_configured_and_sgd_without_momentum_works():
    """--lr-scaling sqrt reaches the optimizer (base x sqrt(B)); SGD at momentum 0 is
    plain SGD (Nesterov needs a momentum: torch refuses it at 0)."""
    net = _Net()
    opt = build_optimizer(OptimConfig(lr=0.075, lr_scaling="sqrt"), net, batch_size=1024)
    assert all(g["lr"] == g["peak_lr"] == pytest.approx(2.4) for g in opt.param_groups)
    sgd = build_optimizer(OptimConfig(name="sgd", momentum=0.0), net, batch_size=256)
    assert not any(g["nesterov"] for g in sgd.param_groups)


def test_a_state_of_the_earlier_grouping_does_not_regroup_an_optimizer_without_exclusion():
    """Without --exclude-bias-and-norm every parameter is in one group, as it was then:
    a saved state of two groups is another run's, refused as torch refuses it, not
    loaded into the exclusion's grouping."""
    torch.manual_seed(0)
    model = ScaledNet()
    saved = copy.deepcopy(earlier_lars(model).state_dict())
    optimizer = build_optimizer(OptimConfig(exclude_bias_and_norm=False), model, 256)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        load_optimizer_state(optimizer, {"optimizer": saved}, model, verbose=False)
    assert [len(g["params"]) for g in optimizer.param_groups] == [3]
