"""Encoder widths and stems, zero-init, heads, classifier, channels_last + bf16."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from simclr.config import ARCHS, ModelConfig
from simclr.errors import SimCLRError
from simclr.models import (
    BasicBlock,
    Bottleneck,
    Classifier,
    HeadTap,
    ResNet,
    SimCLRModel,
    build_encoder,
    build_head,
    build_model,
    resolve_cifar_stem,
)

BASE_DIM = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048,
            "resnet152": 2048}


def _meta_encoder(arch: str, width: float = 1.0, **kw) -> ResNet:
    # Parameter shapes without allocating or initialising memory (big widths).
    with torch.device("meta"):
        return build_encoder(arch, width, **kw)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_feature_dim_and_output_shape(arch):
    torch.manual_seed(0)
    width = 0.25
    enc = build_encoder(arch, width, cifar_stem=False)
    assert enc.feature_dim == int(BASE_DIM[arch] * width)
    h = enc(torch.randn(2, 3, 32, 32))
    assert h.shape == (2, enc.feature_dim) and torch.isfinite(h).all()
    enc_half = _meta_encoder(arch, 0.5)
    assert enc_half.feature_dim == BASE_DIM[arch] // 2


def test_a_width_rounds_each_layers_channels():
    """round(64 w) etc., not int(): at width 0.9 the stem has 58 channels (57.6)."""
    encoder = _meta_encoder("resnet18", 0.9)
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 58 and convs[-1].out_channels == 461  # 460.8
    assert encoder.feature_dim == 461


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_width_scales_every_layer(arch):
    base = [m for m in _meta_encoder(arch, 1.0).modules() if isinstance(m, (nn.Conv2d,
                                                                            nn.BatchNorm2d))]
    for width in (0.5, 2.0):
        wide = [m for m in _meta_encoder(arch, width).modules()
                if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        assert len(wide) == len(base)
        for b, w in zip(base, wide, strict=True):
            if isinstance(b, nn.Conv2d):
                assert w.out_channels == int(b.out_channels * width)
                want_in = 3 if b.in_channels == 3 else int(b.in_channels * width)
                assert w.in_channels == want_in
                assert w.kernel_size == b.kernel_size and w.stride == b.stride
            else:
                assert w.num_features == int(b.num_features * width)


def test_resnet50_sizes_match_references():
    ours = _meta_encoder("resnet50")
    with torch.device("meta"):
        tv = torchvision.models.resnet50()
    tv_count = sum(p.numel() for n, p in tv.named_parameters() if not n.startswith("fc."))
    assert _count(ours) == tv_count  # 23.5M, same layout as torchvision's ResNet-50
    assert abs(_count(ours) - 23.5e6) < 0.1e6
    # The paper's sizes (Table 6): ResNet-50 (2x) 94M, (4x) 375M parameters, which only
    # every-layer widening gives (torchvision's wide_resnet50_2 has 66.8M).
    r50x2 = _meta_encoder("resnet50", 2.0)
    assert r50x2.feature_dim == 4096
    assert abs(_count(r50x2) - 94e6) / 94e6 < 0.005
    r50x4 = _meta_encoder("resnet50", 4.0)
    assert r50x4.feature_dim == 8192
    assert abs(_count(r50x4) - 375e6) / 375e6 < 0.005
    assert _meta_encoder("resnet18", 2.0).feature_dim == 1024


def test_stems():
    torch.manual_seed(0)
    cifar = build_encoder("resnet18", 0.25, cifar_stem=True)
    assert cifar.forward_features(torch.randn(2, 3, 32, 32)).shape[-2:] == (4, 4)
    assert cifar.stem[0].kernel_size == (3, 3) and cifar.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in cifar.modules())
    imnet = build_encoder("resnet18", 0.25, cifar_stem=False)
    assert imnet.stem[0].kernel_size == (7, 7) and imnet.stem[0].stride == (2, 2)
    assert any(isinstance(m, nn.MaxPool2d) for m in imnet.modules())
    x = torch.randn(2, 3, 64, 64)
    feats = imnet.forward_features(x)
    assert feats.shape[-2:] == (2, 2)  # stride 32
    torch.testing.assert_close(imnet(x), feats.mean(dim=(2, 3)))


def test_projection_shortcuts_follow_the_official_resnet():
    """--projection-shortcuts: every stage's first block projects its shortcut (1x1 conv +
    BN), as the official resnet.py's block_group; a ResNet-18/34 then holds one more, in
    its first stage (64 x 64 + BN at width 1), a ResNet-50 none (it projects there already)."""
    for arch, extra in (("resnet18", 64 * 64 + 2 * 64), ("resnet34", 64 * 64 + 2 * 64),
                        ("resnet50", 0)):
        plain, official = _meta_encoder(arch), _meta_encoder(arch, projection_shortcuts=True)
        assert _count(official) - _count(plain) == extra, arch
        assert not isinstance(official.layer1[0].shortcut, nn.Identity)
        assert all(isinstance(stage[1].shortcut, nn.Identity)  # (the others: identity)
                   for stage in (official.layer1, official.layer2))
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", width=0.25, projection_shortcuts=True), 32)
    assert model(torch.randn(2, 3, 32, 32))[1].shape == (2, 128)
    assert isinstance(model.encoder.layer1[0].shortcut[0], nn.Conv2d)


def test_resolve_cifar_stem():
    assert resolve_cifar_stem(None, 32) is True
    assert resolve_cifar_stem(None, 33) is False
    assert resolve_cifar_stem(None, 224) is False
    assert resolve_cifar_stem(True, 224) is True
    assert resolve_cifar_stem(False, 32) is False
    # a torchvision network keeps its own stem, however small the images
    assert resolve_cifar_stem(None, 32, "mobilenet_v3_small") is False


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_zero_init_residual_makes_blocks_identity(arch):
    torch.manual_seed(0)
    enc = build_encoder(arch, 0.25, cifar_stem=True, zero_init_residual=True)
    blocks = [m for m in enc.modules() if hasattr(m, "last_bn")]
    assert len(blocks) == (8 if arch == "resnet18" else 16)
    for block in blocks:
        assert torch.count_nonzero(block.last_bn.weight) == 0
    # A block with an identity shortcut maps a non-negative input to itself.
    block = enc.layer1[1]
    assert isinstance(block.shortcut, nn.Identity)
    c = block.conv1.in_channels
    x = torch.relu(torch.randn(2, c, 8, 8))
    torch.testing.assert_close(block(x), x)
    plain = build_encoder(arch, 0.25, zero_init_residual=False)
    assert all(bool((b.last_bn.weight == 1).all())
               for b in plain.modules() if hasattr(b, "last_bn"))
    # The zeroed scale is the residual branch's last BN: it gets a gradient at once (a
    # zeroed earlier BN would also give an identity, but a branch that never learns).
    enc(torch.randn(4, 3, 16, 16)).sum().backward()
    assert all(torch.count_nonzero(b.last_bn.weight.grad) > 0 for b in blocks)


def test_kaiming_init():
    torch.manual_seed(0)
    enc = build_encoder("resnet18", 1.0, cifar_stem=True)
    conv = enc.layer4[0].conv2  # 512 -> 512, 3x3: fan_out = 512 * 9
    want = (2.0 / (512 * 9)) ** 0.5
    assert abs(conv.weight.std().item() - want) / want < 0.02
    conv = enc.layer4[0].conv1  # 256 -> 512: fan_out (512 * 9), not fan_in (256 * 9)
    assert abs(conv.weight.std().item() - want) / want < 0.02
    assert enc.layer4[0].bn1.weight.eq(1).all() and enc.layer4[0].bn1.bias.eq(0).all()


def test_unknown_arch():
    with pytest.raises(SimCLRError, match="resnet20"):
        build_encoder("resnet20")


def test_heads_structure_and_shapes():
    h = torch.randn(4, 32)
    none = build_head("none", 32, None, 128)
    assert none.out_dim == 32 and torch.equal(none(h), h)

    linear = build_head("linear", 32, None, 16)
    assert linear.out_dim == 16 and len(linear.layers) == 1
    assert [type(m) for m in linear.layers[0]] == [nn.Linear]
    assert linear(h).shape == (4, 16)

    # The paper's head: z = W2 relu(W1 h), hidden = in_dim by default.
    mlp = build_head("mlp", 32, None, 16)
    assert [[type(m) for m in b] for b in mlp.layers] == [[nn.Linear, nn.ReLU], [nn.Linear]]
    assert mlp.layers[0][0].out_features == 32 and mlp.layers[0][0].bias is not None
    assert mlp.layers[1][0].bias is not None
    torch.testing.assert_close(
        mlp(h), mlp.layers[1][0](torch.relu(mlp.layers[0][0](h))))

    # SimCLRv2: 3 layers, Linear (no bias) + BN, ReLU except the last; last BN no shift.
    v2 = build_head("mlp", 32, 64, 16, num_layers=3, batch_norm=True)
    kinds = [[type(m).__name__ for m in b] for b in v2.layers]
    assert kinds == [["Linear", "BatchNorm1d", "ReLU"], ["Linear", "BatchNorm1d", "ReLU"],
                     ["Linear", "_BatchNormNoShift"]]
    assert all(b[0].bias is None for b in v2.layers)
    assert [b[0].out_features for b in v2.layers] == [64, 64, 16]
    assert v2.layers[0][1].bias is not None and v2.layers[2][1].bias is None
    z = v2(h)
    assert z.shape == (4, 16) and v2.out_dim == 16
    # Train-mode BN without shift: every output channel has zero batch mean.
    torch.testing.assert_close(z.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    with pytest.raises(SimCLRError, match="head"):
        build_head("deep", 32, None, 16)
    for layers in (0, 1.5, "2", None):  # (1.5 and "2" failed as bare TypeErrors)
        with pytest.raises(SimCLRError, match="--head-layers must be a positive whole number"):
            build_head("mlp", 32, None, 16, num_layers=layers)


def test_build_model_from_config():
    torch.manual_seed(0)
    cfg = ModelConfig(arch="resnet18", width=0.25, head="mlp", head_out_dim=8,
                      head_hidden_dim=32)
    model = build_model(cfg, image_size=32)
    assert isinstance(model, SimCLRModel) and model.encoder.cifar_stem
    assert isinstance(model.encoder, ResNet)
    h, z = model(torch.randn(3, 3, 32, 32))
    assert h.shape == (3, 128) and z.shape == (3, 8)
    assert not build_model(cfg, image_size=64).encoder.cifar_stem
    cfg.cifar_stem = True
    assert build_model(cfg, image_size=64).encoder.cifar_stem
    assert all(b.last_bn.weight.eq(0).all() for b in model.encoder.modules()
               if hasattr(b, "last_bn"))  # zero_init_residual defaults to True
    cfg.head_batch_norm = True  # the official head: Linear (no bias) + BN
    bn = build_model(cfg, image_size=32).head.layers[0]
    assert bn[0].bias is None and isinstance(bn[1], nn.BatchNorm1d)


def test_describe_model_names_the_feature_width_of_each_block_kind():
    """describe_model's h is the encoder's: 512 x width for BasicBlock ResNets (18, 34),
    2048 x width for Bottleneck ones (50 and deeper: expansion 4), as build_model builds
    them (messages name the model by it, a memory refusal's too)."""
    from simclr.models import describe_model

    assert describe_model(ModelConfig(arch="resnet18")) == "resnet18 x1, mlp head 512-512-128"
    assert describe_model(ModelConfig(arch="resnet50")) == \
        "resnet50 x1, mlp head 2048-2048-128"
    assert describe_model(ModelConfig(arch="resnet50", width=2, head="linear")) == \
        "resnet50 x2, linear head 4096-128"
    assert describe_model(ModelConfig(arch="resnet18", head="none")) == "resnet18 x1, no head"
    # a torchvision network's h is known once built: its head named without widths
    assert describe_model(ModelConfig(arch="mobilenet_v3_small")) == \
        "mobilenet_v3_small, mlp head"
    for arch, width in [("resnet18", 0.25), ("resnet50", 0.125)]:
        cfg = ModelConfig(arch=arch, width=width, head="linear", head_out_dim=8)
        dim = build_model(cfg, image_size=32).encoder.feature_dim
        assert describe_model(cfg) == f"{arch} x{width:g}, linear head {dim}-8"


def test_classifier_and_from_head():
    torch.manual_seed(0)
    enc = build_encoder("resnet18", 0.25, cifar_stem=True)
    clf = Classifier(enc, num_classes=10)
    assert clf.encoder is enc and clf.fc.in_features == enc.feature_dim
    assert clf.fc.bias.eq(0).all() and clf.fc.weight.std() < 0.02
    x = torch.randn(2, 3, 16, 16)
    assert clf(x).shape == (2, 10)

    head = build_head("mlp", enc.feature_dim, 48, 8, num_layers=3, batch_norm=True)
    ft = Classifier.from_head(enc, head, num_classes=5)
    assert ft.neck is head.layers[0] and ft.fc.in_features == 48
    assert ft(x).shape == (2, 5)
    torch.testing.assert_close(ft.features(x), head.layers[0](enc(x)))
    with pytest.raises(SimCLRError, match="none"):
        Classifier.from_head(enc, build_head("none", enc.feature_dim, None, 8), 5)
    with pytest.raises(ValueError, match="fc has 4 outputs for 3 classes"):
        Classifier(enc, 3, fc=nn.Linear(enc.feature_dim, 4))  # (a fitted layer of another task)
    fitted = nn.Linear(enc.feature_dim, 3)
    assert Classifier(enc, 3, fc=fitted).fc is fitted


def test_a_head_tap_reads_one_of_the_heads_layers():
    """HeadTap(encoder, head, depth): g's first ``depth`` layers on h, 1 <= depth <= layers
    (depth 0 would be h itself, which is the encoder's own output, not a head layer)."""
    torch.manual_seed(0)
    enc = build_encoder("resnet18", 0.25, cifar_stem=True).eval()
    head = build_head("mlp", enc.feature_dim, 48, 8, num_layers=3).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(HeadTap(enc, head, 3)(x), head(enc(x)))
        tap = HeadTap(enc, head, 2)
        assert tap.feature_dim == 48 and tap(x).shape == (2, 48)
    for depth in (0, -1, 4):
        with pytest.raises(SimCLRError, match=f"has 3 layer\\(s\\); cannot read the output "
                                              f"of layer {depth}$"):
            HeadTap(enc, head, depth)
    with pytest.raises(SimCLRError, match="no projection head \\(--head none\\)"):
        HeadTap(enc, build_head("none", enc.feature_dim, None, 8), 1)
    sized = nn.Identity()
    sized.image_size = 96  # (a torchvision encoder's input side travels with the tap)
    assert HeadTap(sized, head, 1).image_size == 96 and HeadTap(enc, head, 1).image_size is None


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_channels_last_bf16_autocast(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, width=0.25, head_out_dim=8), image_size=32)
    model.eval()  # running stats: compare two precisions on the same function
    x = torch.randn(2, 3, 32, 32)
    h32, z32 = model(x)
    model = model.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, z = model(xc)
    assert h.shape == h32.shape and z.shape == z32.shape
    assert h.dtype == torch.bfloat16 and torch.isfinite(h.float()).all()
    rel = (h.float() - h32).norm() / h32.norm()
    assert rel < 0.05


