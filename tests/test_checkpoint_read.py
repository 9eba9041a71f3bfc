"""Tests for simclr.checkpoint_read: safe loading (pickled payloads refused, truncated,
foreign and damaged files named), the checks of what was read, the file a folder names,
and loading a checkpoint's state into a network or a run."""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
import torchvision

from simclr import checkpoint as ck
from simclr import checkpoint_read as rd
from simclr.checkpoint import periodic_name, save_checkpoint
from simclr.checkpoint_read import checkpoint_file, load_checkpoint
from simclr.errors import SimCLRError
from simclr.resume_target import resume_checkpoint
from tests.test_checkpoint import _entry_start, _run, _state


class Payload:
    """Unpickling this calls open(marker, 'w'): a file appears if the payload runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_folder_whose_last_checkpoint_is_broken_says_which_file_it_reads(tmp_path, caplog,
                                                                          monkeypatch):
    from simclr.checkpoint_read import checkpoint_file

    good = save_checkpoint(_state(200), tmp_path, periodic_name(200))
    assert checkpoint_file(tmp_path) == good and not caplog.records  # nothing to say
    (tmp_path / "last.pt").write_bytes(good.read_bytes()[:-50])
    with caplog.at_level("WARNING"):
        assert checkpoint_file(tmp_path) == good
    assert f"last.pt is truncated or corrupt; using {good.name}" in caplog.text
    caplog.clear()  # the other processes of a run (--processes 2 said it twice) read it
    monkeypatch.setenv("RANK", "1")  # quietly
    with caplog.at_level("WARNING"):
        assert checkpoint_file(tmp_path) == good
    assert not caplog.records


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    control = tmp_path / "control-marker"
    marker = tmp_path / "marker"
    # Control: the planted payload really runs code when loaded unsafely.
    torch.save({"x": Payload(str(control))}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()
    evil = tmp_path / "evil.pt"
    state = _state(5)
    state["metrics"] = {"loss": Payload(str(marker))}
    torch.save(state, evil)
    with pytest.raises(SimCLRError, match="refusing to load .*evil.pt: it contains pickled "
                                          r"Python objects \((io|builtins)\.open\)"):
        load_checkpoint(evil)
    assert not marker.exists()


class ShellPayload:
    """Unpickling this runs a shell command that creates the marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_a_shell_command_payload_is_named(tmp_path):
    """torch words this refusal "unsupported GLOBAL posix.system whose module ...": the
    culprit is still named."""
    marker = tmp_path / "marker"
    torch.save({"format": "simclr-checkpoint", "p": ShellPayload(str(marker))},
               tmp_path / "shell.pt")
    with pytest.raises(SimCLRError, match=r"pickled Python objects \((posix|nt|os)\.system\)"):
        load_checkpoint(tmp_path / "shell.pt")
    assert not marker.exists()


def test_legacy_format_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "legacy.pt"
    torch.save({"format": "simclr-checkpoint", "p": Payload(str(marker))}, evil,
               _use_new_zipfile_serialization=False)
    with pytest.raises(SimCLRError, match="pickled Python objects"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused(tmp_path):
    good = save_checkpoint(_state(3), tmp_path)
    data = good.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 20):
        bad = tmp_path / f"cut-{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(SimCLRError, match=f"cannot read checkpoint {bad}: truncated") as e:
            load_checkpoint(bad)
        assert "weights_only" not in str(e.value) and len(str(e.value).splitlines()) == 1
        assert str(e.value).endswith(("(the file ends early)",
                                      "(not a PyTorch checkpoint archive)"))


def test_garbage_and_missing_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all" * 20)
    with pytest.raises(SimCLRError, match=f"cannot read checkpoint {junk}.*not a PyTorch"):
        load_checkpoint(junk)
    with pytest.raises(SimCLRError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(SimCLRError, match=f"^no complete checkpoint in {tmp_path}: junk.pt is "
                                          "truncated or corrupt$"):
        load_checkpoint(tmp_path)
    images = tmp_path / "images"  # an image folder passed as --checkpoint by mistake
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    with pytest.raises(SimCLRError, match=f"^{images} holds no checkpoint \\(no .pt, "
                                          ".safetensors, .pth, .bin, .ckpt file\\); pass a run "
                                          "folder or a checkpoint file$"):
        load_checkpoint(images)
    # a folder of torchvision's weights file alone (resnet50-0676ba61.pth): that file
    # ("holds no checkpoint" before, while the file itself read)
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), downloaded / "resnet18-f37072fd.pth")
    assert checkpoint_file(downloaded) == downloaded / "resnet18-f37072fd.pth"
    assert load_checkpoint(downloaded)["kind"] == "encoder"


