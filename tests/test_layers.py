"""The architecture as a test: each module imports only modules on lower floors (README, Layout),
Ray only in runtime/ray_actors.py, nothing imports cli.py, and the apps start without torch."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

FLOORS = {
    0: ["errors", "atomic"],
    0.3: ["toy_world"],  # the toy world's truth, files and models (config resolves paths into it)
    # config/ is a package on floor 0.5 (it imports only errors); inside it, in order:
    0.51: ["config.base"],
    0.52: ["config.paths", "config.data", "config.models", "config.infra"],
    0.53: ["config.guardrail", "config.game", "config.answer_judge"],
    0.54: ["config.safedpo", "config.evaluation", "config.search"],
    0.55: ["config.root"],
    0.56: ["config.composition"],
    0.59: ["config"],  # the package's face (duoguard/config/__init__.py)
    1: [
        "taxonomy",
        "models",
        "losses",
        "metrics",
        "rewards",
        "tracking",
        "training",
        "distributed",
        "trl_private",
        "manifest",
        "plan",
        "archive",
        "league",
        "health",
    ],
    2: ["data.schema", "data.decontam", "report"],  # data/ is one floor, in order: schema, record, readers, the rest
    2.2: ["data.record"],
    2.3: ["data.readers", "data.responses", "data.pool", "prompts", "diversity", "novelty"],
    2.4: ["game_report"],  # the game's report.md: metrics, pool records, the coverage archive
    2.5: ["data.benchmarks"],
    3: ["roles.generator", "roles.guardrail", "roles.judge", "roles.target"],
    # helpfulness rates with the judge's LLM rater; pattern_guard judges answers by regular expressions
    3.1: ["roles.llm_guard", "roles.helpfulness", "roles.pattern_guard"],
    # runtime/ is a package on floor 3.9 (it knows no role class); inside it, in order:
    3.91: ["runtime.handles", "runtime.placement"],
    3.92: ["runtime.local", "runtime.ray_actors"],
    3.99: ["runtime"],  # the package's face (duoguard/runtime/__init__.py)
    4: ["factory", "evaluate", "suite", "referee", "refusal", "checkpoints"],
    4.1: ["safedpo.transform"],  # safedpo/: pairs and their transform, then the trainer
    4.2: ["safedpo.pairs", "safedpo.trainer"],
    5: ["game", "stages.guardrail", "stages.safedpo", "stages.target_eval", "classify", "toy_report"],
    6: ["pipeline"],
    7: ["cli"],
    8: ["__main__"],  # `python -m duoguard <app>`: the console scripts without installing them
}
FLOOR = {module: floor for floor, modules in FLOORS.items() for module in modules}
PACKAGE = ROOT / "duoguard"


def imports(path) -> set[str]:
    """Every module a file imports (top-level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from duoguard import cli`
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if name.endswith(".__init__"):  # a package's __init__ is the package itself when it exports names
            name = name.removesuffix(".__init__")
            if name not in FLOOR:
                continue
        elif name == "__init__":
            continue
        yield name, path


def test_every_module_has_a_floor():
    assert {name for name, _ in modules()} == set(FLOOR)


def test_modules_import_only_lower_floors():
    wrong = []
    for name, path in modules():
        for dep in imports(path):
            if dep.startswith("duoguard.") and dep.removeprefix("duoguard.") in FLOOR:
                target = dep.removeprefix("duoguard.")
                if FLOOR[target] >= FLOOR[name]:
                    wrong.append(f"{name} (floor {FLOOR[name]}) imports {target} (floor {FLOOR[target]})")
    assert not wrong, "\n".join(wrong)


def test_ray_only_in_the_ray_runtime_and_nothing_imports_cli():
    for name, path in modules():
        deps = imports(path)
        if name != "runtime.ray_actors":
            assert not any(d == "ray" or d.startswith("ray.") for d in deps), name
        if name != "__main__":
            assert "duoguard.cli" not in deps, name


def test_apps_start_without_torch_or_ray():
    """Config errors and --help answer fast: the app module imports no heavy library."""
    heavy = "('torch', 'transformers', 'ray', 'trl')"
    code = f"import sys, duoguard.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_settings_are_listed_with_their_help():
    """`python -m duoguard settings <prefix>` prints each documented setting, without torch."""
    out = subprocess.run(
        [sys.executable, "-m", "duoguard", "settings", "safedpo.delta"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("safedpo.delta = 10.0\n") and "safety margin" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "duoguard", "settings", "nope"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert bad.returncode == 2 and "no setting starts with 'nope'" in bad.stderr


def test_runtime_without_ray_imports_neither_ray_nor_torch():
    """The local runtime and the placement arithmetic are plain Python: Ray loads only for runtime=ray."""
    code = (
        "import sys, duoguard.runtime, duoguard.runtime.placement, duoguard.runtime.local; "
        "print(sorted(m for m in ('torch', 'transformers', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
