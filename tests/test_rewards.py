"""Rewards and GRPO advantages checked by hand (tests/test_grpo.py checks them against TRL's GRPOTrainer)."""

from __future__ import annotations

import math

import pytest

from duoguard.rewards import fooled, game_rewards, group_advantages, intended_probability


def test_intended_probability_and_fooled():
    scores = [0.9, 0.2, 0.7, 0.4]
    intended = [True, True, False, False]
    assert intended_probability(scores, intended).tolist() == pytest.approx([0.9, 0.2, 0.3, 0.6])
    assert fooled(scores, intended, 0.5).tolist() == [False, True, True, False]


def test_rewards_by_hand():
    p = [0.9, 0.2, 1e-9, 0.5]
    keep = [True, True, True, False]
    got = game_rewards(p, keep, kind="neg_log", fool_weight=2.0, max_fool=5.0, reject_penalty=0.5)
    expected = [2 * -math.log(0.9), 2 * -math.log(0.2), 2 * 5.0, -0.5]  # 1e-9 hits the cap
    assert got.tolist() == pytest.approx(expected)
    got = game_rewards(p, keep, kind="one_minus_p", fool_weight=1.0, reject_penalty=1.0)
    assert got.tolist() == pytest.approx([0.1, 0.8, 1 - 1e-9, -1.0])
    with pytest.raises(ValueError, match="unknown fool reward"):
        game_rewards(p, keep, kind="log")


def test_group_advantages_by_hand():
    rewards = [1.0, 2.0, 3.0, 6.0, 0.0, 0.0]  # two groups of 3
    adv = group_advantages(rewards, 3)
    # group 1: mean 2, unbiased std 1 -> (-1, 0, 1) / (1 + 1e-4); group 2: mean 2, std sqrt(12)
    assert adv[:3].tolist() == pytest.approx([-1 / 1.0001, 0.0, 1 / 1.0001])
    std2 = math.sqrt(((6 - 2) ** 2 + 2 * (0 - 2) ** 2) / 2)
    assert adv[3:].tolist() == pytest.approx([4 / (std2 + 1e-4), -2 / (std2 + 1e-4), -2 / (std2 + 1e-4)])
    assert group_advantages([1.0, 1.0], 2).tolist() == [0.0, 0.0]  # equal rewards: no signal
    assert group_advantages(rewards, 3, scale="none").tolist() == pytest.approx([-1, 0, 1, 4, -2, -2])
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(rewards, 4)


def test_nan_rewards_get_zero_advantage_and_leave_the_baseline():
    adv = group_advantages([1.0, float("nan"), 3.0], 3)
    assert adv[1] == 0.0
    assert adv[0] == pytest.approx(-1 / (math.sqrt(2) + 1e-4))
