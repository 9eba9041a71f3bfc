"""The official crop sampler (``crop_sampler="official"``) against references.

References: a per-box Python loop that follows TensorFlow's
``sample_distorted_bounding_box`` step by step (``GenerateRandomCrop`` and the overlap
test of ``sample_distorted_bounding_box_op.cc``), fed the same uniforms as the
vectorised sampler, so boxes must agree exactly; and, when TensorFlow is installed
(it is not a dependency), the distribution of TF's own op, as the official
``data_util.distorted_bounding_box_crop`` calls it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats

from simclr import augment_params as P
from simclr.config import AugmentConfig
from simclr.errors import SimCLRError
from simclr.settings import build_config

OFFICIAL = AugmentConfig(size=32, crop_sampler="official")


def _lrint(x: float) -> int:
    """C's lrintf under the default rounding mode: to nearest, ties to even."""
    return int(round(x))


def _tf_box(h_img: int, w_img: int, u_ratio, u_height, u_top: float, u_left: float,
            scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), min_covered=0.1) -> list[int]:
    """One box (top, left, height, width), one attempt after another, as TF draws it."""
    min_area = scale[0] * w_img * h_img
    max_area = scale[1] * w_img * h_img
    for ur, uh in zip(u_ratio, u_height, strict=True):
        r = ratio[0] + (ratio[1] - ratio[0]) * ur
        height = _lrint(math.sqrt(min_area / r))
        max_height = _lrint(math.sqrt(max_area / r))
        if _lrint(max_height * r) > w_img:
            max_height = int((w_img + 0.5 - 1e-7) / r)
            if _lrint(max_height * r) > w_img:
                max_height -= 1
        max_height = min(max_height, h_img)
        height = min(height, max_height)
        if height < max_height:  # Uniform(n): an integer in [0, n)
            height += min(int(uh * (max_height - height + 1)), max_height - height)
        width = _lrint(height * r)
        if width * height < min_area:
            height += 1
            width = _lrint(height * r)
        if width * height > max_area:
            height -= 1
            width = _lrint(height * r)
        area = width * height
        if (area < min_area or area > max_area or width > w_img or height > h_img
                or width <= 0 or height <= 0):
            continue
        if area < 1 or area / (w_img * h_img) < min_covered:
            continue
        top = int(u_top * (h_img - height)) if height < h_img else 0
        left = int(u_left * (w_img - width)) if width < w_img else 0
        return [top, left, height, width]
    return [0, 0, h_img, w_img]


@pytest.mark.parametrize("hw", [(32, 32), (375, 500), (40, 30), (3, 20), (20, 3), (7, 7)])
def test_official_boxes_match_a_per_box_transcription_of_tf(hw):
    n = 3000
    boxes = P.sample_params(OFFICIAL, 5, 1, np.arange(n), 0, hw).box.numpy()
    a = P._TF_ATTEMPTS
    u = P.uniforms(5, 1, np.arange(n), 0, P._P_TF_HEIGHT + a)
    ref = np.array([_tf_box(*hw, u[i, P._P_TF_RATIO:P._P_TF_RATIO + a],
                            u[i, P._P_TF_HEIGHT:P._P_TF_HEIGHT + a],
                            u[i, P._P_TOP], u[i, P._P_LEFT]) for i in range(n)])
    assert np.array_equal(boxes, ref)


def test_official_boxes_per_sample_sizes_and_other_ranges():
    cfg = dataclasses.replace(OFFICIAL, crop_scale=(0.3, 0.9), crop_ratio=(0.5, 2.0))
    n = 2000
    rng = np.random.default_rng(0)
    hs, ws = rng.integers(1, 90, n), rng.integers(1, 90, n)
    a = P._TF_ATTEMPTS
    u = P.uniforms(0, 0, np.arange(n), 0, P._P_TF_HEIGHT + a)
    boxes = P._crop_boxes(u, cfg, (hs, ws), P.Stream(0, 0, np.arange(n), 0))
    ref = np.array([_tf_box(int(hs[i]), int(ws[i]), u[i, P._P_TF_RATIO:P._P_TF_RATIO + a],
                            u[i, P._P_TF_HEIGHT:P._P_TF_HEIGHT + a], u[i, P._P_TOP],
                            u[i, P._P_LEFT], scale=(0.3, 0.9), ratio=(0.5, 2.0))
                    for i in range(n)])
    assert np.array_equal(boxes, ref)