def test_foreign_torch_file_is_refused(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2)}, other)  # e.g. a torchvision state_dict
    with pytest.raises(SimCLRError, match="holds a state dict .* but not a ResNet-18/34/50/101/"
                                          "152 in torchvision's layout.* --init-from"):
        load_checkpoint(other)
    torch.save({"weights": [0, 1], "epoch": 3}, other)
    with pytest.raises(SimCLRError, match='not a simclr checkpoint .*"format"'):
        load_checkpoint(other)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "simclr-checkpoint", "version": 99}, newer)
    with pytest.raises(SimCLRError, match="newer simclr"):
        load_checkpoint(newer)


def test_a_checkpoint_spelled_from_the_home_folder_is_found(tmp_path, monkeypatch):
    """--checkpoint ~/run (quoted, or after = where no shell expands it) and the Python
    API's load_encoder('~/run') looked for a folder named '~': 'checkpoint not found'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    last = save_checkpoint(_state(5), tmp_path / "run" / "checkpoints")
    for spelled in ("~/run", "~/run/checkpoints", "~/run/checkpoints/last.pt"):
        assert checkpoint_file(spelled) == last
    assert load_checkpoint("~/run")["step"] == 5


def test_a_flipped_byte_in_the_pickle_is_named_by_its_checksum(tmp_path):
    """A byte flipped in data.pkl made torch.load fail with a codec's words ('utf-8'
    codec can't decode byte 0x88); the checksum names the damaged entry, as it does a
    tensor's."""
    last = _run(tmp_path / "run", step=6)
    raw = bytearray(last.read_bytes())
    raw[_entry_start(last, "data.pkl") + 2] ^= 0xFF
    last.write_bytes(bytes(raw))
    with pytest.raises(SimCLRError, match=r"^cannot read checkpoint .*last.pt: corrupt \(its "
                                          r"entry \S+/data.pkl fails its checksum"):
        load_checkpoint(last)


def test_a_flipped_byte_in_a_tensor_is_found_by_its_checksum(tmp_path, caplog):
    """torch.load checks no CRC: a byte flipped in a weight's data loaded silently as a
    wrong weight (the resumed run diverged). The archive's CRC-32 now tells, and a run
    resumes from its intact earlier checkpoint instead."""
    periodic = _run(tmp_path / "run", name=periodic_name(4), step=4)
    last = _run(tmp_path / "run", step=6)
    raw = bytearray(last.read_bytes())
    raw[_entry_start(last, "data/0") + 1] ^= 0x40
    last.write_bytes(bytes(raw))
    assert ck.is_complete(last)
    assert torch.load(last, weights_only=True)["step"] == 6  # (torch alone sees nothing)
    with pytest.raises(SimCLRError, match=r"^cannot read checkpoint .*last.pt: corrupt \(its "
                                          r"entry \S+/data/0 fails its checksum"):
        load_checkpoint(last)
    with caplog.at_level("WARNING"):
        _run_dir, path, ckpt = resume_checkpoint(tmp_path / "run")
    assert path == periodic and ckpt["step"] == 4
    assert load_checkpoint(last, mmap=True)["step"] == 6  # (mapped: not read, not judged)


def test_an_archive_written_without_checksums_still_loads(tmp_path):
    torch.serialization.set_crc32_options(False)
    try:
        path = _run(tmp_path / "run", step=3)
    finally:
        torch.serialization.set_crc32_options(True)
    assert load_checkpoint(path)["step"] == 3


@pytest.mark.parametrize("drop", ["model", "config"])
def test_a_checkpoint_without_its_weights_or_config_is_one_line(tmp_path, drop):
    state = {k: v for k, v in _state(3).items() if k != drop}
    torch.save(state, tmp_path / "part.pt")  # e.g. edited by hand and re-saved
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / "part.pt")
    assert str(info.value) == (f'{tmp_path / "part.pt"} is not a complete simclr checkpoint: '
                               f'it has no "{drop}" entry')


