"""End to end: a tiny pretraining run, checkpoints, exact resume, preemption, embed."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr import load_encoder, monitor, nt_xent, train
from simclr.checkpoint import latest_checkpoint, save_checkpoint
from simclr.checkpoint_read import load_checkpoint
from simclr.config_file import load_yaml
from simclr.errors import DivergedError, SimCLRError
from simclr.files import read_json
from simclr.inference import embed_folder
from simclr.loss import contrast_stats
from simclr.pretrained import model_from_checkpoint
from simclr.resume import load_resume_config
from simclr.settings import build_config
from tests.conftest import make_image_folder, stop_at, tiny_flags, unreadable_folder
from tests.image_files import rgb, save_image

pytestmark = pytest.mark.usefixtures("one_thread")


def run(tmp_path, image_folder, cache_dir, name, **extra):
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / name, cache_dir, **extra))
    return cfg, train.pretrain(cfg)


def test_pretrain_writes_a_complete_run(tmp_path, image_folder, cache_dir):
    cfg, summary = run(tmp_path, image_folder, cache_dir, "run")
    run_dir = tmp_path / "run"
    assert summary["status"] == "finished" and summary["steps"] == 6  # 24 images / 8 x 2
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and "git_sha" in lines[0] and "argv" in lines[0]
    assert lines[0]["processes"] == 1
    metrics = [x for x in lines if "loss" in x]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    for m in metrics:
        assert np.isfinite(m["loss"]) and 0 <= m["pos_top1"] <= 1 and m["views_per_s"] > 0
    # warm-up is capped at 10% of the run, then cosine to zero at the last step
    # (the lr of the 6th step, 0-based step 5: t = (5 - 1) / (6 - 1) of the cosine)
    assert metrics[-1]["lr"] == pytest.approx(cfg.optim.lr * 8 / 256 * 0.5 * (1 + np.cos(
        np.pi * 4 / 5)), rel=1e-6)
    assert (run_dir / "config.yaml").is_file() and list((run_dir / "tb").iterdir())
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert saved["step"] == 6 and saved["config"]["model"]["width"] == 0.125
    periodic = sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*.pt"))
    assert periodic == ["ckpt-00000004.pt", "ckpt-00000006.pt"]  # keep the last 2


def test_a_call_run_again_by_a_spawned_worker_importing_the_script_is_refused(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """Under the spawn start method (macOS's and Windows' default) each loader worker
    imports the main script again: a call outside `if __name__ == "__main__":` ran
    again in every worker, which said the run folder was in use by its own parent."""
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    guard = re.escape('under `if __name__ == "__main__":`')
    with pytest.raises(SimCLRError, match=guard):
        train.pretrain(build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir)))
    with pytest.raises(SimCLRError, match=guard):
        embed_folder(tmp_path / "model.pt", str(image_folder), tmp_path / "e.npz")
    assert not (tmp_path / "run").exists()


def _dies_in_a_worker(parent: int, load_item):
    """source.load_item, ending any process but ``parent`` at once (a worker killed)."""

    def load(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(3)
        return load_item(*args, **kwargs)

    return load


def test_a_loader_worker_that_dies_fails_the_run_in_one_line_on_record(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """torch's RuntimeError 'DataLoader worker (pid(s) N) exited unexpectedly' (a
    script unguarded under spawn, the out-of-memory killer) was a traceback and left
    no summary.json."""
    from simclr import source

    monkeypatch.setattr(source, "load_item", _dies_in_a_worker(os.getpid(), source.load_item))
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                        **{"data.workers": 1, "data.cache": "off"}))
    with pytest.raises(SimCLRError, match=r"^a data-loading worker process \(pid\S* \d+\) "
                                          "exited unexpectedly"):
        train.pretrain(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "worker process (pid" in summary["reason"]


def test_pretrain_lists_its_folder_once(tmp_path, image_folder, cache_dir, monkeypatch):
    """The listing that checks the files before decoding is the one decoded: the folder
    was walked again to open it (6.7 s per listing of 200k files)."""
    listed: list[str] = []
    scandir = os.scandir

    def counted(path="."):
        listed.append(os.path.basename(os.fspath(path)))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counted)
    run(tmp_path, image_folder, cache_dir, "run")
    assert listed.count("class_0") == listed.count("class_1") == 1


def test_pretrain_decodes_jpegs_on_the_device(tmp_path, cache_dir, capsys):
    """--decoder device on an uncached JPEG folder (the CPU stands in for a GPU here); on
    a folder of PNGs, which it does not decode, it says so (it said "JPEGs are decoded on
    cpu", and each worker opened every file to find no JPEG before PIL decoded it)."""
    folder = make_image_folder(tmp_path / "jpegs", side=40, ext="jpg")
    cfg = build_config(flags=tiny_flags(folder, tmp_path / "run", cache_dir,
                                        **{"data.cache": "off", "data.decoder": "device"}))
    summary = train.pretrain(cfg)
    assert summary["status"] == "finished" and summary["steps"] == 6
    assert "JPEGs are decoded on cpu" in capsys.readouterr().out
    pngs = make_image_folder(tmp_path / "pngs", classes=1, per_class=8, side=40)
    train.pretrain(build_config(flags=tiny_flags(pngs, tmp_path / "png-run", cache_dir, **{
        "data.cache": "off", "data.decoder": "device", "max_steps": 1})))
    out = capsys.readouterr().out
    assert "JPEGs are decoded on" not in out and "note: --decoder device decodes JPEGs, and " \
        "none of the images is named as one (.jpg, .jpeg, .jpe, .jfif): the loader decodes " \
        "them with PIL" in out, out
    # --cache auto keeps small pictures decoded: the flag, accepted, is said to do nothing
    train.pretrain(build_config(flags=tiny_flags(folder, tmp_path / "cached", cache_dir, **{
        "data.decoder": "device", "max_steps": 1})))
    out = capsys.readouterr().out
    assert "JPEGs are decoded on" not in out and "note: --decoder device has no effect " \
        "here: the images are read from their decoded cache" in out, out


@pytest.mark.parametrize("cache", ["on", "off"])
def test_the_summary_counts_the_readable_images_cached_or_not(tmp_path, image_folder,
                                                              cache_dir, cache):
    """An unreadable file: left out of a cache, substituted when decoded per epoch; the
    summary's num_images counted it in the second case only."""
    (image_folder / "class_0" / "zz.png").write_text("not an image")
    summary = run(tmp_path, image_folder, cache_dir, "run", **{"data.cache": cache})[1]
    assert summary["num_images"] == 24 and len(summary["skipped_images"]) == 1


@pytest.mark.parametrize("cache", ["on", "off"])
def test_pretraining_crops_non_square_photos_on_the_whole_picture(tmp_path, cache_dir, cache,
                                                                  monkeypatch):
    """Every batch reaches the augmentation with its pictures' aspect ratios (here 3:2
    JPEGs, cached or decoded per epoch), which the crops are drawn on."""
    from PIL import Image

    from simclr import augment

    rng = np.random.default_rng(0)
    for c in range(2):
        for i in range(8):
            path = tmp_path / "photos" / f"c{c}" / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    seen = []
    draw = augment.sample_params

    def spy(cfg, seed, epoch, indices, view, image_hw, aspect=None):
        seen.append(np.asarray(aspect))
        return draw(cfg, seed, epoch, indices, view, image_hw, aspect)

    monkeypatch.setattr(augment, "sample_params", spy)
    cfg = build_config(flags=tiny_flags(tmp_path / "photos", tmp_path / "run", cache_dir,
                                        **{"data.cache": cache}))
    assert train.pretrain(cfg)["steps"] == 4
    assert len(seen) == 8 and all(np.allclose(a, 1.5) for a in seen)


def test_loss_decreases_when_training_longer(tmp_path, image_folder, cache_dir):
    _, summary = run(tmp_path, image_folder, cache_dir, "long", epochs=12, log_every=3,
                     checkpoint_every=0)
    lines = [json.loads(x) for x in (tmp_path / "long/metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_interrupted_run_resumes_bit_exactly(tmp_path, image_folder, cache_dir, monkeypatch):
    common = {"deterministic": True, "threads": 1, "checkpoint_every": 0}
    _, full = run(tmp_path, image_folder, cache_dir, "full", **common)

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "cut", cache_dir, **common))

    def preempt(step, stop):
        if step == 4:  # mid-epoch: 3 steps per epoch
            stop.requested = "SIGTERM"

    monkeypatch.setattr(sys, "argv", ["simclr", "pretrain", "--out", "cut"])
    cut = train.pretrain(cfg, on_step=preempt)
    assert cut["status"] == "preempted" and cut["steps"] == 4
    run_id = load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["run_id"]
    monkeypatch.setattr(sys, "argv", ["simclr", "pretrain", "--resume", "cut"])
    resumed = train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True)
    assert resumed["steps"] == full["steps"]
    # config.yaml is rewritten at each start; the first start's command stays on record
    record = load_yaml(tmp_path / "cut/config.yaml")["provenance"]
    assert record["argv"] == ["simclr", "pretrain", "--resume", "cut"]
    assert [e["argv"] for e in record["earlier"]] == [["simclr", "pretrain", "--out", "cut"]]
    # the run's identity (results name it by) is kept; another run has its own
    assert load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["run_id"] == run_id
    assert load_checkpoint(tmp_path / "full/checkpoints/last.pt")["run_id"] != run_id
    a = load_checkpoint(tmp_path / "full/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _logged_windows(run_dir: Path) -> list[dict]:
    """A run's metrics.jsonl window lines, less what the clock gives (seconds, views/s)."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in x.items() if k not in ("elapsed", "views_per_s")}
            for x in lines if "loss" in x]


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_run_stopped_inside_a_log_window_logs_what_an_uninterrupted_one_does(
        tmp_path, image_folder, cache_dir, how):
    """--log-every 5 of 12 steps: windows 1-5, 6-10 and 11-12. The run stops at step 11
    (a signal: its final checkpoint), or is killed at step 9 after its periodic
    checkpoint of step 8. The resumed run's window lines and summary metrics (the last
    window's) were not the uninterrupted run's: a window's sums were not in the
    checkpoint (the line at 10 averaged 9-10 alone), and a stop logged a line of its
    own (at 11; the summary then took step 12's alone)."""
    from simclr.monitor import FINAL_METRICS

    common = {"deterministic": True, "threads": 1, "epochs": 4, "log_every": 5,
              "checkpoint_every": 4 if how == "killed" else 0}
    _, full = run(tmp_path, image_folder, cache_dir, "full", **common)

    def interrupt(step, stop):
        if how == "stopped" and step == 11:
            stop.requested = "SIGTERM"
        elif how == "killed" and step == 9:
            raise KeyboardInterrupt  # (a kill: no checkpoint after step 8's, no summary)

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "cut", cache_dir, **common))
    with pytest.raises(KeyboardInterrupt) if how == "killed" else contextlib.nullcontext():
        train.pretrain(cfg, on_step=interrupt)
    resumed = train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True)
    assert resumed["status"] == full["status"] == "finished" and full["steps"] == 12
    assert [x["step"] for x in _logged_windows(tmp_path / "full")] == [5, 10, 12]
    assert _logged_windows(tmp_path / "cut") == _logged_windows(tmp_path / "full")
    assert {k: resumed[k] for k in FINAL_METRICS} == {k: full[k] for k in FINAL_METRICS}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, dict]:
    """A finished tiny run and its last.pt as saved: trained once for the cases that
    each damage that file (a refused resume changes nothing else of the run)."""
    root = tmp_path_factory.mktemp("finished")
    flags = tiny_flags(make_image_folder(root / "images"), root / "run", str(root / "cache"),
                       checkpoint_every=0)
    assert train.pretrain(build_config(flags=flags))["status"] == "finished"
    return root / "run", load_checkpoint(root / "run/checkpoints/last.pt")


@pytest.mark.parametrize("entry, value", [("step", "abc"), ("total_steps", [2]),
                                          ("step", True)])
