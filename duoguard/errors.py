"""The one base class for bad input: a config value, data row, file, checkpoint or argument.

Apps catch it and stop with its message (which names the key, file and line) and exit code 2
instead of a traceback; everything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input by the user; the message says what and where."""


def check_batch(prompts, responses, call: str, error: type[UserError] = UserError) -> None:
    """A batch call's arguments: a list of prompts (not one string) and, when given, one response each."""
    if isinstance(prompts, str):
        raise error(f"{call} takes a list of prompts, not a single string")
    if responses is not None and len(responses) != len(prompts):
        raise error(f"{len(prompts)} prompts but {len(responses)} responses")


class GameStopped(RuntimeError):
    """A fault policy stopped the game (too many role failures or non-finite updates); the last
    completed round is intact in the run's checkpoints."""