@pytest.mark.parametrize(("entry", "what"), [("config", "settings"), ("model", "weights")])
def test_a_config_or_weights_entry_that_is_no_mapping_is_called_damaged_not_missing(
        tmp_path, entry, what):
    torch.save({**_state(3), entry: "resnet18"}, tmp_path / "odd.pt")
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / "odd.pt")
    assert str(info.value) == (f'{tmp_path / "odd.pt"} is damaged: its "{entry}" entry is '
                               f"a str, not a mapping of {what}")


def test_a_checkpoint_of_an_unknown_kind_is_refused_naming_the_known_ones(tmp_path):
    for kind in (*ck.KINDS, None):  # (None: written before checkpoints had a kind)
        torch.save({**_state(3), "kind": kind}, tmp_path / "known.pt")
        assert load_checkpoint(tmp_path / "known.pt")["kind"] == kind
    for kind in ("weird", 7):
        torch.save({**_state(3), "kind": kind}, tmp_path / "weird.pt")
        with pytest.raises(SimCLRError) as info:
            load_checkpoint(tmp_path / "weird.pt")
        assert str(info.value).startswith(
            f"{tmp_path / 'weird.pt'} is a checkpoint of unknown kind {str(kind)!r} (simclr "
            "writes pretrain, supervised, linear, linear-partial, finetune, encoder)")


@pytest.mark.parametrize(("name", "content", "what"), [
    ("config.yaml", b"model:\n  arch: resnet18\n", "a YAML file"),
    ("summary.json", b'{"top1": 0.5}\n', "a JSON file"),
    ("predictions.csv", b"path,class\n", "a CSV file"),
    ("labeled_subset.txt", b"a/1.png\n", "a text file"),
    ("README.md", b"# a run\n", "a Markdown file"),
    ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "an image"),
])
def test_another_file_given_as_a_checkpoint_is_named_for_what_it_is(tmp_path, name, content,
                                                                    what):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / name)
    assert str(info.value) == (f"{tmp_path / name} is {what}, not a checkpoint (give the run "
                               "folder, or the .pt file in it)")


def test_an_embed_archive_given_as_a_checkpoint_is_named_for_what_it_is(tmp_path):
    import numpy as np

    np.savez(tmp_path / "features.npz", features=np.eye(3), paths=np.array(["a", "b", "c"]))
    with pytest.raises(SimCLRError, match=r"features.npz is a NumPy archive, not a checkpoint"):
        load_checkpoint(tmp_path / "features.npz")


def test_a_named_pipe_or_a_link_loop_given_as_a_checkpoint_says_so(tmp_path):
    os.mkfifo(tmp_path / "pipe.pt")
    os.symlink(tmp_path / "loop.pt", tmp_path / "loop.pt")
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / "pipe.pt")
    assert str(info.value) == (f"checkpoint {tmp_path / 'pipe.pt'}: not a regular file (a "
                               "named pipe, socket or device)")
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / "loop.pt")
    assert str(info.value) == f"checkpoint {tmp_path / 'loop.pt'}: a symbolic link loop"


def test_a_plain_pickle_is_one_line_without_torch_warnings(tmp_path, recwarn):
    path = tmp_path / "p.pt"
    with open(path, "wb") as f:
        pickle.dump({"a": 1}, f)  # protocol 4: torch.load warns about it
    with pytest.raises(SimCLRError, match="cannot read checkpoint .*p.pt: truncated, corrupt"):
        load_checkpoint(path)
    assert not [str(w.message) for w in recwarn]


def test_a_checkpoint_without_read_permission_is_not_called_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    torch.save({"step": 1}, path)

    def refused(*args, **kwargs):  # as torch.load meets a file without read permission
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", refused)
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"cannot read checkpoint {path}: permission denied"


@pytest.mark.parametrize(("model", "problem"), [
    ({"arch": "vgg16"}, "model.arch: unknown architecture 'vgg16' (simclr's resnet18, "),
    ({"width": -1.0}, "model.width must be positive, got -1.0"),
    ({"depth": 3}, "unknown setting 'model.depth'"),
])
def test_an_invalid_stored_config_names_the_checkpoint_not_a_flag(tmp_path, model, problem):
    state = _state(1)
    state["config"]["model"].update(model)
    path = save_checkpoint(state, tmp_path)
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(path)
    prefix = f"checkpoint {path}: its config is invalid: "
    assert str(info.value).startswith(prefix + problem)
    assert "--" not in str(info.value)[len(prefix):]  # not worded as a flag the user gave