def test_a_resumed_checkpoint_whose_step_is_no_number_is_refused_in_one_line(
        finished_run, entry, value):
    """A last.pt whose step is "abc": a TypeError's traceback comparing it with the run's
    steps, where a step of 1, -5 or 10**30 is refused as damaged or edited; so is it."""
    run, saved = finished_run
    last = run / "checkpoints/last.pt"
    save_checkpoint({**saved, entry: value}, last.parent, last.name)
    with pytest.raises(SimCLRError, match=f"last.pt: its step does not fit this run "
                                          rf"\(damaged or edited\? its {entry} is an? "
                                          r"\w+, not a whole number\)"):
        train.pretrain(load_resume_config(run, {}), resume=True)


def test_a_checkpoint_without_a_log_window_resumes_with_a_window_of_its_own(
        tmp_path, image_folder, cache_dir):
    """A checkpoint saved before they held the open --log-every window resumes as
    before: a window starts at its step. A damaged window is refused in one line."""
    flags = tiny_flags(image_folder, tmp_path / "cut", cache_dir, log_every=5,
                       checkpoint_every=0)

    def preempt(step, stop):
        if step == 3:
            stop.requested = "SIGTERM"

    assert train.pretrain(build_config(flags=flags), on_step=preempt)["status"] == "preempted"
    assert _logged_windows(tmp_path / "cut") == []  # (no line of the stop's own)
    last = tmp_path / "cut/checkpoints/last.pt"
    ckpt = load_checkpoint(last)
    window = ckpt["log_window"]
    assert (window["first_step"], window["steps"]) == (0, 3)
    assert set(window["sums"]) == {"loss", "pos_top1", "contrast_entropy", "contrast_acc"}
    save_checkpoint({**ckpt, "log_window": {**window, "steps": 2}}, last.parent, last.name)
    with pytest.raises(SimCLRError, match="log window does not fit this run .*a log window "
                                          "of 2 steps from step 0, saved at step 3"):
        train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True)
    del ckpt["log_window"]
    save_checkpoint(ckpt, last.parent, last.name)
    resumed = train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True)
    assert resumed["status"] == "finished" and resumed["steps"] == 6
    assert [x["step"] for x in _logged_windows(tmp_path / "cut")] == [5, 6]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_folder_found_all_unreadable_in_training_lists_them_in_the_summary(
        tmp_path, cache_dir, workers):
    """Decoded per step (no cache), every file failed: the run's summary.json listed no
    skipped image (a worker met them), its reason naming the first alone; then each
    file as "unreadable", not why (as a run with some readable files says)."""
    broken = unreadable_folder(tmp_path / "broken", 4)
    large = broken / "class_1/3.png"
    save_image(large, rgb(40, 40))  # past --max-pixels
    cfg = build_config(flags=tiny_flags(broken, tmp_path / "run", cache_dir,
                                        **{"data.cache": "off", "data.workers": workers,
                                           "data.max_pixels": 1000}))
    with pytest.raises(SimCLRError, match="all 8 images are unreadable"):
        train.pretrain(cfg)
    saved = json.loads((tmp_path / "run/summary.json").read_text())
    assert saved["status"] == "failed"
    reasons = dict(saved["skipped_images"])
    assert sorted(reasons) == sorted(str(p) for p in broken.rglob("*.png"))
    assert "exceeds the limit of 1000" in reasons.pop(str(large))
    assert {r.split(" (")[0] for r in reasons.values()} == {
        "not an image file, or one with a damaged header"}


def test_a_stop_at_the_last_step_finds_the_run_finished(tmp_path, image_folder, cache_dir):
    """A signal that arrives during the last step: the run is complete, so it is
    'finished' (a requeue loop testing for 75 ran it again for nothing), with the signal
    on record and nothing more done (no kNN of the final model: a kill may follow).
    Resumed, it trains nothing and takes that final kNN (it was never measured)."""
    def preempt(step, stop):
        if step == 6:  # the last
            stop.requested = "SIGTERM"

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                        knn_train=str(image_folder),
                                        knn_test=str(image_folder)))
    summary = train.pretrain(cfg, on_step=preempt)
    assert summary["status"] == "finished" and summary["steps"] == 6
    assert summary["signal"] == "SIGTERM" and "knn_top1" not in summary
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "knn_top1" in x] == [3]  # after epoch 1 only
    saved = json.loads((tmp_path / "run/summary.json").read_text())
    assert saved["status"] == "finished" and saved["signal"] == "SIGTERM"
    # resumed: the final kNN, no step, and nothing of the earlier session's stop
    again = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert again["status"] == "finished" and again["signal"] is None
    assert again["steps"] == 6 and 0.0 <= again["knn_top1"] <= 1.0
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "knn_top1" in x] == [3, 6]
    assert max(x["step"] for x in lines if "step" in x) == 6  # (no step trained)
    # and a third time: nothing left to do (the kNN not measured again, no new session's)
    third = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert third["knn_top1"] == again["knn_top1"] and third["session"] == again["session"]
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "knn_top1" in x] == [3, 6]


@pytest.mark.parametrize("when", ["final knn", "summary written"])
def test_a_stop_after_the_loop_is_recorded_as_a_stop_at_the_last_step(
        tmp_path, image_folder, cache_dir, monkeypatch, when):
    """A SIGTERM that arrives after the loop has ended (during the final kNN, minutes on
    real data, or once summary.json is written) was lost: the summary said no signal and
    a sweep trained its next cell. It is recorded as a stop at the last step is: the run
    finished, with its signal, in the summary returned and on disk."""
    import signal as signals

    from simclr import files

    def then_signal(function):
        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            if when != "summary written" or Path(args[0]).name == "summary.json":
                os.kill(os.getpid(), signals.SIGTERM)  # (the StopFlag's handler takes it)
            return result
        return wrapped

    if when == "final knn":
        monkeypatch.setattr(train, "final_knn", then_signal(train.final_knn))
    else:
        monkeypatch.setattr(train, "write_json", then_signal(files.write_json))
    flags = {"knn_train": str(image_folder), "knn_test": str(image_folder)} \
        if when == "final knn" else {}
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir, **flags))
    summary = train.pretrain(cfg)
    assert summary["status"] == "finished" and summary["signal"] == "SIGTERM"
    saved = json.loads((tmp_path / "run/summary.json").read_text())
    assert saved["status"] == "finished" and saved["signal"] == "SIGTERM"
    assert saved["steps"] == 6
    if when == "final knn":  # (measured: the signal came after it began)
        assert 0.0 <= saved["knn_top1"] <= 1.0


def test_a_run_killed_before_its_summary_resumes_with_its_final_metrics(
        tmp_path, image_folder, cache_dir):
    """Killed between the final checkpoint and summary.json (during the final kNN): the
    resumed session trains no step, and its summary lacked the last window's loss and
    Table 5's columns (a sweep's table showed them blank). They come from the log."""
    from simclr.monitor import FINAL_METRICS

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir))
    first = train.pretrain(cfg)
    (tmp_path / "run/summary.json").unlink()
    again = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert again["status"] == "finished" and again["steps"] == first["steps"] == 6
    assert {k: again[k] for k in FINAL_METRICS} == {k: first[k] for k in FINAL_METRICS}


def test_a_summary_not_of_the_checkpoints_finished_step_is_not_taken_as_the_runs_end(
        tmp_path, image_folder, cache_dir):
    """A run resumed at its last step is done only if summary.json says it finished at
    that step: an older summary (another step) or one of a stop is written anew."""
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir))
    first = train.pretrain(cfg)
    assert first["session"] == 1  # (the run's first start: `simclr info` tells them apart)
    path = tmp_path / "run/summary.json"
    for edit in ({"steps": 4}, {"status": "preempted"}):
        path.write_text(json.dumps({**first, **edit}))
        again = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
        assert (again["status"], again["steps"]) == ("finished", 6), edit
        assert (read_json(path)["status"], read_json(path)["steps"]) == ("finished", 6)


def test_a_resumed_run_is_not_told_its_warmup_was_cut_again(tmp_path, image_folder,
                                                            cache_dir, capsys):
    """The note that --warmup-epochs is cut to 10% of the run is the start's: a resumed
    session said it again (its test read a field start_state had already cleared)."""
    flags = tiny_flags(image_folder, tmp_path / "run", cache_dir, epochs=6,
                       checkpoint_every=0)
    cfg = build_config(flags={**flags, "optim.warmup_epochs": 5})

    def preempt(step, stop):
        if step == 3:
            stop.requested = "SIGTERM"

    assert train.pretrain(cfg, on_step=preempt)["status"] == "preempted"
    assert "--warmup-epochs 5 is cut to 10% of the run" in capsys.readouterr().out
    train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    out = capsys.readouterr().out
    assert "from step 3" in out and "warm-up" not in out and "warmup" not in out, out


def test_a_run_does_not_resume_on_other_images(tmp_path, cache_dir):
    """Every epoch's order and the steps per epoch depend on the number of images: a
    folder that lost (or gained) images cannot continue the run exactly."""
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", per_class=12)  # 24 images, 3 steps/epoch
    cfg = build_config(flags=tiny_flags(folder, tmp_path / "cut", cache_dir,
                                        checkpoint_every=0))

    def preempt(step, stop):
        if step == 4:
            stop.requested = "SIGTERM"

    stopped = train.pretrain(cfg, on_step=preempt)
    assert (stopped["status"], stopped["epochs"]) == ("preempted", pytest.approx(4 / 3))
    spoiled = sorted((folder / "class_0").iterdir())[0]  # (as many files, one unreadable)
    spoiled.write_text("not an image")
    # (24 files still: the count of those that decode, said as such)
    with pytest.raises(SimCLRError, match=re.escape(
            "--resume: 23 of the data folder's images decode now; 24 did when the run "
            "started (a file damaged since, or mended), so it cannot continue exactly")):
        train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True)
    for extra in sorted((folder / "class_1").iterdir())[:5]:
        extra.unlink()
    with pytest.raises(SimCLRError, match=r"the data folder now holds 19 images; the run "
                                          r"started with 24, so it cannot continue exactly"):
        train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True)


def test_a_resumed_run_keeps_the_cache_choice_it_started_with(tmp_path, cache_dir):
    """--cache auto decodes a folder of small images once, leaving its unreadable files
    out of the count; some of them replaced by large photos of the same names, a resume
    chose per-epoch decoding, which counts every listed file: refused as other images
    (and --cache on refused as a change). The run keeps its first choice."""
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", per_class=12)  # 24 small images
    for broken in ("class_0/000.png", "class_1/000.png"):
        (folder / broken).write_text("not an image")
    cfg = build_config(flags=tiny_flags(folder, tmp_path / "run", cache_dir,
                                        checkpoint_every=0, epochs=3))

    def preempt(step, stop):
        if step == 2:
            stop.requested = "SIGTERM"

    assert train.pretrain(cfg, on_step=preempt)["status"] == "preempted"
    saved = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert saved["cached"] is True and saved["num_images"] == 22
    for name in ("class_0/001.png", "class_1/001.png"):  # larger than a cache's images
        save_image(folder / name, rgb(200, 300))
    summary = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert summary["status"] == "finished" and summary["steps"] == 6  # 22 images: 2 a epoch
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["cached"] is True


def test_a_folder_mostly_unreadable_stops_before_batches_of_copies(tmp_path, cache_dir):
    """Decoded per epoch, 3 readable images among 20 files and a batch of 8: every batch
    was the 3 images repeated (substitutes for the bad files), each other's negatives,
    and the run finished. It stops once an epoch has met the bad files, saved, in one
    line; a cache (which leaves them out first) refuses the batch at the start."""
    folder = unreadable_folder(tmp_path / "imgs", 10)
    for name in ("class_0/0.png", "class_0/1.png", "class_1/0.png"):
        save_image(folder / name, rgb(16, 16))
    flags = tiny_flags(folder, tmp_path / "run", cache_dir, epochs=3, checkpoint_every=0,
                       **{"data.cache": "off"})
    with pytest.raises(SimCLRError) as info:
        train.pretrain(build_config(flags=flags))
    assert str(info.value) == (  # (the first epoch's 16 images held 13 of the 17)
        f"{folder}: at least 13 of its 20 image files are unreadable (named in the log), "
        "which leaves at most 7 images, fewer than --batch-size 8: batches would repeat "
        "images; remove those files or lower --batch-size")
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["status"] == "failed" and summary["steps"] == 2  # the first epoch's
    assert len(summary["skipped_images"]) == 13  # each named
    flags.update({"out": str(tmp_path / "cached"), "data.cache": "on"})
    with pytest.raises(SimCLRError, match=r"--batch-size 8 is larger than the data set \(3 "):
        train.pretrain(build_config(flags=flags))


