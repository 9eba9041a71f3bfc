"""Tests for simclr.results: top-k accuracy and the confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simclr.results import confusion_matrix, topk_accuracy


def test_topk_accuracy_and_confusion_matrix():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([2, 0, 0])
    assert topk_accuracy(scores, labels, (1, 2, 5)) == pytest.approx([1 / 3, 2 / 3, 1.0])
    cm = confusion_matrix(labels, scores.argmax(1).numpy(), 3)
    np.testing.assert_array_equal(cm, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])


# -------------------------------------------------------------- logistic regression
