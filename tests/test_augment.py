"""Tests of simclr.augment: distributions, determinism, batched vs per-image reference.

References are independent of the code under test: torchvision's own
``RandomResizedCrop.get_params`` for the crop distribution, torchvision's per-image
functional ops for the pipeline, ``colorsys`` (float64) for the hue and TensorFlow's
saturation (and TensorFlow itself where installed), float64 gaussian kernels and
hand-built images for blur, padding, rotation and cutout.
"""

from __future__ import annotations

import colorsys
import dataclasses
import itertools
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats

from simclr import augment as A
from simclr import augment_ops as K
from simclr import augment_params as P
from simclr.config import FIG5_OPS, AugmentConfig
from simclr.decode import fit_square_tensor
from simclr.errors import SimCLRError
from tests.reference_augment import reference_augment, tf_saturation

OFF = dict(crop=False, flip=False, color=False, grayscale=False, blur=False)


def _images(n: int, h: int, w: int | None = None, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 images (n, 3, h, w) with some texture, so that every op matters."""
    w = h if w is None else w
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, h // 4 + 2, w // 4 + 2, generator=g)
    x = F.interpolate(base, (h, w), mode="bilinear", align_corners=False)
    x = 0.85 * x + 0.15 * torch.rand(n, 3, h, w, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _draw(cfg: AugmentConfig, n: int, hw=(32, 32), seed=0, epoch=0, view=0) -> P.ViewParams:
    return A.sample_params(cfg, seed, epoch, np.arange(n), view, hw)


def _rate_ok(mask: torch.Tensor, p: float) -> bool:
    """Observed rate within 5 binomial standard deviations of p."""
    n = mask.numel()
    return abs(mask.float().mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12


# ----------------------------------------------------------------------- randomness

def test_uniforms_are_a_pure_function_of_their_counters():
    a = P.uniforms(7, 3, np.array([5, 9, 11]), 1, 4)
    b = P.uniforms(7, 3, np.array([11]), 1, 4)
    assert np.array_equal(a[2], b[0])
    assert a.min() >= 0 and a.max() < 1
    for other in (P.uniforms(8, 3, [11], 1, 4), P.uniforms(7, 4, [11], 1, 4),
                  P.uniforms(7, 3, [11], 0, 4), P.uniforms(7, 3, [12], 1, 4)):
        assert not np.any(other[0] == b[0])
    u = P.uniforms(0, 0, np.arange(5000), 0, 8).ravel()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # Neighbouring counters must not be correlated.
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02


def test_params_do_not_depend_on_batch_composition():
    cfg = AugmentConfig(size=32, rotate=True, cutout=True, noise=True, sobel=True)
    alone = A.sample_params(cfg, 1, 2, [42], 0, (40, 30))
    inside = A.sample_params(cfg, 1, 2, [7, 42, 1000], 0, (40, 30))
    for f in dataclasses.fields(P.ViewParams):
        a, b = getattr(alone, f.name), getattr(inside, f.name)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a[0], b[1]), f.name
    base = A.sample_params(cfg, 1, 2, np.arange(64), 0, (40, 30))
    fewer_ops = A.sample_params(AugmentConfig(size=32), 1, 2, np.arange(64), 0, (40, 30))
    assert torch.equal(fewer_ops.box, base.box) and torch.equal(fewer_ops.flip, base.flip)
    for seed, epoch, view in ((2, 2, 0), (1, 3, 0), (1, 2, 1)):
        other = A.sample_params(cfg, seed, epoch, np.arange(64), view, (40, 30))
        assert not torch.equal(other.box, base.box)
        assert not torch.equal(other.factors, base.factors)


def test_views_do_not_depend_on_batch_composition_or_chunking(monkeypatch):
    cfg = AugmentConfig(size=32, blur=True, color_strength=0.5)
    aug = A.TwoViewAugment(cfg, seed=3)
    images = _images(6, 32)
    v0, v1 = aug(images, torch.arange(100, 106), epoch=4)
    w0, w1 = aug(images[[4, 1]], torch.tensor([104, 101]), epoch=4)
    assert torch.equal(v0[[4, 1]], w0) and torch.equal(v1[[4, 1]], w1)
    assert not torch.equal(v0, v1)
    monkeypatch.setattr(A, "CPU_CHUNK_BYTES", 2 * 3 * 32 * 32 * 4)  # chunks of 2 samples
    c0, c1 = aug(images, torch.arange(100, 106), epoch=4)
    assert torch.equal(c0, v0) and torch.equal(c1, v1)


# ------------------------------------------------------------------- distributions

@pytest.mark.parametrize("hw", [(40, 30), (3, 20), (20, 3)])
def test_crop_boxes_follow_torchvision_distribution(hw):
    """KS tests against torchvision's own RandomResizedCrop.get_params (20k draws each).

    (3, 20) and (20, 3) are so elongated that all 10 attempts often fail (~25%), so both
    branches of the fallback (central crop with the ratio clamped) are exercised too.
    """
    from torchvision.transforms import RandomResizedCrop

    n = 20000
    cfg = AugmentConfig(size=32)
    ours = _draw(cfg, n, hw).box.numpy().astype(float)
    torch.manual_seed(0)
    img = torch.zeros(3, *hw)
    theirs = np.array([RandomResizedCrop.get_params(img, list(cfg.crop_scale),
                                                    list(cfg.crop_ratio)) for _ in range(n)],
                      dtype=float)
    h, w = hw
    area_ours = ours[:, 2] * ours[:, 3] / (h * w)
    area_theirs = theirs[:, 2] * theirs[:, 3] / (h * w)
    assert stats.ks_2samp(area_ours, area_theirs).pvalue > 1e-3
    assert abs(area_ours.mean() - area_theirs.mean()) < 0.01
    assert stats.ks_2samp(ours[:, 3] / ours[:, 2], theirs[:, 3] / theirs[:, 2]).pvalue > 1e-3
    for col in (0, 1):  # positions
        assert stats.ks_2samp(ours[:, col], theirs[:, col]).pvalue > 1e-3
    assert (ours[:, :2] >= 0).all() and (ours[:, 0] + ours[:, 2] <= h).all()
    assert (ours[:, 1] + ours[:, 3] <= w).all() and (ours[:, 2:] >= 1).all()
    fallback = {(3, 20): [0, 8, 3, 4], (20, 3): [8, 0, 4, 3]}.get(hw)
    if fallback is not None:  # same rate of exact fallback boxes (binomial, 5 sigma)
        rate_ours = (ours == fallback).all(1).mean()
        rate_theirs = (theirs == fallback).all(1).mean()
        assert rate_theirs > 0.1 and abs(rate_ours - rate_theirs) < 5 * math.sqrt(0.5 / n)
    if hw == (40, 30):  # rounding of w, h aside, the aspect ratio stays in range
        ratio = ours[:, 3] / ours[:, 2]
        assert ratio.min() > 0.75 * 0.8 and ratio.max() < 4 / 3 * 1.25
        assert area_ours.min() >= 0.07 and area_ours.max() <= 1.0


def test_op_rates_and_factor_ranges():
    n = 20000
    cfg = AugmentConfig(size=32, color_strength=1.0)
    p = _draw(cfg, n)
    assert _rate_ok(p.flip, 0.5) and _rate_ok(p.color, 0.8)
    assert _rate_ok(p.gray, 0.2) and _rate_ok(p.blur, 0.5)
    assert p.sigma.min() >= 0.1 and p.sigma.max() <= 2.0
    assert abs(p.sigma.mean().item() - 1.05) < 0.02
    b, c, s, h = cfg.jitter()  # 0.8, 0.8, 0.8, 0.2
    f = p.factors.double()
    for col, amount in ((0, b), (1, c), (2, s)):
        lo, hi = max(0.0, 1 - amount), 1 + amount
        assert f[:, col].min() >= lo and f[:, col].max() <= hi
        assert stats.kstest(((f[:, col] - lo) / (hi - lo)).numpy(), "uniform").pvalue > 1e-3
    assert f[:, 3].min() >= -h and f[:, 3].max() <= h
    assert abs(f[:, 3].mean().item()) < 0.01
    strong = _draw(AugmentConfig(size=32, brightness=1.5), 2000).factors[:, 0]
    assert strong.min() >= 0.0 and strong.max() <= 2.5  # max(0, 1 - b) lower bound
    # The v1 code's brightness (App. A): a shift ~ U(-b, b), whatever b, the other
    # factors drawn as before from the same uniforms.
    for amount in (0.8, 1.5):
        v1 = _draw(AugmentConfig(size=32, brightness=amount, color_ops="official_v1"), n)
        shift = v1.factors[:, 0].double()
        assert shift.min() >= -amount and shift.max() <= amount
        assert stats.kstest(((shift + amount) / (2 * amount)).numpy(), "uniform").pvalue > 1e-3
        assert torch.equal(v1.factors[:, 1:], _draw(AugmentConfig(
            size=32, brightness=amount), n).factors[:, 1:])
    # Every order of the four jitter ops appears with frequency 1/24.
    codes = (p.order.numpy() * np.array([64, 16, 4, 1])).sum(1)
    counts = np.unique(codes, return_counts=True)[1]
    assert len(counts) == 24
    assert stats.chisquare(counts).pvalue > 1e-3
    assert all(sorted(row) == [0, 1, 2, 3] for row in p.order[:100].tolist())
    fixed = _draw(dataclasses.replace(cfg, color_random_order=False), 10)
    assert (fixed.order == torch.arange(4)).all()


def test_the_draws_of_different_ops_are_independent():
    """Each coin, factor and offset comes from its own uniform: every pair of coins
    co-occurs at the product of their rates, sigma over the blurred views alone is still
    U(0.1, 2), and a crop's top and left offsets are uncorrelated (a uniform shared by
    two draws keeps each marginal right, which the rate tests alone cannot see)."""
    n = 20000
    p = _draw(AugmentConfig(size=32), n, hw=(40, 30))
    coins = {"flip": p.flip, "color": p.color, "gray": p.gray, "blur": p.blur}
    for a, b in itertools.combinations(coins, 2):
        both = coins[a].float().mean().item() * coins[b].float().mean().item()
        assert _rate_ok(coins[a] & coins[b], both), (a, b)
    sigma = p.sigma[p.blur].double()
    assert abs(sigma.mean().item() - 1.05) < 0.02
    assert stats.kstest(((sigma - 0.1) / 1.9).numpy(), "uniform").pvalue > 1e-3
    top, left, h, w = (p.box[:, k].double() for k in range(4))
    room = (h < 40) & (w < 30)  # boxes that can move both ways
    assert room.sum() > 10000
    u_top, u_left = top[room] / (41 - h[room]), left[room] / (31 - w[room])
    assert abs(np.corrcoef(u_top.numpy(), u_left.numpy())[0, 1]) < 0.05


def test_switched_off_ops_are_never_drawn():
    p = _draw(AugmentConfig(size=32, **OFF), 1000)
    for mask in (p.flip, p.color, p.gray, p.blur, p.cutout, p.sobel):
        assert not mask.any()
    assert (p.rotate == 0).all() and (p.noise_std == 0).all()
    assert (p.box == torch.tensor([0, 0, 32, 32])).all()
    q = _draw(AugmentConfig(size=32, rotate=True, rotate_p=1.0, noise=True, noise_p=1.0), 3000)
    assert set(q.rotate.tolist()) == {1, 2, 3}
    assert q.noise_std.max() <= 0.1 and (q.noise_std > 0).all()


# ---------------------------------------------------------- batched vs per-image reference

CASES = {
    "crop": dict(OFF, crop=True),
    "crop_bilinear": dict(OFF, crop=True, interpolation="bilinear"),
    "flip": dict(OFF, flip=True),
    "color": dict(OFF, color=True),
    "brightness_only": dict(OFF, color=True, contrast=0.0, saturation=0.0, hue=0.0),
    "hue_only": dict(OFF, color=True, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5),
    "grayscale": dict(OFF, grayscale=True),
    "blur": dict(OFF, blur=True),
    "crop_without_resize": dict(OFF, crop=True, crop_resize=False),
    "rotate_cutout_noise_sobel": dict(OFF, rotate=True, cutout=True, noise=True, sobel=True),
    "color_official": dict(OFF, color=True, color_ops="official"),
    "color_official_v1": dict(OFF, color=True, color_ops="official_v1"),
    "all_default": dict(),
    "all_official": dict(crop_sampler="official", color_ops="official"),
    "all_ablation_ops": dict(rotate=True, cutout=True, noise=True, sobel=True, sobel_p=0.2),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("hw,size", [((32, 32), 32), ((40, 28), 24), ((20, 20), 32)])
def test_batched_matches_reference(name, hw, size):
    """apply_params vs reference_augment per image.

    The crop/resize matrices reproduce interpolate() on the cropped image exactly (same
    source coordinates, tap clamping inside the crop, a=-0.75), so no border tolerance
    is needed: differences are float32 rounding only (hue uses a different but exact
    formula, factors up to 1.8 amplify rounding), hence 2e-5 max and 1e-6 mean.
    """
    cfg = AugmentConfig(size=size, **CASES[name])
    n = 8
    images = _images(n, *hw, seed=len(name))
    p = A.sample_params(cfg, 5, 1, np.arange(n), 0, hw)
    out = A.apply_params(images, p, cfg)
    ref = torch.stack([reference_augment(images[i], p, i, cfg) for i in range(n)])
    assert out.shape == (n, 3, size, size) and out.dtype == torch.float32
    diff = (out - ref).abs()
    assert diff.max() < 2e-5 and diff.mean() < 1e-6, (diff.max(), diff.mean())
    assert out.min() >= 0 and out.max() <= 1


def test_imagenette_sized_views_match_reference():
    """160-px images -> 224-px views with every default op, blur always on.

    Views larger than 64 px take the tiled path of the blur (23-tap kernel here).
    """
    cfg = AugmentConfig(size=224, blur_p=1.0)
    images = _images(2, 160)
    p = A.sample_params(cfg, 0, 0, np.arange(2), 0, (160, 160))
    out = A.apply_params(images, p, cfg)
    ref = torch.stack([reference_augment(images[i], p, i, cfg) for i in range(2)])
    assert out.shape == (2, 3, 224, 224)
    assert (out - ref).abs().max() < 2e-5


def test_two_views_use_view_ids_0_and_1():
    cfg = AugmentConfig(size=24, blur=True)
    images = _images(4, 32)
    idx = torch.tensor([3, 1, 4, 1])
    aug = A.TwoViewAugment(cfg, seed=9)
    v0, v1 = aug(images, idx, epoch=2)
    assert torch.equal(aug.stacked(images, idx, epoch=2), torch.cat([v0, v1]))
    for view, out in ((0, v0), (1, v1)):
        p = A.sample_params(cfg, 9, 2, idx, view, (32, 32))
        assert torch.equal(out, A.apply_params(images, p, cfg))


# ------------------------------------------------------------------- individual ops

def test_everything_off_is_a_plain_resize():
    images = _images(4, 40, 30)
    cfg = AugmentConfig(size=32, **OFF)
    out = A.apply_params(images, _draw(cfg, 4, (40, 30)), cfg)
    plain = F.interpolate(images.double() / 255, size=(32, 32), mode="bicubic",
                          align_corners=False).clamp(0, 1)
    assert (out.double() - plain).abs().max() < 1e-5
    same = _images(4, 32)  # same size: exactly the pixels / 255
    out = A.apply_params(same, _draw(cfg, 4), cfg)
    assert torch.allclose(out.double(), same.double() / 255, atol=1e-7, rtol=0)


def test_crop_without_resize_pads_small_images_with_zeros():
    cfg = AugmentConfig(size=32, **dict(OFF, crop=True, crop_resize=False))
    images = _images(8, 20)
    p = _draw(cfg, 8, (20, 20))
    out = A.apply_params(images, p, cfg)
    for i in range(8):
        top, left, h, w = p.box[i].tolist()
        assert (h, w) == (32, 32) and -12 <= top <= 0 and -12 <= left <= 0
        inner = out[i, :, -top:-top + 20, -left:-left + 20]
        assert torch.allclose(inner.double(), images[i].double() / 255, atol=1e-6, rtol=0)
        outside = out[i].clone()
        outside[:, -top:-top + 20, -left:-left + 20] = 0
        assert outside.abs().max() < 1e-7  # zeros elsewhere


def test_blur_kernel_size_and_impulse_response():
    assert A.blur_kernel_size(224) == 23  # official: radius = int(224 * 0.1) // 2
    assert A.blur_kernel_size(32) == 3 and A.blur_kernel_size(96) == 9
    assert A.blur_kernel_size(64) == 7 and A.blur_kernel_size(20) == 3
    # below 20 px the official kernel is one tap (radius int(size * 0.1) // 2 = 0): no
    # blur; 3 taps blurred half the views of 10-19 px
    assert A.blur_kernel_size(19) == A.blur_kernel_size(8) == 1
    size = 60
    cfg = AugmentConfig(size=size, **dict(OFF, blur=True, blur_p=1.0))
    image = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    image[0, :, 30, 25] = 255
    p = _draw(cfg, 1, (size, size))
    out = A.apply_params(image, p, cfg)[0, 0].double()
    k = A.blur_kernel_size(size)
    rows, cols = torch.nonzero(out > 1e-9, as_tuple=True)
    assert rows.max() - rows.min() + 1 == k and cols.max() - cols.min() + 1 == k
    d = torch.arange(-(k // 2), k // 2 + 1, dtype=torch.float64)
    g = torch.exp(-d**2 / (2 * float(p.sigma[0]) ** 2))
    g = g / g.sum()
    expected = torch.zeros(size, size, dtype=torch.float64)
    expected[30 - k // 2:30 + k // 2 + 1, 25 - k // 2:25 + k // 2 + 1] = torch.outer(g, g)
    assert (out - expected).abs().max() < 1e-6


def test_tiled_blur_of_large_views_matches_torchvision():
    """Views over 64 px are blurred tile by tile (32 rows and columns a tile): every
    tile must read all the taps reaching into its neighbours. Reference: torchvision's
    gaussian_blur (reflect padding) of the same float views (96 px: 3 tiles)."""
    from torchvision.transforms.v2 import functional as tvf

    g = torch.Generator().manual_seed(0)
    for size in (96,):
        x = torch.rand(2, 3, size, size, generator=g)
        f = torch.zeros(2, K.N_FLOATS)
        f[:, K.F_SIGMA] = torch.tensor([0.7, 2.0])
        side = A.blur_kernel_size(size)
        got = x.clone()
        K.blur_(got, f, torch.zeros(2, dtype=torch.int64), side=side)
        for i in range(2):
            sigma = float(f[i, K.F_SIGMA])
            ref = tvf.gaussian_blur(x[i], [side, side], [sigma, sigma])
            assert (got[i] - ref).abs().max() < 1e-5, (size, sigma)


def test_blur_reflects_at_the_border():
    """Reflect padding ('abcd' -> 'cb|abcd|cb'): a ramp stays a ramp near the edge."""
    size = 20
    cfg = AugmentConfig(size=size, **dict(OFF, blur=True, blur_p=1.0))
    ramp = torch.arange(size).repeat(size, 1) * 10  # value grows along x
    image = ramp.expand(1, 3, size, size).to(torch.uint8)
    p = _draw(cfg, 1, (size, size))
    out = A.apply_params(image, p, cfg)[0, 0].double() * 255
    sigma = float(p.sigma[0])  # kernel side 3 at 20 px
    w = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) / (2 * sigma**2))
    w = w / w.sum()
    # Column 0 sees columns (1, 0, 1) after reflection.
    assert abs(out[5, 0].item() - (w[0] * 10 + w[1] * 0 + w[2] * 10).item()) < 1e-3
    assert abs(out[5, 7].item() - 70.0) < 1e-3  # interior of a linear ramp: unchanged


def test_views_under_20_px_are_not_blurred_as_in_the_official_code():
    """The official kernel at 10% of a 16-px side has one tap (radius int(1.6) // 2 = 0):
    blur on and drawn for every view leaves each as it was (a 3-tap kernel blurred it)."""
    size = 16
    cfg = AugmentConfig(size=size, **dict(OFF, blur=True, blur_p=1.0))
    image = torch.randint(0, 256, (4, 3, size, size), dtype=torch.uint8)
    p = _draw(cfg, 4, (size, size))
    assert bool(p.blur.all())
    unblurred = dataclasses.replace(p, blur=torch.zeros_like(p.blur))
    torch.testing.assert_close(A.apply_params(image, p, cfg),
                               A.apply_params(image, unblurred, cfg), rtol=0, atol=0)


def test_hue_matches_colorsys():
    rng = np.random.default_rng(0)
    pixels = np.concatenate([
        rng.random((200, 3)),
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.5, 0.5, 0.5], [0, 0, 0], [1, 1, 1],
         [0.3, 0.3, 0.7], [0.7, 0.7, 0.2], [0.2, 0.9, 0.9], [0.9, 0.2, 0.9]],
    ])
    shifts = np.concatenate([rng.uniform(-0.5, 0.5, 200), np.linspace(-0.5, 0.5, 11)])
    expected = np.array([colorsys.hsv_to_rgb((h + s) % 1.0, sat, v)
                         for (h, sat, v), s in
                         zip((colorsys.rgb_to_hsv(*px) for px in pixels), shifts, strict=True)])
    x = torch.tensor(pixels, dtype=torch.float32).view(-1, 3, 1, 1)
    got = A.adjust_hue(x, torch.tensor(shifts, dtype=torch.float32)).view(-1, 3).double()
    assert (got - torch.tensor(expected)).abs().max() < 1e-5


def test_grayscale_weights_and_color_ops_on_known_pixels():
    """Hand-computed values for one pixel through each colour op (torchvision semantics)."""
    rgb = (0.6, 0.2, 0.4)
    image = (torch.tensor(rgb) * 255).round().to(torch.uint8).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    px = image[0, :, 0, 0].double() / 255
    luma = 0.2989 * px[0] + 0.587 * px[1] + 0.114 * px[2]
    cfg = AugmentConfig(size=4, **dict(OFF, grayscale=True, grayscale_p=1.0))
    out = A.apply_params(image.contiguous(), _draw(cfg, 1, (4, 4)), cfg)
    assert torch.allclose(out.double(), luma.expand(1, 3, 4, 4), atol=1e-6)
    cfg = AugmentConfig(size=4, **dict(OFF, color=True, color_p=1.0, brightness=0.0,
                                       contrast=0.0, hue=0.0, saturation=0.9))
    p = _draw(cfg, 1, (4, 4))
    f = float(p.factors[0, 2])
    out = A.apply_params(image.contiguous(), p, cfg)[0, :, 0, 0].double()
    assert torch.allclose(out, (f * px + (1 - f) * luma).clamp(0, 1), atol=1e-6)


def _hsv_saturation_loop(x: torch.Tensor, factor: float) -> torch.Tensor:
    """TF's adjust_saturation by its definition, pixel by pixel in float64 (colorsys)."""
    out = torch.empty_like(x, dtype=torch.float64)
    for n, i, j in np.ndindex(x.shape[0], x.shape[2], x.shape[3]):
        h, s, v = colorsys.rgb_to_hsv(*x[n, :, i, j].double().tolist())
        out[n, :, i, j] = torch.tensor(colorsys.hsv_to_rgb(h, min(s * factor, 1.0), v))
    return out


def _factor_table(n: int, saturation: float, contrast: float) -> torch.Tensor:
    """Rows of the kernels' float table for n images: the two factors in their columns
    (different values, so a kernel reading the other's column fails)."""
    table = torch.zeros(n, K.N_FLOATS)
    table[:, K.F_SAT], table[:, K.F_CONTRAST] = saturation, contrast
    return table


def test_official_color_ops_match_their_definitions():
    """color_ops="official": TF's saturation (S of HSV scaled, clipped) against colorsys
    in float64, and TF's contrast (each channel about its own mean) by hand, for the
    batched kernels and the per-image reference alike; gray, black and saturated pixels
    included, factors on both sides of 1 and past the clip of S."""
    x = _images(3, 6).float() / 255
    x[0, :, 0, 0] = 0.5  # gray
    x[1, :, 0, 0] = 0.0  # black
    x[2, :, 0, 0] = torch.tensor([1.0, 0.0, 0.25])  # S = 1 already
    for factor in (0.0, 0.2, 0.9, 1.0, 1.6, 3.0):
        table = _factor_table(3, saturation=factor, contrast=2.0 - factor / 2)
        expected = _hsv_saturation_loop(x, factor)
        got = x.clone()
        K.saturation_hsv_(got, table, None)
        assert (got.double() - expected).abs().max() < 1e-6, factor
        ref = torch.stack([tf_saturation(image, factor) for image in x])
        assert (ref.double() - expected).abs().max() < 1e-6, factor
        mean, c = x.double().mean(dim=(2, 3), keepdim=True), 2.0 - factor / 2
        expected = ((x.double() - mean) * c + mean).clamp(0, 1)
        got = x.clone()
        K.contrast_channels_(got, table, None)
        assert (got.double() - expected).abs().max() < 1e-6, factor


def test_official_color_ops_differ_from_torchvision_where_defined_apart():
    """The switch reaches the views: same draws, other contrast and saturation; a jitter
    of brightness and hue only (defined alike) gives the same views, except under
    official_v1, whose brightness is a shift."""
    images = _images(16, 32)
    for jitter, same in ((dict(), False), (dict(contrast=0.0, saturation=0.0), True)):
        views = []
        for ops in ("torchvision", "official", "official_v1"):
            cfg = AugmentConfig(size=32, **dict(OFF, color=True, color_ops=ops, **jitter))
            views.append(A.apply_params(images, _draw(cfg, 16), cfg))
        assert torch.equal(views[0], views[1]) == same
        assert not torch.equal(views[1], views[2])


def test_v1_brightness_is_a_clipped_shift_on_known_pixels():
    """color_ops="official_v1": tf.image.random_brightness's x + delta, then the clip,
    by hand on every pixel."""
    images = _images(64, 8)
    cfg = AugmentConfig(size=8, **dict(OFF, color=True, color_p=1.0, contrast=0.0,
                                       saturation=0.0, hue=0.0, color_ops="official_v1"))
    p = _draw(cfg, 64, (8, 8))
    x = images.double() / 255
    delta = p.factors[:, 0].double().view(-1, 1, 1, 1)
    got = A.apply_params(images, p, cfg).double()
    assert (got - (x + delta).clamp(0, 1)).abs().max() < 1e-6
    assert (delta < -0.5).any() and (delta > 0.5).any()  # both ways, near the ends


def test_official_color_ops_match_tensorflow():
    """Where TensorFlow is installed: the batched kernels against tf.image's own ops."""
    tf = pytest.importorskip("tensorflow")
    x = _images(4, 8).float() / 255
    for factor in (0.0, 0.3, 1.0, 1.7):
        table = _factor_table(4, saturation=factor, contrast=2.0 - factor / 2)
        hwc = tf.constant(x.permute(0, 2, 3, 1).numpy())
        for op, tf_op, f in ((K.saturation_hsv_, tf.image.adjust_saturation, factor),
                             (K.contrast_channels_, tf.image.adjust_contrast, 2 - factor / 2)):
            got = x.clone()
            op(got, table, None)
            expected = np.clip(tf_op(hwc, f).numpy(), 0, 1).transpose(0, 3, 1, 2)
            assert np.abs(got.numpy() - expected).max() < 1e-5, (op.__name__, factor)
        delta = factor - 0.8  # official_v1's brightness: tf.image.adjust_brightness
        table[:, K.F_BRIGHT] = delta
        got = x.clone()
        K.brightness_shift_(got, table, None)
        expected = np.clip(tf.image.adjust_brightness(hwc, delta).numpy(), 0, 1)
        assert np.abs(got.numpy() - expected.transpose(0, 3, 1, 2)).max() < 1e-5, delta


def test_sobel_matches_float64_loops():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.random((2, 3, 7, 9)), dtype=torch.float32)
    got = A.sobel(x).double().numpy()
    luma = 0.2989 * x[:, 0].double().numpy() + 0.587 * x[:, 1].double().numpy()
    luma += 0.114 * x[:, 2].double().numpy()
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)
    for b in range(2):
        padded = np.pad(luma[b], 1, mode="edge")
        for i in range(7):
            for j in range(9):
                win = padded[i:i + 3, j:j + 3]
                mag = math.hypot((win * kx).sum(), (win * kx.T).sum())
                assert abs(got[b, 0, i, j] - min(1.0, mag / 4)) < 1e-5
    assert np.array_equal(got[:, 0], got[:, 2])


