"""Tests for the benchmark scripts' own checks (benchmarks/: run by hand, not by CI):
that a check can fail, and that a wrong input stops a script instead of timing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def scripts_importable(monkeypatch):
    """The scripts import each other by name, as run from benchmarks/ (for these tests
    alone: their names would shadow no other module, but need not be importable after)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_the_c_mapping_check_fails_on_weights_apart():
    """evaluation.py printed 'the same optimum' whatever the weights' difference."""
    evaluation = pytest.importorskip("evaluation")

    same = {"w_diff": 8.8e-8, "w_max": 3.0, "b_diff": 1e-8}
    assert evaluation.weights_agree(same)
    assert "the same optimum" in evaluation.weights_line(same, None)
    for apart in ({**same, "w_diff": 0.8}, {**same, "b_diff": 0.5}, {"error": "timed out"}):
        assert not evaluation.weights_agree(apart)
        assert "FAILED" in evaluation.weights_line(apart, None)


def test_an_unknown_decode_case_is_refused_not_timed_as_another():
    """A misspelt case was timed as simclr's PIL path under the name given."""
    decode = pytest.importorskip("decode")

    with pytest.raises(SystemExit) as info:
        decode.parse_args(["--device", "cpu", "--cases", "simclr pil,full size PIL"])
    assert info.value.code == 2


def test_an_epoch_without_a_batch_stops_the_case():
    """Fewer images than a batch (drop_last): the loop restarted empty epochs until the
    case's timeout."""
    import torch

    throughput = pytest.importorskip("throughput")

    loader = torch.utils.data.DataLoader(list(range(5)), batch_size=8, drop_last=True)
    with pytest.raises(SystemExit, match="fewer images than one batch"):
        next(throughput._epochs(loader))
    full = torch.utils.data.DataLoader(list(range(16)), batch_size=8, drop_last=True)
    batches = throughput._epochs(full)
    assert [len(next(batches)) for _ in range(3)] == [8, 8, 8]  # (epoch after epoch)
