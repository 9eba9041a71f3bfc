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


def _run_facts(kind: str, **more) -> dict:
    """A run folder's facts as :func:`simclr.info.describe` gives them, of a run of
    ``kind`` at step 3 of 5 with its last.pt."""
    facts = {"path": "run", "state": {"status": "finished", "step": 3, "planned_steps": 5},
             "checkpoints": [{"name": "last.pt", "kind": kind, "step": 3}], "results": [],
             "encoder": {"arch": "resnet18", "image_size": 32, "head": "mlp",
                         "head_out_dim": 128},
             "recipe": {"batch_size": 8, "optimizer": "lars", "lr": 1.0, "loss": "nt_xent",
                        "temperature": 0.5, "seed": 0, "epochs": 5}}
    return {**facts, **more}


def test_a_supervised_run_shows_no_projection_head_nor_contrastive_loss():
    """A supervised run's config still holds a head and a loss; neither plays a part in
    it, so its encoder and recipe lines leave them out (a pretraining's show them)."""
    from simclr.info_text import render

    supervised = render(_run_facts("supervised"))
    assert "  encoder: resnet18, 32 px\n" in supervised
    assert "nt_xent" not in supervised
    pretrain = render(_run_facts("pretrain"))
    assert "  encoder: resnet18, 32 px, head mlp -> 128\n" in pretrain
    assert "nt_xent tau 0.5" in pretrain


@pytest.mark.parametrize("count", [20, 21])
def test_a_sweeps_cells_not_started_are_counted_only_past_twenty(count):
    """20 cells not started are all listed, with no '0 more' line; of 21, one is counted."""
    from simclr.info_text import render

    cells = [f"temperature={i}" for i in range(count)]
    lines = render({"path": "sw", "runs": [], "pending": cells}).splitlines()
    assert lines[1:21] == [f"  {c}: not started" for c in cells[:20]]
    assert lines[21:] == (["  ... 1 more not started (--json lists them)"] if count == 21
                          else [])


def test_a_runs_length_is_its_planned_steps_or_else_its_total_steps():
    """A run that records only its total steps (an older summary) still says 'of N'."""
    from simclr.info_text import render

    state = {"status": "finished", "step": 3, "total_steps": 5}
    assert render(_run_facts("pretrain", state=state)).splitlines()[0] == \
        "run: SimCLR pretraining, finished at step 3 of 5"


def test_a_running_run_with_no_readable_checkpoint_yet_is_not_said_broken():
    """A run still training whose checkpoint is being written is not 'no checkpoint can
    be read'; a stopped one is."""
    from simclr.info_text import render

    state = {"status": "running", "step": 3, "planned_steps": 5, "saved_step": 3,
             "no_readable_checkpoint": True}
    assert render(_run_facts("pretrain", state=state)).splitlines()[0] == \
        "run: SimCLR pretraining, running at step 3 of 5"
    stopped = render(_run_facts("pretrain", state={**state, "status": "stopped"}))
    assert stopped.splitlines()[0].endswith("; but no checkpoint can be read")


@pytest.mark.parametrize("step, said", [
    (5, "; its final checkpoint was not written; last checkpoint at step 4"),
    (3, "; last checkpoint at step 2")])
def test_only_a_run_stopped_at_its_last_step_lacks_its_final_checkpoint(step, said):
    """A run stopped before its planned last step just lags its checkpoint; only one
    stopped at that step without a checkpoint of it missed the final one."""
    from simclr.info_text import render

    state = {"status": "stopped", "step": step, "planned_steps": 5, "saved_step": step - 1}
    assert render(_run_facts("pretrain", state=state)).splitlines()[0] == \
        f"run: SimCLR pretraining, stopped at step {step} of 5{said}"


@pytest.mark.parametrize("steps, said", [(1, "1 training step"), (6, "6 training steps")])
def test_a_classifiers_training_steps_are_counted_in_words(steps, said):
    """'1 training step', '6 training steps'; a classifier's encoder shows no head (it
    has its own), a pretraining checkpoint's does."""
    from simclr.info_text import render

    encoder = {"arch": "resnet18", "image_size": 32, "head": "mlp", "head_out_dim": 128}
    text = render({"path": "c.pt", "checkpoint": {"kind": "linear", "step": steps,
                                                   "classes": 3, "encoder": encoder}})
    assert text == f"c.pt: linear classifier, {said}, 3 classes, resnet18, 32 px"