def _preempted_with_unreadable_files(tmp_path, cache_dir) -> tuple[Path, dict]:
    """A run decoding per epoch, stopped at step 2 of 3 after meeting some of the three
    unreadable files of its folder: (the folder, its summary)."""
    folder = make_image_folder(tmp_path / "imgs", per_class=12)
    for broken in ("class_0/000.png", "class_0/005.png", "class_1/003.png"):
        (folder / broken).write_text("not an image")
    cfg = build_config(flags=tiny_flags(folder, tmp_path / "run", cache_dir, epochs=1,
                                        checkpoint_every=0, **{"data.cache": "off"}))

    def preempt(step, stop):
        if step == 2:
            stop.requested = "SIGTERM"

    first = train.pretrain(cfg, on_step=preempt)
    assert first["status"] == "preempted" and first["skipped_images"]
    return folder, first


def test_a_resumed_run_still_counts_the_unreadable_files_met_before(tmp_path, cache_dir):
    """Decoded per epoch, a run finds its unreadable files as it reads them; resumed,
    its summary listed (and counted out of num_images) only those met again."""
    _, first = _preempted_with_unreadable_files(tmp_path, cache_dir)
    summary = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert summary["status"] == "finished" and summary["steps"] == 3
    met = {path for path, _ in summary["skipped_images"]}
    assert {path for path, _ in first["skipped_images"]} <= met
    assert summary["num_images"] == 24 - len(met)


def test_a_run_resumed_from_a_moved_folder_still_lists_the_files_met_before(
        tmp_path, cache_dir):
    """Resumed with its folder moved (--data NEW), the unreadable files an earlier
    session met were dropped from the summary (their saved paths named the old place):
    they are listed at the new place."""
    folder, first = _preempted_with_unreadable_files(tmp_path, cache_dir)
    moved = tmp_path / "moved"
    folder.rename(moved)
    resumed = load_resume_config(tmp_path / "run")  # (as the README calls it)
    resumed.data.path = str(moved)
    summary = train.pretrain(resumed, resume=True)
    assert summary["status"] == "finished"
    met = {path for path, _ in summary["skipped_images"]}
    assert {str(moved / os.path.relpath(path, folder))
            for path, _ in first["skipped_images"]} <= met
    assert all(path.startswith(str(moved)) for path in met)


def test_a_resume_from_python_keeps_the_saved_settings(tmp_path, image_folder, cache_dir,
                                                       monkeypatch):
    """pretrain(cfg, resume=True) with a Config built anew at another temperature went
    on at it (config.yaml rewritten to say so), where `--resume --temperature` is
    refused: refused alike, and the saved settings with an allowed change continue."""
    flags = tiny_flags(image_folder, tmp_path / "run", cache_dir, checkpoint_every=0)

    def preempt(step, stop):
        if step == 2:
            stop.requested = "SIGTERM"

    assert train.pretrain(build_config(flags=flags), on_step=preempt)["status"] == "preempted"
    for change, said in ((("loss.temperature", 0.2), "--temperature (0.5 saved, 0.2 asked)"),
                         (("batch_size", 4), "--batch-size (8 saved, 4 asked)")):
        with pytest.raises(SimCLRError, match=re.escape(said)):
            train.pretrain(build_config(flags=dict(flags, **dict([change]))), resume=True)
    # As the CLI and a sweep read a run: a relative folder of a run saved before paths
    # were absolute (resumed from where it started), 'auto' as the precision it is here.
    from simclr.runtime import resolve_precision

    last = tmp_path / "run/checkpoints/last.pt"
    ckpt = load_checkpoint(last)
    ckpt["config"]["data"]["path"] = image_folder.name
    ckpt["config"]["precision"] = "auto"
    save_checkpoint(ckpt, last.parent, last.name)
    monkeypatch.chdir(image_folder.parent)
    here = resolve_precision("auto", torch.device("cpu"))
    with pytest.raises(SimCLRError, match="cannot change --batch-size"):  # (still checked)
        train.pretrain(build_config(flags=dict(flags, batch_size=4, precision=here)),
                       resume=True)
    saved = load_resume_config(tmp_path / "run", {})
    assert saved.loss.temperature == 0.5
    saved.log_every = 3  # (RESUME_SETTINGS: a change a resume may make)

    def preempt_again(step, stop):
        if step == 4:
            stop.requested = "SIGTERM"

    assert train.pretrain(saved, resume=True, on_step=preempt_again)["status"] == "preempted"
    done = train.pretrain(build_config(flags=dict(flags, precision=here)), resume=True)
    assert done["status"] == "finished" and done["steps"] == 6


def test_time_budget_fits_the_schedule(tmp_path, image_folder, cache_dir):
    _, summary = run(tmp_path, image_folder, cache_dir, "budget", epochs=1000,
                     time_budget="4s", checkpoint_every=0, log_every=1)
    assert summary["status"] == "finished"
    lines = [json.loads(x) for x in (tmp_path / "budget/metrics.jsonl").read_text().splitlines()]
    times = [x["elapsed"] for x in lines if "loss" in x]
    # ends at the deadline, past it by at most the step it was in (a bound from the run's
    # own step times: a busy machine's slow step is no failure)
    slowest = max(b - a for a, b in zip([0.0, *times], times, strict=False))
    assert 3.5 <= summary["elapsed_s"] <= 4.0 + slowest + 0.05
    last = [x for x in lines if "loss" in x][-1]
    assert last["step"] == summary["steps"] and last["total_steps"] == summary["steps"]
    # re-planned first at step 3 (plan.FIRST_REFIT, while the guess's lr still ramps):
    # step 4's line has the budget's length, no longer the guess of 1000 epochs
    totals = [x["total_steps"] for x in lines if "loss" in x]
    assert totals[0] == totals[2] != totals[3]