def test_narrow_strided_shortcuts_compute_a_strided_1x1_convolution():
    """The shortcut that subsamples before its 1x1 convolution (fewer than 16 input
    channels) gives the numbers, gradients and parameters of nn.Conv2d's stride."""
    from simclr.models import _Shortcut, _SubsampledConv1x1

    narrow, wide = _Shortcut(8, 16, 2), _Shortcut(16, 32, 2)
    assert type(narrow[0]) is _SubsampledConv1x1 and type(wide[0]) is nn.Conv2d
    torch.manual_seed(0)
    reference = nn.Conv2d(8, 16, 1, stride=2, bias=False)
    narrow[0].load_state_dict(reference.state_dict())
    assert list(narrow.state_dict()) == ["0.weight", "1.weight", "1.bias", "1.running_mean",
                                         "1.running_var", "1.num_batches_tracked"]
    for side in ((8, 8), (7, 9)):  # odd sides: the last row and column are read too
        x = torch.randn(2, 8, *side, dtype=torch.float64, requires_grad=True)
        y_ref = reference.double()(x)
        y = narrow[0].double()(x)
        assert y.shape == y_ref.shape
        torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
        g = torch.randn_like(y)
        grads = torch.autograd.grad(y, (x, narrow[0].weight), g)
        ref_grads = torch.autograd.grad(y_ref, (x, reference.weight), g)
        for a, b in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b)


