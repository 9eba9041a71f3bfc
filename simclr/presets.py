"""The named recipes of ``--preset``: the paper's and the official code's settings, and
ours for a 2-core CPU, each with where its values come from.

A preset overrides :class:`simclr.config.Config`'s defaults (the paper's); a YAML
``--config`` and flags override the preset. Values are plain data in the config's
sections (``model``, ``augment``, ``loss``, ``optim``, ``data``, top-level settings).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's ImageNet recipe (Sec. 2.3's default setting): ResNet-50, batch 4096, LARS,
    # lr 0.3 x B/256, wd 1e-6, tau 0.1, strength 1 with blur, 100 epochs (ablations);
    # as the official code ran it: BN in the head, the loss summed over both directions,
    # its crop sampler (sample_distorted_bounding_box) and colour ops (TensorFlow's
    # contrast and saturation; its default multiplicative brightness, where the paper's
    # v1 code added a shift: --color-ops official_v1), and crops drawn at about the
    # photos' own resolution (the official code crops the decoded file): pictures stored
    # at 384 px, near ImageNet's typical short side (500x375), where the automatic
    # 1.15 x 224 = 258 px would resample a small crop from about 2/3 of the pixels a
    # crop of the file has. (For its 224-px views: another --image-size stores at the
    # automatic side, as an eval_size is dropped: settings.build_config.)
    "imagenet": {
        "model": {"arch": "resnet50", "width": 1.0, "head_batch_norm": True},
        "augment": {"size": 224, "color_strength": 1.0, "blur": True,
                    "crop_sampler": "official", "color_ops": "official"},
        "loss": {"temperature": 0.1, "weight": 2.0},
        "data": {"load_size": 384},
        "optim": {"name": "lars", "lr_scaling": "linear", "weight_decay": 1e-6},
        "batch_size": 4096,
        "epochs": 100,
    },
    # The official code's CIFAR-10 recipe (its README; about 91% linear): ResNet-18 with
    # the CIFAR stem, batch 512, lr 1.0 (linear), wd 1e-4, tau 0.5, s 0.5, no blur, the
    # loss summed over both directions, its crop sampler and colour ops, the head its
    # run.py builds by default (num_proj_layers=3: SimCLRv2's three layers, BN in each)
    # and its ResNet's shortcuts (tf2/resnet.py's BlockGroup: use_projection=True in
    # every stage's first block, the first stage's too: one 1x1 conv + BN more than
    # torchvision's ResNet-18, so its encoder has no torchvision layout to export to).
    # (The paper's App. B.9 trains a ResNet-50 with the CIFAR stem instead:
    # `--arch resnet50`, 94.0%.)
    "cifar10": {
        "model": {"arch": "resnet18", "width": 1.0, "head_batch_norm": True,
                  "head_layers": 3, "projection_shortcuts": True},
        "augment": {"size": 32, "color_strength": 0.5, "blur": False,
                    "crop_sampler": "official", "color_ops": "official"},
        "loss": {"temperature": 0.5, "weight": 2.0},
        "optim": {"name": "lars", "lr": 1.0, "lr_scaling": "linear", "weight_decay": 1e-4},
        "batch_size": 512,
        "epochs": 1000,
    },
    # Our CIFAR-10 recipe for a 2-core CPU and `--time-budget 20m`: the official CIFAR
    # recipe with a quarter-width ResNet-18 (about 21 epochs fit in 20 minutes in bf16),
    # the loss as Alg. 1's mean (loss.weight 1, as it was measured),
    # temperature 0.2 (3-minute runs: kNN 49.7% vs 45.1% at 0.5), the official code's BN
    # projection head (20-minute runs: linear 63.8% vs 62.6% without BN) and batch 512
    # (linear 64.0% / 64.6% in two runs, against 63.8 / 62.6 / 63.1% at batch 256;
    # README, "Results"). Views of 24 px, evaluated at the pictures' 32 (since
    # 2026-12-05): about 1.6x the steps of 32-px views in the same minutes, and linear
    # 65.8% in two runs on a day 32-px views gave 61.5% (at 24 px: 62.6%; FixRes).
    "cifar10-cpu": {
        "model": {"arch": "resnet18", "width": 0.25, "head_batch_norm": True},
        "augment": {"size": 24, "eval_size": 32, "color_strength": 0.5, "blur": False},
        "loss": {"temperature": 0.2},
        "optim": {"name": "lars", "lr": 1.0, "lr_scaling": "linear", "weight_decay": 1e-4},
        "batch_size": 512,
        "epochs": 100,
        "checkpoint_every": 1000,
    },
    # Our recipe for a folder of photos on a 2-core CPU (`--time-budget 20m`), measured
    # on Imagenette: the CIFAR one at 96 px views through the ImageNet stem, with blur,
    # at half width, and the folder decoded once into the cache at round(1.15 x 96) =
    # 110 px. In 5-minute runs (kNN on Imagenette val): 96 px beat 64 and 128 (53.6% vs
    # 51.0 / 52.3% at width 0.25), colour strength 0.5 beat 1 (53.6 vs 49.3%), blur added
    # 0.8 points; in 20-minute runs width 0.5 beat 0.25 (linear 68.7 / 68.9% in two
    # seeds vs 66.8%, kNN 64.2 / 65.2% vs 63.6%; README, "Results"). Evaluated at 128 px
    # (since 2026-12-05; FixRes): two 20-minute runs gained 2.5 / 3.4 points of linear
    # top-1 and 2.3 / 2.8 of kNN over reading their own 96 px.
    "imagenette-cpu": {
        "model": {"arch": "resnet18", "width": 0.5, "head_batch_norm": True},
        "augment": {"size": 96, "eval_size": 128, "color_strength": 0.5, "blur": True},
        "loss": {"temperature": 0.2},
        "optim": {"name": "lars", "lr": 1.0, "lr_scaling": "linear", "weight_decay": 1e-4},
        "data": {"cache": "on"},
        "batch_size": 512,
        "epochs": 100,
        "checkpoint_every": 500,
    },
    # The offline one-minute demo (`simclr pretrain` without --data): scikit-learn's
    # 8x8 digits stored at 32 px and cropped to 16 px views (the digits hold no more
    # detail), a quarter-width ResNet-18, no flip (digits are not mirror-symmetric) and
    # crops of at least half the image so a view still shows most of the digit.
    "digits": {
        "model": {"arch": "resnet18", "width": 0.25},
        "augment": {"size": 16, "color_strength": 0.5, "blur": False, "flip": False,
                    "crop_scale": (0.5, 1.0)},
        "loss": {"temperature": 0.2},
        "optim": {"name": "lars", "lr": 1.0, "lr_scaling": "linear", "weight_decay": 1e-4},
        "batch_size": 256,
        "epochs": 40,
        "out": "runs/digits",
        "checkpoint_every": 0,
    },
}