def test_a_signal_that_reached_another_process_alone_is_this_ones_too(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """Under torchrun a SIGTERM may reach some processes alone; the vote tells every
    one: each stops at that step and records the signal as its own (rank 0's summary
    says it, and no final kNN runs where a kill may follow). Here the vote (of one
    process) reports another's signal at step 2."""
    class OtherSignalled:
        def __init__(self, device, start_step=0):
            self.main_flag = False

        def __call__(self, step, signal_name, last=False, main_flag=False):
            self.main_flag = main_flag
            return "SIGTERM" if step == 2 else signal_name

    monkeypatch.setattr(train.dist, "StopVote", OtherSignalled)
    _, summary = run(tmp_path, image_folder, cache_dir, "run", checkpoint_every=0)
    assert summary["status"] == "preempted" and summary["steps"] == 2
    assert summary["signal"] == "SIGTERM"


def test_a_budget_spent_at_a_replan_step_ends_the_run_at_that_step(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """The budget spent at step 3, a re-plan's step: the run ends there, its last.pt
    planned for 3 steps (a re-plan after the end would plan a step more, which a
    --resume of the finished run would then train)."""
    calls = []

    def spent(plan, elapsed):
        calls.append(1)
        return len(calls) == 3

    monkeypatch.setattr(train, "budget_spent", spent)
    flags = tiny_flags(image_folder, tmp_path / "run", cache_dir, time_budget="1h",
                       checkpoint_every=0)
    del flags["epochs"]  # (the budget sets the length)
    assert train.pretrain(build_config(flags=flags))["steps"] == 3
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["total_steps"] == 3


def test_a_budget_spent_within_the_warmup_is_said(tmp_path, image_folder, cache_dir, capsys,
                                                  monkeypatch):
    """A 0.5-s budget ran one step at lr 0 (only BatchNorm statistics moved) and said
    'finished', nothing else; its progress ended at 'step 1/700'. A run stopped within
    its warm-up (a signal, the budget not spent) is not told so."""
    from simclr import progress

    totals = []
    monkeypatch.setattr(progress.Progress, "set_total",
                        lambda self, total: totals.append(total))
    _, summary = run(tmp_path, image_folder, cache_dir, "short", epochs=100,
                     time_budget="0.001s", checkpoint_every=0)
    assert summary["status"] == "finished" and summary["steps"] == 1
    assert "note: the --time-budget ended within the warm-up (step 1 of its 30): the " \
           "learning rate never reached its peak" in capsys.readouterr().out
    assert totals == [1]  # the progress's total as the run ended
    flags = tiny_flags(image_folder, tmp_path / "long", cache_dir, max_steps=4,
                       time_budget="1h", checkpoint_every=0)
    del flags["epochs"]  # (the budget sets the length, --max-steps caps it)
    assert train.pretrain(build_config(flags=flags))["steps"] == 4
    assert "within the warm-up" not in capsys.readouterr().out
    # stopped within the warm-up, the budget not spent: a --resume trains on, nothing said
    flags = tiny_flags(image_folder, tmp_path / "stopped", cache_dir, epochs=100,
                       time_budget="1h", checkpoint_every=0)
    assert train.pretrain(build_config(flags=flags), on_step=stop_at(1))["status"] == \
        "preempted"
    assert "within the warm-up" not in capsys.readouterr().out


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, image_folder, cache_dir,
                                                      monkeypatch):
    import simclr.train as t

    real = t.loss_and_metrics

    def poisoned(cfg, z_a, z_b):
        loss, metrics = real(cfg, z_a, z_b)
        step = poisoned.calls = getattr(poisoned, "calls", 0) + 1
        return (loss * float("nan") if step == 3 else loss), metrics

    monkeypatch.setattr(t, "loss_and_metrics", poisoned)
    with pytest.raises(SimCLRError, match="non-finite.*step 3.*ckpt-00000002.pt") as info:
        run(tmp_path, image_folder, cache_dir, "nan")
    assert str(info.value).endswith("Lower --lr, or pass --nan-policy skip")  # fp32 already
    ckpt = load_checkpoint(tmp_path / "nan/checkpoints/ckpt-00000002.pt")
    assert ckpt["step"] == 2
    assert not (tmp_path / "nan/checkpoints/last.pt").exists()


@pytest.mark.parametrize("by", ["steps", "clock"])
def test_a_non_finite_step_between_log_lines_is_never_saved(tmp_path, image_folder, cache_dir,
                                                            monkeypatch, by):
    """A periodic save (every --checkpoint-every steps, or by the clock) after a
    non-finite step and before the next log line's check: never the diverged model."""
    import simclr.train as t

    real = t.loss_and_metrics

    def poisoned(cfg, z_a, z_b):
        loss, metrics = real(cfg, z_a, z_b)
        return loss * float("nan"), metrics

    monkeypatch.setattr(t, "loss_and_metrics", poisoned)
    every = {"checkpoint_every": 2} if by == "steps" else {"checkpoint_every": 0,
                                                          "checkpoint_minutes": 1e-9}
    with pytest.raises(SimCLRError, match="non-finite"):
        run(tmp_path, image_folder, cache_dir, "nan", log_every=5, **every)
    assert not list((tmp_path / "nan/checkpoints").glob("*.pt"))


def test_a_run_stopped_after_several_non_finite_steps_names_the_first(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """--log-every 3: steps 2 and 3 are both non-finite before the check at step 3; the
    run stops naming step 2, where it went wrong, not the last bad step. The window is
    logged first (its loss null): step 1's finite loss was lost with it."""
    calls = _nan_at_step(monkeypatch, 2, 3)
    with pytest.raises(DivergedError, match=r"non-finite \(NaN/inf\) at step 2;") as info:
        run(tmp_path, image_folder, cache_dir, "nan", log_every=3, checkpoint_every=0)
    assert info.value.step == 2 and len(calls) == 3
    lines = [json.loads(x) for x in (tmp_path / "nan/metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], x["loss"], x["window_steps"]) for x in lines if "loss" in x] == [
        (3, None, 3)]


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_finite_loss_with_non_finite_gradients_is_a_bad_step(tmp_path, image_folder,
                                                               cache_dir, monkeypatch, policy):
    """bf16 convolutions over 1x1 inputs gave a finite loss and NaN gradients: the update
    was applied and the run 'finished' with NaN weights in last.pt (exit 0). Such a step
    stops the run before a checkpoint (stop) or is left out (skip), as a NaN loss is."""
    import simclr.train as t

    real, calls = t.loss_and_metrics, []

    def poisoned(cfg, z_a, z_b):
        calls.append(1)
        if len(calls) == 3:  # (the loss stays finite; its gradient does not)
            z_a.register_hook(lambda grad: grad * float("nan"))
        return real(cfg, z_a, z_b)

    monkeypatch.setattr(t, "loss_and_metrics", poisoned)
    if policy == "stop":
        with pytest.raises(SimCLRError, match=r"the loss or its gradients became non-finite "
                           r"\(NaN/inf\) at step 3; stopping: the last checkpoint .*"
                           r"ckpt-00000002.pt is untouched"):
            run(tmp_path, image_folder, cache_dir, "nan")
        assert not (tmp_path / "nan/checkpoints/last.pt").exists()
        return
    _, summary = run(tmp_path, image_folder, cache_dir, "skip", nan_policy="skip")
    assert summary["status"] == "finished" and summary["bad_steps"] == 1
    last = load_checkpoint(tmp_path / "skip/checkpoints/last.pt")
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    lines = [json.loads(x) for x in (tmp_path / "skip/metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] is None for x in lines if "loss" in x] == [False, False, True] + [False] * 3


def test_a_skipped_step_leaves_weights_and_batch_norm_statistics_untouched(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """--nan-policy skip: NaN views at step 3 give a NaN loss; that step changes nothing
    (its forward pass would have poisoned BatchNorm's running statistics) and the run
    finishes with finite weights."""
    import simclr.train as t

    real_step, seen = t.train_step, {}

    def poisoned(cfg, forward, optimizer, scaler, views, *rest):
        calls = seen["calls"] = seen.get("calls", 0) + 1
        if calls != 3:
            return real_step(cfg, forward, optimizer, scaler, views, *rest)
        before = {k: v.clone() for k, v in forward.state_dict().items()}
        optim_before = copy.deepcopy(optimizer.state_dict())
        scaler_before = copy.deepcopy(scaler.state_dict())
        out = real_step(cfg, forward, optimizer, scaler, views * float("nan"), *rest)
        after = forward.state_dict()
        seen["skipped"] = out[2]
        seen["unchanged"] = all(torch.equal(before[k], after[k]) for k in before)
        # The optimizer's momentum buffers (from steps 1 and 2) and the scaler too.
        optim_after = optimizer.state_dict()
        assert optim_before["state"] and optim_after["state"].keys() == optim_before["state"].keys()
        seen["optimizer_unchanged"] = optim_before["param_groups"] == optim_after["param_groups"] \
            and all(torch.equal(optim_before["state"][i][k], optim_after["state"][i][k])
                    for i in optim_before["state"] for k in optim_before["state"][i])
        seen["scaler_unchanged"] = scaler_before == scaler.state_dict()
        return out

    monkeypatch.setattr(t, "train_step", poisoned)
    _, summary = run(tmp_path, image_folder, cache_dir, "skip", nan_policy="skip")
    assert summary["status"] == "finished" and summary["steps"] == 6
    assert seen == {"calls": 6, "skipped": True, "unchanged": True,
                    "optimizer_unchanged": True, "scaler_unchanged": True}
    # Its window (--log-every 1) logs no number of the step, as no loss: its accuracies
    # were argmaxes over NaN (pos_top1 1/16, contrast_acc 1/8)
    lines = [json.loads(x) for x in (tmp_path / "skip/metrics.jsonl").read_text().splitlines()]
    logged = {x["step"]: x for x in lines if "loss" in x}
    names = ("loss", "pos_top1", "contrast_entropy", "contrast_acc")
    assert [logged[3][k] for k in names] == [None] * 4
    assert all(isinstance(logged[s][k], float) for s in (2, 4) for k in names)
    last = load_checkpoint(tmp_path / "skip/checkpoints/last.pt")
    assert all(torch.isfinite(v).all() for v in last["model"].values()
               if v.is_floating_point())


def test_a_skipped_step_leaves_its_windows_other_steps_logged(tmp_path, image_folder,
                                                            cache_dir, monkeypatch):
    """--nan-policy skip, --log-every 3: a NaN loss at step 5 logged the whole window of
    steps 4-6 as null, and the finished run's summary.json said "loss": null (a sweep's
    table reads it). The window's two finite steps are averaged, its skip counted."""
    _nan_at_step(monkeypatch, 5)
    _, summary = run(tmp_path, image_folder, cache_dir, "skip", nan_policy="skip", log_every=3)
    assert summary["status"] == "finished" and summary["bad_steps"] == 1
    lines = [json.loads(x) for x in (tmp_path / "skip/metrics.jsonl").read_text().splitlines()]
    logged = {x["step"]: x for x in lines if "loss" in x}
    names = ("loss", "pos_top1", "contrast_entropy", "contrast_acc")
    assert all(isinstance(logged[s][k], float) for s in (3, 6) for k in names)
    assert "window_skipped" not in logged[3]
    assert (logged[6]["window_steps"], logged[6]["window_skipped"]) == (3, 1)
    written = json.loads((tmp_path / "skip/summary.json").read_text())
    assert all(isinstance(written[k], float) for k in names)


@pytest.mark.parametrize("max_bad_steps", [1, 2])
def test_skip_policy_gives_up_after_more_than_max_bad_steps(tmp_path, image_folder, cache_dir,
                                                            monkeypatch, max_bad_steps, capsys):
    """Steps 2 and 4 have NaN losses: at most 2 skipped steps, the run finishes; at most
    1, it stops as diverged at step 4, on record in summary.json."""
    calls = _nan_at_step(monkeypatch, 2, 4)
    flags = dict(nan_policy="skip", max_bad_steps=max_bad_steps, checkpoint_every=0)
    if max_bad_steps == 2:
        _, summary = run(tmp_path, image_folder, cache_dir, "skip", **flags)
        assert summary["status"] == "finished" and summary["steps"] == 6
        # said, not only a null loss in metrics.jsonl
        assert summary["bad_steps"] == 2
        assert json.loads((tmp_path / "skip/summary.json").read_text())["bad_steps"] == 2
        from simclr.pretrain_command import print_summary

        print_summary(summary)
        assert "skipped 2 step(s) whose loss or gradients were not finite (--nan-policy " \
            "skip; left out of their metrics.jsonl windows' means" in capsys.readouterr().out
        return
    with pytest.raises(DivergedError, match="more than 1 non-finite steps") as info:
        run(tmp_path, image_folder, cache_dir, "skip", **flags)
    assert info.value.step == 4 and len(calls) == 4
    summary = json.loads((tmp_path / "skip/summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps"] == 4


def test_embed_and_load_encoder(tmp_path, image_folder, cache_dir):
    run(tmp_path, image_folder, cache_dir, "emb", epochs=1)
    ckpt = tmp_path / "emb/checkpoints/last.pt"
    info = embed_folder(ckpt, str(image_folder), tmp_path / "f.npz", device="cpu",
                        precision="fp32", cache_dir=cache_dir)
    data = np.load(tmp_path / "f.npz")
    assert data["features"].shape == (24, 64) and data["features"].dtype == np.float32
    assert data["labels"].tolist() == [0] * 12 + [1] * 12
    assert list(data["classes"]) == ["class_0", "class_1"] and info["images"] == 24
    assert str(data["encoder"]) == f"{ckpt} step 3 layer h"  # which representation
    encoder = load_encoder(ckpt)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        h = encoder(x)
    assert h.shape == (2, 64) and not encoder.training
    # --layer z: the head's output g(h) of the same images, same order.
    info = embed_folder(ckpt, str(image_folder), tmp_path / "z.npz", device="cpu",
                        precision="fp32", cache_dir=cache_dir, layer="z")
    z = np.load(tmp_path / "z.npz")["features"]
    model, _ = model_from_checkpoint(load_checkpoint(ckpt))
    with torch.no_grad():
        want = model.head.eval()(torch.from_numpy(data["features"]))
    assert info["layer"] == "z" and z.shape == (24, 128)
    assert np.allclose(z, want.numpy(), atol=1e-5)
    # Images beside the class folders have rows too (label -1): embed needs no label.
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(image_folder, mixed)
    shutil.copy(mixed / "class_0" / "000.png", mixed / "loose.png")
    embed_folder(ckpt, str(mixed), tmp_path / "m.npz", device="cpu", precision="fp32",
                 cache_dir=cache_dir)
    both = np.load(tmp_path / "m.npz")
    assert both["labels"].tolist() == [-1] + [0] * 12 + [1] * 12
    assert np.allclose(both["features"][0], both["features"][1], atol=1e-5)  # the same image


def test_batch_must_divide_among_processes(tmp_path, image_folder, cache_dir, monkeypatch):
    import simclr.train as t

    monkeypatch.setattr(t.dist, "init_from_env", lambda: True)
    monkeypatch.setattr(t.dist, "world_size", lambda: 3)
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "ddp", cache_dir))
    with pytest.raises(SimCLRError, match="--batch-size 8 is not divisible by 3 processes"):
        t.pretrain(cfg)
    assert not (tmp_path / "ddp").exists()  # checked before any work


def test_online_knn_monitor(tmp_path, image_folder, cache_dir, capsys):
    _, summary = run(tmp_path, image_folder, cache_dir, "knn", knn_train=str(image_folder),
                     knn_test=str(image_folder), knn_every=1.0, checkpoint_every=0)
    # (k 200 of 24 images: said once a run, as `simclr knn` says it, not silently clamped)
    assert capsys.readouterr().out.count("note: --knn-k 200 is more than the 24 --knn-train "
                                         "images; each test image takes all of them") == 1
    lines = [json.loads(x) for x in (tmp_path / "knn/metrics.jsonl").read_text().splitlines()]
    monitored = [x for x in lines if "knn_top1" in x]
    assert [x["step"] for x in monitored] == [3, 6]  # every epoch; the last is the final one
    # two well-separated colour classes, queries = memory: far above chance
    assert summary["knn_top1"] == monitored[-1]["knn_top1"] >= 0.9
    _, summary = run(tmp_path, image_folder, cache_dir, "knn4", knn_train=str(image_folder),
                     knn_test=str(image_folder), knn_every=1.34, checkpoint_every=0)
    lines = [json.loads(x) for x in (tmp_path / "knn4/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "knn_top1" in x] == [4, 6]  # every 4 steps, the end
    # a stop request ends the run without a last kNN pass (the launcher's kill may follow)
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "cut", cache_dir,
                                        knn_train=str(image_folder), knn_test=str(image_folder),
                                        knn_every=1.0, checkpoint_every=0))

    def stop_at_2(step, stop):
        if step == 2:
            stop.requested = "SIGTERM"

    summary = train.pretrain(cfg, on_step=stop_at_2)
    assert summary["status"] == "preempted" and "knn_top1" not in summary
    assert "knn_top1" not in (tmp_path / "cut/metrics.jsonl").read_text()


def test_the_knn_monitors_seconds_are_not_in_views_per_s_but_in_the_budget(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """The window after each kNN measure counted its seconds as training: views/s fell
    4-5x there. Here each measure takes 1000 s of train.py's clock: views/s stays a
    step's, while elapsed and a --time-budget (wall time) still count them."""
    import time
    import types

    skipped = [0.0]  # the seconds the fake measures took
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + skipped[0])
    monkeypatch.setattr(train, "time", clock)
    measure = train.knn_within_run

    def slow_measure(*args, **kwargs):
        skipped[0] += 1000.0
        return measure(*args, **kwargs)

    monkeypatch.setattr(train, "knn_within_run", slow_measure)
    knn = dict(knn_train=str(image_folder), knn_test=str(image_folder), knn_every=1.0,
               checkpoint_every=0)
    _, summary = run(tmp_path, image_folder, cache_dir, "knn", **knn)
    assert summary["status"] == "finished" and summary["steps"] == 6
    lines = [json.loads(x) for x in (tmp_path / "knn/metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "loss" in x]
    assert [x["step"] for x in logged] == [1, 2, 3, 4, 5, 6]
    assert [x["step"] for x in lines if "knn_top1" in x] == [3, 6]
    # 16 views a step: 0.016 views/s had a step's window counted the 1000 s
    assert all(x["views_per_s"] > 0.5 for x in logged), logged
    assert summary["elapsed_s"] >= 1000.0  # the measure at step 3 (step 6's: after it)
    # stopped at step 3, the measure skipped: the resumed session's first one, alike

    def stop_at_3(step, stop):
        if step == 3:
            stop.requested = "SIGTERM"

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "cut", cache_dir, **knn))
    assert train.pretrain(cfg, on_step=stop_at_3)["status"] == "preempted"
    skipped[0] = 0.0
    train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True)
    lines = [json.loads(x) for x in (tmp_path / "cut/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "knn_top1" in x] == [3, 6]
    assert all(x["views_per_s"] > 0.5 for x in lines if "loss" in x), lines
    # a budget spent by a measure ends the run at the next step
    skipped[0] = 0.0
    _, summary = run(tmp_path, image_folder, cache_dir, "budget", epochs=1000,
                     time_budget="500s", **knn)
    assert summary["status"] == "finished" and summary["steps"] == 4


def test_a_run_killed_after_its_final_knn_takes_it_from_the_log(tmp_path, image_folder,
                                                                cache_dir):
    """Killed after the final kNN line, before summary.json: the resumed session (no
    step left) measured the final encoder again, a second knn_top1 line at that step."""
    run(tmp_path, image_folder, cache_dir, "run", knn_train=str(image_folder),
        knn_test=str(image_folder), checkpoint_every=3)
    (tmp_path / "run/summary.json").unlink()
    resumed = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    measured = [x for x in lines if "knn_top1" in x]
    assert [x["step"] for x in measured] == [3, 6]
    assert resumed["status"] == "finished" and resumed["knn_top1"] == measured[-1]["knn_top1"]
    assert resumed["loss"] == [x for x in lines if "loss" in x][-1]["loss"]


def test_a_previous_releases_knn_monitor_on_capital_splits_is_said_to_read_them_now(
        tmp_path, image_folder, cache_dir, capsys):
    """A run of a release before 2026-12-06 with --knn-train/--knn-test DIR holding
    Train/ and Test/ scored DIR as two classes (Test, Train); resumed, the monitor reads
    DIR/Train against DIR/Test and its curve jumped with no word: a note says so. A run
    of this release, which read the splits from its start, gets none."""
    splits = tmp_path / "tt"
    make_image_folder(splits / "Train", per_class=6)
    make_image_folder(splits / "Test", per_class=3, seed=1)
    knn = {"knn_train": str(splits), "knn_test": str(splits), "knn_every": 1.0}
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir, **knn))
    assert train.pretrain(cfg, on_step=stop_at(1))["status"] == "preempted"
    capsys.readouterr()
    resumed = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True,
                             on_step=stop_at(2))
    assert resumed["status"] == "preempted"
    assert "kNN monitor" not in capsys.readouterr().out  # (read alike from the start)
    last = tmp_path / "run/checkpoints/last.pt"
    saved = load_checkpoint(last)
    assert saved["knn_splits"] == ["Train", "Test"]
    del saved["knn_splits"]  # as the previous release saved it
    save_checkpoint(saved, last.parent, last.name)
    summary = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert summary["status"] == "finished"
    notes = [x for x in capsys.readouterr().out.splitlines() if "kNN monitor" in x]
    assert notes == [f"note: the kNN monitor now reads --knn-train {splits}/Train and "
                     f"--knn-test {splits}/Test, where the run read {splits} whole (a "
                     "release before 2026-12-06 read splits named in capitals as two "
                     "classes): its kNN curve breaks at step 2; the training is as it was"]


def test_a_run_of_this_release_on_capital_splits_given_more_images_is_told_so(
        tmp_path, cache_dir):
    """A run of this release on DIR holding Train/ and Test/ trained on DIR/Train from
    its start: an image added there refuses the resume with the plain 'now holds N
    images' (restoring the folder helps), not the earlier release's split message."""
    splits = tmp_path / "tt"
    make_image_folder(splits / "Train", per_class=12)
    make_image_folder(splits / "Test", per_class=3, seed=1)
    cfg = build_config(flags=tiny_flags(splits, tmp_path / "run", cache_dir))
    assert train.pretrain(cfg, on_step=stop_at(1))["status"] == "preempted"
    shutil.copy(splits / "Train/class_0/000.png", splits / "Train/class_0/new.png")
    with pytest.raises(SimCLRError) as caught:
        train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert str(caught.value) == ("--resume: the data folder now holds 25 images; the run "
                                 "started with 24, so it cannot continue exactly (start a "
                                 "new run, or restore the folder)")


def test_an_adamw_run_at_a_lars_sized_lr_is_told_so_when_it_resumes(
        tmp_path, image_folder, cache_dir, capsys):
    """An AdamW run of a release before 2026-12-06 kept a LARS-sized lr (0.3) and had no
    note; resumed on this release, which notes it only when a run starts, it went on
    unsaid: the note is given once when it resumes."""
    flags = tiny_flags(image_folder, tmp_path / "run", cache_dir, **{
        "optim.name": "adamw", "optim.lr": 0.3})
    assert train.pretrain(build_config(flags=flags), on_step=stop_at(1))["status"] == \
        "preempted"
    capsys.readouterr()
    train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True, on_step=stop_at(2))
    out = capsys.readouterr()
    notes = [x for x in (out.out + out.err).splitlines() if "note: AdamW at a peak lr" in x]
    assert len(notes) == 1 and notes[0].endswith("LARS-sized rates collapse it; a new run "
                                                 "with --lr sets another")  # (not --resume)


def test_a_stop_at_a_knn_step_is_measured_when_the_run_resumes(tmp_path, image_folder,
                                                              cache_dir):
    """A stop at a step the kNN monitor was due skips it (a kill may follow), and the
    resumed session never measured it: its log lacked step 3's knn_top1, which an
    uninterrupted run's has."""
    knn = {"knn_train": str(image_folder), "knn_test": str(image_folder), "knn_every": 1.0,
           "checkpoint_every": 0}
    run(tmp_path, image_folder, cache_dir, "whole", **knn)

    def stop_at_3(step, stop):
        if step == 3:
            stop.requested = "SIGTERM"

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "cut", cache_dir, **knn))
    assert train.pretrain(cfg, on_step=stop_at_3)["status"] == "preempted"
    assert "knn_top1" not in (tmp_path / "cut/metrics.jsonl").read_text()

    def killed_in_step_4(step, stop):  # (before a save: the next start is at step 3 again)
        if step == 4:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True,
                       on_step=killed_in_step_4)
    # measured once: this session finds step 3's measure on record
    summary = train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True)
    assert summary["status"] == "finished"

    def measured(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [(x["step"], x["knn_top1"]) for x in map(json.loads, lines) if "knn_top1" in x]

    whole, cut = measured("whole"), measured("cut")
    assert [step for step, _ in cut] == [step for step, _ in whole] == [3, 6]
    assert cut[0][1] == pytest.approx(whole[0][1], abs=1e-6)  # the same model's, at step 3


def test_a_knn_folder_failing_mid_run_keeps_the_steps(tmp_path, image_folder, cache_dir):
    """A --knn-test of 140 images, all unreadable by the first kNN pass but one of each
    class the start's check opened (large, so read uncached: damaged during the run
    here), failed after the first epoch; under --checkpoint-every 0 its steps were lost."""
    broken = unreadable_folder(tmp_path / "broken", 70)
    for name in ("class_0", "class_1"):
        save_image(broken / name / "0.png", rgb(128, 128))

    def damaged(step, stop):  # (after the start's check, before the monitor's pass)
        for name in ("class_0", "class_1"):
            (broken / name / "0.png").write_bytes(b"damaged")

    with pytest.raises(SimCLRError) as info:
        train.pretrain(build_config(flags=tiny_flags(
            image_folder, tmp_path / "run", cache_dir, knn_train=str(image_folder),
            knn_test=str(broken), checkpoint_every=0)), on_step=damaged)
    assert str(info.value).startswith("kNN monitor: 128 images tried in its place (64 after "
                                      "it, the rest spread over the folder) are unreadable "
                                      "(first: ")
    assert str(info.value).endswith(
        f"check the folder {broken} (the run is saved at step 3: `simclr pretrain --resume "
        f"{tmp_path / 'run'}` continues it once the folder is mended)")
    assert load_checkpoint(tmp_path / "run/checkpoints/ckpt-00000003.pt")["step"] == 3
    shutil.rmtree(broken)
    make_image_folder(broken)
    resumed = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert resumed["status"] == "finished" and resumed["steps"] == 6


def overflow_before_the_knn_monitor(monkeypatch) -> None:
    """The kNN monitor measures an encoder whose weights overflowed (all inf) just
    before, as a diverging run's grow while its loss is still finite."""
    real = monitor.knn_monitor

    def overflowed(cfg, model, *args):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("inf"))
        return real(cfg, model, *args)

    monkeypatch.setattr(monitor, "knn_monitor", overflowed)


