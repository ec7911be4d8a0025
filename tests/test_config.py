"""Config composition of every preset, and the errors a wrong key, type or value gives."""

from __future__ import annotations

import time

import pytest
from hydra.errors import ConfigCompositionException

from duoguard import cli
from duoguard.config import ALL_SECTIONS, GAME_SECTIONS, Config, ConfigError, compose_raw, load, require
from tests.conftest import CONF_DIR, compose, run_app

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
APPS = {  # app config -> its entry point in duoguard/cli.py
    "guardrail": "guardrail_main",
    "eval": "eval_main",
    "game": "game_main",
    "safedpo": "safedpo_main",
    "pipeline": "pipeline_main",
}
# what each app runs once its config is valid, stubbed here so that no model loads: (module, name, returns)
STAGES = {
    "guardrail": [("duoguard.stages.guardrail", "run_guardrail_stage", None)],
    "eval": [
        ("duoguard.stages.guardrail", "run_eval_stage", None),
        ("duoguard.stages.target_eval", "run_target_eval", None),
    ],
    "game": [("duoguard.game", "play_game", {"history": []})],
    "safedpo": [("duoguard.stages.safedpo", "run_safedpo_stage", None)],
    "pipeline": [("duoguard.pipeline", "run_pipeline", {"objective": 0.0})],
}


def app_overrides(app: str) -> list[str]:
    """What a user must pass at least: duoguard-eval needs the checkpoint to score."""
    return ["output_dir=/tmp/x", *(["eval.guardrail_path=/tmp/g"] if app == "eval" else [])]


def run_app_checks(monkeypatch, app: str, overrides: list[str]) -> tuple[str, ...]:
    """Run the app's own function on the config Hydra would hand it (its load() with its sections,
    its require()s), with the stage it would start stubbed out; returns the sections it checked."""
    import importlib

    validated: list[tuple[str, ...]] = []
    started: list[tuple[str, object]] = []

    def spy(raw, sections):
        validated.append(tuple(sections))
        return load(raw, sections)

    monkeypatch.setattr(cli, "load", spy)
    for module, name, result in STAGES[app]:

        def stub(cfg, _name=name, _result=result):
            started.append((_name, cfg))
            return _result

        monkeypatch.setattr(importlib.import_module(module), name, stub)
        if hasattr(cli, name):  # should an app import its stage at module level
            monkeypatch.setattr(cli, name, stub)
    getattr(cli, APPS[app]).body(compose_raw(app, overrides))  # the app body Hydra calls
    assert len(validated) == 1 and len(started) == 1, (validated, started)
    assert isinstance(started[0][1], Config)  # the stage receives the typed config, never a DictConfig
    return validated[0]


def test_every_app_config_is_covered():
    app_files = {p.stem for p in CONF_DIR.glob("*.yaml")} - {"config"}
    assert app_files == set(APPS)
    assert "tiny_cpu" in EXPERIMENTS and "duoguard_qwen" in EXPERIMENTS


@pytest.mark.parametrize("app", list(APPS))
@pytest.mark.parametrize("preset", EXPERIMENTS)
def test_every_preset_composes_and_validates_for_every_app(monkeypatch, app, preset):
    cfg = compose([f"experiment={preset}", *app_overrides(app)], config_name=app)
    assert cfg.experiment == preset
    sections = run_app_checks(monkeypatch, app, [f"experiment={preset}", *app_overrides(app)])
    assert sections and set(sections) <= set(ALL_SECTIONS)
    if app == "game":
        assert sections == GAME_SECTIONS
    if app == "pipeline":
        assert sections == ALL_SECTIONS