def test_rotation_cutout_and_noise():
    base = dict(OFF)
    images = _images(64, 16)
    plain_cfg = AugmentConfig(size=16, **base)
    plain = A.apply_params(images, _draw(plain_cfg, 64, (16, 16)), plain_cfg)
    cfg = AugmentConfig(size=16, **dict(base, rotate=True, rotate_p=1.0))
    p = _draw(cfg, 64, (16, 16))
    out = A.apply_params(images, p, cfg)
    for i in range(64):
        k = int(p.rotate[i])
        expected = plain[i]
        for _ in range(k):  # one quarter turn counter-clockwise: new[y, x] = old[x, S-1-y]
            expected = torch.stack([expected[c].t().flip(0) for c in range(3)])
        assert torch.equal(out[i], expected)
    cfg = AugmentConfig(size=16, **dict(base, cutout=True, cutout_p=1.0, cutout_frac=0.5))
    p = _draw(cfg, 64, (16, 16))
    out = A.apply_params(images, p, cfg)
    for i in range(64):
        y, x = p.cutout_yx[i].tolist()
        assert 0 <= y <= 8 and 0 <= x <= 8
        assert (out[i, :, y:y + 8, x:x + 8] == 0).all()
        outside = out[i].clone()
        outside[:, y:y + 8, x:x + 8] = plain[i, :, y:y + 8, x:x + 8]
        assert torch.equal(outside, plain[i])
    z = A.noise_field(torch.arange(20), 32).double()  # 61k values: 5 sigma = 0.02
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    assert abs(np.corrcoef(z[0].ravel(), z[1].ravel())[0, 1]) < 0.1
    assert stats.kstest(z.ravel().numpy(), "norm").pvalue > 1e-3
    assert torch.equal(A.noise_field(torch.tensor([2]), 32)[0], z[2].float())
    # every bit of the 32-bit key counts: keys 16 bits apart give other fields
    high = A.noise_field(torch.tensor([5, 5 + 2**16, 5 + 2**31]), 8)
    assert not torch.equal(high[0], high[1]) and not torch.equal(high[0], high[2])