@pytest.mark.parametrize("every, knn_every, step, aside, kept", [
    (0, 1.0, 3, "", "no checkpoint of an earlier step is kept"),
    (3, 1.0, 3, " (set aside: ckpt-00000003.pt.diverged)",
     "no checkpoint of an earlier step is kept"),
    (3, 10.0, 6, " (set aside: ckpt-00000006.pt.diverged, last.pt.diverged)",
     "the last good checkpoint is {run}/checkpoints/ckpt-00000003.pt")])
def test_a_diverged_encoder_met_by_the_knn_monitor_ends_the_run_as_diverged(
        tmp_path, image_folder, cache_dir, monkeypatch, every, knn_every, step, aside, kept):
    """Weights large enough that the encoder's outputs overflow before its loss does
    (seen with sgd at lr 1e12): the monitor's non-finite features were taken for its
    folder failing: a checkpoint of the diverged encoder saved, status "failed", and
    "continues it once the folder is mended" (every resume failed the same way). The
    checkpoints of that step's weights (a periodic one saved just before the monitor,
    last.pt before the final measure) are set aside: --resume takes the last good one."""
    overflow_before_the_knn_monitor(monkeypatch)
    run_dir = tmp_path / "run"
    kept = re.escape(kept.format(run=run_dir))
    with pytest.raises(DivergedError, match=rf"^kNN monitor at step {step}: the encoder's "
                                            r"outputs on the kNN images are not finite "
                                            rf"\(NaN/inf\): the run diverged; stopping"
                                            rf"{re.escape(aside)}: {kept}\. Lower --lr, "):
        run(tmp_path, image_folder, cache_dir, "run", knn_train=str(image_folder),
            knn_test=str(image_folder), checkpoint_every=every, knn_every=knn_every)
    good = latest_checkpoint(run_dir / "checkpoints")
    assert (good and good.name) == ("ckpt-00000003.pt" if step == 6 else None)
    assert read_json(run_dir / "summary.json")["status"] == "diverged"