@pytest.mark.parametrize("eval_size, said", [(32, ""), (64, " (evaluated at 64)")])
def test_an_encoder_evaluated_at_its_own_side_says_nothing_of_it(eval_size, said):
    from simclr.info_text import render

    encoder = {"arch": "resnet18", "image_size": 32, "eval_size": eval_size}
    assert render({"path": "c.pt", "checkpoint": {"kind": "linear", "encoder": encoder}}) == \
        f"c.pt: linear classifier, resnet18, 32 px{said}"


@pytest.mark.parametrize("weight, said", [(1, "nt_xent tau 0.5"),
                                          (2.0, "nt_xent tau 0.5 (weight 2)")])
def test_a_loss_weight_of_one_is_not_shown(weight, said):
    from simclr.info_text import _recipe

    recipe = {"batch_size": 8, "loss": "nt_xent", "temperature": 0.5, "loss_weight": weight}
    assert _recipe(recipe) == f"batch 8, {said}"


@pytest.mark.parametrize("processes, said", [(1, "batch 8, "),
                                             (2, "batch 8 over 2 processes (global BatchNorm), ")])
def test_a_batch_over_one_process_says_nothing_of_processes(processes, said):
    from simclr.info_text import _recipe

    recipe = {"batch_size": 8, "processes": processes, "seed": 0}
    assert _recipe(recipe).startswith(said)


@pytest.mark.parametrize("precision, said", [(None, "supervised training"),
                                             ("bf16", "SimCLR pretraining")])
def test_a_run_before_its_first_checkpoint_is_told_by_its_recorded_precision(precision, said):
    """No last.pt yet: a config.yaml that records the precision it resolved to is a
    pretraining's, one without it a supervised run's."""
    from simclr.info_text import render

    facts = _run_facts("pretrain", checkpoints=[],
                       state={"status": "running", "step": 1, "planned_steps": 5})
    facts["recipe"] = {**facts["recipe"], "precision": precision}
    assert render(facts).splitlines()[0] == f"run: {said}, running at step 1 of 5"


@pytest.mark.parametrize("command, said", [
    (["/usr/bin/simclr", "finetune", "--out", "ev"], "; continue with: simclr finetune --out ev"),
    (["train.py"], " (the command that started it continues it)")])
def test_an_unfinished_training_is_continued_by_its_command_where_it_has_one(command, said):
    """A fine-tuning started by simclr is continued by its command; one started from
    Python recorded only its script's name, no simclr command: none is made up."""
    from simclr.info_text import render

    state = {"status": "stopped", "training": "finetune", "step": 2, "command": command}
    text = render({"path": "ev", "state": state, "checkpoints": [], "results": []})
    assert text == f"ev: fine-tuning, unfinished at step 2{said}"


def test_a_stale_classifier_does_not_claim_the_step_it_was_fitted_on_as_current():
    """A classifier of an encoder the run has trained past says it is stale, not that it
    is 'fitted on the encoder of step N' beside it."""
    from simclr.info_text import render

    c = {"kind": "linear", "classes": 3, "fitted_on_step": 2,
         "stale": "was fitted on step 2, the run is at step 4"}
    assert render({"path": "c.pt", "checkpoint": c}) == (
        "c.pt: linear classifier, 3 classes; it was fitted on step 2, the run is at step 4 "
        "(predict and export refuse the run folder)")
    fresh = render({"path": "c.pt", "checkpoint": {**c, "stale": None}})
    assert fresh == "c.pt: linear classifier, fitted on the encoder of step 2, 3 classes"


def test_a_runs_head_line_says_where_its_step_comes_from_its_epochs_and_its_last_loss():
    """A run with no log of its own reads its step from its last checkpoint, and says so;
    its epochs to two decimals with the time taken, and its last loss with its step."""
    from simclr.info_text import render

    state = {"status": "running", "step": 7, "planned_steps": 10, "step_from": "last checkpoint",
             "epoch": 1.256, "elapsed_s": 90, "loss": 1.23456, "logged_step": 6}
    assert render(_run_facts("pretrain", state=state)).splitlines()[0] == (
        "run: SimCLR pretraining, running; last checkpoint at step 7 of 10 (1.26 epochs, 90 s); "
        "last loss 1.235 (step 6)")


@pytest.mark.parametrize("saved, said", [(2, "  continue with: simclr pretrain --resume run"),
                                         (None, None)])
def test_a_failed_run_says_why_and_is_continued_only_from_a_checkpoint(saved, said):
    """A run an error ended says the error; with a checkpoint it is continued by --resume,
    without one there is nothing to continue."""
    from simclr.info_text import render

    state = {"status": "failed", "step": 3, "planned_steps": 5, "saved_step": saved,
             "reason": "out of memory"}
    lines = render(_run_facts("pretrain", state=state)).splitlines()
    assert lines[0].startswith("run: SimCLR pretraining, failed at step 3 of 5 (out of memory)")
    assert [line for line in lines if "continue with" in line] == ([said] if said else [])