def test_official_distribution_differs_from_torchvision_as_expected():
    """Uniform ratio and a uniform height instead of a log-uniform ratio and a uniform
    area: >= 10% of the image always, never at the bottom or right edge, smaller crops."""
    n, side = 20000, 300
    ours = P.sample_params(OFFICIAL, 0, 0, np.arange(n), 0, (side, side)).box.numpy()
    tv = P.sample_params(AugmentConfig(size=32), 0, 0, np.arange(n), 0, (side, side)).box.numpy()
    area, tv_area = (b[:, 2] * b[:, 3] / side**2 for b in (ours, tv))
    assert area.min() >= 0.1 and area.max() <= 1.0 and (tv_area < 0.1).mean() > 0.01
    # Median ratio: the midpoint of [3/4, 4/3] (1.042) for a uniform draw, 1 (the
    # geometric mean) for a log-uniform one, on a square image where neither is clipped.
    assert 1.03 < np.median(ours[:, 3] / ours[:, 2]) < 1.06
    assert abs(np.median(tv[:, 3] / tv[:, 2]) - 1.0) < 0.01
    assert area.mean() < tv_area.mean() - 0.03  # a uniform height favours small areas
    for pos, length in ((0, 2), (1, 3)):  # Uniform(H - h) < H - h, unless h = H
        short = ours[:, length] < side
        assert (ours[short, pos] + ours[short, length] < side).all()
        assert (ours[~short, pos] == 0).all() and (~short).sum() > 10


def test_official_sampler_changes_no_other_draw():
    base = P.sample_params(AugmentConfig(size=32), 3, 2, np.arange(64), 1, (40, 30))
    off = P.sample_params(OFFICIAL, 3, 2, np.arange(64), 1, (40, 30))
    assert not np.array_equal(base.box.numpy(), off.box.numpy())
    for name in ("flip", "color", "factors", "order", "gray", "blur", "sigma"):
        assert np.array_equal(getattr(base, name).numpy(), getattr(off, name).numpy()), name


def test_official_sampler_is_a_setting():
    """The official-code presets take its crop sampler and colour ops; ours do not."""
    for preset in ("cifar10", "imagenet"):
        aug = build_config(preset).augment
        assert (aug.crop_sampler, aug.color_ops) == ("official", "official")
    aug = build_config("cifar10-cpu").augment
    assert (aug.crop_sampler, aug.color_ops) == ("torchvision", "torchvision")
    cfg = build_config("cifar10-cpu", flags={"augment.crop_sampler": "official"})
    assert cfg.augment.crop_sampler == "official"
    with pytest.raises(SimCLRError, match="--crop-sampler"):
        build_config("cifar10-cpu", flags={"augment.crop_sampler": "tf"})
    with pytest.raises(SimCLRError, match="--color-ops"):
        build_config("cifar10-cpu", flags={"augment.color_ops": "tf"})


def test_official_sampler_matches_tensorflow_itself():
    """KS tests against tf.image.sample_distorted_bounding_box (20k draws per shape)."""
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (optional)")
    n = 20000
    for hw in ((375, 500), (40, 30), (32, 32)):
        ours = P.sample_params(OFFICIAL, 1, 0, np.arange(n), 0, hw).box.numpy().astype(float)
        tf.random.set_seed(0)
        theirs = []
        for i in range(n):
            begin, size, _ = tf.image.sample_distorted_bounding_box(
                [hw[0], hw[1], 3], tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
                min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
                area_range=(0.08, 1.0), max_attempts=100, use_image_if_no_bounding_boxes=True,
                seed=i + 1)
            theirs.append([begin[0], begin[1], size[0], size[1]])
        theirs = np.array(theirs, dtype=float)
        area = hw[0] * hw[1]
        for a, b in ((ours[:, 2] * ours[:, 3] / area, theirs[:, 2] * theirs[:, 3] / area),
                     (ours[:, 3] / ours[:, 2], theirs[:, 3] / theirs[:, 2]),
                     (ours[:, 0], theirs[:, 0]), (ours[:, 1], theirs[:, 1]),
                     (ours[:, 2], theirs[:, 2])):
            assert stats.ks_2samp(a, b).pvalue > 1e-3
        full = (ours[:, 2] == hw[0]) & (ours[:, 3] == hw[1])
        tf_full = (theirs[:, 2] == hw[0]) & (theirs[:, 3] == hw[1])
        assert abs(full.mean() - tf_full.mean()) < 5 * math.sqrt(0.25 / n) + 1e-9