def test_output_range_shape_dtype_and_input_checks():
    cfg = AugmentConfig(size=24, rotate=True, cutout=True, noise=True, sobel=True,
                        color_strength=2.0)
    images = _images(16, 30)
    v0, v1 = A.TwoViewAugment(cfg, 0)(images, np.arange(16), 0)
    for v in (v0, v1):
        assert v.shape == (16, 3, 24, 24) and v.dtype == torch.float32
        assert torch.isfinite(v).all() and v.min() >= 0 and v.max() <= 1
    p = _draw(cfg, 16, (30, 30))
    with pytest.raises(ValueError):
        A.apply_params(images.float(), p, cfg)
    with pytest.raises(ValueError):
        A.apply_params(_images(16, 32), p, cfg)
    with pytest.raises(ValueError):
        A.apply_params(images[:8], p, cfg)
    for channels in (images[:, :1], torch.cat([images, images[:, :1]], 1)):  # gray, RGBA
        with pytest.raises(ValueError, match=r"images must be uint8 \(B, 3, H, W\)"):
            A.apply_params(channels.contiguous(), p, cfg)
    empty = A.TwoViewAugment(cfg, 0)(images[:0], np.arange(0), 0)
    assert empty[0].shape == (0, 3, 24, 24) and empty[0].dtype == torch.float32  # as any batch
    # (the indices a caller gives named, not "parameters" it never gave)
    with pytest.raises(ValueError, match="^indices name 15 images and the batch holds 16: one "
                                         "index per image$"):
        A.TwoViewAugment(cfg, 0)(images, np.arange(15), 0)
    # Not a batch: said as such, not as a mismatch of the first dim with the indices
    with pytest.raises(ValueError, match=r"^images must be uint8 \(B, 3, H, W\), got torch.uint8 "
                                         r"\(3, 30, 30\)$"):
        A.TwoViewAugment(cfg, 0)(images[0], np.arange(1), 0)
    with pytest.raises(TypeError, match="a torch uint8 tensor .* got list$"):
        A.TwoViewAugment(cfg, 0)(list(images[:2]), np.arange(2), 0)
    for index in (5, np.int64(5), torch.tensor(5)):  # one image's index as a scalar
        assert A.TwoViewAugment(cfg, 0)(images[:1], index, 0)[0].shape == (1, 3, 24, 24)


