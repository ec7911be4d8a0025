"""`python -m duoguard <app> [overrides...]`: the console scripts without installing them.

Useful where only a checkout is at hand, e.g. a Ray job whose `working_dir` is this repository
(scripts/ray_submit.py submits `python -m duoguard game ...`).
"""

from __future__ import annotations

import sys

APPS = ("guardrail", "game", "safedpo", "eval", "pipeline", "classify")


def main(argv: list[str]) -> int | None:
    if not argv or argv[0] not in APPS:
        print(f"usage: python -m duoguard {{{','.join(APPS)}}} [overrides...]", file=sys.stderr)
        return 2
    from duoguard import cli

    app, rest = argv[0], argv[1:]
    if app == "classify":
        return cli.classify_main(rest)
    sys.argv = [f"duoguard-{app}", *rest]  # Hydra parses sys.argv
    getattr(cli, f"{app}_main")()
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