def test_official_sampler_in_the_batched_pipeline():
    """Both views of a batch, the whole pipeline, and Fig. 5's shared crop use it."""
    import torch

    from simclr.augment import TwoViewAugment

    images = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)
    v0, v1 = TwoViewAugment(OFFICIAL, seed=1)(images, torch.arange(8), epoch=0)
    w0, _ = TwoViewAugment(OFFICIAL, seed=1)(images[[5]], torch.tensor([5]), epoch=0)
    assert v0.shape == v1.shape == (8, 3, 32, 32) and torch.equal(v0[[5]], w0)
    fig5 = dataclasses.replace(OFFICIAL, asymmetric=True, color=False, grayscale=False,
                               blur=False)
    p0 = P.sample_params(fig5, 0, 0, np.arange(500), 0, (40, 40)).box.numpy()
    p1 = P.sample_params(fig5, 0, 0, np.arange(500), 1, (40, 40)).box.numpy()
    assert (p1[:, 2] * p1[:, 3] >= 0.1 * 1600).all()  # the shared crop: official too
    inside = ((p0[:, :2] >= p1[:, :2]) & (p0[:, :2] + p0[:, 2:] <= p1[:, :2] + p1[:, 2:]))
    assert inside.all()


def test_inputs_that_would_silently_draw_other_views_are_refused():
    """Index 1.9 drew index 1's views, epoch 0.9 epoch 0's, an aspect of -1 crops one
    pixel wide and nan ones at -4.6e18: each is refused, naming it."""
    import torch

    from simclr.augment_params import sample_params

    cfg = AugmentConfig(size=16)

    def draw(indices=(0, 1), epoch=0, aspect=None):
        return sample_params(cfg, 0, epoch, indices, 0, (20, 20), aspect)

    for indices in (np.array([0.0, 1.9]), np.array([True, False])):
        with pytest.raises(TypeError, match="indices must be whole numbers"):
            draw(indices)
    for epoch in (0.9, "0", True):
        with pytest.raises(TypeError, match="epoch must be a whole number"):
            draw(epoch=epoch)
    for aspect in ([-1.0, 1.0], [0.0, 1.0], [float("nan"), 1.0], [float("inf"), 1.0],
                   [1.0, 1.0, 1.0], -1.0):
        with pytest.raises(ValueError, match="aspect must hold one positive"):
            draw(aspect=aspect)
    same = draw(torch.tensor([0, 1]), np.int64(0), torch.tensor([1.5, 0.5]))
    assert torch.equal(same.box, draw(aspect=np.array([1.5, 0.5])).box)
    assert torch.equal(draw(aspect=1.0).box, draw().box)  # one for all, as documented
    # Negative indices and epochs wrapped around to other samples' keys; 2-D indices
    # were flattened; a seed outside --seed's range (or a float) drew another seed's.
    for indices, epoch in (((-1, 0), 0), ((0, 1), -1)):
        with pytest.raises(ValueError, match="epoch and indices must be >= 0"):
            draw(indices, epoch)
    with pytest.raises(ValueError, match=r"indices must be one per sample, \(B,\)"):
        draw(np.array([[0, 1]]))
    from simclr.augment import TwoViewAugment

    for seed in (1.5, "0", -1, 2**64, True):
        with pytest.raises(ValueError, match="seed must be a whole number in"):
            TwoViewAugment(cfg, seed)
    assert TwoViewAugment(cfg, np.int64(3)).seed == 3


def test_noise_std_is_drawn_uniformly_within_its_range():
    """Each noisy view draws its std from U(lo, hi) (``noise_std``), not always the top
    of the range: over 256 views they spread across it."""
    cfg = AugmentConfig(size=16, noise=True, noise_p=1.0, noise_std=(0.1, 0.5))
    std = P.sample_params(cfg, 0, 0, np.arange(256), 0, (16, 16)).noise_std.numpy()
    assert ((std >= 0.1) & (std <= 0.5)).all()
    assert std.min() < 0.2 and std.max() > 0.4
    # ... from its own uniform, not the coin's: with the coin at 0.5 the noisy views'
    # stds still span the range (from the coin's uniform, they stayed below 0.3).
    half = dataclasses.replace(cfg, noise_p=0.5)
    std = P.sample_params(half, 0, 0, np.arange(256), 0, (16, 16)).noise_std.numpy()
    assert std[std > 0].min() < 0.2 and std.max() > 0.4