def _compose_with_hydra(overrides: list[str], config_name: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from duoguard.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("sweep,app", [("game_optuna", "game"), ("pipeline_optuna", "pipeline")])
def test_optuna_sweeps_compose_and_every_searched_value_validates(monkeypatch, sweep, app):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep
    from omegaconf import OmegaConf

    hydra_cfg = _compose_with_hydra([f"sweep={sweep}", *app_overrides(app)], app).hydra
    assert hydra_cfg.runtime.choices["hydra/sweeper"] == "optuna"
    assert "OptunaSweeper" in hydra_cfg.sweeper._target_
    params = OmegaConf.to_container(hydra_cfg.sweeper.params, resolve=True)  # ranges come from search.*
    assert params

    run_app_checks(monkeypatch, app, [f"sweep={sweep}", *app_overrides(app)])
    # every searched key exists, and the ends of its range (lowest and highest choice) pass the app's checks
    parser = OverridesParser.create()
    for key, spec in params.items():
        assert OmegaConf.select(compose_raw(app, [f"sweep={sweep}", *app_overrides(app)]), key) is not None, (
            f"{sweep} searches {key}, which the config lacks"
        )
        space = parser.parse_override(f"{key}={spec}").value()
        assert isinstance(space, ChoiceSweep | IntervalSweep), spec
        ends = [min(space.list), max(space.list)] if isinstance(space, ChoiceSweep) else [space.start, space.end]
        for value in ends:  # the app's checks are ranges: a range's two ends stand for it
            run_app_checks(monkeypatch, app, [f"sweep={sweep}", *app_overrides(app), f"{key}={value}"])


def test_real_preset_differs_from_tiny_only_in_config():
    tiny = compose(["output_dir=/tmp/x"])
    real = compose(["experiment=duoguard_qwen", "output_dir=/tmp/x"])
    assert tiny.guardrail.model.name_or_path == "tiny"
    assert real.guardrail.model.name_or_path == "Qwen/Qwen2.5-0.5B"
    # DuoGuard's released hyperparameters, but a global batch sized for the game's data (tests/test_plan.py)
    t = real.guardrail.train
    assert (t.loss.value, t.learning_rate, t.lr_scheduler, t.warmup_ratio, t.epochs) == ("zlpr", 5e-5, "cosine", 0.1, 2)
    assert (t.global_batch_size, t.weight_decay, t.max_grad_norm, real.guardrail.max_length) == (16, 0.0, 1.0, 512)
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


@pytest.mark.parametrize(
    "group,option,text,key",
    [
        ("guardrail/model", "typo", "name_or_path: x\nnam_or_path: y\n", "guardrail.model.nam_or_path"),
        ("experiment", "typo", "# @package _global_\nguardrail:\n  train:\n    lrr: 0.1\n", "guardrail.train.lrr"),
    ],
    ids=["model_group_file", "experiment_file"],
)
def test_unknown_key_in_a_yaml_group_file_fails(tmp_path, group, option, text, key):
    """A misspelt key in a group file (here one written to a config dir added to Hydra's search
    path, as a user's own presets would be) fails composition naming the file and the full key."""
    (tmp_path / group).mkdir(parents=True)
    (tmp_path / group / f"{option}.yaml").write_text(text, encoding="utf-8")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    compose([search, "output_dir=/tmp/x"])  # the extra search path alone composes
    with pytest.raises(ConfigCompositionException) as e:
        compose([search, f"{group}={option}", "output_dir=/tmp/x"])
    msg = str(e.value) + str(e.value.__cause__)
    assert f"{group}/{option}" in msg and key in msg


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
def test_range_checks_fail_at_composition_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose([override, "output_dir=/tmp/x"])


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


@pytest.mark.parametrize(
    "override,key",
    [
        ("generator.grpo.loss_type=ppo", "generator.grpo.loss_type"),  # a choice, three levels down
        ("safedpo.pairs.responder=oracle", "safedpo.pairs.responder"),
        ("eval.target.refusal_judge=gpt", "eval.target.refusal_judge"),
        ("guardrail.train.lr_scheduler=cosine_annealing", "guardrail.train.lr_scheduler"),
    ],
)
def test_a_wrong_choice_in_a_nested_section_fails_at_composition_naming_the_full_key(override, key):
    with pytest.raises(ConfigCompositionException) as e:
        compose([override], "pipeline")
    msg = str(e.value) + str(e.value.__cause__)
    assert key in msg and "expected one of" in msg


@pytest.mark.parametrize(
    "override,key",
    [
        ("safedpo.pairs.heldout_fraction=1.5", "safedpo.pairs.heldout_fraction"),
        ("generator.sampling.top_p=0", "generator.sampling.top_p"),
        ("eval.target.refusal_llm.min_rating=9", "eval.target.refusal_llm.min_rating"),
        ("runtime.roles.judge.num_cpus=0", "runtime.roles.judge.num_cpus"),
        ("data.train_files=[{path: ''}]", "data.train_files[0].path"),
    ],
)
def test_a_bad_value_in_a_nested_section_fails_at_composition_naming_the_full_key(override, key):
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]") + ":"):
        compose([override], "pipeline")