def test_a_diverged_encoder_met_when_a_stopped_run_resumes_sets_aside_its_start(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """Stopped at a kNN step (last.pt at step 3), the resumed session measures it first:
    features not finite there left last.pt, the diverged weights, as the last good one."""
    knn = {"knn_train": str(image_folder), "knn_test": str(image_folder), "knn_every": 1.0,
           "checkpoint_every": 0}

    def stop_at_3(step, stop):
        if step == 3:
            stop.requested = "SIGTERM"

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir, **knn))
    assert train.pretrain(cfg, on_step=stop_at_3)["status"] == "preempted"
    overflow_before_the_knn_monitor(monkeypatch)
    with pytest.raises(DivergedError, match=r"^kNN monitor at step 3: .* the run diverged; "
                                            r"stopping \(set aside: last.pt.diverged\): no "
                                            r"checkpoint of an earlier step is kept\."):
        train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert latest_checkpoint(tmp_path / "run/checkpoints") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pretrain_on_cuda_without_host_syncs(tmp_path, image_folder, cache_dir):
    """bf16 autocast and channels_last on the GPU, and no host synchronisation inside
    the steps between two log lines (data, augmentation, forward, loss, LARS)."""
    flags = tiny_flags(image_folder, tmp_path / "run", cache_dir, **{
        "device": "cuda", "precision": "auto", "log_every": 1000, "checkpoint_every": 0,
        "epochs": 3})

    def watch(step, stop):  # steps 2..8 of 9 run with host syncs forbidden
        torch.cuda.set_sync_debug_mode("error" if 1 <= step < 8 else "default")

    try:
        summary = train.pretrain(build_config(flags=flags), on_step=watch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert summary["status"] == "finished" and summary["steps"] == 9
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert lines[0]["precision"] == "bf16" and np.isfinite(lines[-1]["loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pretrain_on_cuda_decodes_jpegs_on_the_gpu(tmp_path, cache_dir, capsys):
    folder = make_image_folder(tmp_path / "jpegs", side=40, ext="jpg")
    flags = tiny_flags(folder, tmp_path / "run", cache_dir, **{
        "device": "cuda", "precision": "auto", "data.cache": "off", "data.workers": 2})
    summary = train.pretrain(build_config(flags=flags))
    assert summary["status"] == "finished" and summary["steps"] == 6
    assert "JPEGs are decoded on cuda" in capsys.readouterr().out


class _Projector(torch.nn.Module):
    """views (2n, 3, 2, 2) -> (h, z): the smallest network train_step accepts."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(12, 4)

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = views.flatten(1)
        return h, self.fc(h)


@pytest.mark.parametrize("weight", [2.0, 0.5])
def test_loss_weight_scales_the_gradient_not_the_logged_loss(weight):
    # The official objective optimises loss_a + loss_b = 2 L; loss.weight reproduces it.
    views = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    updates, losses = [], []
    for w in (1.0, weight):
        cfg = build_config(flags={"loss.weight": w, "loss.temperature": 0.5})
        torch.manual_seed(0)
        net = _Projector()
        before = net.fc.weight.detach().clone()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        metrics, finite, skipped = train.train_step(cfg, net, optimizer, scaler, views, 4,
                                                    torch.device("cpu"), "fp32")
        assert bool(finite) and not skipped
        updates.append(net.fc.weight.detach() - before)
        losses.append(float(metrics["loss"].detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    torch.testing.assert_close(updates[1], weight * updates[0], rtol=1e-5, atol=1e-8)


def test_a_step_pairs_each_images_two_views():
    """Views (2n, ...) are view 0 of every image, then view 1 (Alg. 1): the step's loss
    is NT-Xent of z[:n] against z[n:]; identical halves make every positive the match."""
    cfg = build_config(flags={"loss.temperature": 0.5})
    one = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    other = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    for views, same in ((torch.cat([one, other]), False), (torch.cat([one, one]), True)):
        torch.manual_seed(0)
        net = _Projector()
        z = net(views)[1].detach().double()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        metrics, _, _ = train.train_step(cfg, net, optimizer, scaler, views, 4,
                                         torch.device("cpu"), "fp32")
        assert float(metrics["loss"].detach()) == pytest.approx(
            float(nt_xent(z[:4], z[4:], 0.5)), rel=1e-6)
        # Table 5's metrics of the same pairing: z[:4]'s anchors against z[4:]'s views
        entropy, accuracy = contrast_stats(z[:4], z[4:], 0.5).tolist()
        assert float(metrics["contrast_entropy"]) == pytest.approx(entropy, rel=1e-5)
        assert float(metrics["contrast_acc"]) == accuracy
        if same:
            assert float(metrics["pos_top1"]) == 1.0 == accuracy


def test_a_step_whose_gradients_are_not_finite_reports_no_numbers():
    """A finite loss with NaN gradients is a bad step: its metrics are NaN, not the
    finite loss (a step that was not finite has no number, whichever part was not)."""
    cfg = build_config(flags={"loss.temperature": 0.5})
    views = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = _Projector()
    net.fc.weight.register_hook(lambda grad: grad * float("nan"))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    metrics, finite, skipped = train.train_step(cfg, net, optimizer, scaler, views, 4,
                                                torch.device("cpu"), "fp32")
    assert not bool(finite) and not skipped  # (--nan-policy stop: the loop stops the run)
    assert all(torch.isnan(value) for value in metrics.values())


def test_a_step_under_a_gradient_scaler_updates_its_scale():
    """fp16's GradScaler: every step ends in its update (the scale grows after
    growth_interval finite steps), or an overflow would never lower it again."""
    cfg = build_config(flags={"loss.temperature": 0.5})
    views = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = _Projector()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=1)
    _, finite, skipped = train.train_step(cfg, net, optimizer, scaler, views, 4,
                                          torch.device("cpu"), "fp32")
    assert bool(finite) and not skipped
    assert scaler.get_scale() == 8.0


def _preempted_run(cfg, at_step=4):
    def preempt(step, stop):
        if step == at_step:
            stop.requested = "SIGTERM"

    assert train.pretrain(cfg, on_step=preempt)["steps"] == at_step


def test_resume_works_from_any_working_directory(tmp_path, image_folder, cache_dir,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = tiny_flags(image_folder, tmp_path / "run", cache_dir)
    flags.update({"data.path": "images", "out": "run", "data.cache_dir": "cache"})
    _preempted_run(build_config(flags=flags))
    saved = load_yaml(tmp_path / "run/config.yaml")
    assert (saved["data"]["path"], saved["out"]) == (str(image_folder), str(tmp_path / "run"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    summary = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)
    assert summary["steps"] == 6 and not list((tmp_path / "elsewhere").iterdir())
    # A run saved before paths were absolute says where to resume it from.
    last = tmp_path / "run/checkpoints/last.pt"
    old = load_checkpoint(last)
    old["config"]["data"]["path"] = "images"
    save_checkpoint(old, last.parent)
    with pytest.raises(SimCLRError, match="saved as the relative path 'images', not found "
                                          "from .*elsewhere; resume from the folder"):
        load_resume_config(tmp_path / "run", {})
    monkeypatch.chdir(tmp_path)
    assert load_resume_config("run", {}).data.path == str(image_folder)


def test_a_failed_start_leaves_no_run_directory(tmp_path, image_folder, cache_dir):
    def fails(needle, out, **extra):
        cfg = build_config(flags=tiny_flags(extra.pop("data", image_folder), out, cache_dir,
                                            **extra))
        with pytest.raises(SimCLRError, match=needle):
            train.pretrain(cfg)

    fails("data folder not found", tmp_path / "new/run", data=tmp_path / "missing")
    fails("larger than the data set", tmp_path / "new/run", batch_size=64)
    fails("--knn-train: folder not found", tmp_path / "new/run",
          knn_train=str(tmp_path / "nope"), knn_test=str(image_folder))
    flat = tmp_path / "flat"
    flat.mkdir()
    for png in sorted(image_folder.rglob("*.png"))[:4]:
        (flat / f"{png.parent.name}_{png.name}").write_bytes(png.read_bytes())
    fails("--knn-train .*flat: images have no class labels", tmp_path / "new/run",
          knn_train=str(flat), knn_test=str(image_folder))
    other = make_image_folder(tmp_path / "other", classes=3, per_class=2)
    fails("--knn-train and --knn-test have different classes", tmp_path / "new/run",
          knn_train=str(image_folder), knn_test=str(other))
    # met after the first epoch, blamed on the data folder
    broken = unreadable_folder(tmp_path / "broken", 1)
    fails(f"--knn-test: none of the 2 images in {broken} could be read", tmp_path / "new/run",
          knn_train=str(image_folder), knn_test=str(broken))
    unreadable_folder(broken, 39)  # over the 64 files of a batch size's check: read all
    fails(f"--knn-test: none of the 78 images in {broken} could be read", tmp_path / "new/run",
          knn_train=str(image_folder), knn_test=str(broken))
    # one class all unreadable: the monitor measured the others without a word
    half = tmp_path / "half"
    shutil.copytree(image_folder, half)
    for png in (half / "class_1").iterdir():
        png.write_text("garbage")
    fails(f"--knn-train {half}: no readable image in class folder\\(s\\) class_1",
          tmp_path / "new/run", knn_train=str(half), knn_test=str(image_folder))
    assert not (tmp_path / "new").exists()
    before = sorted(p.name for p in image_folder.iterdir())
    (tmp_path / "afile").write_text("a file")
    fails("afile is a file, not a folder", tmp_path / "afile" / "run")
    fails("lies inside the --data folder", image_folder)
    fails("lies inside the --data folder", image_folder / "runs" / "a")
    assert sorted(p.name for p in image_folder.iterdir()) == before  # no class "runs" added
    (tmp_path / "kept").mkdir()  # a folder that existed stays, untouched
    fails("data folder not found", tmp_path / "kept", data=tmp_path / "missing")
    assert (tmp_path / "kept").is_dir() and not list((tmp_path / "kept").iterdir())
    # An unreadable checkpoint is neither resumed nor written over by a new run.
    corrupt = tmp_path / "corrupt/checkpoints/last.pt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text("not a checkpoint")
    fails("already holds a run", tmp_path / "corrupt")
    with pytest.raises(SimCLRError, match="last.pt in .* is truncated or corrupt"):
        load_resume_config(tmp_path / "corrupt", {})
    assert corrupt.read_text() == "not a checkpoint"
    assert sorted(p.name for p in (tmp_path / "corrupt").rglob("*")) == ["checkpoints",
                                                                        "last.pt"]


def _params(state: dict, prefix: str) -> dict:
    """The learned tensors under ``prefix`` (BatchNorm statistics move in any forward)."""
    return {k: v for k, v in state.items() if k.startswith(prefix)
            and "running_" not in k and "num_batches" not in k}


def test_a_resumed_run_keeps_the_record_of_its_init_from(tmp_path, image_folder, cache_dir):
    """config.yaml is written anew at every start: a --resume lost which file and step
    --init-from started the run from (`simclr info` then named only the folder, which
    may have trained on since)."""
    from simclr.info import describe
    from simclr.info_text import render

    run(tmp_path, image_folder, cache_dir, "first", epochs=1)

    def stop(step, flag):
        if step in (1, 3):
            flag.requested = "SIGTERM"

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "second", cache_dir,
                                        init_from=str(tmp_path / "first")))
    assert train.pretrain(cfg, on_step=stop)["status"] == "preempted"
    started = f"pretrain checkpoint {tmp_path / 'first/checkpoints/last.pt'} (step 3)"
    # (its weights are in the run's checkpoints now: a resume does not read them again)
    shutil.rmtree(tmp_path / "first")
    for status in ("preempted", "finished"):  # (resumed twice: carried on each time)
        assert train.pretrain(load_resume_config(tmp_path / "second", {}), resume=True,
                              on_step=stop)["status"] == status
        config = load_yaml(tmp_path / "second/config.yaml")
        assert config["init_from_resolved"] == started and config["provenance"]["earlier"]
        assert f"  initial weights: {started}" in render(describe(tmp_path / "second"))


def test_init_from_a_run_starts_a_new_run_from_its_weights(tmp_path, image_folder, cache_dir,
                                                           capsys):
    run(tmp_path, image_folder, cache_dir, "first", epochs=1)
    source = load_checkpoint(tmp_path / "first/checkpoints/last.pt")["model"]
    # lr 1e-30: updates below a float32 ulp, so the run's own checkpoint shows the weights
    _, summary = run(tmp_path, image_folder, cache_dir, "second", epochs=1,
                     init_from=str(tmp_path / "first"), **{"optim.lr": 1e-30})
    assert summary["steps"] == 3  # a new schedule: not a resume
    saved = load_checkpoint(tmp_path / "second/checkpoints/last.pt")
    for prefix in ("encoder.", "head."):
        expected, got = _params(source, prefix), _params(saved["model"], prefix)
        assert expected and all(torch.equal(got[k], v) for k, v in expected.items()), prefix
    assert "encoder loaded, projection head loaded" in capsys.readouterr().out
    assert saved["config"]["init_from"] == str(tmp_path / "first")
    # Which file and step it started from is on record: the folder alone would not say
    # once "first" trains on (its config.yaml given as --config then started elsewhere)
    started = f"pretrain checkpoint {tmp_path / 'first/checkpoints/last.pt'} (step 3)"
    assert load_yaml(tmp_path / "second/config.yaml")["init_from_resolved"] == started
    start = json.loads((tmp_path / "second/metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["init_from_resolved"] == started
    from simclr.info import describe
    from simclr.info_text import render

    assert f"  initial weights: {started}" in render(describe(tmp_path / "second"))
    assert build_config(config_file=str(tmp_path / "second/config.yaml")).init_from == \
        str(tmp_path / "first")  # (a record, not a setting)
    # A head of another shape starts afresh; an encoder of another width is refused.
    run(tmp_path, image_folder, cache_dir, "third", epochs=1, init_from=str(tmp_path / "first"),
        **{"model.head_out_dim": 32})
    assert "projection head freshly initialised" in capsys.readouterr().out
    with pytest.raises(SimCLRError, match=r"--init-from: the pretrain checkpoint .* does not "
                                          r"fit this run's resnet18 width 0.25: \d+ tensors of "
                                          r"another shape"):
        run(tmp_path, image_folder, tmp_path / "fresh-cache", "fourth", epochs=1,
            init_from=str(tmp_path / "first"), **{"model.width": 0.25})
    assert not (tmp_path / "fresh-cache").exists()  # refused before any image is decoded


def test_init_from_torchvision_weights(tmp_path, image_folder, cache_dir, capsys):
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    flags = {"model.width": 1.0, "model.cifar_stem": False, "max_steps": 1,
             "optim.lr": 1e-30, "init_from": str(tmp_path / "resnet18.pth")}
    run(tmp_path, image_folder, cache_dir, "tv", **flags)
    saved = load_checkpoint(tmp_path / "tv/checkpoints/last.pt")["model"]
    assert torch.equal(saved["encoder.stem.0.weight"], resnet.conv1.weight)
    assert torch.equal(saved["encoder.layer3.0.shortcut.0.weight"],
                       resnet.layer3[0].downsample[0].weight)
    assert torch.equal(saved["encoder.layer4.1.bn2.weight"], resnet.layer4[1].bn2.weight)
    assert "projection head freshly initialised" in capsys.readouterr().out
    # A file this run cannot take: one line, before anything is decoded.
    with pytest.raises(SimCLRError, match="torchvision's layout .* does not fit this run's "
                                          "resnet18 width 0.125: .* 64x3x7x7 in the file"):
        run(tmp_path, image_folder, tmp_path / "fresh-cache", "narrow",
            **{**flags, "model.width": 0.125})
    # Wrapped (as converted official weights are saved): the same weights.
    torch.save({"state_dict": resnet.state_dict()}, tmp_path / "wrapped.pth")
    wrapped = {**flags, "init_from": str(tmp_path / "wrapped.pth")}
    run(tmp_path, image_folder, cache_dir, "wrapped", **wrapped)
    again = load_checkpoint(tmp_path / "wrapped/checkpoints/last.pt")["model"]
    assert torch.equal(again["encoder.stem.0.weight"], resnet.conv1.weight)
    with pytest.raises(SimCLRError, match="not found|does not exist|no such"):
        run(tmp_path, image_folder, tmp_path / "fresh-cache", "missing",
            **{**flags, "init_from": str(tmp_path / "nope.pth")})
    assert not (tmp_path / "fresh-cache").exists()


def _nan_at_step(monkeypatch, *bad: int) -> list[int]:
    """The losses of the ``bad`` steps (1-based, as computed: skipped ones count) are
    NaN; returns the list that grows by one at each loss computed."""
    real, calls = train.loss_and_metrics, []

    def poisoned(cfg, z_a, z_b):
        loss, metrics = real(cfg, z_a, z_b)
        calls.append(1)
        return (loss * float("nan") if len(calls) in bad else loss), metrics

    monkeypatch.setattr(train, "loss_and_metrics", poisoned)
    return calls


def test_a_skipped_step_leaves_the_clock_saves_on(tmp_path, image_folder, cache_dir,
                                                  monkeypatch):
    """--nan-policy skip: a step left out changes no weight, yet it stopped every
    --checkpoint-minutes save for the rest of the session (the guard against saving a
    diverged model counted any non-finite step, skipped or not)."""
    _nan_at_step(monkeypatch, 2)
    _, summary = run(tmp_path, image_folder, cache_dir, "clock", nan_policy="skip",
                     checkpoint_every=0, checkpoint_minutes=1e-9, keep_checkpoints=100)
    assert summary["status"] == "finished" and summary["bad_steps"] == 1
    periodic = sorted(p.name for p in (tmp_path / "clock/checkpoints").glob("ckpt-*.pt"))
    assert periodic == [f"ckpt-0000000{s}.pt" for s in range(1, 6)]  # 6: last.pt


def test_a_knn_folder_failing_after_a_skipped_step_still_keeps_the_steps(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """--nan-policy skip: after a skipped step, a kNN folder failing at its first read
    saved nothing (as if the model had diverged) and said no way to go on."""
    _nan_at_step(monkeypatch, 2)

    def failing(cfg, *args):
        raise SimCLRError(f"{cfg.knn_train}/class_0/003.png: unreadable")

    monkeypatch.setattr(monitor, "knn_monitor", failing)
    with pytest.raises(SimCLRError, match=r"the run is saved at step 3: `simclr pretrain "
                       r"--resume .*` continues it"):
        run(tmp_path, image_folder, cache_dir, "run", nan_policy="skip", checkpoint_every=0,
            knn_train=str(image_folder), knn_test=str(image_folder))
    assert load_checkpoint(tmp_path / "run/checkpoints/ckpt-00000003.pt")["step"] == 3


def test_checkpoints_also_come_by_the_clock(tmp_path, image_folder, cache_dir):
    """--checkpoint-minutes: a run whose steps are slow still leaves checkpoints (here
    every step is 'late': a periodic file at each step, the last two kept)."""
    run(tmp_path, image_folder, cache_dir, "clock", epochs=1, checkpoint_every=0,
        checkpoint_minutes=1e-9)
    periodic = sorted(p.name for p in (tmp_path / "clock/checkpoints").glob("ckpt-*.pt"))
    assert periodic == ["ckpt-00000001.pt", "ckpt-00000002.pt"]  # the last step: last.pt
    run(tmp_path, image_folder, cache_dir, "steps", epochs=1, checkpoint_every=0,
        checkpoint_minutes=0)
    assert not list((tmp_path / "steps/checkpoints").glob("ckpt-*.pt"))


def test_a_run_from_before_images_beside_class_folders_counted_resumes_on_its_own(
        tmp_path, cache_dir):
    """Checkpoints without "all_images" were planned without the loose images: their
    resume keeps to the class folders (and a new run takes every image)."""
    import shutil

    from simclr.checkpoint import save_checkpoint as write

    data = make_image_folder(tmp_path / "data")  # 2 x 12 in class folders
    shutil.copy(data / "class_0" / "000.png", data / "loose.png")
    run(tmp_path, data, cache_dir, "new", epochs=1)
    assert load_checkpoint(tmp_path / "new/checkpoints/last.pt")["num_images"] == 25
    old = load_checkpoint(tmp_path / "new/checkpoints/last.pt")
    for key in ("all_images", "file", "num_files"):  # ("file": added by loading)
        old.pop(key)
    old["num_images"] = 24  # as a run of 24 images wrote it
    write(old, tmp_path / "new/checkpoints", "last.pt")
    for periodic in (tmp_path / "new/checkpoints").glob("ckpt-*.pt"):
        periodic.unlink()
    (tmp_path / "new/summary.json").unlink()  # ended before its summary: the loop runs
    resumed = train.pretrain(load_resume_config(tmp_path / "new", {}), resume=True)
    assert resumed["num_images"] == 24
    assert load_checkpoint(tmp_path / "new/checkpoints/last.pt")["all_images"] is False  # (kept)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_runs_checkpoint_holds_cpu_tensors(tmp_path):
    """A GPU run's checkpoint loads on a machine without one, even with torch.load alone."""
    model = torch.nn.Linear(3, 2).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3, device="cuda")).sum().backward()
    opt.step()
    path = save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict()},
                           tmp_path, "last.pt")
    blob = torch.load(path, weights_only=True)
    tensors = [*blob["model"].values(),
               *(t for s in blob["optimizer"]["state"].values() for t in s.values()
                 if isinstance(t, torch.Tensor))]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_pretrain_checks_its_config_and_leaves_torchs_settings_as_they_were(
        tmp_path, image_folder, cache_dir):
    """A config edited after build_config is checked again (a negative temperature
    trained to 'finished'); the run's threads and deterministic kernels end with it."""
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "bad", cache_dir))
    cfg.loss.temperature = -1.0
    with pytest.raises(SimCLRError, match="--temperature must be positive, got -1"):
        train.pretrain(cfg)
    cfg.loss.temperature = 0.5  # and to a new run's scale (4-px views trained 'finished')
    cfg.augment.size = 4
    with pytest.raises(SimCLRError, match="--image-size must be at least 8 pixels, got 4"):
        train.pretrain(cfg)
    assert not (tmp_path / "bad").exists()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(tmp_path, image_folder, cache_dir, "det", epochs=1, threads=1, deterministic=True)
        assert torch.get_num_threads() == 2
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before)