def test_the_command_that_started_a_run_names_its_versions_and_uncommitted_changes():
    from simclr.info_text import render

    started = {"argv": ["/usr/bin/simclr", "pretrain", "--out", "run"], "simclr": "0.1.0",
               "git_sha": "1a2b3c4d5e6f", "git_dirty": True, "starts": 1}
    assert "  started by: simclr pretrain --out run (simclr 0.1.0, git 1a2b3c4 with " \
        "uncommitted changes)\n" in render(_run_facts("pretrain", provenance=started))


def test_a_result_without_a_top1_shows_its_status_and_its_protocol():
    """A result that holds no top-1 (a diverged evaluation) says its status, beside the
    protocol it ran ('linear evaluation (sgd)')."""
    from simclr.info_text import render

    result = {"file": "linear/linear_eval.json", "what": "linear evaluation",
              "protocol": "sgd", "status": "diverged"}
    assert render(_run_facts("pretrain", results=[result])).splitlines()[-1] == \
        "  linear/linear_eval.json: linear evaluation (sgd), diverged"


@pytest.mark.parametrize("status, said", [("stopped", ""), ("running", ", running at step 2")])
def test_a_folder_of_results_alone_says_only_an_unfinished_status(status, said):
    """An evaluation's --out holds results and no run of its own: a finished or stopped one
    is its results; one running says so."""
    from simclr.info_text import render

    result = {"file": "knn.json", "what": "kNN", "top1": 0.5}
    facts = {"path": "ev", "state": {"status": status, "step": 2}, "checkpoints": [],
             "results": [result]}
    assert render(facts).splitlines()[0] == f"ev: results of kNN{said}"


