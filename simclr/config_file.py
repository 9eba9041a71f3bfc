"""The YAML files of settings: a ``--config`` file read once at start-up
(:class:`ConfigFile`), what a YAML text holds read as the settings read a flag's value
(true/false only as booleans, no octal or dates; a key given twice refused), a results
file refused as settings, and a config written back as YAML that reads the same
(``config.yaml``, ``--print-config``). How the file's settings layer over the defaults
and under the flags is :func:`simclr.settings.build_config`.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from simclr.errors import SimCLRError, unreadable_path
from simclr.files import written
from simclr.settings import is_null, shown

# Plain values a YAML file's text is read as: booleans only true and false (YAML 1.2),
# whole numbers only in decimal, floats only with a point. PyYAML's YAML 1.1 also reads
# on/off/yes/no as booleans, 0123 as octal, 1:30 as sexagesimal and 2024-01-01 as a
# date, where the same text given as a flag is another value: all other text stays
# text, which settings._coerce reads by the setting's type exactly as a flag's (a file and a flag
# agree). (prefix characters, tag, pattern)
_PLAIN_VALUES = (
    ("tTfF", "bool", r"(?i:true|false)$"),
    ("-+0123456789", "int", r"[-+]?(?:0|[1-9][0-9]*)$"),
    # (YAML 1.1's floats, which have a point: `1e3` stays text, as an older simclr
    # wrote `--out 1e3` into a provenance unquoted)
    ("-+.0123456789", "float", r"[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?$"
                               r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?$"
                               r"|[-+]?\.(?:inf|Inf|INF)$|\.(?:nan|NaN|NAN)$"),
)


_OTHER_TAGS = tuple(f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp"))


def _resolvers(base: dict[str, list[Any]], extra: bool) -> dict[str, list[Any]]:
    """``base``'s implicit resolvers with those of _PLAIN_VALUES: instead of its bools,
    numbers and dates, or (``extra``) besides them."""
    table = {c: [r for r in rules if extra or r[0] not in _OTHER_TAGS]
             for c, rules in base.items()}
    for first, tag, pattern in _PLAIN_VALUES:
        for c in first:
            table.setdefault(c, []).append((f"tag:yaml.org,2002:{tag}", re.compile(pattern)))
    return table


# How deep a YAML file simclr reads may nest, counted in nodes (its scalars a level
# too): a config.yaml's deepest, a word of a resumed run's provenance.earlier[i].argv,
# is 6; past this it is no file of settings (Python's recursion limit is ~1,000).
MAX_YAML_DEPTH = 64


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but plain values read as _PLAIN_VALUES says, and a
    key given twice in one mapping (e.g. two ``model:`` sections, of which plain YAML
    silently keeps the last) is an error."""

    yaml_implicit_resolvers = _resolvers(yaml.SafeLoader.yaml_implicit_resolvers, False)
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # (PyYAML composes nested collections by recursion: `optim: [[[[...` 5,000 deep
        # was a RecursionError's traceback, here refused as the damaged file it is)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        # YAML's merge keys (`<<: *base`) as PyYAML reads them: the mapping's own keys
        # override the merged ones; a key twice among its own is the error.
        merge = "tag:yaml.org,2002:merge"
        own = [(key_node, value) for key_node, value in node.value if key_node.tag != merge]
        if len(own) < len(node.value):
            self.flatten_mapping(node)
        seen = set()
        for key_node, _ in own:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):  # YAML allows them; no setting is named so
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, not a "
                    f"{'list' if isinstance(key, list) else 'mapping'}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{shown(key)} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class ConfigFile(str):
    """A ``--config`` path read once, at start-up, with its parsed ``settings``: every
    reader of the file (the layering, the checks of a supervised run's file, the
    launcher's device, each cell of a sweep) takes them from here through
    :func:`load_yaml`, so a file edited while the command starts cannot give it a
    config mixed of two versions. A str, it is the path wherever one is used."""

    settings: dict[str, Any]


def read_config_file(path: str) -> ConfigFile:
    """The ``--config`` file ``path``, read and parsed now (a user error if it cannot be,
    or if it holds no settings: an empty file, or comments alone, ran as the defaults
    without a word, where it was likely not saved yet or the wrong one)."""
    config = ConfigFile(path)
    config.settings = load_yaml(path)
    if not config.settings:
        raise SimCLRError(f"--config {path}: the file holds no settings (it is empty, "
                          "or comments alone, or {})")
    return config