def test_a_failure_in_a_loader_worker_is_one_line_in_the_summary(tmp_path, cache_dir):
    """Every image unreadable, found by a decoding worker: the CLI printed one line, but
    summary.json (which `simclr info` shows) held the worker's whole traceback."""
    bad = unreadable_folder(tmp_path / "bad", 8)
    cfg = build_config(flags=tiny_flags(bad, tmp_path / "run", cache_dir,
                                        **{"data.cache": "off", "data.workers": 1}))
    with pytest.raises(SimCLRError) as info:
        train.pretrain(cfg)
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["status"] == "failed" and "\n" not in summary["reason"]
    assert "unreadable" in summary["reason"] and "Traceback" not in summary["reason"]
    assert summary["reason"] in str(info.value)


def _after_prefetch_join(monkeypatch, then) -> None:
    """The cached loader's prefetch thread calls ``then(thread)`` once it is joined."""
    import threading
    from types import SimpleNamespace

    from simclr import loader

    class Joined(threading.Thread):
        def join(self, timeout=None):
            super().join(timeout)
            then(self)

    monkeypatch.setattr(loader, "threading", SimpleNamespace(Thread=Joined,
                                                             Event=threading.Event))


def test_a_second_ctrl_c_while_the_prefetch_stops_is_raised_not_ignored(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """Ctrl-C once (a stop after the step), then again while the cached loader's
    prefetch thread is joined: that second one was raised in a generator closed by the
    garbage collector, printed as 'Exception ignored' with a traceback and lost (the run
    went on to save and exit 75). It is the "now" it means."""
    def pressed(_thread):
        raise KeyboardInterrupt

    _after_prefetch_join(monkeypatch, pressed)
    unraisable = []
    monkeypatch.setattr("sys.unraisablehook", unraisable.append)

    def first_ctrl_c(step, stop):
        if step == 2:
            stop.requested = "SIGINT"

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                        **{"data.cache": "on"}))
    with pytest.raises(KeyboardInterrupt):
        train.pretrain(cfg, on_step=first_ctrl_c)
    assert unraisable == []


def test_a_run_ending_in_an_error_stops_its_loader_at_once(tmp_path, image_folder, cache_dir,
                                                           monkeypatch):
    """A divergence (or any error) ends the run with its batch generator closed, the
    prefetch thread joined, not left to the traceback's collection."""
    import simclr.train as t

    joined = []
    _after_prefetch_join(monkeypatch, lambda thread: joined.append(thread.name))
    real = t.loss_and_metrics

    def diverged(cfg, z_a, z_b):
        loss, metrics = real(cfg, z_a, z_b)
        return loss * float("nan"), metrics

    monkeypatch.setattr(t, "loss_and_metrics", diverged)
    with pytest.raises(DivergedError) as info:
        run(tmp_path, image_folder, cache_dir, "nan", **{"data.cache": "on"})
    assert joined == ["simclr-prefetch"], info.value


