"""`python -m duoguard <app> [overrides...]`: the console scripts without installing them;
`python -m duoguard settings [prefix]` lists every setting with its default and help text;
`python -m duoguard plan <app> [overrides...]` is `duoguard-plan`.

Useful where only a checkout is at hand, e.g. a Ray job whose `working_dir` is this repository
(scripts/ray_submit.py submits `python -m duoguard game ...`).
"""

from __future__ import annotations

import sys

APPS = ("guardrail", "game", "safedpo", "eval", "pipeline", "classify", "settings", "plan")


def print_settings(prefix: str = "") -> int:
    """Every setting under `prefix` (e.g. `generator.grpo`): key, default and help, one per line."""
    import dataclasses

    from duoguard.config import settings

    found = [s for s in settings() if s[0].startswith(prefix)]
    for key, _, default, help_text in found:
        shown = "(section)" if dataclasses.is_dataclass(default) else repr(default)
        print(f"{key} = {shown}\n    {help_text}")
    if not found:
        print(f"no setting starts with {prefix!r}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str]) -> int | None:
    if not argv or argv[0] not in APPS:
        print(f"usage: python -m duoguard {{{','.join(APPS)}}} [overrides...]", file=sys.stderr)
        return 2
    from duoguard import cli

    app, rest = argv[0], argv[1:]
    if app == "classify":
        return cli.classify_main(rest)
    if app == "settings":
        return print_settings(*rest[:1])
    if app == "plan":
        return cli.plan_main(rest)
    sys.argv = [f"duoguard-{app}", *rest]  # Hydra parses sys.argv
    getattr(cli, f"{app}_main")()
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