def test_eval_resize():
    small = _images(2, 32)
    out = A.eval_resize(small, 32)  # side <= 32, same size: the pixels themselves
    assert out.dtype == torch.float32 and torch.allclose(out, small.float() / 255, atol=1e-7)
    assert A.eval_resize(small, 64).shape == (2, 3, 64, 64)  # upscaled, not cropped
    big = torch.zeros(1, 3, 100, 160, dtype=torch.uint8)
    big[..., :, :50] = 255  # white band x < 50: x < 31.9 after resizing to 64 x 102
    out = A.eval_resize(big, 56)  # shorter side -> round(56 / 0.875) = 64, crop 56 of 102
    assert out.shape == (1, 3, 56, 56)
    # The center crop starts at x = (102 - 56) // 2 = 23: the band covers columns < 8.9.
    assert out[0, :, :, :6].min() > 0.99 and out[0, :, :, 12:].max() < 1e-3
    pil = Image.fromarray(np.full((40, 50, 3), 128, dtype=np.uint8))
    single = A.eval_resize(pil, 24)
    assert single.shape == (3, 24, 24)
    assert torch.allclose(single, torch.full_like(single, 128 / 255), atol=1e-6)


# (S, width, height) whose long side, resized, is one where cropping the central square
# first and then S from it rounds torchvision's half-pixel offset twice: a pixel off the
# single centre crop (S = 96 from a picture smaller than round(S / 0.875), upscaled).
ONE_CROP_SHAPES = [(16, 20, 37), (24, 50, 40), (32, 60, 40), (96, 110, 100)]


