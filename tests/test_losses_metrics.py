from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from duoguard.losses import UNKNOWN, bce_loss, zlpr_loss
from duoguard.metrics import average_precision, binary_metrics


def zlpr_by_hand(scores: list[float], labels: list[int]) -> float:
    neg = sum(math.exp(s) for s, y in zip(scores, labels) if y == 0)
    pos = sum(math.exp(-s) for s, y in zip(scores, labels) if y == 1)
    return math.log(1 + neg) + math.log(1 + pos)


def test_zlpr_matches_hand_computation():
    scores = [[2.0, -1.0, 0.5], [-3.0, 0.2, 1.5], [0.0, 0.0, 0.0]]
    labels = [[1, 0, 0], [0, 0, 0], [1, 1, 1]]  # one positive, safe (no positive), all positive
    expected = [zlpr_by_hand(s, y) for s, y in zip(scores, labels)]
    got = zlpr_loss(torch.tensor(scores), torch.tensor(labels, dtype=torch.float32), reduction="none")
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    assert zlpr_loss(torch.tensor(scores), torch.tensor(labels)).item() == pytest.approx(sum(expected) / 3, rel=1e-6)


def test_zlpr_pushes_positive_logits_up_and_negatives_down():
    s = torch.tensor([[0.3, -0.2]], requires_grad=True)
    zlpr_loss(s, torch.tensor([[1.0, 0.0]])).backward()
    assert s.grad[0, 0] < 0 < s.grad[0, 1]


def test_zlpr_is_stable_for_large_logits():
    loss = zlpr_loss(torch.tensor([[80.0, -80.0]]), torch.tensor([[1.0, 0.0]]))
    assert torch.isfinite(loss) and loss.item() < 1e-6


def test_bce_sums_over_categories():
    s, y = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    by_hand = -math.log(1 / (1 + math.exp(-2.0))) - math.log(1 - 1 / (1 + math.exp(1.0)))
    assert bce_loss(s, y).item() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("loss", [zlpr_loss, bce_loss])
def test_a_category_less_unsafe_row_trains_the_unsafe_score_alone(loss):
    """Unsafe, no category named (all UNKNOWN): softplus(-max s); only the likeliest category moves, up;
    no category is pushed down, as the all-zeros (safe) target would."""
    s = torch.tensor([[0.3, -1.2, 0.9, -0.4]], requires_grad=True)
    unknown = torch.full((1, 4), UNKNOWN)
    value = loss(s, unknown, reduction="none")
    assert value.item() == pytest.approx(math.log(1 + math.exp(-0.9)), rel=1e-6)
    value.sum().backward()
    assert s.grad[0, 2] < 0 and s.grad[0, [0, 1, 3]].abs().max() == 0
    safe = torch.zeros(1, 4)
    s2 = s.detach().clone().requires_grad_(True)
    loss(s2, safe).backward()
    assert (s2.grad > 0).all()  # the old reading of such a row: safe, every category pushed down

    logits = torch.tensor([[-2.0, -3.0, -2.5, -4.0]], requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    start = logits.detach().clone()
    for _ in range(20):
        opt.zero_grad()
        loss(logits, unknown).backward()
        opt.step()
    assert torch.sigmoid(logits.max()) - torch.sigmoid(start.max()) > 0.4  # the unsafe score rose
    moved = (logits.detach() != start)[0]
    assert moved.tolist() == [True, False, False, False]  # and no other category's did


@pytest.mark.parametrize("loss", [zlpr_loss, bce_loss])
def test_unknown_entries_of_a_row_with_categories_are_masked(loss):
    s = torch.tensor([[0.3, -1.2, 0.9, -0.4], [1.0, 2.0, -1.0, 0.5]], requires_grad=True)
    labels = torch.tensor([[1.0, UNKNOWN, 0.0, UNKNOWN], [0.0, 0.0, 0.0, 0.0]])
    got = loss(s, labels, reduction="none")
    known = loss(s[:1, [0, 2]], torch.tensor([[1.0, 0.0]]), reduction="none")
    assert got[0].item() == pytest.approx(known.item(), rel=1e-6)  # as if the unknown columns were absent
    assert got[1].item() == pytest.approx(loss(s[1:], labels[1:], reduction="none").item())
    got.sum().backward()
    assert s.grad[0, 1] == 0 and s.grad[0, 3] == 0
    mixed = loss(s, torch.cat([labels[:1], torch.full((1, 4), UNKNOWN)]), reduction="mean")
    expected = (known.sum() + math.log(1 + math.exp(-2.0))) / 2  # the category-less row's term: max s = 2.0
    assert mixed.item() == pytest.approx(expected.item(), rel=1e-6)


def test_binary_metrics_by_hand():
    labels = [1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4]
    m = binary_metrics(labels, scores, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["fpr"] == pytest.approx(1 / 4)


def test_average_precision_by_hand_and_against_sklearn():
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 50)
        y[0] = 1
        s = np.round(rng.random(50), 1)  # many ties
        assert average_precision(y, s) == pytest.approx(sklearn.average_precision_score(y, s), abs=1e-12)


def test_undefined_metrics_are_none_not_zero():
    all_unsafe = binary_metrics([1, 1], [0.9, 0.2])
    assert all_unsafe["fpr"] is None and all_unsafe["recall"] == 0.5
    all_safe = binary_metrics([0, 0], [0.1, 0.2])
    assert (
        all_safe["recall"] is None and all_safe["auprc"] is None and all_safe["f1"] is None and all_safe["fpr"] == 0.0
    )