def test_a_run_on_the_digits_by_name_resumes(tmp_path, cache_dir, monkeypatch):
    # `--data digits` names scikit-learn's digits, not a folder: its resume neither asks
    # for a folder 'digits' from where it started nor for a new place of it.
    monkeypatch.chdir(tmp_path)
    # (6 steps, not 2 epochs of 1797 digits: the resume, not the training, is the point)
    flags = tiny_flags(tmp_path / "run", tmp_path / "run", cache_dir, batch_size=16,
                       max_steps=6)
    flags["data.path"] = "digits"
    del flags["data.cache_dir"]  # (arrays in memory: no folder to cache)
    _preempted_run(build_config(flags=flags))
    cfg = load_resume_config(tmp_path / "run")
    assert cfg.data.path == "digits"
    assert train.pretrain(cfg, resume=True)["steps"] == 6


def test_a_window_says_how_many_steps_it_averaged_across_a_new_log_every(
        tmp_path, image_folder, cache_dir):
    """--log-every 9, stopped at step 6 (a window of 6 steps open), resumed with
    --log-every 3: the line at step 9 averages the 9 steps of the window carried on,
    the next 3; each line says so (nothing said the first covered 9 steps, not 3)."""
    flags = tiny_flags(image_folder, tmp_path / "run", cache_dir, epochs=4, log_every=9,
                       checkpoint_every=0)

    def preempt(step, stop):
        if step == 6:
            stop.requested = "SIGTERM"

    assert train.pretrain(build_config(flags=flags), on_step=preempt)["status"] == "preempted"
    cfg = load_resume_config(tmp_path / "run", {})
    cfg.log_every = 3  # (RESUME_SETTINGS: a change a resume may make)
    assert train.pretrain(cfg, resume=True)["steps"] == 12
    assert [(x["step"], x["window_steps"]) for x in _logged_windows(tmp_path / "run")] == [
        (9, 9), (12, 3)]


def test_the_cosine_of_a_run_ends_at_its_final_lr(tmp_path, image_folder, cache_dir):
    """--final-lr reaches the loop (every other run decays to 0): the last of 6 steps
    (0-based 5, warm-up 1 step: t = 4/5) has lr final + (peak - final)(1 + cos(4 pi/5))/2,
    peak = 0.5 x 8/256 (the paper's linear scaling of tiny_flags' lr)."""
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "r", cache_dir,
                                        **{"optim.final_lr": 0.01}))
    train.pretrain(cfg)
    lines = [json.loads(x) for x in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]
    peak, final = 0.5 * 8 / 256, 0.01
    assert steps[-1]["step"] == 6
    assert steps[-1]["lr"] == pytest.approx(
        final + (peak - final) * (1 + np.cos(np.pi * 4 / 5)) / 2, rel=1e-6)


def test_an_encoder_drawing_random_numbers_trains_alike_cached_or_not(tmp_path, image_folder,
                                                                       cache_dir):
    """EfficientNet's stochastic depth draws from torch's global generator, from which a
    DataLoader drew its workers' seed at each epoch: a run without the cache (one loader
    draw more) trained other weights than the same run with it."""
    weights = []
    for name, cache in (("cached", "on"), ("uncached", "off")):
        run(tmp_path, image_folder, cache_dir, name, **{
            "model.arch": "efficientnet_b0", "model.width": 1.0, "epochs": 1,
            "checkpoint_every": 0, "data.cache": cache})
        weights.append(load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_progress_bar_is_closed_when_a_run_ends_on_an_error(tmp_path, image_folder,
                                                                cache_dir, monkeypatch):
    """A run that diverged left its bar open: the error was printed on the bar's line and
    the bar redrawn after it (at 33%, as if the run went on) when collected."""
    import simclr.train as t

    closed = []

    class Watched(t.Progress):
        def close(self) -> None:
            closed.append(self)
            super().close()

    real = t.loss_and_metrics

    def diverged(cfg, z_a, z_b):
        loss, metrics = real(cfg, z_a, z_b)
        return loss * float("nan"), metrics

    monkeypatch.setattr(t, "Progress", Watched)
    monkeypatch.setattr(t, "loss_and_metrics", diverged)
    with pytest.raises(DivergedError):
        run(tmp_path, image_folder, cache_dir, "nan")
    assert len(closed) == 1


def test_a_compiler_torch_compile_cannot_find_is_one_line_and_the_run_goes_on_without_it(
        tmp_path, image_folder, cache_dir, monkeypatch, capsys):
    """--compile without a C++ compiler (CPU) or Triton (GPU): a 100-line traceback at
    the first step, no summary; and --resume refused --no-compile, so the run could not
    go on there."""
    from torch._dynamo.exc import BackendCompilerFailed

    from simclr import runtime
    from simclr.cli import main

    def failing(module):
        def forward(*args):
            raise BackendCompilerFailed(forward, RuntimeError("InvalidCxxCompiler: No working "
                                                              "C++ compiler found"), None)
        return forward

    monkeypatch.setattr(train, "compiled", failing)
    run_dir = tmp_path / "run"
    argv = ["pretrain", "--data", str(image_folder), "--out", str(run_dir), "--cache-dir",
            str(cache_dir), "--image-size", "16", "--width", "0.125", "--batch-size", "8",
            "--epochs", "2", "--workers", "0", "--precision", "fp32", "--device", "cpu",
            "--no-progress", "--checkpoint-every", "2", "--compile"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "simclr pretrain: error: --compile: torch.compile could not build the model "
        "(RuntimeError: InvalidCxxCompiler: No working C++ compiler found); it needs a C++ "
        "compiler on a CPU, Triton on a GPU: install it, or go on without --compile "
        "(--resume RUN --no-compile)"), err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"

    compiled_once = []  # a run that compiled, stopped: it goes on without --compile
    monkeypatch.setattr(train, "compiled", lambda module: compiled_once.append(1) or module)
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "stopped", cache_dir,
                                        compile=True))
    _preempted_run(cfg)
    assert main(["pretrain", "--resume", str(tmp_path / "stopped"), "--no-compile"]) == 0
    assert compiled_once == [1]  # (the first session's alone)
    assert load_yaml(tmp_path / "stopped" / "config.yaml")["compile"] is False

    resets = []  # each compiled run forgets what an earlier one compiled (a sweep's cells)
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(torch, "compile", lambda module: module)
    runtime.compiled(torch.nn.Linear(1, 1))
    runtime.compiled(torch.nn.Linear(1, 1))
    assert resets == [1, 1]


def test_compiling_is_not_spent_from_the_time_budget(tmp_path, image_folder, cache_dir,
                                                     monkeypatch):
    """A --compile run's first step of a session compiles (a minute on a CPU): a 30-s
    budget was spent on it, one step at lr 0 trained and 'finished'; its first window's
    views/s counted the compiling. Here torch.compile is an identity and the first step
    of each session sleeps 4 s: the budget of 3 s counts training seconds alone, as do
    the logged views/s, while ``elapsed`` stays wall time; a resumed session compiles
    anew, and is credited anew; one resumed without --compile measures its first window
    over training seconds too. (A budget of 1 s was flaky on a loaded machine: the
    seconds before the first step, the loader starting, are training seconds.)"""
    import time

    monkeypatch.setattr(train.torch, "compile", lambda module: module)
    step = train.train_step
    calls = []

    def first_slow(cfg, *args, **kwargs):
        calls.append(1)
        if cfg.compile and len(calls) == 1:
            time.sleep(4.0)
        return step(cfg, *args, **kwargs)

    monkeypatch.setattr(train, "train_step", first_slow)
    stopped = []

    def preempt(at: int, stop) -> None:  # (at step 2, then at 4: three sessions)
        if at in (2, 4) and at not in stopped:
            stopped.append(at)
            stop.requested = "SIGTERM"

    flags = dict(epochs=1000, time_budget="3s", checkpoint_every=0, log_every=1)
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "c", cache_dir,
                                        compile=True, **flags))
    assert train.pretrain(cfg, on_step=preempt)["status"] == "preempted"
    calls.clear()  # the resumed session compiles (sleeps) again
    resumed = train.pretrain(load_resume_config(tmp_path / "c", {}), resume=True,
                             on_step=preempt)
    assert resumed["status"] == "preempted"
    # the third session, without --compile, sleeps not: its first window (step 5, opened
    # at the checkpoint) is over training seconds, not wall time less none of the compiling
    summary = train.pretrain(load_resume_config(tmp_path / "c", {"compile": False}),
                             resume=True)
    assert summary["status"] == "finished" and summary["steps"] > 5
    lines = [json.loads(x) for x in (tmp_path / "c/metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "loss" in x]
    # the compiled sessions' (4 s each), still said by the third: elapsed holds them
    assert summary["compile_s"] >= 8.0 and logged[-1]["compile_s"] == summary["compile_s"]
    assert logged[-1]["elapsed"] == pytest.approx(summary["elapsed_s"])  # wall time
    # of every session: it goes on from the checkpoint's at a resume, never back
    assert all(a["elapsed"] < b["elapsed"] for a, b in zip(logged, logged[1:], strict=False))
    trained = [x["elapsed"] - x["compile_s"] for x in logged]
    # ends at the deadline of training seconds, past it by at most the step it was in
    slowest = max(b - a for a, b in zip(trained, trained[1:], strict=False))
    assert trained[-1] <= 3.0 + slowest + 0.05
    # views/s over training seconds; the compiling step's window (each compiled
    # session's first, logged alone) has none to measure: null
    assert [x["step"] for x in logged if x["views_per_s"] is None] == [1, 3]
    for i in range(1, len(logged)):
        if logged[i]["views_per_s"] is not None:
            seconds = trained[i] - trained[i - 1]
            assert logged[i]["views_per_s"] == pytest.approx(16 / seconds, rel=1e-3)


def test_init_from_an_encoder_of_other_projection_shortcuts_names_the_flag(
        tmp_path, image_folder, cache_dir):
    """A cifar10 preset run of an earlier simclr has no projection shortcuts in the blocks
    that keep their width, where the preset's runs have them now: --init-from named a
    missing tensor alone, not the flag that fits the file."""
    run(tmp_path, image_folder, cache_dir, "plain", max_steps=1,
        **{"model.projection_shortcuts": False})
    for given, flag in ((True, "--no-projection-shortcuts"), (False, None)):
        flags = {"model.projection_shortcuts": given, "init_from": str(tmp_path / "plain"),
                 "max_steps": 1}
        if flag is None:  # (the same shortcuts: it fits)
            run(tmp_path, image_folder, cache_dir, "same", **flags)
            continue
        with pytest.raises(SimCLRError, match=r"missing \(first encoder\.layer1\.0\.shortcut"
                                              rf".*built without them: give {flag}\)$"):
            run(tmp_path, image_folder, cache_dir, "projected", **flags)


@pytest.mark.parametrize("where", ["start_record", "save_yaml"])
def test_a_ctrl_c_before_a_new_run_writes_its_config_leaves_no_folder(
        where, tmp_path, image_folder, cache_dir, monkeypatch, capsys):
    """A Ctrl-C between the log's opening and config.yaml left the new run's folder
    holding its lock and an empty metrics.jsonl (and tb/): a folder `simclr info` calls
    no run, which --resume cannot continue."""
    from simclr.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, where, interrupted)
    assert main(["pretrain", "--data", str(image_folder), "--out", str(tmp_path / "new" / "run"),
                 "--arch", "resnet18", "--width", "0.125", "--image-size", "16",
                 "--batch-size", "8", "--max-steps", "1", "--workers", "0",
                 "--cache-dir", cache_dir, "--no-progress"]) == 130
    assert not (tmp_path / "new").exists(), sorted(p.name for p in (tmp_path / "new").rglob("*"))