@pytest.mark.parametrize(("size", "w", "h"), ONE_CROP_SHAPES)
def test_eval_resize_is_one_centre_crop_of_the_resized_picture(size, w, h):
    """App. B as torchvision's Resize(round(S / 0.875)) + CenterCrop(S): one crop, at
    round((L - S) / 2) along the resized long side L. The central square was cut first
    and S cropped from it, rounding twice: a 1-pixel shift along the long side for half
    the shapes wherever round(S / 0.875) - S is not a multiple of 4 (S = 16, 24, 32, 96;
    not 224)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    from simclr.decode import eval_side

    images = torch.from_numpy(np.random.default_rng(size).integers(
        0, 256, (1, 3, h, w), dtype=np.uint8))
    resized = tvf.resize(images.float() / 255, [eval_side(size)],
                         interpolation=InterpolationMode.BICUBIC, antialias=True)
    want = tvf.center_crop(resized, [size, size]).clamp(0, 1)
    assert torch.equal(A.eval_resize(images, size), want)
    pil = Image.fromarray(images[0].permute(1, 2, 0).numpy())
    assert torch.equal(A.eval_resize(pil, size), want[0])


def test_eval_resize_downscales_with_antialiasing_as_pil_bicubic():
    """A one-pixel checkerboard shrunk 100 -> 64 rows: PIL's bicubic (antialiased by
    construction) gives flat gray; resampling without antialiasing aliases it into
    stripes (std ~0.24)."""
    y, x = np.mgrid[:100, :160]
    checker = ((x + y) % 2 * 255).astype(np.uint8)
    out = A.eval_resize(torch.from_numpy(np.stack([checker] * 3))[None], 56)
    pil = Image.fromarray(checker).resize((102, 64), Image.Resampling.BICUBIC)
    ref = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255)[4:60, 23:79]
    assert (out[0] - ref).abs().max() < 0.01  # (PIL rounds to uint8: 1/255 apart)
    assert out.std() < 0.01


def test_eval_resize_of_an_opened_file_reads_it_as_simclr_does(tmp_path):
    """eval_resize(Image.open(file)), the documented way to feed an exported model, sees
    what embed and predict see: EXIF orientation applied, transparency on white, 16-bit
    values scaled (a bare .convert('RGB') gets all three wrong)."""
    from simclr.decode import open_image

    rng = np.random.default_rng(0)
    rotated, clear, deep = tmp_path / "rot.jpg", tmp_path / "alpha.png", tmp_path / "16.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(rotated, exif=exif)
    rgba = rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(clear)
    Image.fromarray(rng.integers(0, 65536, (40, 40), dtype=np.uint16)).save(deep)
    for path in (rotated, clear, deep):
        with Image.open(path) as im:
            got = A.eval_resize(im, 24)
            naive = A.eval_resize(Image.fromarray(np.asarray(im.convert("RGB"))), 24)
            assert im.size == ((60, 40) if path == rotated else (40, 40))  # im left as it was
        assert torch.equal(got, A.eval_resize(open_image(path), 24)), path.name
        assert (got - naive).abs().max() > 0.1, path.name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("color_ops", ["torchvision", "official", "official_v1"])
def test_cuda_matches_cpu(color_ops):
    cfg = AugmentConfig(size=32, blur=True, rotate=True, cutout=True, noise=True, sobel=True,
                        color_ops=color_ops)
    images = _images(64, 40)
    aug = A.TwoViewAugment(cfg, 1)
    cpu = aug(images, torch.arange(64), 3)
    on_gpu = images.cuda()
    aug(on_gpu, torch.arange(64), 2)  # warm-up (context, kernels)
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside the call raises
    try:
        gpu = aug(on_gpu, torch.arange(64), 3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for a, b in zip(cpu, gpu, strict=True):
        assert b.is_cuda and b.dtype == torch.float32
        assert (a - b.cpu()).abs().max() < 2e-3  # TF32 matmuls allowed: ~5e-4 per product


# ------------------------------------------------------------------ Fig. 5 protocol

def test_crop_boxes_inside_per_sample_regions_match_one_by_one():
    from simclr.augment_params import Stream, _crop_boxes, uniforms

    rng = np.random.default_rng(0)
    heights, widths = rng.integers(1, 60, 200), rng.integers(1, 60, 200)  # odd shapes too
    for sampler in ("torchvision", "official"):
        cfg = AugmentConfig(size=16, crop_sampler=sampler)
        u = uniforms(3, 0, np.arange(200), 0, 64)
        together = _crop_boxes(u, cfg, (heights, widths), Stream(3, 0, np.arange(200), 0))
        for b in range(200):
            alone = _crop_boxes(u[b:b + 1], cfg, (int(heights[b]), int(widths[b])),
                                Stream(3, 0, np.arange(b, b + 1), 0))
            np.testing.assert_array_equal(together[b], alone[0])


def test_asymmetric_views_share_a_crop_and_only_view_0_is_transformed():
    cfg = AugmentConfig(size=16, asymmetric=True, rotate=True, noise=True, sobel=True,
                        cutout=True)
    idx = np.arange(4000)
    v0 = A.sample_params(cfg, 1, 2, idx, 0, (40, 30))
    v1 = A.sample_params(cfg, 1, 2, idx, 1, (40, 30))
    for name in ("flip", "color", "gray", "blur", "cutout", "sobel"):
        assert not getattr(v1, name).any() and getattr(v0, name).any(), name
    assert not (v1.rotate > 0).any() and not (v1.noise_std > 0).any()
    b0, b1 = v0.box.numpy(), v1.box.numpy()
    assert ((b0[:, 0] >= b1[:, 0]) & (b0[:, 1] >= b1[:, 1])).all()  # view 0 inside view 1
    assert ((b0[:, 0] + b0[:, 2] <= b1[:, 0] + b1[:, 2])
            & (b0[:, 1] + b0[:, 3] <= b1[:, 1] + b1[:, 3])).all()
    area = (b0[:, 2] * b0[:, 3]) / (b1[:, 2] * b1[:, 3])
    assert 0.45 < area.mean() < 0.60  # U(0.08, 1) of the shared crop: mean 0.54, before fits
    other_epoch = A.sample_params(cfg, 1, 3, idx, 1, (40, 30))
    assert not np.array_equal(other_epoch.box.numpy(), b1)
    no_crop = dataclasses.replace(cfg, crop=False)
    np.testing.assert_array_equal(A.sample_params(no_crop, 1, 2, idx, 0, (40, 30)).box, b1)


def test_asymmetric_identity_view_is_the_plain_crop():
    cfg = AugmentConfig(size=16, asymmetric=True, blur=False)
    images = _images(6, 24, 20)
    aug = A.TwoViewAugment(cfg, seed=5)
    _, view1 = aug(images, torch.arange(6), 0)
    p1 = A.sample_params(cfg, 5, 0, np.arange(6), 1, (24, 20))
    for i in range(6):
        expected = reference_augment(images[i], p1, i, cfg)
        assert torch.allclose(view1[i], expected, atol=1e-5)
        top, left, h, w = (int(v) for v in p1.box[i])
        plain = F.interpolate(images[i:i + 1, :, top:top + h, left:left + w].float() / 255,
                              size=(16, 16), mode="bicubic", align_corners=False)
        assert torch.allclose(view1[i], plain[0].clamp(0, 1), atol=1e-5)


ALL_FIG5_OFF = dict(crop=False, flip=False, color=False, grayscale=False, blur=False,
                   cutout=False, rotate=False, noise=False, sobel=False)
ORDERED = {  # first op, second op (the reverse of the pipeline's order)
    "blur_then_crop": ("blur", "crop"),
    "cutout_then_crop": ("cutout", "crop"),
    "rotate_then_crop": ("rotate", "crop"),
    "noise_then_blur": ("noise", "blur"),
    "sobel_then_color": ("sobel", "color"),
    "cutout_then_rotate": ("cutout", "rotate"),
}


def _ordered_cfg(first: str, second: str, **extra) -> AugmentConfig:
    switches = {s: True for op in (first, second) for s in FIG5_OPS[op]}
    probabilities = dict(blur_p=1.0, cutout_p=1.0, noise_p=1.0, sobel_p=1.0, rotate_p=1.0)
    return AugmentConfig(size=20, asymmetric=True, **{
        **ALL_FIG5_OFF, **probabilities, **switches, "first_op": first, **extra})


@pytest.mark.parametrize("name", list(ORDERED))
def test_ordered_compositions_match_the_reference(name):
    """Fig. 5's off-diagonal cells in the order the paper names them: the batched path
    (ops regrouped, the targeted crop as a second resampling of the view) against
    torchvision's per-image ops applied in that order."""
    cfg = _ordered_cfg(*ORDERED[name])
    images = _images(8, 28, 24, seed=7)
    p = A.sample_params(cfg, 2, 0, np.arange(8), 0, (28, 24))
    out = A.apply_params(images, p, cfg)
    ref = torch.stack([reference_augment(images[i], p, i, cfg) for i in range(8)])
    diff = (out - ref).abs()
    assert diff.max() < 2e-5 and diff.mean() < 1e-6, (diff.max(), diff.mean())