def names_no_data(config_file: str | None, flags: dict[str, Any]) -> bool:
    """Whether neither the flags nor the ``--config`` file name a data folder (`--data
    none` included): then pretrain and sweep run the digits demo, with its preset under
    the file's settings, so a file of a few settings means what the same flags mean. (The
    file's other settings are checked later, over that preset.)"""
    if "data.path" in flags:
        return is_null(flags["data.path"])
    if config_file is None:
        return True
    settings = load_yaml(config_file)
    data = settings.get("data") or {}  # (not a mapping: refused later)
    if not isinstance(data, dict):
        return False
    # (a dotted key names it too: `data.path: DIR` took the demo's preset under the file)
    return is_null(data.get("path")) and is_null(settings.get("data.path"))


def parse_yaml(text: str) -> Any:
    """What a config file's YAML ``text`` holds, its plain values read as the settings
    read them (_UniqueKeyLoader, _PLAIN_VALUES); yaml.YAMLError."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML file holds (a :class:`ConfigFile`: the one read at start-up)."""
    if isinstance(path, ConfigFile):  # (a copy: no reader changes what the next reads)
        return copy.deepcopy(path.settings)
    p = Path(path).expanduser()
    if p.is_dir():
        raise SimCLRError(f"config file {p} is a folder; give the YAML file itself")
    if not p.is_file():
        problem = unreadable_path(p)
        raise SimCLRError(f"config file {p}: {problem}" if problem else
                          f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SimCLRError(f"config file {p} is not UTF-8 text (not a YAML file?)") from None
    except OSError as exc:
        raise SimCLRError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise SimCLRError(f"config file {p} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:  # (empty, or comments alone)
        return {}
    if not isinstance(data, dict):  # ([] too: a list, not "no settings")
        raise SimCLRError(f"config file {p} must hold a mapping of settings")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong in a file and where, on one line (its message's first
    line is often the context alone: 'while scanning for the next token')."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:  # (a ReaderError: the character and why, on its first line)
        return str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if context and problem.startswith("but "):  # 'expected a single document in the stream'
        problem = f"{context}, {problem}"
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return " ".join(f"{problem}{where}".split())


# What a command's results file holds that no settings file does: the results of an
# evaluation or a supervised run name their ``command``, a run's summary.json its status.
_SUMMARY_KEYS = {"status", "steps", "checkpoint"}


def check_settings_file(data: dict[str, Any], path: str | Path) -> None:
    """Refuse a ``--config`` file that is a command's results rather than settings (JSON
    is YAML too: ``knn.json`` read as a config was 'unknown setting command')."""
    command = data.get("command")
    if isinstance(command, str):
        what = f"the results of `simclr {command}`"
    elif _SUMMARY_KEYS <= data.keys():
        what = "a run's summary (summary.json)"
    else:
        return
    raise SimCLRError(f"config file {path} is {what}, not a settings file; give --config a "
                      "run's config.yaml or a YAML file of settings (--print-config writes one)")


def yaml_text(data: dict[str, Any]) -> str:
    """A config mapping as YAML text, keys in their order (tuples become lists)."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return yaml.dump(plain(data), Dumper=_Dumper, sort_keys=False)


class _Dumper(yaml.SafeDumper):
    """YAML's safe dumper, quoting text that YAML 1.1 or 1.2 would read as another value
    (``on``, ``0123``; ``1e3``): a config.yaml reads back the same in simclr
    (_UniqueKeyLoader) and in any other YAML reader."""

    yaml_implicit_resolvers = _resolvers(yaml.SafeDumper.yaml_implicit_resolvers, True)


# (YAML 1.2's floats need no point, `1e3`, and its octal ints are `0o17`: quoted when
# written, which a 1.1 reader reads as text either way)
_Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"))
_Dumper.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"0o[0-7]+$"), ["0"])


def save_yaml(data: dict[str, Any], path: str | Path) -> None:
    """Write a mapping as YAML (tuples become lists), whole or not at all."""
    text = yaml_text(data)
    written(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