def test_a_result_trained_by_several_processes_says_how_many(tmp_path):
    """finetune.json records its processes (the global batch's and BatchNorm's share);
    info showed them for a pretraining's recipe alone."""
    import json

    from simclr.info_text import render
    from simclr.run_facts import results_in

    (tmp_path / "finetune.json").write_text(json.dumps({"top1": 0.5, "processes": 2}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "finetune.json").write_text(json.dumps({"top1": 0.5, "processes": 1}))
    found = {r["file"]: r for r in results_in(tmp_path)}
    assert found["finetune.json"]["processes"] == 2 and "processes" not in found[
        "sub/finetune.json"]
    facts = {"path": "ev", "state": {"status": "finished"}, "checkpoints": [],
             "results": list(found.values())}
    lines = render(facts).splitlines()
    assert "  finetune.json: fine-tuning, top-1 50.00%, trained by 2 processes" in lines
    assert "  sub/finetune.json: fine-tuning, top-1 50.00%" in lines


def test_a_results_files_source_kind_is_read_where_it_is_a_fine_tuning(tmp_path):
    import json

    from simclr.run_facts import results_in

    source = {"checkpoint": "ft/checkpoints/finetune.pt", "kind": "finetune", "step": 2,
              "run_id": "r1", "features": "pretrained", "layer": "h"}
    (tmp_path / "knn.json").write_text(json.dumps({"top1": 0.5, "source": source}))
    assert results_in(tmp_path)[0]["of_kind"] == "finetune"
    (tmp_path / "knn.json").write_text(json.dumps({"top1": 0.5, "source": {
        **source, "kind": "pretrain"}}))
    assert "of_kind" not in results_in(tmp_path)[0]


def test_a_result_of_a_fine_tuned_classifiers_encoder_says_so():
    """kNN of finetune.pt read "(of .../finetune.pt, step 2, ...)": the pretraining's step,
    while the weights measured were fine-tuned past it."""
    from simclr.info_text import render

    result = {"file": "knn.json", "what": "kNN", "top1": 0.5, "of": "ft/checkpoints/finetune.pt",
              "of_step": 2, "of_run": "r1", "features": "pretrained", "layer": "h"}
    facts = {"path": "ev", "state": {"status": "finished"}, "checkpoints": [],
             "results": [{**result, "of_kind": "finetune"}]}
    assert render(facts).splitlines()[-1] == (
        "  knn.json: kNN, top-1 50.00% (of ft/checkpoints/finetune.pt, a fine-tuned "
        "classifier's encoder, fine-tuned from step 2, run r1)")
    facts["results"] = [result]  # (a pretraining's checkpoint: its step)
    assert render(facts).splitlines()[-1].endswith("(of ft/checkpoints/finetune.pt, step 2, "
                                                   "run r1)")


@pytest.mark.parametrize("epochs, said", [(1, "1 epoch"), (2, "2 epochs")])
def test_a_recipes_epochs_are_counted_in_words(epochs, said):
    from simclr.info_text import _recipe

    assert _recipe({"batch_size": 8, "epochs": epochs}) == f"batch 8, {said}"


def test_a_batch_over_processes_without_synced_batchnorm_says_per_process():
    from simclr.info_text import _recipe

    assert _recipe({"batch_size": 8, "processes": 2, "sync_bn": False}) == \
        "batch 8 over 2 processes (per-process BatchNorm)"


def test_an_unfinished_classifier_and_a_classifiers_top1_are_said():
    """A -partial.pt is an evaluation's training still going on, no result; a finished
    classifier's line ends with its top-1."""
    from simclr.info_text import _checkpoint_line

    assert _checkpoint_line({"name": "linear-partial.pt", "kind": "linear-partial",
                             "classes": 3}) == "unfinished linear classifier, 3 classes"
    assert _checkpoint_line({"name": "linear.pt", "kind": "linear", "classes": 3,
                             "top1": 0.5}) == "linear classifier, 3 classes, top-1 50.00%"


@pytest.mark.parametrize("trained, said", [
    ("random init", "from a classifier fitted on the random init encoder (the baseline)"),
    ("random init fine-tuned 1 step", "random init fine-tuned 1 step (the baseline)")])
def test_an_exported_baseline_encoder_says_what_its_weights_are(trained, said):
    """An encoder exported from a classifier of the random init: left as it was, its
    classifier's note says it; fine-tuned on, what it was trained to."""
    from simclr.info_text import _checkpoint_line

    assert _checkpoint_line({"kind": "encoder", "trained": trained,
                             "fitted_on": "random init"}) == f"exported encoder, {said}"


def test_an_exported_program_says_what_it_is_where_its_from_and_at_which_side_it_is_read():
    """A torchvision export is weights, of a fine-tuned classifier's encoder here, read by
    simclr at another side than its own: --image-size is advised; an imported file's
    card names no kind, and a baseline's says so."""
    from simclr.info_text import render

    card = {"program": "torchvision", "output": {"name": "h", "shape": ["batch", 512]},
            "input": {"shape": [1, 3, 64, 64]}, "encoder": {"arch": "resnet18", "image_size": 64},
            "checkpoint": "last.pt", "kind": "finetune", "trained": "step 3 fine-tuned 1 step"}
    assert render({"path": "w.pt", "program": card, "read_at": 32}) == (
        "w.pt: exported weights (torchvision): h (512-d) of resnet18, 64 px input, from "
        "last.pt (fine-tuned classifier), step 3 fine-tuned 1 step; simclr reads the file "
        "at 32 px: give --image-size 64")
    imported = {**card, "program": "pt2", "kind": "encoder", "imported": "ResNet weights",
                "trained": "ResNet weights", "features": "random init"}
    assert render({"path": "p.pt2", "program": imported}) == (
        "p.pt2: exported program (pt2): h (512-d) of resnet18, 64 px input, from last.pt, "
        "ResNet weights (the baseline)")


def test_a_result_of_this_runs_checkpoint_at_an_unrecorded_step_names_no_step():
    """A result of this run's checkpoint whose step is not recorded (or damaged) is not
    said to be 'of step None'; one of an earlier step says so."""
    from simclr.info_text import render

    result = {"file": "knn.json", "what": "kNN", "top1": 0.5, "of": "run/checkpoints/last.pt",
              "of_run": "r1"}
    assert render(_run_facts("pretrain", run_id="r1", results=[{**result, "of_step": None}])) \
        .endswith("  knn.json: kNN, top-1 50.00%")
    assert render(_run_facts("pretrain", run_id="r1", results=[{**result, "of_step": 2}])).endswith(
        "  knn.json: kNN, top-1 50.00% (of step 2; the run is now at step 3)")


def test_a_running_runs_last_pt_being_written_is_not_said_unreadable():
    """A running run's last.pt that cannot be read is being written; a finished run's is
    damaged, and its last readable checkpoint is named."""
    from simclr.info_text import render

    state = {"status": "running", "saved_step": 2, "unreadable_checkpoints": ["last.pt"]}
    assert render(_run_facts("pretrain", state=state)).splitlines()[0] == \
        "run: SimCLR pretraining, running"
    finished = {**state, "status": "finished", "step": 3}
    assert render(_run_facts("pretrain", state=finished)).splitlines()[0] == (
        "run: SimCLR pretraining, finished at step 3; but its last.pt cannot be read: last "
        "readable checkpoint at step 2")
