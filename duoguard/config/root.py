"""The whole configuration, and the checks that concern more than one section."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from duoguard.config.base import Section, check, setting
from duoguard.config.data import DataConfig, TaxonomyConfig
from duoguard.config.evaluation import EvalConfig
from duoguard.config.game import GameConfig, GeneratorConfig, JudgeConfig
from duoguard.config.guardrail import GuardrailConfig
from duoguard.config.infra import HardwareConfig, LoggerConfig, RayConfig, RuntimeConfig, RuntimeName
from duoguard.config.safedpo import SafeDPOConfig, TargetConfig
from duoguard.config.search import SearchConfig

# the sections each app uses, and so checks when it starts
GAME_SECTIONS = (
    "taxonomy",
    "data",
    "guardrail",
    "generator",
    "judge",
    "game",
    "logger",
    "runtime",
    "hardware",
    "search",
)
ALL_SECTIONS = (*GAME_SECTIONS, "target", "safedpo", "eval")
APP_SECTIONS = {
    "guardrail": ("taxonomy", "data", "guardrail", "eval", "logger", "runtime", "hardware"),
    "eval": ("eval", "logger", "runtime", "hardware"),
    "game": GAME_SECTIONS,
    "safedpo": ("target", "safedpo", "logger", "runtime", "hardware"),
    "pipeline": ALL_SECTIONS,
}


@dataclass
class Config(Section):
    experiment: str = setting("tiny_cpu", "name of the experiment preset (conf/experiment/)")
    seed: int = setting(0, "seed of everything not seeded by its own section")
    cache_dir: str = setting("~/.cache/duoguard", "tiny offline checkpoints are built here (env DUOGUARD_CACHE)")
    output_dir: str = setting(MISSING, "the run's folder; Hydra's run dir unless overridden")
    progress: bool = setting(True, "progress bars on long work")
    taxonomy: TaxonomyConfig = setting(factory=TaxonomyConfig, help="safety categories")
    data: DataConfig = setting(factory=DataConfig, help="training data")
    guardrail: GuardrailConfig = setting(factory=GuardrailConfig, help="the guardrail")
    generator: GeneratorConfig = setting(factory=GeneratorConfig, help="the generator")
    judge: JudgeConfig = setting(factory=JudgeConfig, help="the judge that keeps or rejects candidates")
    game: GameConfig = setting(factory=GameConfig, help="the round loop")
    target: TargetConfig = setting(factory=TargetConfig, help="the target LLM SafeDPO trains")
    safedpo: SafeDPOConfig = setting(factory=SafeDPOConfig, help="SafeDPO fine-tuning of the target")
    eval: EvalConfig = setting(factory=EvalConfig, help="evaluation")
    logger: LoggerConfig = setting(factory=LoggerConfig, help="tracking")
    runtime: RuntimeConfig = setting(factory=RuntimeConfig, help="placement of the roles")
    ray: RayConfig = setting(factory=RayConfig, help="ray.init arguments (runtime=ray)")
    hardware: HardwareConfig = setting(
        factory=HardwareConfig, help="the GPUs the run is planned for (duoguard-plan and the check at app start)"
    )
    search: SearchConfig = setting(factory=SearchConfig, help="what sweeps optimise and the ranges they search")

    def check(self, sections: tuple[str, ...] = ALL_SECTIONS) -> None:
        """Each listed section checks itself (errors name the full key); then the checks across sections."""
        for name in sections:
            section = getattr(self, name)
            if hasattr(section, "check"):
                section.check(name)
        if "generator" in sections and "runtime" in sections:  # the game: its roles' ranks are Ray actors
            for role in ("generator", "guardrail"):
                n = getattr(self, role).num_workers
                check(
                    n == 1 or self.runtime.name == RuntimeName.ray,
                    f"{role}.num_workers",
                    f"is {n}: in the game, a role's ranks need runtime=ray (one actor each)",
                )
        if "search" in sections and "eval" in sections:  # the pipeline's objective needs an over-refusal set
            check(
                self.search.over_refusal_weight == 0 or self.eval.target.over_refusal is not None,
                "search.over_refusal_weight",
                f"is {self.search.over_refusal_weight}, but eval.target.over_refusal is null: set an over-refusal set "
                "(eval=none uses the seed set's safe prompts, eval=shared_benchmarks XSTest's) or set it to 0",
            )