def test_cutout_erases_at_least_one_pixel():
    """A ``cutout_frac`` too small for a pixel of the view still erases one (1% of 16 px
    rounds to 0): a cutout switched on always erases something."""
    assert P.cutout_side(AugmentConfig(size=16, cutout_frac=0.01)) == 1
    assert P.cutout_side(AugmentConfig(size=16, cutout_frac=2.0)) == 16
    assert P.cutout_side(AugmentConfig(size=16, cutout_frac=0.3)) == 5  # 4.8 rounds up


def test_official_boxes_never_touch_the_bottom_or_right_edge():
    """TF draws a box's offset from ``Uniform(H - h)``, [0, H - h): a box smaller than the
    image never reaches its last row or column (the docstring of ``_tf_boxes``)."""
    for seed in range(4):
        for hw in ((32, 32), (40, 30), (9, 13)):
            top, left, h, w = P.sample_params(OFFICIAL, seed, 0, np.arange(2000), 0,
                                              hw).box.numpy().T
            shorter, narrower = h < hw[0], w < hw[1]
            assert shorter.any() and narrower.any()
            assert (top + h <= hw[0] - 1)[shorter].all()
            assert (left + w <= hw[1] - 1)[narrower].all()
            assert (top >= 0).all() and (left >= 0).all()


def test_each_edge_of_a_mapped_box_is_rounded_on_its_own():
    """``to_stored`` rounds the far edge (left + width) x scale, not the width alone:
    on a 30-px-wide picture stored in 20 px, x edges 2 and 4 map to 1.33 -> 1 and
    2.67 -> 3 (width 2; rounding the start and the width, 1.33 each, gave width 1);
    likewise for a tall picture's rows."""
    wide = (np.array([20]), np.array([30]))
    assert P.to_stored(np.array([[0, 2, 20, 2]]), wide, (20, 20)).tolist() == [[0, 1, 20, 2]]
    tall = (np.array([30]), np.array([20]))
    assert P.to_stored(np.array([[5, 0, 5, 20]]), tall, (20, 20)).tolist() == [[3, 0, 4, 20]]


def test_coins_follow_their_configured_probabilities():
    """Each op's coin comes up at its own configured rate (App. A's 0.5 / 0.8 / 0.2 / 0.5
    are defaults, not constants): binomial, 5 sigma, 20k views."""
    n = 20000
    rates = dict(flip_p=0.9, color_p=0.3, grayscale_p=0.6, blur_p=0.1, cutout_p=0.7,
                 sobel_p=0.4)
    cfg = AugmentConfig(size=32, cutout=True, sobel=True, **rates)
    p = P.sample_params(cfg, 0, 0, np.arange(n), 0, (32, 32))
    for name, mask in (("flip_p", p.flip), ("color_p", p.color), ("grayscale_p", p.gray),
                       ("blur_p", p.blur), ("cutout_p", p.cutout), ("sobel_p", p.sobel)):
        rate = rates[name]
        assert abs(mask.double().mean().item() - rate) <= 5 * math.sqrt(rate * (1 - rate) / n), name
    rot = P.sample_params(dataclasses.replace(cfg, rotate=True, rotate_p=0.25, noise=True,
                                              noise_p=0.65), 0, 0, np.arange(n), 0, (32, 32))
    for mask, rate in ((rot.rotate > 0, 0.25), (rot.noise_std > 0, 0.65)):
        assert abs(mask.double().mean().item() - rate) <= 5 * math.sqrt(rate * (1 - rate) / n)


def test_fallback_crop_of_an_image_within_the_ratio_range_is_the_whole_image():
    """When all 10 attempts fail, an image whose own aspect ratio lies inside
    ``crop_ratio`` is kept whole (torchvision's fallback): with scale (1, 1) a square
    image fails about a third of the time, and no box may outgrow the image."""
    cfg = AugmentConfig(size=16, crop_scale=(1.0, 1.0))
    box = P.sample_params(cfg, 0, 0, np.arange(500), 0, (32, 32)).box.numpy()
    assert (box == [0, 0, 32, 32]).all()


