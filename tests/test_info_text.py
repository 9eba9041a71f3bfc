"""``simclr info`` as text: a run's recipe and a classifier's class names worded from its facts."""

from __future__ import annotations

import pytest


def test_a_capped_schedule_is_part_of_the_recipe():
    from simclr.info_text import _recipe

    recipe = {"batch_size": 8, "optimizer": "lars", "lr": 1.0, "lr_scaling": "linear",
              "loss": "nt_xent", "temperature": 0.5, "seed": 0, "epochs": 5}
    assert _recipe(recipe).endswith("seed 0, 5 epochs")
    assert _recipe({**recipe, "max_steps": 3}).endswith("seed 0, 5 epochs, at most 3 steps")


@pytest.mark.parametrize("budget, said", [(90, "90 s"), (119, "119 s"), (120, "2.0 min"),
                                          (5400, "90.0 min"), (7200, "2.0 h")])
def test_a_time_budget_is_said_in_seconds_minutes_or_hours(budget, said):
    """Under two minutes in seconds, under two hours in minutes, then in hours."""
    from simclr.info_text import _recipe

    recipe = {"batch_size": 8, "optimizer": "lars", "lr": 1.0, "lr_scaling": "linear",
              "seed": 0, "time_budget": budget}
    assert _recipe(recipe).endswith(f"seed 0, {said} budget")


@pytest.mark.parametrize("loss, said", [
    ({"name": "nt_xent", "temperature": 0.5}, "nt_xent tau 0.5"),
    ({"name": "nt_xent", "temperature": 0.5, "one_view_negatives": True},
     "nt_xent tau 0.5 (negatives of one view)"),
    ({"name": "nt_logistic", "temperature": 0.2, "semi_hard": True},
     "nt_logistic tau 0.2 (semi-hard negatives)"),
    ({"name": "margin_triplet", "margin": 0.5}, "margin_triplet margin 0.5"),
    ({"name": "margin_triplet", "margin": 0.5, "semi_hard": True, "normalize": False,
      "weight": 2.0}, "margin_triplet margin 0.5 (semi-hard negatives, z not normalised, "
                      "weight 2)")])
def test_the_recipe_shows_the_settings_that_act_on_its_loss_and_a_short_lr(loss, said):
    """A run of --loss margin_triplet --margin 0.5 read 'margin_triplet tau 0.1' (no
    temperature acts there; its margin was not said), and the lr was written out whole
    (cifar10-cpu's under --lr-scaling sqrt: 2 / sqrt(512) = 0.08838834764831843)."""
    import math

    from simclr.config import Config
    from simclr.info import recipe_facts
    from simclr.info_text import _recipe

    config = Config().to_dict()
    config["loss"].update(loss)
    config["optim"].update(lr=2 / math.sqrt(512), lr_scaling="sqrt")
    assert f", LARS lr 0.0883883 (sqrt scaling), {said}, seed 0, " in \
        _recipe(recipe_facts(config))


@pytest.mark.parametrize("count", [20, 21])
def test_a_classifiers_names_are_all_listed_up_to_twenty(count):
    """20 names are listed whole; of 21, the first 20 and a count of the one left."""
    from simclr.info_text import render

    names = [f"n{i}" for i in range(count)]
    text = render({"path": "c.pt", "checkpoint": {"kind": "linear", "classes": count,
                                                   "class_names": names}})
    more = " …and 1 more" if count == 21 else ""
    assert text.splitlines()[1] == f"  classes: {', '.join(names[:20])}{more}"


def test_an_exported_imported_encoder_names_its_origin_once():
    """An imported file's export records what it was taken from as the import itself
    ('ResNet weights in torchvision's layout'): its line said so twice."""
    from simclr.info_text import _checkpoint_line

    imported = "ResNet weights in torchvision's layout"
    line = _checkpoint_line({"kind": "encoder", "imported": imported, "trained": imported,
                             "exported_from": {"kind": "encoder", "trained": imported}})
    assert line == imported
    # an exported fine-tuned model still says what it is beside its kind
    assert _checkpoint_line({"kind": "encoder", "trained": "finetune model, step 3"}) == \
        "exported encoder, finetune model, step 3"


def test_an_encoder_without_a_head_names_no_projection_width():
    """--head none keeps no projection: the head_out_dim its config still holds is not
    shown as one ('head none -> 128')."""
    from simclr.info_text import render

    encoder = {"arch": "resnet18", "image_size": 32, "head": "none", "head_out_dim": 128}
    text = render({"path": "p.pt", "checkpoint": {"kind": "pretrain", "encoder": encoder}})
    assert text == "p.pt: SimCLR pretraining, resnet18, 32 px, head none"
    mlp = render({"path": "p.pt", "checkpoint": {"kind": "pretrain",
                                                 "encoder": {**encoder, "head": "mlp"}}})
    assert mlp.endswith(", head mlp -> 128")
