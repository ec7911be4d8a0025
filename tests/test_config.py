"""Config composition of every preset, and the errors a wrong key, type or value gives."""

from __future__ import annotations

import time

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from duoguard.config import ConfigError, require, validate
from tests.conftest import compose, run_app

PRESETS = ["tiny_cpu", "duoguard_qwen"]
APPS = ["guardrail", "eval"]


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_validates(app, preset):
    cfg = compose([f"experiment={preset}", "output_dir=/tmp/x", "eval.guardrail_path=/tmp/g"], config_name=app)
    validate(cfg, ("taxonomy", "data", "guardrail", "eval"))
    assert cfg.experiment == preset
    assert len(cfg.taxonomy.categories) == 12


def test_real_preset_differs_from_tiny_only_in_config():
    tiny = compose(["output_dir=/tmp/x"])
    real = compose(["experiment=duoguard_qwen", "output_dir=/tmp/x"])
    assert tiny.guardrail.model.name_or_path == "tiny"
    assert real.guardrail.model.name_or_path == "Qwen/Qwen2.5-0.5B"
    # DuoGuard's released hyperparameters
    t = real.guardrail.train
    assert (t.loss.value, t.learning_rate, t.lr_scheduler, t.warmup_ratio, t.epochs) == ("zlpr", 5e-5, "cosine", 0.1, 2)
    assert (t.global_batch_size, t.weight_decay, t.max_grad_norm, real.guardrail.max_length) == (640, 0.0, 1.0, 512)
    assert real.guardrail.model.trust_remote_code is False


def test_llamaguard_taxonomy_preset():
    cfg = compose(["taxonomy=llamaguard3", "output_dir=/tmp/x"])
    assert [c.code for c in cfg.taxonomy.categories][:2] == ["S1", "S2"]
    assert len(cfg.taxonomy.categories) == 14


def test_unknown_key_names_full_key():
    with pytest.raises(ConfigCompositionException) as e:
        compose(["guardrail.train.lrr=0.1"])
    assert "guardrail.train.lrr" in str(e.value.__cause__) + str(e.value)


def test_wrong_type_names_full_key():
    with pytest.raises(ConfigCompositionException) as e:
        compose(["guardrail.train.learning_rate=fast"])
    msg = str(e.value.__cause__)
    assert "guardrail.train.learning_rate" in msg and "fast" in msg


def test_bad_enum_value_lists_choices():
    with pytest.raises(ConfigCompositionException) as e:
        compose(["guardrail.train.loss=hinge"])
    msg = str(e.value.__cause__)
    assert "guardrail.train.loss" in msg and "zlpr" in msg


def test_unknown_key_in_a_yaml_group_file_fails(tmp_path):
    from omegaconf import OmegaConf

    cfg = compose(["output_dir=/tmp/x"])
    with pytest.raises((ConfigKeyError, ValidationError)) as e:
        OmegaConf.merge(cfg, OmegaConf.create({"guardrail": {"model": {"nam_or_path": "x"}}}))
    assert "nam_or_path" in str(e.value)


def test_missing_required_value():
    cfg = compose(["output_dir=/tmp/x"], config_name="eval")
    with pytest.raises(ConfigError, match="eval.guardrail_path"):
        require(cfg, "eval.guardrail_path")


@pytest.mark.parametrize(
    "override,key",
    [
        ("guardrail.threshold=1.5", "guardrail.threshold"),
        ("data.heldout_fraction=1.0", "data.heldout_fraction"),
        ("guardrail.train.learning_rate=-1", "guardrail.train.learning_rate"),
        ("guardrail.response_template=no_slots", "guardrail.response_template"),
        ("guardrail.train.global_batch_size=1", "guardrail.train.global_batch_size"),
    ],
)
def test_range_checks_name_the_key(override, key):
    cfg = compose([override, "output_dir=/tmp/x"])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_app_rejects_bad_key_before_loading_any_model(tmp_path):
    start = time.perf_counter()
    proc = run_app("duoguard-guardrail", "guardrail.train.lrr=1", f"hydra.run.dir={tmp_path}", timeout=120)
    assert proc.returncode != 0
    assert "guardrail.train.lrr" in proc.stderr + proc.stdout
    assert "training guardrail" not in proc.stdout + proc.stderr
    assert time.perf_counter() - start < 30


def test_app_reports_missing_required_value(tmp_path):
    proc = run_app("duoguard-eval", f"hydra.run.dir={tmp_path}", "logger=none", timeout=120)
    assert proc.returncode == 2
    assert "eval.guardrail_path" in proc.stderr