def test_damaged_entries_are_one_line_naming_the_file(tmp_path):
    from simclr.checkpoint_read import readable_state

    path = save_checkpoint(_state(1), tmp_path)
    data = torch.load(path, weights_only=True)
    data["version"] = "abc"
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(SimCLRError, match=r"edited.pt is damaged: its version is 'abc'"):
        load_checkpoint(tmp_path / "edited.pt")
    ckpt = load_checkpoint(path)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(SimCLRError, match=r"last.pt: its optimizer state does not fit this "
                                          r"run \(damaged or edited\? .*parameter group"):
        with readable_state(ckpt, "optimizer state"):
            optimizer.load_state_dict({"state": {}, "param_groups": []})


def test_a_scaler_saved_off_resumes_where_fp16_now_needs_it():
    """A run saved in bf16 or fp32 holds the disabled scaler's {}, which an enabled
    GradScaler refuses; resumed in fp16 (a GPU without bf16) it starts at its defaults."""
    from simclr.checkpoint_read import load_scaler

    saved_off = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    assert saved_off == {}
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with pytest.raises(RuntimeError):
        scaler.load_state_dict(saved_off)
    load_scaler(scaler, saved_off)
    assert scaler.get_scale() == 1024.0
    load_scaler(scaler, torch.amp.GradScaler("cpu", init_scale=8.0).state_dict())
    assert scaler.get_scale() == 8.0


def test_a_checkpoint_of_a_newer_format_is_refused_naming_the_versions(tmp_path):
    path = save_checkpoint({**_state(3), "version": 2}, tmp_path)
    assert torch.load(path, weights_only=True)["version"] == 2  # (the state's own wins)
    with pytest.raises(SimCLRError, match=r"written by a newer simclr \(checkpoint version "
                                          r"2 > 1\); upgrade to load it$"):
        load_checkpoint(path)