def test_composition_gives_typed_sections_and_enum_members():
    from duoguard.config import GeneratorConfig, GRPOLoss, JudgeRule, ResumeMode, RuntimeConfig

    cfg = compose(["game.resume=true"], "game")  # YAML / the command line give true as a boolean
    assert isinstance(cfg, Config) and isinstance(cfg.generator, GeneratorConfig)
    assert isinstance(cfg.runtime, RuntimeConfig)
    assert cfg.generator.grpo.loss_type is GRPOLoss.dapo
    assert cfg.game.resume is ResumeMode.true
    assert all(isinstance(r, JudgeRule) for r in cfg.judge.rules)


def test_a_section_built_by_hand_takes_choices_as_strings():
    from duoguard.config import LRScheduler, PairRecipe, PairsConfig, SafeDPOConfig

    assert SafeDPOConfig(lr_scheduler="constant").lr_scheduler is LRScheduler.constant
    assert PairsConfig(recipe="all").recipe is PairRecipe.all
    with pytest.raises(ConfigError, match=r"^judge\.rules: unknown rule"):
        from duoguard.config import JudgeConfig

        JudgeConfig(rules=["vibes"]).check("judge")


def test_every_setting_is_documented_where_it_is_declared():
    from duoguard.config import settings

    found = list(settings())
    assert len(found) > 200
    undocumented = [key for key, _, _, help_text in found if len(help_text) < 8]
    assert not undocumented, undocumented


def test_choices_match_what_the_libraries_and_loaders_accept():
    from transformers.trainer_utils import SchedulerType

    from duoguard.config import BenchmarkFormat, JudgeRule, LRScheduler
    from duoguard.data.benchmarks import LOADERS
    from duoguard.roles import judge

    assert {s.value for s in LRScheduler} <= {s.value for s in SchedulerType}
    assert {f.value for f in BenchmarkFormat} == set(LOADERS)
    assert all(f"`{rule.value}`" in judge.__doc__ for rule in JudgeRule)  # each rule is implemented and described


def test_roles_and_runtime_receive_their_typed_sections(tmp_path, cache_dir):
    """The game hands each role its own typed section (no DictConfig, no plain dict)."""
    from duoguard.config import GeneratorConfig, JudgeConfig, RuntimeConfig
    from duoguard.game import spawn_roles
    from duoguard.runtime import make_runtime

    cfg = compose([f"output_dir={tmp_path}", f"cache_dir={cache_dir}", "logger=none"], "game")
    runtime = make_runtime(cfg.runtime, cfg.ray)
    assert isinstance(runtime.cfg, RuntimeConfig)
    roles = spawn_roles(runtime, cfg, [c.name for c in cfg.taxonomy.categories], None, tmp_path)
    generator, judge = roles.generator._obj, roles.judge._obj  # the role objects (runtime=local)
    assert type(generator.cfg) is GeneratorConfig
    assert type(judge.cfg) is JudgeConfig
    assert generator.cfg is not None and judge.cfg == cfg.judge


@pytest.mark.parametrize(
    ("section", "field", "choices"),
    [
        ("CollapseConfig", "action", "warn, stop"),
        ("RewardHackingConfig", "action", "warn, stop"),
        ("NoveltyConfig", "embeddings", "none, guardrail"),
    ],
)
def test_a_hand_built_section_with_an_unknown_choice_names_the_key_and_the_choices(section, field, choices):
    """Sections built by hand (tests, notebooks) skip OmegaConf's enum check: check() still refuses them."""
    import duoguard.config.game as game_config
    from duoguard.config import ConfigError

    with pytest.raises(ConfigError, match=rf"^game\.x\.{field}: must be one of {choices}, got 'bogus'$"):
        getattr(game_config, section)(**{field: "bogus"}).check("game.x")
