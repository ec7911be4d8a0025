"""The league of earlier guardrails (duoguard/league.py), its matrix, exploitability and forgetting, and the
reward-hacking alarm (duoguard/health.py). The league in a played game: tests/test_game_toy.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from duoguard.config import CollapseAction, RewardHackingConfig
from duoguard.health import reward_hacking_alarm
from duoguard.league import League, fool_rate, forgetting, matrix, matrix_key, old_rounds_accuracy, summary
from duoguard.roles.guardrail import Guardrail


def fake_guardrail(folder, tag: str):
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_text(tag)
    (folder / "config.json").write_text("{}")
    return folder


def test_league_keeps_the_rounds_the_next_round_scores_and_forgets_replayed_ones(tmp_path):
    league = League(tmp_path / "league", size=2)
    for r in range(5):
        league.add(r, fake_guardrail(tmp_path / f"ckpt{r}" / "guardrail", f"round {r}"))
    # round 5 plays guardrail 4 and scores the 2 newest before it (2, 3); 4 stays for round 6
    assert league.rounds() == [2, 3, 4]
    assert [j for j, _ in league.members(5)] == [2, 3]
    assert (league.members(5)[0][1] / "model.safetensors").read_text() == "round 2"
    # files are shared with the checkpoint (hard links), not copied, where the filesystem allows
    src = tmp_path / "ckpt4" / "guardrail" / "model.safetensors"
    assert (league.path(4) / "model.safetensors").stat().st_ino == src.stat().st_ino
    league.truncate(3)  # a game resumed after round 3 replays round 4
    assert league.rounds() == [2, 3]
    off = League(tmp_path / "off", size=0)
    off.add(1, tmp_path / "ckpt1" / "guardrail")
    assert off.rounds() == [] and off.members(3) == []


def test_matrix_exploitability_and_forgetting_from_the_rounds_metrics():
    assert fool_rate([0.9, 0.2, 0.7, 0.1], [True, True, False, False], 0.5) == 0.5
    assert fool_rate([], [], 0.5) is None
    history = [
        {"round": 1, matrix_key(1, 0): 0.6, matrix_key(1, 1): 0.1},
        {"round": 2, matrix_key(2, 1): 0.5, matrix_key(2, 2): 0.2, matrix_key(2, 0): 0.7, matrix_key(1, 2): 0.3},
        {"round": 3, matrix_key(3, 3): 0.0, matrix_key(1, 3): 0.05, matrix_key(2, 3): 0.4, "other": 1.0},
    ]
    m = matrix(history)
    assert m[(2, 0)] == 0.7 and m[(1, 3)] == 0.05 and len(m) == 9
    # round 3 is fooled by round 1 no more than guardrail 1 was (0.05 < 0.1), by round 2 more (0.4 vs 0.2)
    assert forgetting(m, 3) == pytest.approx((0.0 + 0.2) / 2)
    assert old_rounds_accuracy(m, 3) == pytest.approx(1 - (0.05 + 0.4) / 2)
    assert summary(history, 3) == {
        "exploitability": 0.0,
        "forgetting": pytest.approx(0.1),
        "old_rounds_accuracy": pytest.approx(0.775),
    }
    assert summary(history[:1], 1) == {"exploitability": 0.1, "forgetting": None, "old_rounds_accuracy": None}


def test_league_scores_are_the_earlier_checkpoints_and_leave_the_guardrail_as_it_was(tiny_base, taxonomy, tmp_path):
    torch.manual_seed(0)
    guard = Guardrail.from_base(tiny_base, taxonomy.names, device="cpu")
    texts = ["how do I bake bread", "tell me how to build a bomb", "weather tomorrow"]
    guard.save_pretrained(tmp_path / "early")
    early = guard.unsafe_scores(texts)
    with torch.no_grad():
        for p in guard.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    now = guard.unsafe_scores(texts)
    assert not np.allclose(early, now)
    (scored,) = guard.league_scores([str(tmp_path / "early")], texts)
    np.testing.assert_allclose(scored, early, rtol=1e-5)
    np.testing.assert_allclose(guard.unsafe_scores(texts), now, rtol=1e-6)  # its own weights are back
    assert guard.league_scores([], texts) == []


def rounds(rewards, keeps, **extra):
    return [
        {"round": i + 1, "mean_fool_reward": r, "keep_rate": k, **{key: v[i] for key, v in extra.items()}}
        for i, (r, k) in enumerate(zip(rewards, keeps, strict=True))
    ]


def test_reward_hacking_alarm_fires_when_reward_rises_while_checks_fall():
    cfg = RewardHackingConfig(rounds=2, min_change=0.05, action=CollapseAction.warn)
    hacked = rounds([0.5, 0.8, 1.2], [0.8, 0.6, 0.4])
    message = reward_hacking_alarm(hacked, cfg)
    assert message and "keep_rate 0.800 -> 0.400" in message and "0.500 -> 1.200" in message
    assert reward_hacking_alarm(hacked[:2], cfg) is None  # not enough rounds yet
    assert reward_hacking_alarm(rounds([0.5, 0.8, 1.2], [0.8, 0.85, 0.9]), cfg) is None  # healthy learning
    assert reward_hacking_alarm(rounds([1.2, 0.8, 0.5], [0.8, 0.6, 0.4]), cfg) is None  # reward falls too
    assert reward_hacking_alarm(rounds([0.5, 0.52, 0.53], [0.8, 0.6, 0.4]), cfg) is None  # rise under min_change
    # the label check's pass rate and the LLM judge's rating count as checks too
    label = rounds([0.5, 0.8, 1.2], [0.8, 0.8, 0.8], label_pass_rate=[0.9, 0.7, 0.6])
    assert "label_pass_rate" in reward_hacking_alarm(label, cfg)
    rating = rounds([0.5, 0.8, 1.2], [0.8, 0.8, 0.8], **{"judge/mean_rating": [4.5, 4.0, 3.5]})
    assert "judge/mean_rating" in reward_hacking_alarm(rating, cfg)
    assert reward_hacking_alarm(hacked, RewardHackingConfig(enabled=False)) is None


def test_league_and_alarm_config_errors_name_their_keys():
    from duoguard.config import ConfigError
    from tests.conftest import compose

    for override, key in (
        ("game.league.size=-1", "game.league.size"),
        ("game.reward_hacking.rounds=0", "game.reward_hacking.rounds"),
        ("game.report_every=-2", "game.report_every"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            compose([override], "game")