def test_a_narrow_encoder_trains_in_channels_last_without_corrupting_memory():
    """oneDNN's strided 1x1 weight gradient on channels_last input with 8 channels broke
    the heap (an abort, or a segfault) from 64-px feature maps on: run a step in a child
    process, with glibc's heap checks on."""
    import os
    import subprocess
    import sys

    code = ("import torch; from simclr.models import build_encoder; "
            "e = build_encoder('resnet18', 0.125, True).to(memory_format=torch.channels_last); "
            "x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last); "
            "e(x).sum().backward(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "MALLOC_CHECK_": "3"}, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]


def test_head_converts_to_sync_batchnorm():
    # The training loop converts BN to SyncBatchNorm; the shift-free last BN must survive.
    torch.manual_seed(0)
    head = build_head("mlp", 8, 8, 4, num_layers=3, batch_norm=True)
    assert "layers.2.1.bias" not in head.state_dict()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(head))
    last = synced.layers[2][1]
    assert isinstance(last, nn.SyncBatchNorm) and last.bias is None
    h = torch.randn(5, 8)
    torch.testing.assert_close(synced(h), head(h))  # no process group: plain BN


def test_a_linear_probe_trains_its_layer_only_in_float32():
    """The SGD linear protocol: BatchNorm of the frozen encoder stays in eval mode when
    the probe trains, the encoder gets no gradient, the layer computes in float32 even
    under bf16 autocast."""
    from simclr.models import LinearProbe, ResNet

    encoder = ResNet("resnet18", width=0.125, cifar_stem=True)
    probe = LinearProbe(encoder, 3).train()
    assert probe.training and probe.fc.training
    assert not any(m.training for m in encoder.modules())
    x = torch.randn(4, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = probe(x)
    assert logits.dtype == torch.float32
    logits.sum().backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert probe.fc.weight.grad is not None


def test_a_classifier_ranks_float32_logits_under_bf16_autocast():
    """Fine-tuning and the supervised baseline rank the classifier's logits, and a tie
    with the label counts as a miss: the layer ran under autocast, so its bf16 logits
    (8 bits of mantissa over 1000 classes) tied the label's often. It now runs in float32
    outside autocast, as the probe's does, with the same parameters (checkpoints load)."""
    torch.manual_seed(0)
    clf = Classifier(build_encoder("resnet18", 0.125, cifar_stem=True), 1000).eval()
    names = list(clf.state_dict())
    with torch.no_grad():
        clf.fc.weight.normal_(0, 1.0)
    x = torch.randn(128, 3, 16, 16)
    with torch.no_grad():
        labels = clf(x).argmax(1)  # float32 throughout: top-1 is 1.0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = clf(x)
    assert logits.dtype == torch.float32
    own = logits.gather(1, labels[:, None])[:, 0]
    best_other = logits.scatter(1, labels[:, None], float("-inf")).max(1).values
    assert int((own == best_other).sum()) == 0  # bf16 logits: 8 of 128 rows tied
    assert list(clf.state_dict()) == names
    clf.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nn.functional.cross_entropy(clf(x[:4]), labels[:4]).backward()
    assert clf.fc.weight.grad is not None and clf.fc.weight.grad.dtype == torch.float32
    assert next(clf.encoder.parameters()).grad is not None


def test_a_network_built_from_python_is_held_to_the_flags_rules():
    """width inf raised OverflowError, width '0.5' a TypeError, cifar_stem='no' gave the
    CIFAR stem (a true value), a head of -5 outputs a torch RuntimeError, one of 0 a
    head that outputs nothing."""
    from simclr.models import build_encoder, build_head

    for width in (float("inf"), "0.5", 0, True):
        with pytest.raises(SimCLRError, match="--width must be a positive number"):
            build_encoder("resnet18", width=width)
    with pytest.raises(SimCLRError, match="--cifar-stem must be true or false, got 'no'"):
        build_encoder("resnet18", width=0.125, cifar_stem="no")
    for dims, needle in [((64, None, 0), "--head-out-dim"), ((64, None, -5), "--head-out-dim"),
                         ((64.0, None, 8), "in_dim"), ((64, 2.5, 8), "--head-hidden-dim")]:
        with pytest.raises(SimCLRError, match=f"{needle} must be a positive whole number"):
            build_head("mlp", *dims)
    assert build_head("mlp", 64, None, 8)(torch.randn(2, 64)).shape == (2, 8)


def _randomised_bns(model: nn.Module, seed: int) -> nn.Module:
    """Every BatchNorm2d's scale in [0.5, 1.5), shift in [-0.5, 0.5) and running
    statistics random, in eval mode: a ReLU too few (or too many) changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def _conv_bn_ref(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, stride: int = 1
                 ) -> torch.Tensor:
    """BN(conv(x)) in eval mode, the stride given (not read off the module), 'same' padding."""
    y = F.conv2d(x, conv.weight, stride=stride, padding=conv.weight.shape[-1] // 2)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                        bn.eps)


def test_a_basic_block_computes_relu_of_its_branch_plus_its_shortcut():
    """He et al. 2016 (Fig. 2): relu(BN(conv3x3(relu(BN(conv3x3_s(x))))) + shortcut(x)),
    the shortcut a strided 1x1 conv + BN where the shape changes; (B, 8, 9, 9) ->
    (B, 16, 5, 5)."""
    torch.manual_seed(0)
    block = _randomised_bns(BasicBlock(8, 16, stride=2), seed=1)
    x = torch.randn(2, 8, 9, 9)
    out = F.relu(_conv_bn_ref(x, block.conv1, block.bn1, stride=2))
    out = _conv_bn_ref(out, block.conv2, block.bn2)
    want = F.relu(out + _conv_bn_ref(x, block.shortcut[0], block.shortcut[1], stride=2))
    with torch.no_grad():
        torch.testing.assert_close(block(x), want)


def test_a_bottleneck_computes_its_definition_with_the_stride_on_the_3x3_conv():
    """1x1 -> 3x3 (the stride, as the official resnet.py and torchvision's v1.5) -> 1x1
    (x4 channels), a ReLU after each BN but the last, then relu(branch + shortcut);
    (B, 8, 9, 9) -> (B, 16, 5, 5)."""
    torch.manual_seed(0)
    block = _randomised_bns(Bottleneck(8, 4, stride=2), seed=2)
    x = torch.randn(2, 8, 9, 9)
    out = F.relu(_conv_bn_ref(x, block.conv1, block.bn1))
    out = F.relu(_conv_bn_ref(out, block.conv2, block.bn2, stride=2))
    out = _conv_bn_ref(out, block.conv3, block.bn3)
    want = F.relu(out + _conv_bn_ref(x, block.shortcut[0], block.shortcut[1], stride=2))
    with torch.no_grad():
        torch.testing.assert_close(block(x), want)


@pytest.mark.parametrize("cifar_stem", [False, True])
def test_each_stem_computes_its_definition(cifar_stem):
    """The ImageNet stem: relu(BN(conv7x7_s2)) then a 3x3 max-pool of stride 2 padded by 1
    (32 -> 16 -> 8); the CIFAR stem (App. B.9): relu(BN(conv3x3_s1)), no pool (32 -> 32)."""
    torch.manual_seed(0)
    enc = _randomised_bns(ResNet("resnet18", 0.25, cifar_stem), seed=3)
    x = torch.randn(2, 3, 32, 32)
    want = F.relu(_conv_bn_ref(x, enc.stem[0], enc.stem[1], stride=1 if cifar_stem else 2))
    if not cifar_stem:
        want = F.max_pool2d(want, 3, stride=2, padding=1)
    with torch.no_grad():
        got = enc.stem(x)
    assert got.shape[-2:] == ((32, 32) if cifar_stem else (8, 8))
    torch.testing.assert_close(got, want)


def test_a_basic_block_widening_at_stride_1_projects_its_shortcut():
    """A channel change alone (stride 1, 8 -> 16 channels) needs the projection too:
    relu(branch + BN(conv1x1(x))), (B, 8, 7, 7) -> (B, 16, 7, 7); a block keeping its
    shape and not asked to project adds x itself."""
    torch.manual_seed(0)
    block = _randomised_bns(BasicBlock(8, 16, stride=1), seed=4)
    x = torch.randn(2, 8, 7, 7)
    out = F.relu(_conv_bn_ref(x, block.conv1, block.bn1))
    out = _conv_bn_ref(out, block.conv2, block.bn2)
    want = F.relu(out + _conv_bn_ref(x, block.shortcut[0], block.shortcut[1]))
    with torch.no_grad():
        torch.testing.assert_close(block(x), want)
    same = _randomised_bns(BasicBlock(8, 8, stride=1), seed=5)
    out = _conv_bn_ref(F.relu(_conv_bn_ref(x, same.conv1, same.bn1)), same.conv2, same.bn2)
    with torch.no_grad():
        torch.testing.assert_close(same(x), F.relu(out + x))


def test_build_encoder_holds_a_torchvision_network_to_its_settings():
    """A torchvision --arch has its own sizes and stem: a width, the CIFAR stem or a side
    its ViT's patches do not divide is refused by name, before anything is built."""
    with pytest.raises(SimCLRError, match="^--width 2: the width multiplier is for simclr"):
        build_encoder("mobilenet_v3_small", width=2.0)
    with pytest.raises(SimCLRError, match="^--cifar-stem is for simclr's ResNets"):
        build_encoder("mobilenet_v3_small", cifar_stem=True)
    with pytest.raises(SimCLRError, match="vit_b_16 cuts images into 16-px patches"):
        build_encoder("vit_b_16", image_size=100)
