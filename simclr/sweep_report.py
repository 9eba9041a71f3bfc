"""A sweep's results as tables: markdown (``sweep.md``, printed), CSV (``sweep.csv``, for
plotting) and, for a ``--pairs`` grid, the paper's Fig. 5 matrix.

Fig. 5 (Sec. 3.1) lays the pairs out as a square: rows the first transformation,
columns the second, the diagonal each transformation alone, and a last column with
the mean of the row. :func:`pair_matrices` writes one such square per score column
(and per value of any other swept axis), so the figure is read off the sweep directly.
"""

from __future__ import annotations

import csv
import io
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simclr.sweep_grid import Axis, Cell

PAIR_AXIS = "pair"  # the axis :func:`simclr.sweep_grid.pairs_axis` makes
# A cell's status when its run finished at a stop request, before its evaluation
NOT_EVALUATED = "finished, not evaluated: rerun the sweep to evaluate it"


def result_of(cell: Cell) -> dict[str, Any]:
    """A cell's results; one named as an axis (the epochs trained, of an epochs axis)
    renamed 'trained_NAME' so that it never hides the swept value."""
    result = cell.result or {"status": "pending"}
    return {(f"trained_{k}" if k in cell.labels else k): v for k, v in result.items()}


def _columns(cells: list[Cell]) -> list[str]:
    """Every result column of any cell, in the order first met."""
    columns: list[str] = []
    for cell in cells:
        columns += [k for k in result_of(cell) if k not in columns]
    return columns


def render(axes: list[Axis], cells: list[Cell], scored_by: str | None = None) -> str:
    """One markdown row per cell: the swept values, then every result column; what
    scored them below (``scored_by``: :func:`scored_by_line`; None: not said), and a
    ``--pairs`` grid's Fig. 5 matrices."""
    columns = _columns(cells)
    head = [a.name for a in axes] + columns
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        result = result_of(cell)
        values = [cell.labels[a.name] for a in axes]
        lines.append("| " + " | ".join(values + [_fmt(c, result.get(c, "")) for c in columns])
                     + " |")
    said = [scored_by] if scored_by and any(c.endswith("top1") for c in columns) else []
    return "\n\n".join(["\n".join(lines), *said, *pair_matrices(axes, cells)])


def scored_by_line(evaluated_on: dict[str, str]) -> str:
    """What scored a sweep's top-1 columns, from the ``evaluated_on`` its rows record
    (sweep_command's _eval_data): 'Scored by --eval knn on train digits[train], test
    digits[test]', with the SGD protocol's epochs and batch where it was used (the same
    columns hold other numbers from other folders or another protocol)."""
    line = (f"Scored by --eval {evaluated_on.get('scores', '?')} on train "
            f"{evaluated_on.get('train', '?')}, test {evaluated_on.get('test', '?')}")
    if evaluated_on.get("protocol") == "sgd":
        line += (f" (SGD protocol, --eval-epochs {evaluated_on.get('epochs', '?')} "
                 f"--eval-batch-size {evaluated_on.get('batch_size', '?')})")
    return line


def _fmt(column: str, value: Any) -> str:
    if column.endswith(("top1", "top5", "_acc")) and isinstance(value, float):
        return f"{100 * value:.1f}%"
    if column == "contrast_entropy" and isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def csv_text(axes: list[Axis], cells: list[Cell]) -> str:
    """The table as CSV: the swept values as labelled, then every result column, scores
    as fractions (0.47, not 47.0%), an empty field where a cell has no such result."""
    columns = _columns(cells)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([a.name for a in axes] + columns)
    for cell in cells:
        result = result_of(cell)
        writer.writerow([cell.labels[a.name] for a in axes] +
                        [result.get(c, "") for c in columns])
    return out.getvalue()


def pair_matrices(axes: list[Axis], cells: list[Cell]) -> list[str]:
    """Fig. 5's square for each top-1 column of a ``--pairs`` grid (none without one):
    row a, column b holds the cell 'a+b' (a then b), the diagonal 'a' alone; 'mean' is
    the row's mean once every cell of the row is scored. With other axes swept too, one
    square per combination of their values, each titled by them."""
    pair = next((a for a in axes if a.name == PAIR_AXIS), None)
    if pair is None:
        return []
    ops = [label for label in pair.labels if "+" not in label]
    others = [a for a in axes if a is not pair]
    scores = [c for c in _columns(cells) if c.endswith("top1")]
    by_labels = {tuple(sorted(c.labels.items())): c for c in cells}
    squares = []
    for combo in itertools.product(*(a.labels for a in others)):
        fixed = dict(zip((a.name for a in others), combo, strict=True))
        rows = [[by_labels[tuple(sorted({**fixed, PAIR_AXIS: pair_label(a, b)}.items()))]
                 for b in ops] for a in ops]
        where = ", ".join(f"{k}={v}" for k, v in fixed.items())
        for score in scores:
            title = f"Fig. 5, {score}" + (f" ({where})" if where else "") + \
                ": rows the first transformation, columns the second, the diagonal each alone"
            squares.append(title + "\n\n" + _square(ops, rows, score))
    return squares


def pair_label(first: str, then: str) -> str:
    """The pair cell's label: 'a+b' (a then b), 'a' for a alone."""
    return first if first == then else f"{first}+{then}"


def _square(ops: list[str], rows: list[list[Cell]], score: str) -> str:
    lines = ["| first \\ then | " + " | ".join(ops) + " | mean |",
             "|" + "---|" * (len(ops) + 2)]
    for op, row in zip(ops, rows, strict=True):
        results = [result_of(c) for c in row]
        scored = [r[score] for r in results if isinstance(r.get(score), float)]
        mean = _fmt(score, sum(scored) / len(scored)) if len(scored) == len(row) else ""
        lines.append(f"| **{op}** | " + " | ".join(_shown(r, score) for r in results) +
                     f" | {mean} |")
    return "\n".join(lines)


def _shown(result: dict[str, Any], score: str) -> str:
    """A square's entry from a cell's results: the score, else why there is none
    ('pending', 'diverged', 'preempted'; blank for a finished cell this sweep did not
    score; 'not evaluated' for one a stop left unscored: :data:`NOT_EVALUATED`)."""
    if isinstance(result.get(score), float):
        return _fmt(score, result[score])
    if result.get("status") == NOT_EVALUATED:
        return "not evaluated"
    status = str(result.get("status", "")).split(" ")[0]
    return "" if status == "finished" else status