def test_the_order_of_a_composition_changes_the_views():
    images = _images(16, 28, 24, seed=8)
    first, second = _ordered_cfg("blur", "crop"), _ordered_cfg("crop", "blur", first_op="")
    assert A.op_order(first)[:2] == ["blur", "crop"] and A.op_order(second)[0] == "crop"
    p_first = A.sample_params(first, 0, 0, np.arange(16), 0, (28, 24))
    assert p_first.recrop.all() and not p_first.box2.eq(0).all()
    a = A.apply_params(images, p_first, first)
    b = A.apply_params(images, A.sample_params(second, 0, 0, np.arange(16), 0, (28, 24)), second)
    assert (a - b).abs().mean() > 0.02  # blur then crop magnifies the blur; crop then blur not
    # "crop" first is the pipeline's order; the identity branch is never re-cropped.
    crop_first = dataclasses.replace(second, first_op="crop")
    assert torch.equal(A.apply_params(images, A.sample_params(crop_first, 0, 0, np.arange(16),
                                                              0, (28, 24)), crop_first), b)
    assert not A.sample_params(first, 0, 0, np.arange(16), 1, (28, 24)).recrop.any()


def test_first_op_is_checked():
    from simclr.settings import build_config

    def check(**augment):
        build_config(None, None, {f"augment.{k}": v for k, v in augment.items()})

    check(asymmetric=True, first_op="color")
    for bad, message in ((dict(first_op="color"), "needs --asymmetric"),
                         (dict(asymmetric=True, first_op="zoom"), "--first-op: unknown"),
                         (dict(asymmetric=True, first_op="sobel"), "switched off")):
        with pytest.raises(SimCLRError, match=message):
            check(**bad)