def test_an_empty_tensor_does_not_hide_a_flipped_byte_in_another(tmp_path):
    """An empty tensor's entry holds no bytes (its CRC-32 is 0, as in an archive written
    without checksums): the other entries are still checked."""
    import zipfile

    path = save_checkpoint({**_state(3), "model": {"w": torch.arange(64.0),
                                                   "none": torch.zeros(0)}}, tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert any(i.CRC == 0 for i in archive.infolist())  # the premise
    raw = bytearray(path.read_bytes())
    raw[_entry_start(path, "data/0") + 5] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(SimCLRError, match=r"corrupt \(its entry \S+/data/0 fails its checksum"):
        load_checkpoint(path)


def _pruned_once_at(when: str, folder, monkeypatch) -> None:
    """A training still saving in ``folder`` (--keep-checkpoints 1): its next periodic
    checkpoint written and the one a reader picked pruned, once, between the pick and
    ``when``: the file's check, or its read."""
    pruned = []

    def prune(picked) -> None:
        if not pruned and picked.name == periodic_name(1):
            pruned.append(picked)
            save_checkpoint(_state(2), folder, periodic_name(2), keep_last=1)
            assert not picked.exists()

    if when == "check":
        real_latest = ck.latest_checkpoint

        def picked_then_pruned(run_dir):
            found = real_latest(run_dir)
            if found is not None:
                prune(found)
            return found

        monkeypatch.setattr(rd, "latest_checkpoint", picked_then_pruned)
    else:
        real_load = torch.load

        def pruned_then_read(f, *args, **kwargs):
            if not kwargs.get("mmap"):  # (the read, not latest_checkpoint's step lookup)
                prune(Path(f))
            return real_load(f, *args, **kwargs)

        monkeypatch.setattr(ck.torch, "load", pruned_then_read)


@pytest.mark.parametrize("when", ["check", "read"])
def test_a_checkpoint_pruned_after_it_was_picked_from_a_run_folder_is_picked_again(
        tmp_path, monkeypatch, when):
    """Evaluating a run folder while its training prunes old checkpoints: the file picked
    was deleted before it was read, "checkpoint not found" (3 loads in 914). The folder's
    latest checkpoint is picked again and read, once."""
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(_state(1), folder, periodic_name(1), keep_last=1)
    _pruned_once_at(when, folder, monkeypatch)
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded["step"] == 2 and loaded["file"] == str(folder / periodic_name(2))


def test_a_checkpoint_file_named_and_removed_before_its_read_is_not_replaced(tmp_path,
                                                                           monkeypatch):
    """A file the user named is read or refused, never exchanged for another."""
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(_state(1), folder, periodic_name(1), keep_last=1)
    _pruned_once_at("read", folder, monkeypatch)
    with pytest.raises(SimCLRError, match=f"^checkpoint not found: {folder / periodic_name(1)}$"):
        load_checkpoint(folder / periodic_name(1))


def test_an_evaluations_folder_is_read_past_the_checkpoints_a_sweep_set_aside(tmp_path):
    """A sweep's re-evaluation keeps an earlier classifier or an unfinished one as
    NAME.previous-K.pt (files.set_aside): `predict --checkpoint FOLDER` then said the
    folder 'holds several checkpoints (linear-partial.previous-1.pt, linear.pt)'. The
    current one is read; a folder holding only set-aside ones says so."""
    from simclr.checkpoint_read import checkpoint_file

    folder = tmp_path / "le" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("linear-partial.previous-1.pt", "linear.previous-2.pt"):
        torch.save(_state(3), folder / name)
    with pytest.raises(SimCLRError, match=r"holds only checkpoints set aside by a rerun "
                       r"\(linear-partial.previous-1.pt, linear.previous-2.pt\): name one"):
        checkpoint_file(tmp_path / "le")
    torch.save(_state(5), folder / "linear.pt")
    assert checkpoint_file(tmp_path / "le") == folder / "linear.pt"


@pytest.mark.parametrize(("ids", "finishing"), [
    ((None, None), False),  # (no training named: an earlier run's results, maybe)
    (("r1", "r1"), True),
    (("r1", "r2"), False),
])
def test_results_are_a_stopped_finish_only_beside_the_state_of_the_same_run(tmp_path, ids,
                                                                           finishing):
    """checkpoints/finetune.pt beside finetune-partial.pt is a training stopped while it
    wrote its results only where both name the same run_id; two files naming none are
    not known to be one training's."""
    from simclr.checkpoint_read import stopped_while_finishing

    folder = tmp_path / "checkpoints"
    for name, run_id in zip(("finetune.pt", "finetune-partial.pt"), ids, strict=True):
        save_checkpoint({**_state(5), **({"run_id": run_id} if run_id else {})}, folder, name)
    assert stopped_while_finishing(tmp_path, ("checkpoints/finetune.pt",)) is finishing


def test_two_unreadable_files_are_no_stopped_finish(tmp_path):
    """A classifier and an unfinished state that cannot be read name no run_id: not known
    to be one training's, so an earlier run's results are refused, not finished."""
    from simclr.checkpoint_read import stopped_while_finishing

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("finetune.pt", "finetune-partial.pt"):
        (folder / name).write_bytes(b"not a checkpoint")
    assert not stopped_while_finishing(tmp_path, ("checkpoints/finetune.pt",))


def test_a_folder_of_an_unfinished_evaluation_alone_names_no_checkpoint(tmp_path):
    """An evaluation's -partial.pt is a half-trained state, never a folder's checkpoint:
    alone it is refused; beside the finished classifier, the classifier is chosen."""
    folder = tmp_path / "checkpoints"
    save_checkpoint(_state(3), folder, "linear-partial.pt")
    with pytest.raises(SimCLRError, match=r"holds only an unfinished training "
                                          r"\(linear-partial\.pt\)"):
        checkpoint_file(tmp_path)
    other = tmp_path / "ft" / "checkpoints"
    done = save_checkpoint(_state(9), other, "finetune.pt")
    save_checkpoint(_state(4), other, "finetune-partial.pt")
    assert checkpoint_file(tmp_path / "ft") == done


def test_a_folder_of_two_classifiers_asks_which_one(tmp_path):
    """linear.pt and finetune.pt in one --out: neither is guessed; the message names both."""
    folder = tmp_path / "checkpoints"
    for name in ("linear.pt", "finetune.pt"):
        save_checkpoint(_state(3), folder, name)
    with pytest.raises(SimCLRError, match=r"holds several checkpoints "
                                          r"\(finetune\.pt, linear\.pt\); name one$"):
        checkpoint_file(tmp_path)


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_an_exported_program_given_as_a_checkpoint_says_what_to_give(tmp_path, suffix):
    """`simclr export`'s programs hold no weights dict: named for what they are, even
    where the file is a readable torch archive."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(save_checkpoint(_state(3), tmp_path).read_bytes())
    with pytest.raises(SimCLRError, match=rf"is an exported program \({suffix}\), not a "
                                          "checkpoint; give the checkpoint it was exported "
                                          "from$"):
        load_checkpoint(path)
    # its card (beside it) names the file it came from: said, as info says it
    from simclr.programs import card_file

    card_file(path).write_text(json.dumps({"format": "simclr-program",
                                           "checkpoint": "/runs/a/checkpoints/last.pt"}))
    with pytest.raises(SimCLRError, match=r"exported from \(its card names "
                                          r"/runs/a/checkpoints/last\.pt\)$"):
        load_checkpoint(path)


def test_a_missing_entry_is_said_before_another_that_is_no_mapping(tmp_path):
    """A file without its weights whose config is odd too: what is missing is named
    (with several, all of them)."""
    state = {k: v for k, v in _state(3).items() if k != "model"}
    torch.save({**state, "config": "resnet18"}, tmp_path / "odd.pt")
    with pytest.raises(SimCLRError, match=r'it has no "model" entry$'):
        load_checkpoint(tmp_path / "odd.pt")
    with pytest.raises(SimCLRError, match=r'it has no "config" and "model" entries$'):
        rd.require_entries({"step": 1}, tmp_path / "odd.pt", ck.REQUIRED)


def test_a_stopped_finish_is_found_among_several_results(tmp_path):
    """An evaluation's results name more than one classifier file: one without its
    unfinished state beside it does not hide another's."""
    folder = tmp_path / "checkpoints"
    save_checkpoint({**_state(5), "run_id": "r0"}, folder, "linear.pt")
    for name in ("finetune.pt", "finetune-partial.pt"):
        save_checkpoint({**_state(5), "run_id": "r1"}, folder, name)
    assert rd.stopped_while_finishing(
        tmp_path, ("results.json", "checkpoints/linear.pt", "checkpoints/finetune.pt"))


def _head_checkpoint(**model: torch.Tensor) -> dict:
    return {"config": {"model": {"arch": "resnet18", "width": 1}}, "file": "ft.pt",
            "model": model}


def test_weights_under_a_prefix_load_alone_and_a_misfit_is_one_line():
    """load_weights takes the weights under its prefix (a head beside them is no
    misfit); an extra, missing or integer tensor under it is one line naming the file."""
    layer = torch.nn.Linear(2, 3)
    weight, bias = torch.randn(3, 2), torch.randn(3)
    rd.load_weights(layer, _head_checkpoint(**{"enc.weight": weight, "enc.bias": bias,
                                               "head.weight": torch.ones(1)}), "enc.")
    assert torch.equal(layer.weight, weight) and torch.equal(layer.bias, bias)
    misfits = [
        ({"enc.weight": weight, "enc.bias": bias, "enc.extra": bias},
         r"1 unexpected \(first enc\.extra\)"),
        ({"enc.weight": weight}, r"1 missing \(first enc\.bias\)"),
        ({"enc.weight": weight.T, "enc.bias": bias},
         r"1 tensors of another shape \(first enc\.weight: 2x3 in the file, 3x2 in the "
         r"network\)"),
        ({"enc.weight": weight.long(), "enc.bias": bias},
         r"1 tensors of a dtype that is not floating point \(first enc\.weight: int64 in "
         r"the file, float32 in the network\)"),
    ]
    for model, problem in misfits:
        with pytest.raises(SimCLRError, match=r"^checkpoint ft\.pt: its weights do not fit "
                                              rf"the resnet18 width 1 network .*{problem}"):
            rd.load_weights(layer, _head_checkpoint(**model), "enc.")


def test_a_folder_of_a_lightning_ckpt_alone_names_that_file(tmp_path):
    """A .ckpt (Lightning's) is among the weights files a folder given is read by, its
    suffix in any case (a Windows download's .CKPT)."""
    for name in ("last.ckpt", "MODEL.CKPT"):
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_bytes(b"weights")
        (folder / "notes.txt").write_text("not weights")
        assert checkpoint_file(folder) == folder / name
