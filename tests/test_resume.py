"""Tests for simclr.resume: what a pretraining checkpoint holds and how it is restored.
(Resuming whole runs bit-exactly is tested in tests/test_train.py.)"""

from __future__ import annotations

import pytest
import torch

from simclr.errors import SimCLRError
from simclr.models import build_model
from simclr.optim import build_optimizer
from simclr.plan import plan_schedule
from simclr.resume import RunState, checkpoint_state, restore, restore_cuda_rng, saved_window
from simclr.settings import build_config
from tests.conftest import ScaledNet, earlier_lars, make_image_folder


def test_a_checkpoint_restores_weights_optimizer_step_plan_and_rng():
    """Everything that moves: restored into a fresh model, optimizer and state, the
    next update and the next random draw are those the saved run would have made."""
    cfg = build_config(flags={"batch_size": 8, "model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 16, "epochs": 3})
    torch.manual_seed(0)
    model = build_model(cfg.model, 16)
    optimizer = build_optimizer(cfg.optim, model, cfg.batch_size)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    plan = plan_schedule(cfg, 80)
    window = {"sums": {"loss": 1.5}, "steps": 2, "first_step": 5, "elapsed": 3.0,
              "untimed": 0, "skipped": 0}
    state = RunState(step=7, elapsed=12.5, bad_steps=2, compile_s=1.5, log_window=window)
    _, z = model(torch.rand(8, 3, 16, 16))
    z.square().sum().backward()
    optimizer.step()  # momentum buffers to save
    plan.total_steps, plan.warmup_steps = 33, 4  # as a time budget's refit leaves them
    blob = checkpoint_state(cfg, model, optimizer, scaler, state, plan)
    assert blob["cpu_threads"] == torch.get_num_threads()  # a resume compares its own
    assert blob["processes"] == 1
    assert blob["num_images"] == 80  # (a resume refuses another number: check_same_images)
    assert (blob["step"], blob["epoch"], blob["step_in_epoch"]) == (7, 0, 7)
    later = checkpoint_state(cfg, model, optimizer, scaler, RunState(step=23), plan)
    assert (later["epoch"], later["step_in_epoch"]) == (2, 3)  # (10 steps an epoch)
    for step, at in ((19, (1, 9)), (20, (2, 0))):  # an epoch's last step, the next's first
        saved = checkpoint_state(cfg, model, optimizer, scaler, RunState(step=step), plan)
        assert (saved["epoch"], saved["step_in_epoch"]) == at

    torch.manual_seed(1)  # a different start in every respect
    other = build_model(cfg.model, 16)
    other_opt = build_optimizer(cfg.optim, other, cfg.batch_size)
    other_state, other_plan = RunState(), plan_schedule(cfg, 80)
    restore(blob, other, other_opt, scaler, other_state, other_plan)
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (other_state.step, other_state.elapsed, other_state.bad_steps) == (7, 12.5, 2)
    # the same run (its id), its compile seconds and open log window carried on
    assert (other_state.run_id, other_state.compile_s) == (state.run_id, 1.5)
    assert other_state.log_window == window
    assert (other_plan.total_steps, other_plan.warmup_steps) == (33, 4)
    saved_momenta = [s["momentum_buffer"] for s in optimizer.state_dict()["state"].values()]
    restored = [s["momentum_buffer"] for s in other_opt.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(saved_momenta, restored, strict=True))
    expected = torch.rand(3)  # the draw after the save, in the saved run
    torch.manual_seed(2)
    restore(blob, other, other_opt, scaler, other_state, other_plan)
    assert torch.equal(torch.rand(3), expected)


def test_a_run_saved_with_the_earlier_parameter_grouping_continues(capsys):
    """A ConvNeXt pretraining saved before its layer_scale was excluded by name (its
    optimizer's groups of other sizes) continues with the grouping it started with, a
    note saying so; a state of other groups is refused in one line as before."""
    cfg = build_config(flags={"batch_size": 8, "epochs": 3})
    torch.manual_seed(0)
    model = ScaledNet()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    blob = checkpoint_state(cfg, model, earlier_lars(model), scaler, RunState(step=1),
                            plan_schedule(cfg, 80))
    blob["file"] = "run/last.pt"
    optimizer = build_optimizer(cfg.optim, model, cfg.batch_size)
    state = RunState()
    restore(blob, model, optimizer, scaler, state, plan_schedule(cfg, 80))
    assert state.step == 1
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 1]
    assert "the run keeps the parameter grouping it started with" in capsys.readouterr().err
    blob["optimizer"]["param_groups"][0]["params"] = [0, 1, 2]  # (groups of 3 and 1)
    with pytest.raises(SimCLRError, match=r"^run/last.pt: its optimizer, step, RNG state or "
                       r"log window does not fit this run \(damaged or edited\? loaded state "
                       r"dict contains a parameter group that doesn't match the size"):
        restore(blob, model, build_optimizer(cfg.optim, model, cfg.batch_size), scaler,
                RunState(), plan_schedule(cfg, 80))


def test_the_gpu_generator_resumes_on_fewer_gpus_than_it_was_saved_with(monkeypatch):
    """Checkpoints before one-state-per-process saved one state per visible GPU."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    a, b, c = (torch.full((4,), i, dtype=torch.uint8) for i in range(3))
    restore_cuda_rng([a, b])  # saved with 2 GPUs, this process has GPU 2: nothing
    restore_cuda_rng(None)
    assert restored == []
    restore_cuda_rng([a, b, c])
    restore_cuda_rng(a)  # this process's own state
    assert [t[0].item() for t in restored] == [2, 0]




def test_a_run_resumed_with_other_threads_or_processes_is_said_not_exact():
    """The same settings with 1 and 2 threads differ from the first step (CPU sums split
    by thread): such a resume went on without a word, no longer exact."""
    from simclr.resume import check_same_runtime

    cpu = torch.device("cpu")
    now = torch.get_num_threads()
    assert check_same_runtime({"cpu_threads": now}, cpu) == []
    assert check_same_runtime({}, cpu) == []  # checkpoints from before it was recorded
    assert check_same_runtime({"cpu_threads": now + 1}, torch.device("cuda")) == []
    (note,) = check_same_runtime({"cpu_threads": now + 1}, cpu)
    assert note == (f"note: the run saved its checkpoint with {now + 1} CPU threads and "
                    f"continues with {now}: not exactly as it would have (--threads "
                    f"{now + 1} keeps it exact)")
    # Processes: a resume with another number went on without a word, no longer exact.
    assert check_same_runtime({"processes": 1}, cpu) == []
    (note,) = check_same_runtime({"processes": 2}, torch.device("cuda"))
    assert note == ("note: the run saved its checkpoint with 2 processes and continues with "
                    "1: the same global batch, but not exactly as it would have (2 "
                    "processes keep it exact)")
    # Both: the thread note names both (--threads alone cannot make it exact)
    threads, _ = check_same_runtime({"processes": 2, "cpu_threads": now + 1}, cpu)
    assert threads.endswith(f"(--threads {now + 1} and 2 processes keep it exact)")
    # Without global BatchNorm, another count normalises over other batches: said so.
    local_bn = {"processes": 2, "config": {"batch_size": 16, "model": {"sync_bn": False}}}
    (note,) = check_same_runtime(local_bn, torch.device("cuda"))
    assert note == ("note: the run saved its checkpoint with 2 processes and continues with "
                    "1: BatchNorm now normalises over batches of 16 images, not 8 "
                    "(--no-sync-bn: per process) (2 processes keep it exact)")


def test_a_resume_on_another_number_of_images_is_refused_old_checkpoints_too():
    """A checkpoint records its images (80 of them: 10 steps of 8 an epoch); those from
    before it did are judged by their steps per epoch, (25 - 5) / 2 = 10 here: a folder
    giving 12 steps an epoch would reorder every epoch, so it is refused as well."""
    from simclr.resume import check_same_images

    cfg = build_config(flags={"batch_size": 8, "epochs": 3})
    same, other = plan_schedule(cfg, 80), plan_schedule(cfg, 96)
    check_same_images({"num_images": 80, "step": 25}, same)
    with pytest.raises(SimCLRError, match="now holds 96 images; the run started with 80,"):
        check_same_images({"num_images": 80, "step": 25}, other)
    check_same_images({"step": 5, "epoch": 0, "step_in_epoch": 5}, other)  # (no epoch to judge)
    legacy = {"step": 25, "epoch": 2, "step_in_epoch": 5}
    check_same_images(legacy, same)
    with pytest.raises(SimCLRError, match="holds 96 images; the run started with 10 steps "
                                          "per epoch,"):
        check_same_images(legacy, other)
    with pytest.raises(SimCLRError, match="started with 10 steps per epoch,"):  # (one epoch)
        check_same_images({"step": 15, "epoch": 1, "step_in_epoch": 5}, other)


def test_the_files_listed_must_be_as_many_as_the_run_had():
    """Counted before decoding: one file more or fewer than the run listed is refused
    (the epochs would be other batches); a checkpoint from before files were counted has
    its readable images, which a folder may exceed (unreadable files) but not fall
    short of; the same number under other names is a note."""
    from simclr.resume import check_files_listed

    saved = {"num_files": 80, "num_images": 78, "files_digest": "abc"}
    assert check_files_listed(saved, 80, "abc") == []
    for now in (79, 81):
        with pytest.raises(SimCLRError, match=f"now holds {now} images; the run started "
                                              "with 80,"):
            check_files_listed(saved, now, "abc")
    (note,) = check_files_listed(saved, 80, "xyz")
    assert "the same number, 80, under other names" in note
    legacy = {"num_images": 78}
    assert check_files_listed(legacy, 78, "abc") == check_files_listed(legacy, 90, "") == []
    with pytest.raises(SimCLRError, match="now holds 77 images; the run started with 78,"):
        check_files_listed(legacy, 77, "abc")


def test_a_run_on_splits_in_capitals_read_anew_is_refused_naming_why(tmp_path):
    """A run of the release before 2026-12-06 on DIR/{Train,Test} read them as two classes
    (48 images); this one reads DIR/Train (24): refused saying so, where 'restore the
    folder' named a fix that cannot help. Lower-case splits, read alike by both, keep
    the plain message."""
    from simclr.resume import check_files_listed

    for name in ("Train", "Test"):  # (24 images each: 48 read as two classes)
        make_image_folder(tmp_path / "caps" / name, per_class=12)
    with pytest.raises(SimCLRError, match=r"this release reads \S+caps as its split Train/ "
                                          r"\(24 images\), where the run's release read its "
                                          r"splits as two classes \(48 images; the held-out "
                                          r"images trained on too\); the run cannot continue "
                                          r"on its images: start a new run$"):
        check_files_listed({"num_files": 48}, 24, "abc", str(tmp_path / "caps"))
    for name in ("train", "test"):
        (tmp_path / "low" / name / "a").mkdir(parents=True)
    with pytest.raises(SimCLRError, match="now holds 24 images; the run started with 48, so "
                                          "it cannot continue exactly"):
        check_files_listed({"num_files": 48}, 24, "abc", str(tmp_path / "low"))


def test_the_split_message_needs_evidence_that_an_earlier_release_saved_the_run(tmp_path):
    """The split message is for a run that read DIR/{Train,Test} as two classes: a
    checkpoint marking the split it read (this release's: data_split, or knn_splits)
    gets the plain message; an unmarked one gets the split message where its count is
    what the whole folder lists as classes, the plain one otherwise (a run of this
    release saved before the mark, its Train/ grown)."""
    from simclr.resume import check_files_listed

    make_image_folder(tmp_path / "Train", per_class=12)  # 24 images
    make_image_folder(tmp_path / "Test", per_class=3, seed=1)  # 6: 30 as classes
    folder, plain = str(tmp_path), "now holds 24 images; the run started with "
    for marked in ({"data_split": "Train"}, {"knn_splits": [None, None]}):
        with pytest.raises(SimCLRError, match=plain + "23, so it cannot continue exactly"):
            check_files_listed({"num_files": 23, **marked}, 24, "abc", folder)
        with pytest.raises(SimCLRError, match=plain + "30, so"):
            check_files_listed({"num_files": 30, **marked}, 24, "abc", folder)
    with pytest.raises(SimCLRError, match=plain + "23, so it cannot continue exactly"):
        check_files_listed({"num_files": 23}, 24, "abc", folder)
    with pytest.raises(SimCLRError, match=r"as its split Train/ \(24 images\), where the "
                                          r"run's release read its splits as two classes "
                                          r"\(30 images"):
        check_files_listed({"num_files": 30}, 24, "abc", folder)
    # The names it listed, where saved, decide: 30 files by chance (Train/ shrunk by as
    # many as Test/ holds, say) are not the whole folder's.
    from simclr.folders import scan_folder

    whole = scan_folder(folder).names_digest()
    with pytest.raises(SimCLRError, match=plain + "30, so it cannot continue exactly"):
        check_files_listed({"num_files": 30, "files_digest": "other"}, 24, "abc", folder)
    with pytest.raises(SimCLRError, match=r"as its split Train/ \(24 images\), where the "):
        check_files_listed({"num_files": 30, "files_digest": whole}, 24, "abc", folder)


def test_the_knn_monitor_is_said_to_read_anew_only_splits_in_capitals_of_an_earlier_run(
        tmp_path):
    """Without knn_splits saved (a release before 2026-12-06), only folders whose splits
    that release read as classes (Train/, Test/) get the note; lower-case splits were
    read alike, a run without a monitor had no curve, a run of this release compares
    what it saved."""
    from types import SimpleNamespace

    from simclr.resume import knn_split_notes

    for name in ("Train", "Test", "low/train", "low/test"):
        (tmp_path / name / "a").mkdir(parents=True)
    caps, low = str(tmp_path), str(tmp_path / "low")
    monitored = {"config": {"knn_train": caps}, "step": 7}
    (note,) = knn_split_notes(monitored, SimpleNamespace(knn_train=caps, knn_test=caps))
    assert note.startswith(f"note: the kNN monitor now reads --knn-train {caps}/Train and "
                           f"--knn-test {caps}/Test, where the run read {caps} whole (")
    assert "breaks at step 7" in note
    assert knn_split_notes(monitored, SimpleNamespace(knn_train=low, knn_test=low)) == []
    assert knn_split_notes({"config": {}}, SimpleNamespace(knn_train=caps, knn_test=caps)) == []
    ours = {**monitored, "knn_splits": ["Train", "Test"]}
    assert knn_split_notes(ours, SimpleNamespace(knn_train=caps, knn_test=caps)) == []


def test_skipped_files_follow_a_folder_given_anew():
    """The unreadable files a run met are found again where --data now points: those
    inside the old folder are moved with it, the others (and a run whose folder was
    saved relative, or has not moved) are kept as saved."""
    from simclr.resume import skipped_before

    ckpt = {"config": {"data": {"path": "/old/data"}},
            "skipped_images": [["/old/data/cat/x.jpg", "not an image"],
                               ["/old/database/y.jpg", "empty"], ["/tmp/z.jpg", "cut"]]}
    assert skipped_before(ckpt, "/new/place") == [
        ("/new/place/cat/x.jpg", "not an image"), ("/old/database/y.jpg", "empty"),
        ("/tmp/z.jpg", "cut")]
    kept = [("/old/data/cat/x.jpg", "not an image"), ("/old/database/y.jpg", "empty"),
            ("/tmp/z.jpg", "cut")]
    assert skipped_before(ckpt, "/old/data") == kept
    ckpt["config"]["data"]["path"] = "data"  # saved relative (older runs): as it was
    assert skipped_before(ckpt, "/new/place") == kept


def test_each_start_of_a_run_stays_on_record_oldest_first(tmp_path):
    """config.yaml is rewritten at every start: its provenance lists the earlier ones,
    the first start first, however many times the run was resumed."""
    from simclr.config_file import save_yaml
    from simclr.resume import start_record

    first = {"argv": ["simclr", "pretrain", "--out", "r"], "git_sha": "a1", "simclr": "1",
             "torch": "2"}
    second = {"argv": ["simclr", "pretrain", "--resume", "r"], "git_sha": "b2",
              "simclr": "1", "torch": "2"}
    save_yaml({"provenance": {**second, "python": "3", "earlier": [first]}},
              tmp_path / "config.yaml")
    record = start_record(tmp_path, resume=True)
    assert record["earlier"] == [first, second]
    assert "earlier" not in start_record(tmp_path, resume=False)


def test_a_resumed_config_may_name_a_moved_folder_but_change_no_setting(tmp_path):
    """A run whose --data folder is gone continues on its new place (the same images:
    checked when they are listed); any other setting outside those --resume may change
    is refused, naming it."""
    from simclr.resume import check_resumed_settings

    (tmp_path / "new").mkdir()
    flags = {"batch_size": 8, "epochs": 3, "data.path": str(tmp_path / "gone")}
    saved = build_config(flags=flags).to_dict()
    cfg = build_config(flags={**flags, "data.path": str(tmp_path / "new"), "epochs": 5})
    check_resumed_settings(saved, cfg, tmp_path, torch.device("cpu"))
    cfg.loss.temperature = 0.7
    with pytest.raises(SimCLRError, match=r"cannot change --temperature \(0.1 saved, 0.7 "
                                          r"asked\)"):
        check_resumed_settings(saved, cfg, tmp_path, torch.device("cpu"))
    (tmp_path / "gone").mkdir()  # the saved folder is there: another one is a change
    cfg.loss.temperature = 0.1
    with pytest.raises(SimCLRError, match="cannot change --data"):
        check_resumed_settings(saved, cfg, tmp_path, torch.device("cpu"))


@pytest.mark.parametrize("given", [None, "none", "digits"])
def test_a_gone_folder_is_not_moved_to_a_named_data_set(tmp_path, given):
    """--resume RUN --data none (the digits) for a run whose folder is gone was taken as
    its new place: a finished run then reported a kNN result on the digits for an encoder
    trained on other images, and one with unreadable files met a traceback."""
    from simclr.resume import moved_folders

    saved = build_config(flags={"data.path": str(tmp_path / "gone")})
    with pytest.raises(SimCLRError, match=r"folder .*gone.* is not a folder: give the folder's "
                                          r"new place \(--data NEW_FOLDER\)"):
        moved_folders(saved, {"data.path": given}, "run")
    with pytest.raises(SimCLRError, match=r"--data folder .*gone is gone \(moved or deleted\); "
                                          r"put it back, or give its new place"):
        moved_folders(saved, {}, "run")  # (not given: said before anything is read)
    (tmp_path / "new").mkdir()
    assert moved_folders(saved, {"data.path": str(tmp_path / "new")}, "run") == {"data.path"}


def test_only_a_finished_run_is_let_go_without_its_gone_folder(tmp_path):
    """A finished run reads no image: --resume of it asks for no new place of its gone
    folder (nothing to do), yet a place given is still checked; a run whose summary says
    otherwise, or that has none (or no run folder at all), is asked for it."""
    import json

    from simclr.resume import moved_folders

    out = tmp_path / "run"
    out.mkdir()
    saved = build_config(flags={"data.path": str(tmp_path / "gone"), "out": str(out)})
    for summary in (None, {"status": "stopped"}):
        if summary:
            (out / "summary.json").write_text(json.dumps(summary))
        with pytest.raises(SimCLRError, match=r"is gone \(moved or deleted\)"):
            moved_folders(saved, {}, "run")
    (out / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert moved_folders(saved, {}, "run") == set()
    with pytest.raises(SimCLRError, match=r"--data none is not a folder"):
        moved_folders(saved, {"data.path": "none"}, "run")
    saved.out = None  # (a caller's own Config, of no run folder: no finished run)
    with pytest.raises(SimCLRError, match=r"is gone \(moved or deleted\)"):
        moved_folders(saved, {}, "run")


def test_a_saved_log_window_must_end_at_the_saved_step():
    """A log window is continued only where it ends at the checkpoint's step: one from
    another step (a damaged or mismatched checkpoint) would average other steps' values
    into the resumed run's first line, and is refused as a state that does not fit."""
    window = {"sums": {"loss": 0.8}, "steps": 2, "first_step": 5, "elapsed": 1.0}
    assert saved_window(window, 7) == {**window, "untimed": 0, "skipped": 0}  # (saved before)
    assert saved_window({**window, "untimed": 1}, 7) == {**window, "untimed": 1, "skipped": 0}
    assert saved_window({**window, "skipped": 2}, 7)["skipped"] == 2
    with pytest.raises(ValueError, match="a log window of 2 steps that skipped 3"):
        saved_window({**window, "skipped": 3}, 7)
    watch = {"windows": 2, "steps": 8, "since": 3, "said": False}  # (monitor.CollapseWatch's)
    assert saved_window({**window, "collapse": watch}, 7)["collapse"] == watch
    said = {**watch, "said": True}  # (said once: not said again after a resume)
    assert saved_window({**window, "collapse": said}, 7)["collapse"] == said
    assert saved_window(None, 7) is None
    with pytest.raises(ValueError, match="a log window of 2 steps from step 5, saved at step 9"):
        saved_window(window, 9)


def _alias_bomb(levels: int) -> str:
    """A YAML list of a few hundred bytes that nests 10**levels words through aliases."""
    lists = ['&a0 [x, x, x, x, x, x, x, x, x, x]'] + [
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return f"[simclr, pretrain, [{', '.join(lists)}]]"


def test_a_received_run_whose_provenance_is_an_alias_bomb_is_not_copied_forward(tmp_path):
    """A run folder from elsewhere whose config.yaml's argv nests lists of YAML aliases
    (2 KB): --resume copied it into the next record, which its config.yaml then wrote
    out expanded, ~10,000 times larger. Its command is damaged: left out, its versions
    and the start itself kept (session_number counts it)."""
    from simclr.resume import session_number, start_record

    bomb = _alias_bomb(5)
    (tmp_path / "config.yaml").write_text(
        f"provenance:\n  argv: {bomb}\n  simclr: '1'\n  git_sha: *a4\n"
        f"  earlier:\n  - argv: [*a4]\n    torch: '2'\n  - [*a4, *a4]\n")
    record = start_record(tmp_path, resume=True)
    assert record["earlier"] == [{"torch": "2"}, {"simclr": "1"}]
    assert session_number(record) == 3
    assert session_number({"earlier": [{"argv": []}, 5, "x"]}) == 2  # (5, "x": no starts)
    fine = ["simclr", "pretrain", "--epochs", "3"]
    (tmp_path / "config.yaml").write_text(f"provenance:\n  argv: {fine}\n  simclr: '1'\n")
    assert start_record(tmp_path, resume=True)["earlier"] == [{"argv": fine, "simclr": "1"}]


def test_a_flat_alias_bomb_of_one_long_word_is_no_command_line():
    """One long word repeated through YAML aliases stays within MAX_ARGV_WORDS, yet a
    few hundred KB of YAML expand past MAX_ARGV_CHARS: damaged, not printed or copied."""
    from simclr.config_file import parse_yaml
    from simclr.resume import MAX_ARGV_CHARS, recorded_argv

    word = "x" * 300_000
    argv = parse_yaml(f"argv: [simclr, &s {word}, {', '.join(['*s'] * 7)}]\n")["argv"]
    assert len(argv) == 9 and sum(map(len, argv)) > MAX_ARGV_CHARS
    assert recorded_argv(argv) is None
    assert recorded_argv(argv[:7]) == ["simclr", *[word] * 6]  # (within: kept, as it was)


def test_a_command_line_of_too_many_words_is_none_even_empty_ones():
    """MAX_ARGV_WORDS counts the words, whatever their length: ten thousand empty
    words are kept, one more is damaged."""
    from simclr.resume import MAX_ARGV_WORDS, recorded_argv

    assert recorded_argv([""] * MAX_ARGV_WORDS) == [""] * MAX_ARGV_WORDS
    assert recorded_argv([""] * (MAX_ARGV_WORDS + 1)) is None


def test_a_resume_whose_config_is_unreadable_or_damaged_still_records_its_start(tmp_path):
    """config.yaml is rewritten at a resumed start: one that is not YAML, or whose
    ``earlier`` is not a list, still gives this start's record (what was readable of
    the earlier starts is kept), not a traceback."""
    from simclr.resume import session_number, start_record

    (tmp_path / "config.yaml").write_text("provenance: [unclosed\n")
    record = start_record(tmp_path, resume=True)
    assert record["argv"] and "earlier" not in record and session_number(record) == 1
    (tmp_path / "config.yaml").write_text(
        "provenance:\n  argv: [simclr, pretrain]\n  simclr: '1'\n  earlier: 5\n")
    record = start_record(tmp_path, resume=True)
    assert record["earlier"] == [{"argv": ["simclr", "pretrain"], "simclr": "1"}]
    assert session_number(record) == 2


@pytest.mark.parametrize(("argv", "kept"), [("", {}), ("  argv: []\n", {"argv": []}),
                                            ("  argv: null\n", {})])
def test_a_latest_start_without_its_command_keeps_the_earlier_ones(tmp_path, argv, kept):
    """A provenance whose argv is gone (left out by hand, say, as a folder shared with
    its paths removed) is still a start: its earlier starts were dropped with it, so the
    resumed session counted itself the first, and `simclr info` took a summary an
    earlier session wrote for this one's."""
    from simclr.resume import session_number, start_record

    first = {"argv": ["simclr", "pretrain", "--out", "r"], "simclr": "1"}
    (tmp_path / "config.yaml").write_text(
        f"provenance:\n{argv}  simclr: '1'\n  earlier:\n  - argv: {first['argv']}\n"
        "    simclr: '1'\n")
    record = start_record(tmp_path, resume=True)
    assert record["earlier"] == [first, {**kept, "simclr": "1"}]
    assert session_number(record) == 3


def test_a_saved_momentum_of_another_shape_is_one_line_naming_the_file():
    """A momentum_buffer cut to [:1] (a damaged or edited checkpoint) loaded without a
    word and the run died at its first step in a torch traceback; refused as resumed,
    pretraining's and a supervised run's alike."""
    from simclr.supervised import restore as restore_supervised

    cfg = build_config(flags={"batch_size": 8, "epochs": 3})
    torch.manual_seed(0)
    model = ScaledNet()
    optimizer = build_optimizer(cfg.optim, model, cfg.batch_size)
    model(torch.rand(1, 2, 3, 3)).square().sum().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    blob = checkpoint_state(cfg, model, optimizer, scaler, RunState(step=1),
                            plan_schedule(cfg, 80))
    blob["file"] = "run/last.pt"
    state = blob["optimizer"]["state"]
    first = min(state)
    state[first]["momentum_buffer"] = state[first]["momentum_buffer"][:1]
    message = (r"^run/last.pt: its optimizer.* does not fit this run \(damaged or edited\? "
               r"the saved momentum_buffer of \S+ has shape \[1")
    with pytest.raises(SimCLRError, match=message):
        restore(blob, model, build_optimizer(cfg.optim, model, cfg.batch_size), scaler,
                RunState(), plan_schedule(cfg, 80))
    with pytest.raises(SimCLRError, match=message):
        restore_supervised(blob, model, build_optimizer(cfg.optim, model, cfg.batch_size),
                           scaler, plan_schedule(cfg, 80))


def test_one_function_tells_a_supervised_and_an_evaluation_run_their_folder_is_now_a_split(
        tmp_path):
    """supervised.check_same_data and partial.read_anew both refuse a run of a release
    before 2026-12-06 that read DIR/{Train,Test} as two classes: resume.split_read_anew_why
    words it for both, naming the saved run as each caller does. Not where the split was
    no class of the run's, the splits are in lower case (read alike by both releases),
    or the folder read now (``reads``) is not that split."""
    from simclr.resume import split_read_anew_why

    for folder in ("caps/Train", "caps/Test", "lower/train", "lower/test"):
        (tmp_path / folder).mkdir(parents=True)
    caps = str(tmp_path / "caps")
    assert split_read_anew_why(caps, ["Test", "Train"], "classes cat, dog") == (
        f"this release reads {caps} as its split Train/ (classes cat, dog), where the "
        "run's release read its splits as two classes (Test, Train; the held-out images "
        "trained on too)")
    said = split_read_anew_why(caps, ["Test", "Train"], "12 images", "unfinished training's",
                               reads=tmp_path / "caps" / "Train")
    assert said is not None and said.startswith(
        f"this release reads {caps} as its split Train/ (12 images), where the unfinished "
        "training's release")
    assert split_read_anew_why(caps, ["cat", "dog"], "12 images") is None
    assert split_read_anew_why(caps, ["Test", "Train"], "12 images",
                               reads=tmp_path / "caps" / "Test") is None
    assert split_read_anew_why(str(tmp_path / "lower"), ["test", "train"], "12 images") is None


def test_a_resumed_precision_may_be_named_as_what_auto_resolves_to(monkeypatch):
    """A run saved with --precision auto resumes under the precision auto stands for on
    this device (fp32 on a CPU without fast bf16); another one is refused, naming it."""
    from simclr import runtime
    from simclr.resume import check_resumed_settings

    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    saved = build_config(flags={"precision": "auto"}).to_dict()
    check_resumed_settings(saved, build_config(flags={"precision": "fp32"}), "run",
                           torch.device("cpu"))
    with pytest.raises(SimCLRError, match=r"cannot change --precision \(auto saved, bf16"):
        check_resumed_settings(saved, build_config(flags={"precision": "bf16"}), "run",
                               torch.device("cpu"))


def test_a_recorded_init_from_past_any_command_lines_length_is_not_carried_on(tmp_path):
    """A received run folder's config.yaml naming its --init-from weights in a string
    past MAX_ARGV_CHARS is damaged: a resumed start does not copy it forward."""
    from simclr.config_file import save_yaml
    from simclr.resume import MAX_ARGV_CHARS, recorded_init_from

    save_yaml({"init_from_resolved": "run/last.pt (step 6)"}, tmp_path / "config.yaml")
    assert recorded_init_from(tmp_path) == {"init_from_resolved": "run/last.pt (step 6)"}
    save_yaml({"init_from_resolved": "x" * (MAX_ARGV_CHARS + 1)}, tmp_path / "config.yaml")
    assert recorded_init_from(tmp_path) == {}


def test_a_loaded_resume_config_is_the_runs_where_it_is_now_with_the_overrides_given(
        tmp_path, image_folder, cache_dir):
    """load_resume_config: the saved settings, --out the folder the run is in now (moved
    since it was saved), and the settings given as overrides in place of the saved ones."""
    from simclr import train
    from simclr.resume import load_resume_config
    from tests.conftest import tiny_flags

    train.pretrain(build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                                 max_steps=2, threads=1)))
    (tmp_path / "run").rename(tmp_path / "moved")
    cfg = load_resume_config(tmp_path / "moved")
    assert cfg.out == str(tmp_path / "moved") and cfg.threads == 1 and cfg.batch_size == 8
    assert load_resume_config(tmp_path / "moved", {"threads": 2}).threads == 2


def test_only_a_run_saved_reading_loose_images_reads_them_again():
    """Images beside the class folders: a new run reads them, a resumed one as its
    checkpoint says, one of a release before they were kept (no entry) does not."""
    from simclr.resume import read_all_images

    assert read_all_images(None) and read_all_images({"all_images": True})
    assert not read_all_images({}) and not read_all_images({"all_images": False})


def test_a_run_on_a_named_data_set_has_no_folder_gone():
    """A named data set (the digits) is no folder: never gone, so --resume asks for no
    new place."""
    from simclr.resume import moved_folders

    assert moved_folders(build_config(flags={"data.path": "digits"}), {}, "run") == set()


def test_a_command_line_of_exactly_max_argv_chars_is_kept():
    from simclr.resume import MAX_ARGV_CHARS, recorded_argv

    assert recorded_argv(["x" * MAX_ARGV_CHARS]) == ["x" * MAX_ARGV_CHARS]
    assert recorded_argv(["x" * MAX_ARGV_CHARS, "y"]) is None


def test_a_compiled_models_checkpoint_holds_the_plain_modules_weights():
    """torch.compile wraps the model (its keys prefixed _orig_mod.): what is saved and
    restored is the plain module, so a run compiled in one session resumes without."""
    from simclr.resume import unwrap

    model = torch.nn.Linear(2, 2)
    assert unwrap(torch.compile(model)) is model
    assert unwrap(model) is model
    ddp = torch.nn.Module()  # (as DistributedDataParallel holds it: its .module)
    ddp.module = torch.compile(model)
    assert unwrap(ddp) is model
    cfg = build_config(flags={"batch_size": 8, "epochs": 3})
    blob = checkpoint_state(cfg, torch.compile(model), torch.optim.SGD(model.parameters()),
                            torch.amp.GradScaler("cpu", enabled=False), RunState(),
                            plan_schedule(cfg, 80))
    assert list(blob["model"]) == ["weight", "bias"]


def test_a_resumed_run_continues_its_gradient_scalers_scale():
    """An fp16 run's loss scale (found by halving at overflows) carries on as saved."""
    cfg = build_config(flags={"batch_size": 8, "epochs": 3})
    model = torch.nn.Linear(2, 2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaler.scale(torch.ones(1))  # (its scale is made at the first use)
    scaler.update(2.0**7)  # (as an overflow's halvings leave it)
    blob = checkpoint_state(cfg, model, torch.optim.SGD(model.parameters()), scaler,
                            RunState(), plan_schedule(cfg, 80))
    fresh = torch.amp.GradScaler("cpu")
    restore(blob, model, torch.optim.SGD(model.parameters()), fresh, RunState(),
            plan_schedule(cfg, 80))
    assert fresh.get_scale() == 2.0**7


def test_a_resumed_run_sets_the_gpu_generator_as_saved(monkeypatch):
    cfg = build_config(flags={"batch_size": 8, "epochs": 3})
    model = torch.nn.Linear(2, 2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    blob = checkpoint_state(cfg, model, torch.optim.SGD(model.parameters()), scaler,
                            RunState(), plan_schedule(cfg, 80))
    blob["rng"]["cuda"] = torch.full((4,), 7, dtype=torch.uint8)  # (saved on a GPU)
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    restore(blob, model, torch.optim.SGD(model.parameters()), scaler, RunState(),
            plan_schedule(cfg, 80))
    assert [t.tolist() for t in restored] == [[7] * 4]


def test_a_periodic_save_writes_its_steps_file_and_keeps_the_newest_ones(tmp_path):
    """``save``: a periodic checkpoint is ckpt-<step>.pt, pruned to --keep-checkpoints;
    the run's last.pt is another file, never pruned."""
    from simclr.resume import save

    cfg = build_config(flags={"batch_size": 8, "epochs": 3, "keep_checkpoints": 2})
    model = torch.nn.Linear(2, 2)
    args = (cfg, model, torch.optim.SGD(model.parameters()),
            torch.amp.GradScaler("cpu", enabled=False))
    for step in (1, 2, 3):
        save(*args, RunState(step=step), plan_schedule(cfg, 80), tmp_path, periodic=True)
    save(*args, RunState(step=3), plan_schedule(cfg, 80), tmp_path, periodic=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "ckpt-00000002.pt", "ckpt-00000003.pt", "last.pt"]


def test_the_folders_a_resume_must_be_given_anew_are_those_gone(tmp_path):
    """info's continue command names each gone folder's flag (the kNN monitor's too: a
    plain --resume, offered for a run whose --knn-train had moved, was refused)."""
    from simclr.info_text import _continue_with
    from simclr.resume import gone_folders

    there = tmp_path / "there"
    there.mkdir()
    config = {"data": {"path": str(there)}, "knn_train": str(tmp_path / "moved"),
              "knn_test": "cifar10"}  # (a named data set is never gone)
    assert gone_folders(config) == [("--knn-train", str(tmp_path / "moved"))]
    config["data"]["path"] = str(tmp_path / "gone")
    gone = gone_folders(config)
    assert gone == [("--data", str(tmp_path / "gone")), ("--knn-train", str(tmp_path / "moved"))]
    assert _continue_with({"path": "run", "folders_gone": gone}, "pretrain", {}) == (
        f"simclr pretrain --resume run --data NEW_FOLDER --knn-train NEW_FOLDER (its --data "
        f"folder {tmp_path / 'gone'} is gone; its --knn-train folder {tmp_path / 'moved'} is "
        "gone)")
    assert gone_folders({"data": "odd", "knn_train": None}) == []  # (a damaged file's)


def test_a_run_is_finished_for_its_resume_only_with_its_final_knn_measured():
    """A stop during the last step writes status 'finished' without the final kNN: its
    resume measures it, reading the kNN folders, so a gone folder is still asked for."""
    from simclr.config import Config
    from simclr.resume import summary_finished

    cfg = Config()
    done = {"status": "finished", "steps": 4}
    assert summary_finished(done, cfg) and summary_finished(done, cfg, 4)
    assert not summary_finished(done, cfg, 5) and not summary_finished({"steps": 4}, cfg)
    cfg.knn_train = "/k"
    assert not summary_finished(done, cfg)
    assert summary_finished({**done, "knn_top1": 0.5}, cfg, 4)
