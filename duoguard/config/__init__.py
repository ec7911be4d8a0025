"""Typed configuration: the schema by area, its composition into one checked object, path helpers.

base        ConfigError, `setting(default, help)`, `check()`, Choice (the enums' base)
data        taxonomy, data files, the data section
models      model, sampling, LoRA and precision settings shared by every role
guardrail   the guardrail and its training recipe
game        generator (GRPO), judge, rewards, the round loop
safedpo     target and SafeDPO
evaluation  benchmarks, target evaluation
infra       logger, runtime, ray, hardware
root        `Config` and the checks across sections
composition Hydra composition -> `Config` (`compose`, `load`), `require`, `to_container`
paths       conf/ and files named in config
"""

from duoguard.config.answer_judge import (
    LLAMA_GUARD_TEMPLATE,
    AnswerJudge,
    AnswerJudgeConfig,
)
from duoguard.config.base import (
    Choice,
    ConfigError,
    compile_regex,
    setting,
)
from duoguard.config.composition import (
    SCHEMA_NAME,
    compose,
    compose_raw,
    load,
    register_configs,
    require,
    settings,
    to_container,
    with_overrides,
)
from duoguard.config.data import (
    ATTACK_STYLES,
    CategoryConfig,
    Contaminated,
    DataConfig,
    DataFileConfig,
    FileFormat,
    OnBadRow,
    ResponseTemplates,
    TaxonomyConfig,
)
from duoguard.config.evaluation import (
    BenchmarkConfig,
    BenchmarkFormat,
    EvalConfig,
    EvalMode,
    RefusalJudge,
    TargetEvalConfig,
)
from duoguard.config.game import (
    COLLAPSE_METRICS,
    CollapseAction,
    CollapseConfig,
    CurriculumConfig,
    CurriculumRule,
    FoolReward,
    GameConfig,
    GeneratorConfig,
    GeneratorTemplates,
    GRPOLoss,
    GRPOSettings,
    GuardrailUpdate,
    JudgeConfig,
    JudgeRule,
    LabelCheck,
    LLMJudgeConfig,
    ResumeMode,
    RewardConfig,
    RewardScaling,
)
from duoguard.config.guardrail import (
    CalibrationConfig,
    CalibrationRule,
    GuardrailConfig,
    GuardrailTrainConfig,
    LossType,
)
from duoguard.config.infra import (
    ROLES,
    HardwareConfig,
    LoggerBackend,
    LoggerConfig,
    RayConfig,
    RoleResources,
    RolesConfig,
    RuntimeConfig,
    RuntimeName,
    WandbMode,
)
from duoguard.config.models import (
    LoraSettings,
    LRScheduler,
    ModelConfig,
    Precision,
    SamplingConfig,
    TinyModelConfig,
)
from duoguard.config.paths import (
    conf_dir,
    config_file,
)
from duoguard.config.root import (
    ALL_SECTIONS,
    APP_SECTIONS,
    GAME_SECTIONS,
    Config,
)
from duoguard.config.safedpo import (
    HelpfulnessConfig,
    HelpfulnessScorer,
    PairRecipe,
    PairsConfig,
    PreferenceFileConfig,
    Responder,
    SafeDPOConfig,
    TargetConfig,
)
from duoguard.config.search import SearchConfig

__all__ = [
    "ALL_SECTIONS",
    "APP_SECTIONS",
    "AnswerJudge",
    "AnswerJudgeConfig",
    "LLAMA_GUARD_TEMPLATE",
    "HelpfulnessConfig",
    "HelpfulnessScorer",
    "ATTACK_STYLES",
    "BenchmarkConfig",
    "BenchmarkFormat",
    "CalibrationConfig",
    "CalibrationRule",
    "CategoryConfig",
    "Choice",
    "compile_regex",
    "compose",
    "compose_raw",
    "conf_dir",
    "Config",
    "config_file",
    "COLLAPSE_METRICS",
    "CollapseAction",
    "CollapseConfig",
    "ConfigError",
    "Contaminated",
    "CurriculumConfig",
    "CurriculumRule",
    "DataConfig",
    "DataFileConfig",
    "EvalConfig",
    "EvalMode",
    "FileFormat",
    "FoolReward",
    "GAME_SECTIONS",
    "GameConfig",
    "GeneratorConfig",
    "GeneratorTemplates",
    "GRPOLoss",
    "GRPOSettings",
    "GuardrailConfig",
    "GuardrailTrainConfig",
    "GuardrailUpdate",
    "LabelCheck",
    "HardwareConfig",
    "JudgeConfig",
    "JudgeRule",
    "LLMJudgeConfig",
    "load",
    "LoggerBackend",
    "LoggerConfig",
    "LoraSettings",
    "LossType",
    "LRScheduler",
    "ModelConfig",
    "OnBadRow",
    "PairRecipe",
    "PairsConfig",
    "Precision",
    "PreferenceFileConfig",
    "RayConfig",
    "RefusalJudge",
    "register_configs",
    "require",
    "Responder",
    "ResponseTemplates",
    "ResumeMode",
    "RewardConfig",
    "RewardScaling",
    "RoleResources",
    "ROLES",
    "RolesConfig",
    "RuntimeConfig",
    "RuntimeName",
    "SafeDPOConfig",
    "SearchConfig",
    "SamplingConfig",
    "SCHEMA_NAME",
    "setting",
    "settings",
    "TargetConfig",
    "TargetEvalConfig",
    "TaxonomyConfig",
    "TinyModelConfig",
    "to_container",
    "WandbMode",
    "with_overrides",
]