def test_a_square_picture_in_a_batch_does_not_hide_the_others_aspect():
    """Each sample's box is drawn on its own picture: a batch mixing a square picture
    with a 4:3 one gives each the box it gets alone (not the square path for all)."""
    cfg = AugmentConfig(size=16)
    both = P.sample_params(cfg, 0, 0, [0, 1], 0, (48, 48), np.array([1.0, 4 / 3]))
    wide = P.sample_params(cfg, 0, 0, [1], 0, (48, 48), np.array([4 / 3]))
    assert torch.equal(both.box[1], wide.box[0])


def test_view_params_of_other_image_or_view_sizes_do_not_concatenate():
    cfg = AugmentConfig(size=16)
    a = P.sample_params(cfg, 0, 0, [0], 0, (20, 20))
    b = P.sample_params(cfg, 0, 0, [1], 0, (24, 20))
    c = P.sample_params(dataclasses.replace(cfg, size=8), 0, 0, [1], 0, (20, 20))
    for other in (b, c):
        with pytest.raises(ValueError, match="differ in image_hw or size"):
            P.ViewParams.cat([a, other])
    assert len(P.ViewParams.cat([a, a])) == 2


def test_fallback_crop_rounds_the_clamped_side_as_torchvision():
    """All attempts fail on a 5 x 40 strip about 40% of the time: torchvision's fallback
    keeps the height and takes round(5 * 4/3) = 7 columns, centred at (40 - 7) // 2."""
    cfg = AugmentConfig(size=16)
    for hw, fallback in (((5, 40), [0, 16, 5, 7]), ((40, 5), [16, 0, 7, 5])):
        box = P.sample_params(cfg, 0, 0, np.arange(2000), 0, hw).box.numpy()
        assert (box == fallback).all(1).mean() > 0.3, hw


def test_crop_without_resize_draws_its_two_offsets_apart():
    """The S x S window of crop without resize (Fig. 5) moves along each axis by its own
    uniform: top and left are not the same number."""
    cfg = AugmentConfig(size=16, crop_resize=False)
    top, left = P.sample_params(cfg, 0, 0, np.arange(500), 0, (40, 40)).box.numpy()[:, :2].T
    assert top.min() >= 0 and top.max() <= 24 and left.min() >= 0 and left.max() <= 24
    assert (top != left).mean() > 0.9


def test_noise_keys_use_all_32_bits():
    """Each view's noise field comes from a 32-bit key: 4000 views get 4000 different
    keys spread over [0, 2^32) (16 bits made fields of different views coincide)."""
    cfg = AugmentConfig(size=16, noise=True, noise_p=1.0)
    keys = P.sample_params(cfg, 0, 0, np.arange(4000), 0, (16, 16)).noise_key.numpy()
    assert len(np.unique(keys)) == 4000
    assert keys.min() >= 0 and keys.max() < 2**32 and keys.max() > 2**31


def test_cutout_square_reaches_every_position_of_the_view():
    """The erased square's corner is uniform over [0, size - side] on each axis: it
    reaches the bottom and right edges too (not one pixel short on either axis)."""
    cfg = AugmentConfig(size=16, cutout=True, cutout_p=1.0, cutout_frac=0.5)
    yx = P.sample_params(cfg, 0, 0, np.arange(2000), 0, (16, 16)).cutout_yx.numpy()
    for axis in range(2):
        assert sorted(np.unique(yx[:, axis]).tolist()) == list(range(9)), axis


def test_noise_key_is_independent_of_the_noise_std():
    """A view's noise field and its strength come from different uniforms: the key does
    not grow with the std (drawn from the same uniform, they were perfectly correlated)."""
    cfg = AugmentConfig(size=16, noise=True, noise_p=1.0, noise_std=(0.1, 0.5))
    p = P.sample_params(cfg, 0, 0, np.arange(4000), 0, (16, 16))
    corr = np.corrcoef(p.noise_key.numpy().astype(float), p.noise_std.numpy())[0, 1]
    assert abs(corr) < 0.1
