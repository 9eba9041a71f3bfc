"""``simclr info`` as text: the facts :func:`simclr.info.describe` gathers, in a few lines.

What a run folder, a folder of runs, a checkpoint or an exported program holds is read
by :mod:`simclr.info` (``--json`` prints those facts as they are); this module words
them for a person: a head line (kind, status, step, last loss), then the encoder, the
recipe, the command that started the run, its checkpoints and its evaluations' results,
and how to continue a stopped run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simclr.checkpoint import CHECKPOINTS, LAST, PARTIAL_SUFFIX
from simclr.errors import SimCLRError, printable
from simclr.launch import path_word, shell_join, typed_in
from simclr.run_facts import CONFIG_FILE

KIND_NAMES = {"pretrain": "SimCLR pretraining", "supervised": "supervised training",
              "linear": "linear classifier", "finetune": "fine-tuned classifier",
              "encoder": "exported encoder"}
NAMES_SHOWN = 20  # a classifier's class names listed as text; the rest counted (ImageNet: 1000)
# What follows an encoder's side where it may be no trained one (pretrained.side_guessed)
_GUESSED = {"guessed": " assumed (no size recorded; --image-size)",
            "perhaps": " perhaps assumed (exported by an earlier simclr, which kept no "
                       "record of it; --image-size)"}


def render(facts: dict[str, Any]) -> str:
    """The facts of :func:`simclr.info.describe` as a few lines for a person, each
    :func:`~simclr.errors.printable`: the names in them (paths, a checkpoint's class
    names, a received folder's anything) are not the terminal's to act on, nor can a
    line break in one fake a line."""
    return "\n".join(printable(line) for line in _lines(facts))


def _lines(facts: dict[str, Any]) -> list[str]:
    """:func:`render`'s lines, before escaping (joined, a name's line break and
    simclr's could no longer be told apart)."""
    if "checkpoint" in facts:
        return [f"{facts['path']}: {_checkpoint_line(facts['checkpoint'])}",
                *(f"  {line}" for line in _class_names(facts["checkpoint"]))]
    if "program" in facts:
        read_at = f"; simclr reads the file at {facts['read_at']} px: give --image-size " \
            f"{facts['program']['encoder'].get('image_size')}" if facts.get("read_at") else ""
        damaged = f"; damaged or edited, left out: {', '.join(facts['damaged'])}" \
            if facts.get("damaged") else ""  # (card entries of a type export never writes)
        return [f"{facts['path']}: {_program_line(facts['program'])}{read_at}{damaged}"]
    if "busy" in facts:
        return [f"{facts['path']}: {_run_line(facts)}"]
    if "runs" in facts:
        count, pending = len(facts["runs"]), facts.get("pending", [])
        waiting = f"; {len(pending)} sweep cell(s) not started" if pending else ""
        return [f"{facts['path']}: {count} run{'s' * (count != 1)}{waiting}"] + [
            f"  {Path(run['path']).name}: {_run_line(run)}"
            + "".join(
                f"; {r['what']} top-1 {100 * r['top1']:.2f}%{_source_note(r, run)}"
                for r in run.get("results", []) if isinstance(r.get("top1"), (int, float)))
            for run in facts["runs"]] + _pending_lines(pending)
    lines = [f"{facts['path']}: {_head_line(facts)}"]
    if facts.get("config_damaged"):
        lines.append(f"  {CONFIG_FILE} is damaged, what it could not read is left out: "
                     f"{'; '.join(facts['config_damaged'])}")
    kind = _kind(facts)
    contrastive = kind != "supervised"  # its config's head and loss play no part
    if facts.get("encoder"):
        lines.append(f"  encoder: {_encoder(facts['encoder'], head=contrastive)}")
    recipe = _recipe(facts["recipe"], loss=contrastive) if facts.get("recipe") else ""
    if recipe:  # (none: a damaged config.yaml gave none of its settings)
        lines.append(f"  recipe: {recipe}")
    if "data" in facts:
        data = facts["data"] or _unnamed_data(kind)
        if isinstance(data, dict):
            data = ", ".join(f"{k} {v}" for k, v in data.items() if v)
        split = f" (its {facts['data_split']}/ split)" if facts.get("data_split") else ""
        lines.append(f"  data: {data}{split}")
    if facts.get("init_from"):
        lines.append(f"  initial weights: {facts['init_from']}")
    started = facts.get("provenance")
    if started and started.get("argv"):
        command = shell_join(["simclr", *[str(a) for a in started["argv"][1:]]])
        again = f"; {started['starts']} starts" if started["starts"] > 1 else ""
        lines.append(f"  started by: {command}{_versions(started)}{again}")
    if facts.get("run_id"):  # what the results of its evaluations name it by
        lines.append(f"  run id: {facts['run_id']}")
    for c in facts["checkpoints"]:
        lines.append(f"  {CHECKPOINTS}/{c['name']}: {_checkpoint_line(c)}")
        lines += [f"    {line}" for line in _class_names(c)]
    if facts["state"].get("evaluation"):  # one stopped in this run's folder (--out RUN)
        lines.append(f"  {_unfinished_line(facts['state']['evaluation'])}")
    if isinstance(facts["state"].get("monitor_top1"), (int, float)):
        lines.append(f"  kNN monitor: top-1 {100 * facts['state']['monitor_top1']:.2f}% at "
                     f"step {facts['state']['monitor_step']}")
    if facts["state"].get("final_knn_skipped"):
        lines.append(f"  final kNN: not measured (stopped by {facts['state']['final_knn_skipped']}"
                     " during the last step); measure it with: "
                     + _continue_with(facts, kind, started or {}))  # type: ignore[arg-type]  # (monitored: a kind)
    if facts["state"]["status"] in ("preempted", "stopped", "failed") and \
            kind in ("pretrain", "supervised") and facts["state"].get("saved_step"):
        lines.append("  continue with: " + _continue_with(facts, kind, started or {}))
    for r in facts["results"]:
        what = r["what"] + (f" ({r['protocol']})" if r.get("protocol") else "")
        top = (f"top-1 {100 * r['top1']:.2f}%" if isinstance(r.get("top1"), (int, float))
               else r.get("status", "no top-1"))
        if r.get("processes"):  # (a training's global batch, BatchNorm: over how many)
            top += f", trained by {r['processes']} processes"
        damaged = f"; damaged or edited, left out: {', '.join(r['damaged'])}" \
            if r.get("damaged") else ""  # (a top-1 that is no number: NaN, 1e999, text)
        lines.append(f"  {r['file']}: {what}, {top}{_source_note(r, facts)}{damaged}")
    return lines


PENDING_SHOWN = 20  # a sweep's cells not started, listed by name; past them, a count


def _pending_lines(pending: list[str]) -> list[str]:
    """A sweep's cells not started: the first :data:`PENDING_SHOWN` by name, then how
    many more (a 500-cell grid not begun is no 500-line listing; --json has them all)."""
    lines = [f"  {cell}: not started" for cell in pending[:PENDING_SHOWN]]
    if len(pending) > PENDING_SHOWN:
        lines.append(f"  ... {len(pending) - PENDING_SHOWN} more not started (--json lists them)")
    return lines


def _versions(started: dict[str, Any]) -> str:
    """' (simclr 0.1.0, git 1a2b3c4)' of a run's start, each where recorded (no git: a
    null git_sha, which read 'git None'), and whether its code had uncommitted changes."""
    parts = [f"{name} {str(started[key])[:width]}" for name, key, width in (
        ("simclr", "simclr", None), ("git", "git_sha", 7)) if started.get(key)]
    if started.get("git_sha") and started.get("git_dirty") is True:
        parts[-1] += " with uncommitted changes"
    return f" ({', '.join(parts)})" if parts else ""


def _continue_with(facts: dict[str, Any], kind: str, started: dict[str, Any]) -> str:
    """The command that continues a stopped run: a sweep's cell by its sweep (which
    evaluates it and goes on to the next cells), any other run by ``--resume``."""
    from simclr.launch import again

    argv = [str(a) for a in started.get("argv") or []]
    if argv[1:2] == ["sweep"]:  # the cell trained in the sweep's own process
        # From where it was typed: its paths may be relative, and from elsewhere it
        # started a new sweep in another folder (or failed on its data's)
        cwd = started.get("cwd")
        where = typed_in(cwd)
        unknown = "" if isinstance(cwd, str) else ", from the folder it was started in"
        return f"{where}{shell_join(['simclr', *argv[1:]])} (the sweep that started it{unknown})"
    # (no --processes in its command: a count of processes above one was torchrun's)
    saved = [(c.get("processes"), c.get("local_processes"))
             for c in facts.get("checkpoints") or [] if c.get("name") == LAST]
    count, per_node = saved[0] if saved else (None, None)
    resume = again(f"simclr {kind} --resume {path_word(facts['path'])}",
                   started.get("processes"), count or 1, per_node)
    gone = facts.get("folders_gone") or [] if kind == "pretrain" else []
    if gone:  # --resume alone is refused then, asking for each one's new place
        resume += "".join(f" {flag} NEW_FOLDER" for flag, _ in gone) + " (" + "; ".join(
            f"its {flag} folder {printable(str(folder))} is gone" for flag, folder in gone) + ")"
    # A sweep's cell trained by processes of its own, recorded before 2026-12-08 (its
    # processes' command; since, the sweep's: the branch above)
    if "--sweep-cell" in argv:
        return (f"the sweep that started it (in {Path(facts['path']).parent}), or {resume} "
                "for this cell alone")
    return resume


def resume_command(run: Path, kind: str) -> str:
    """:func:`_continue_with` for the run folder ``run``, read from its config.yaml, for
    a message outside ``info`` (an evaluation of its unfinished checkpoint): the same
    command info shows, ``--processes`` and a sweep's cell included."""
    from simclr.info import checkpoint_facts
    from simclr.run_facts import _read_config, _started

    config, _ = _read_config(run / CONFIG_FILE)
    try:  # (its process count: a torchrun run's continued under torchrun)
        last = [{"name": LAST, **checkpoint_facts(run / CHECKPOINTS / LAST)}]
    except SimCLRError:
        last = []
    from simclr.resume import gone_folders

    return _continue_with({"path": str(run), "checkpoints": last,
                           "folders_gone": gone_folders(config or {})}, kind,
                          _started((config or {}).get("provenance")) or {})


def _source_note(result: dict[str, Any], facts: dict[str, Any]) -> str:
    """What a result was measured on where it is not this run's encoder as it is now:
    a baseline (random init, raw pixels), another layer than h, another run's
    checkpoint, or an earlier step of this one; in a folder of results alone (no run's
    own), the checkpoint, step and run each came from."""
    notes = []
    if result.get("features") not in (None, "pretrained"):
        notes.append(str(result["features"]))
    if result.get("layer") not in (None, "h"):
        notes.append(f"layer {result['layer']}")
    of = result.get("of")
    steps = [c.get("step") for c in facts.get("checkpoints", []) if c.get("name") == LAST]
    if of and facts.get("encoder") and not _of_this_run(result, facts):
        notes.append(f"of another run's checkpoint, {of}")
    elif of and steps and result.get("of_step") not in (None, steps[0]):
        notes.append(f"of step {result['of_step']}; the run is now at step {steps[0]}")
    elif of and not facts.get("encoder") and not steps:  # no run here to be of
        run = f", run {result['of_run']}" if result.get("of_run") else ""
        # (a fine-tuned classifier's encoder: trained on past the step it records)
        step = ("a fine-tuned classifier's encoder, fine-tuned from step"
                if result.get("of_kind") == "finetune" else "step")
        notes.append(f"of {of}, {step} {result.get('of_step')}{run}")
    return f" ({'; '.join(notes)})" if notes else ""


def _of_this_run(result: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether the checkpoint a result was measured on is this run's: by the run id both
    record (a copy of the run folder shares it, and its weights), else (either written
    before run ids) by the checkpoint's path: inside the run folder, or moved with it."""
    if result.get("of_run") and facts.get("run_id"):
        return result["of_run"] == facts["run_id"]
    run = Path(facts["path"]).resolve()
    return Path(result["of"]).is_relative_to(run) or _moved_here(Path(result["of"]), run)


def _moved_here(of: Path, run: Path) -> bool:
    """Whether the checkpoint ``of`` an evaluation names is ``run``'s own, moved with it
    (`mv` of the run folder): gone from its old place, and ``run`` holds one of its name."""
    return (of.parent.name == CHECKPOINTS and not of.exists()
            and (run / CHECKPOINTS / of.name).is_file())


def _unnamed_data(kind: str | None) -> str:
    """What a run trained on that names no folder: a pretraining without --data, the
    digits demo; a supervised run (always given folders) records none where an earlier
    simclr wrote it, or where it was started from Python."""
    if kind == "supervised":
        return "not recorded (written by an earlier simclr, or started from Python)"
    return "the digits demo (scikit-learn)"


def _kind(facts: dict[str, Any]) -> str | None:
    """The kind of a run folder's model: its last.pt's; before the first checkpoint, a
    config.yaml recording the precision it resolved to is a pretraining's (a supervised
    run's records its provenance too, since 2026-12-05, but not that)."""
    kind = next((c.get("kind") for c in facts["checkpoints"] if c["name"] == LAST), None)
    if kind is None and facts.get("recipe"):
        kind = "pretrain" if facts["recipe"].get("precision") else "supervised"
    return kind


def _unfinished_line(training: dict[str, Any]) -> str:
    """'fine-tuning, unfinished at step N; continue with: ...' (see
    :func:`simclr.run_facts._unfinished`)."""
    what = {"finetune": "fine-tuning", "linear": "linear evaluation (sgd)"}
    argv, cwd = training.get("command") or [], training.get("cwd")
    # From where it was typed: its paths may be relative (it failed from anywhere else)
    where = typed_in(cwd)
    again = (f"; continue with: {where}{shell_join(['simclr', *argv[1:]])}" if len(argv) > 1
             else " (the command that started it continues it)")
    if training.get("stale"):  # (its command would be refused: other weights now)
        was, now = training["stale"]
        again = (f", of step {was} of this run, which has trained on to step {now}: its "
                 "command is refused now; give it --overwrite to start over on this step")
    return (f"{what.get(training['training'], training['training'])}, unfinished at step "
            f"{training.get('step')}{again}")


def _head_line(facts: dict[str, Any]) -> str:
    """What a run is, how far it went and its last loss."""
    state = facts["state"]
    kind = _kind(facts)
    if kind is None and state.get("training"):
        return _unfinished_line(state)
    if kind is None and facts["results"]:  # an evaluation's --out: its results
        whats = sorted({r["what"] for r in facts["results"]})
        # (no training of its own left unfinished)
        done = state["status"] in ("finished", "stopped")
        return f"results of {', '.join(whats)}" + ("" if done else f", {state['status']}") + \
            (f" at step {state['step']}" if not done and state.get("step") is not None else "")
    head = f"{KIND_NAMES.get(kind, 'a run')}, {state['status']}"  # type: ignore[arg-type]  # (None: 'a run')
    if state.get("step") is not None:
        head += f"; {state['step_from']}" if state.get("step_from") else ""
        head += f" at step {state['step']}"
        if state.get("planned_steps") or state.get("total_steps"):
            head += f" of {state.get('planned_steps') or state.get('total_steps')}"
    if state.get("reason"):
        head += f" ({state['reason']})"
    if state.get("epoch") is not None:
        took = f", {_duration(state['elapsed_s'])}" if state.get("elapsed_s") is not None else ""
        head += f" ({state['epoch']:.2f} epochs{took})"
    if state.get("loss") is not None:
        head += f"; last loss {state['loss']:.4g} (step {state['logged_step']})"
    if state.get("busy"):
        head += f"; a simclr command (an evaluation) is running in its folder now ({state['busy']})"
    return head + _saved_note(state)


def _run_line(run: dict[str, Any]) -> str:
    """A run of a folder of runs on one line: its head line, or why there is none."""
    if "error" in run:
        return run["error"]
    if "busy" in run:
        return f"a simclr command is running in it ({run['busy']}); nothing saved yet"
    return _head_line(run)


def _saved_note(state: dict[str, Any]) -> str:
    """Where the checkpoints lag the run: the last one's step, and for a run that ended
    without a record (killed, or older than the failure record) at its planned last step
    without its final checkpoint, that it was not written. A run none of whose
    checkpoints can be read says so whatever its status (a finished one's evaluation
    fails on it)."""
    saved, step, status = state.get("saved_step"), state.get("step"), state["status"]
    if state.get("no_readable_checkpoint") and status != "running":
        return "; but no checkpoint can be read"
    # (preempted: its checkpoint at that step, unless it cannot be read since)
    if status not in ("running", "stopped", "failed", "preempted") or step is None or \
            saved == step:
        # (a finished run's last.pt is the one evaluated: an earlier step is not it)
        damaged = LAST in state.get("unreadable_checkpoints", ()) and status != "running"
        return f"; but its {LAST} cannot be read: last readable checkpoint at step " \
            f"{saved}" if damaged and saved is not None and saved != step else ""
    note = ""
    planned = state.get("planned_steps") or state.get("total_steps")
    if status == "stopped" and step == planned:
        note = "; its final checkpoint was not written"
    if saved is not None:
        return f"{note}; last checkpoint at step {saved}"
    # (a failure's reason already says whether an earlier checkpoint exists)
    return note if status == "running" or state.get("reason") else f"{note}; no checkpoint exists"


def _checkpoint_line(c: dict[str, Any]) -> str:
    if "error" in c:
        return c["error"]
    if c.get("kind") == "periodic":
        return f"periodic, step {c['step']}"
    kind = str(c.get("kind") or "").removesuffix("-partial")  # (linear's saves say so)
    parts = [c.get("imported") or KIND_NAMES.get(kind, f"{kind or 'unknown'} checkpoint")]
    if str(c.get("name", "")).endswith(PARTIAL_SUFFIX):  # not a result: its command goes on
        parts[0] = f"unfinished {parts[0]}"
    origin = _exported_origin(c)
    if origin is not None:  # (in place of its pretraining step alone)
        parts.append(origin)
    elif c.get("step") and kind in ("linear", "finetune"):
        parts.append(f"{c['step']} training step{'s' * (c['step'] != 1)}")  # (L-BFGS: none)
    elif c.get("step") is not None and kind not in ("linear", "finetune"):
        parts.append(f"step {c['step']}")
    if c.get("fitted_on_step") is not None and not c.get("stale"):
        parts.append(f"fitted on the encoder of step {c['fitted_on_step']}")
    elif c.get("fitted_on") and origin is None:
        parts.append(_baseline_note(c))
    if c.get("classes") is not None:
        parts.append(f"{c['classes']} classes")
    if c.get("encoder"):  # the head only where it is kept (a classifier has its own)
        parts.append(_encoder(c["encoder"], head=c.get("kind") == "pretrain") +
                     _GUESSED.get(str(c.get("size_guessed")), ""))
    if c.get("top1") is not None:
        parts.append(f"top-1 {100 * c['top1']:.2f}%")
    stale = f"; it {c['stale']} (predict and export refuse the run folder)" \
        if c.get("stale") else ""
    damaged = f"; damaged or edited, left out: {', '.join(c['damaged'])}" \
        if c.get("damaged") else ""  # (entries of a type simclr never writes)
    return ", ".join(parts) + _unfinished_card(c.get("unfinished")) + stale + damaged


def _exported_origin(c: dict[str, Any]) -> str | None:
    """What an exported encoder's weights are, where the file records what it was taken
    from: 'finetune model, step 3 fine-tuned 1 step', 'supervised model, step 3', the
    pretraining's 'step 3' (it read as 'step 3' alone for all of them). None where it
    records nothing (exported before the record), or for the random-init encoder of a
    linear classifier, whose baseline note says it all."""
    trained = c.get("trained")
    # (an imported file's export was 'trained' as the import it names already)
    if c.get("kind") != "encoder" or not isinstance(trained, str) or trained == c.get("imported"):
        return None
    if c.get("fitted_on"):  # the baseline: fine-tuned on from the random init, or not
        return None if trained == c["fitted_on"] else f"{trained} (the baseline)"
    return trained


def _baseline_note(c: dict[str, Any]) -> str:
    """A classifier of the baseline ('fitted on the random init encoder'); an exported
    encoder keeps its classifier's record: it is no pretrained encoder either."""
    note = f"fitted on the {c['fitted_on']} encoder (the baseline)"
    return f"from a classifier {note}" if c.get("kind") == "encoder" else note


def _class_names(c: dict[str, Any]) -> list[str]:
    """A classifier's class names as a line ('classes: a, b, ...'; none: no line), the
    first :data:`NAMES_SHOWN` of a long list: the names predict compares folders with."""
    names = c.get("class_names") or []
    if not names:
        return []
    more = f" …and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    return [f"classes: {', '.join(names[:NAMES_SHOWN])}{more}"]


def _program_line(card: dict[str, Any]) -> str:
    """An exported program's card in a line: what it computes, of which encoder."""
    out, size = card.get("output") or {}, (card.get("input") or {}).get("shape", [0])[-1]
    dim = (out.get("shape") or [None, "?"])[-1]
    what = "exported weights" if card.get("program") == "torchvision" else "exported program"
    return (f"{what} ({card.get('program')}): {out.get('name')} ({dim}-d) of "
            f"{_encoder({**(card.get('encoder') or {}), 'image_size': size}, head=False)} "
            f"input, from {card.get('checkpoint')}{_program_origin(card)}"
            f"{_unfinished_card(card.get('unfinished'))}")


def _unfinished_card(at: Any) -> str:
    """'; an unfinished training (step 4 of 9)' where a card records that its weights
    are a stopped training's (export notes it as predict does)."""
    if not isinstance(at, dict):
        return ""
    from simclr.classifiers import unfinished_training

    return f"; {unfinished_training(at.get('step'), at.get('total_steps'))}"


def _program_origin(card: dict[str, Any]) -> str:
    """', step 7' of a program's card; where it records them, the kind of checkpoint it
    was taken from but a pretraining's (' (fine-tuned classifier)') and what its weights
    are ('step 3 fine-tuned 1 step', 'random init (the baseline)'), which the step alone
    did not say."""
    trained = card.get("trained")
    if not isinstance(trained, str):  # (a card written before these were recorded)
        return f", step {card['step']}" if card.get("step") is not None else ""
    kind = card.get("kind")
    what = None if kind in (None, "pretrain") or card.get("imported") else \
        KIND_NAMES.get(kind, str(kind))
    baseline = " (the baseline)" if card.get("features") else ""
    return f"{f' ({what})' if what else ''}, {trained}{baseline}"


def _encoder(e: dict[str, Any], head: bool = True) -> str:
    width = f" x{e['width']:g}" if isinstance(e.get("width"), (int, float)) else ""
    side = e.get("image_size")
    text = f"{e.get('arch') or 'network not recorded'}{width}, " + \
        (f"{side} px" if side else "image side not recorded")
    if side and e.get("eval_size") not in (None, side):
        text += f" (evaluated at {e['eval_size']})"
    if head and e.get("head"):
        text += f", head {e['head']}"
        if e["head"] != "none" and e.get("head_out_dim"):
            text += f" -> {e['head_out_dim']}"
    return text


def _recipe(r: dict[str, Any], loss: bool = True) -> str:
    length = (f"{_duration(r['time_budget'])} budget" if r.get("time_budget")
              else f"{r['epochs']:g} epoch{'' if r['epochs'] == 1 else 's'}"
              if isinstance(r.get("epochs"), (int, float)) else "")
    if r.get("max_steps"):  # a cap on the schedule: at most that many steps
        length += f"{', ' if length else ''}at most {r['max_steps']} steps"
    batch = f"batch {r['batch_size']}" if r.get("batch_size") is not None else ""
    if batch and isinstance(r.get("processes"), int) and r["processes"] > 1:
        batch += (f" over {r['processes']} processes ("
                  f"{'per-process' if r.get('sync_bn') is False else 'global'} BatchNorm)")
    # (a setting a damaged config.yaml did not give is left out, not written 'None')
    optim = " ".join(x for x in (
        str(r.get("optimizer") or "").upper(),
        f"lr {_number(r['lr'])}" if r.get("lr") is not None else "",
        f"({r['lr_scaling']} scaling)" if r.get("lr_scaling") else "") if x)
    return ", ".join(x for x in (
        batch, optim, _loss(r) if loss else "", str(r.get("precision") or ""),
        f"seed {r['seed']}" if r.get("seed") is not None else "", length) if x)


def _loss(r: dict[str, Any]) -> str:
    """The loss and the settings that act on it (loss.contrastive_loss): NT-Xent's and
    NT-Logistic's temperature, the margin triplet's margin (each inert under the other
    losses: inert.py), and where set, semi-hard negatives, NT-Xent's negatives of one
    view, z not normalised, a weight."""
    if not r.get("loss"):
        return ""
    name, value = ("margin", r.get("margin")) if r["loss"] == "margin_triplet" else \
        ("tau", r.get("temperature"))
    notes = ", ".join(x for x in (
        "semi-hard negatives" if r.get("semi_hard") else "",
        "negatives of one view" if r.get("one_view_negatives") is True else "",
        "z not normalised" if r.get("normalize") is False else "",
        f"weight {_number(r['loss_weight'])}" if r.get("loss_weight") not in (None, 1) else "")
        if x)
    text = r["loss"] + (f" {name} {_number(value)}" if value is not None else "")
    return text + (f" ({notes})" if notes else "")


def _number(value: Any) -> str:
    """A setting's number as :g writes it (lr 0.0883883, not 0.08838834764831843)."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else str(value)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