# ------------------------------------------------- stored squares of non-square pictures

def _squeeze(pictures: torch.Tensor, side: int) -> torch.Tensor:
    """The full store: whole pictures in side x side, as the device decoder stores them."""
    return fit_square_tensor(pictures, side, "full")


def test_picture_sizes_and_box_mapping():
    ph, pw = P.picture_hw((48, 48), np.array([4 / 3, 0.75, 1.0, 2.5]))
    assert ph.tolist() == [48, 64, 48, 48] and pw.tolist() == [64, 48, 48, 120]
    boxes = np.array([[0, 0, 48, 64], [10, 20, 30, 40], [0, 119, 48, 1]])
    picture = (np.array([48, 48, 48]), np.array([64, 64, 120]))
    stored = P.to_stored(boxes, picture, (48, 48))
    assert stored[0].tolist() == [0, 0, 48, 48]  # the whole picture is the whole square
    assert stored[1].tolist() == [10, 15, 30, 30]  # x edges 20, 60 -> 15, 45
    assert stored[2].tolist() == [0, 48, 48, 1]  # a side never rounds to 0
    p = A.sample_params(AugmentConfig(size=16), 0, 0, np.arange(64), 0, (48, 48))
    same = A.sample_params(AugmentConfig(size=16), 0, 0, np.arange(64), 0, (48, 48),
                           torch.ones(64))
    assert torch.equal(p.box, same.box)  # square pictures: the exact, unmapped path


def test_crops_are_drawn_on_the_whole_picture():
    """A 4:3 picture stored squeezed: boxes are torchvision's on the picture's own size
    (the same draws as on a (48, 64) image), mapped onto the square; they reach both ends
    of the long side, which crops of a central square never do."""
    cfg, n = AugmentConfig(size=16), 4000
    on_picture = A.sample_params(cfg, 0, 0, np.arange(n), 0, (48, 64))
    stored = A.sample_params(cfg, 0, 0, np.arange(n), 0, (48, 48), np.full(n, 4 / 3))
    full = (np.full(n, 48), np.full(n, 64))
    assert np.array_equal(stored.box.numpy(), P.to_stored(on_picture.box.numpy(), full, (48, 48)))
    box = on_picture.box.numpy()
    assert box[:, 1].min() == 0 and (box[:, 1] + box[:, 3]).max() == 64
    # Back in picture pixels the aspect ratios are the picture's draws up to rounding; read
    # as squeezed pixels they would be off by log(4/3) = 0.29 on average.
    def mean_log_ratio(b: np.ndarray) -> float:
        return float(np.log(b[:, 3] / b[:, 2]).mean())

    back = stored.box.numpy().astype(float) * [1, 64 / 48, 1, 64 / 48]
    assert abs(mean_log_ratio(back) - mean_log_ratio(box.astype(float))) < 0.01
    assert mean_log_ratio(box.astype(float)) - mean_log_ratio(stored.box.numpy()) > 0.25


def test_views_of_a_squeezed_picture_match_crops_of_the_picture():
    """End to end: views from the stored square equal torchvision's resized crops of the
    original picture with the same boxes, up to the squeeze's resampling."""
    cfg = AugmentConfig(size=24, **{**OFF, "crop": True})
    n = 16
    wide, tall = _images(n // 2, 48, 64, seed=1), _images(n // 2, 64, 48, seed=2)
    aspect = np.array([4 / 3] * (n // 2) + [3 / 4] * (n // 2))
    stored = torch.cat([_squeeze(wide, 48), _squeeze(tall, 48)])
    views = A.apply_params(stored, A.sample_params(cfg, 3, 0, np.arange(n), 0, (48, 48), aspect),
                           cfg)
    refs = []
    for pictures, first in ((wide, 0), (tall, n // 2)):
        idx = first + np.arange(n // 2)
        p = A.sample_params(cfg, 3, 0, idx, 0, tuple(pictures.shape[-2:]))
        refs += [reference_augment(pictures[k], p, k, cfg) for k in range(n // 2)]
    ref = torch.stack(refs)
    diff = (views - ref).abs()
    assert diff.mean() < 0.03, diff.mean()
    # The same views drawn as if the squares were the pictures are much further off.
    wrong = A.apply_params(stored, A.sample_params(cfg, 3, 0, np.arange(n), 0, (48, 48)), cfg)
    assert (wrong - ref).abs().mean() > 2 * diff.mean()


def test_eval_resize_of_a_squeezed_picture_is_the_center_crop_of_the_picture():
    pictures = _images(2, 96, 128, seed=4)
    stored = _squeeze(pictures, 96)
    want = A.eval_resize(pictures, 56)  # shorter side -> 64, centre crop 56
    got = A.eval_resize(stored, 56, torch.full((2,), 4 / 3))
    assert got.shape == want.shape and (got - want).abs().mean() < 0.02
    assert (A.eval_resize(stored, 56) - want).abs().mean() > 0.04  # ignoring the aspect
    tall = pictures.transpose(2, 3).contiguous()  # 128 x 96: rows squeezed this time
    got_tall = A.eval_resize(_squeeze(tall, 96), 56, torch.full((2,), 3 / 4))
    assert (got_tall - A.eval_resize(tall, 56)).abs().mean() < 0.02
    # A mixed batch: the square picture comes out exactly as on its own.
    square = _images(1, 96, seed=5)
    mixed = A.eval_resize(torch.cat([square, stored[:1]]), 56, torch.tensor([1.0, 4 / 3]))
    assert torch.equal(mixed[0], A.eval_resize(square, 56)[0])
    assert torch.allclose(mixed[1], got[0])
    # Side <= 32: the picture's central square, no further crop, as eval_resize of the
    # picture itself gives it (which squeezed a non-square one), and of its file.
    picture = _images(1, 24, 32, seed=6)
    got = A.eval_resize(_squeeze(picture, 24), 24, [4 / 3])
    assert (got - picture[..., 4:28].float() / 255).abs().mean() < 0.03
    assert torch.equal(A.eval_resize(picture, 24), picture[..., 4:28].float() / 255)


def test_eval_resize_of_a_squeezed_picture_crops_its_exact_central_box_and_clamps():
    """40 x 40 stored squares of 4:3 and 3:4 pictures: the central square is 40 x 30
    stored pixels (30 x 40), its central 87.5% 35 x 26 at (2, 7) (26 x 35 at (7, 2)); the
    half-pixel offsets round down as torchvision's centre crop does. Random black/white
    pixels make bicubic overshoot, which is clamped to [0, 1] as on the square path."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    g = torch.Generator().manual_seed(0)
    stored = (torch.rand(2, 3, 40, 40, generator=g) > 0.5).to(torch.uint8) * 255
    got = A.eval_resize(stored, 56, torch.tensor([4 / 3, 3 / 4]))
    assert got.min() == 0.0 and got.max() == 1.0
    for k, (top, left, h, w) in enumerate([(2, 7, 35, 26), (7, 2, 26, 35)]):
        crop = stored[k:k + 1, :, top:top + h, left:left + w].float() / 255
        want = tvf.resize(crop, [56, 56], interpolation=InterpolationMode.BICUBIC,
                          antialias=True)
        assert want.min() < -0.01 and want.max() > 1.01  # the overshoot the clamp removes
        assert torch.equal(got[k], want[0].clamp(0.0, 1.0)), k


def test_eval_resize_and_the_views_refuse_what_they_cannot_compute():
    """An aspect per image, a positive side, and an augmentation config built by hand
    held to the flags' checks (rows of a short aspect were left uninitialised)."""
    images = _images(4, 40)
    with pytest.raises(ValueError, match=r"aspect must hold one positive width / height per "
                                         r"image, shape \(4,\), got \(2,\)"):
        A.eval_resize(images, 16, aspect=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="aspect must hold one positive"):
        A.eval_resize(images, 16, aspect=torch.tensor([1.0, 2.0, -1.0, 1.0]))
    for size in (0, -4, 2.5):
        with pytest.raises(ValueError, match="size must be a positive whole number"):
            A.eval_resize(images, size)
    assert A.eval_resize(images, np.int64(16)).shape == (4, 3, 16, 16)
    # central=True: squares of the transform's own side (round(35 / 0.875) = 40) only
    assert torch.equal(A.eval_resize(images, 35, central=True),
                       images[:, :, 2:37, 2:37].float() / 255)
    with pytest.raises(ValueError, match=r"central=True takes squares of side 18"):
        A.eval_resize(images, 16, central=True)
    with pytest.raises(ValueError, match=r"central=True takes squares .* aspect 1"):
        A.eval_resize(images, 35, torch.full((4,), 4 / 3), central=True)
    with pytest.raises(TypeError, match="a torch uint8 tensor .* got ndarray"):
        A.eval_resize(images.numpy(), 16)  # ("must be uint8, got uint8" before)
    for cfg in (AugmentConfig(size=0), AugmentConfig(size=16, color_strength=-1),
                AugmentConfig(size=16, crop_scale=(1.0, 0.2)),
                AugmentConfig(size=20000)):  # (exhausted the memory of a 2-image batch)
        with pytest.raises(SimCLRError):
            A.TwoViewAugment(cfg, seed=0)
    # Values of the wrong type, named as the flags are (a float size failed inside torch,
    # a text probability as a bare comparison of str with int).
    for cfg, said in ((AugmentConfig(size=16.0), "--image-size must be a whole number, got "
                       "16.0"),
                      (AugmentConfig(size=16, flip_p="0.5"), "--flip-p must be a number"),
                      (AugmentConfig(size=16, blur_sigma=2.0), "--blur-sigma must be")):
        with pytest.raises(SimCLRError, match=re.escape(said)):
            A.TwoViewAugment(cfg, seed=0)
    assert A.TwoViewAugment(AugmentConfig(size=np.int64(16)), seed=0).cfg.size == 16


def test_blurred_views_stay_in_the_unit_range():
    """A white image blurred at any sigma is white, never above 1: the float32 weights of
    a row sum to 1 only up to rounding (some to 1 + 2e-7), so the blur clips its output
    as every other op does (views are documented to lie in [0, 1])."""
    size, n = 64, 64
    cfg = AugmentConfig(size=size, **dict(OFF, blur=True, blur_p=1.0))
    white = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    out = A.apply_params(white, _draw(cfg, n, (size, size)), cfg)
    assert out.max().item() <= 1.0 and out.min().item() > 1.0 - 1e-5


def test_blur_kernel_follows_its_configured_fraction():
    """``blur_kernel_frac`` sets the kernel side (10% is the paper's default, not a
    constant): at 30% of a 40-px view an impulse spreads over 2 * (12 // 2) + 1 = 13 px."""
    size = 40
    cfg = AugmentConfig(size=size, **dict(OFF, blur=True, blur_p=1.0, blur_kernel_frac=0.3))
    image = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    image[0, :, 20, 20] = 255
    out = A.apply_params(image, _draw(cfg, 1, (size, size)), cfg)[0, 0]
    rows, cols = torch.nonzero(out > 1e-9, as_tuple=True)
    assert rows.max() - rows.min() + 1 == 13 and cols.max() - cols.min() + 1 == 13


def test_jitter_ops_of_zero_amount_are_skipped():
    """As torchvision's ColorJitter, an op whose amount is 0 is not run at all: a jitter
    of brightness alone is exactly the plain view times each sample's factor (a hue
    rotation by 0 would still move pixels by float rounding)."""
    images = _images(16, 16)
    cfg = AugmentConfig(size=16, **dict(OFF, color=True, color_p=1.0, contrast=0.0,
                                        saturation=0.0, hue=0.0))
    p = _draw(cfg, 16, (16, 16))
    plain = A.apply_params(images, dataclasses.replace(p, color=torch.zeros_like(p.color)), cfg)
    factor = p.factors[:, 0].view(-1, 1, 1, 1)
    assert torch.equal(A.apply_params(images, p, cfg), (plain * factor).clamp(0, 1))


def test_both_views_are_drawn_on_the_picture_the_square_stands_for():
    """TwoViewAugment passes ``aspect`` to the draws of view 0 and of view 1 alike."""
    cfg, idx, aspect = AugmentConfig(size=16), np.arange(32), np.full(32, 4 / 3)
    views = A.TwoViewAugment(cfg, 3).params(idx, 1, (48, 48), aspect)
    for view, p in enumerate(views):
        assert torch.equal(p.box, A.sample_params(cfg, 3, 1, idx, view, (48, 48), aspect).box)
