"""Every private name of TRL that duoguard relies on, in one place, checked at start.

TRL's public API does not cover four things duoguard needs: reusing one GRPOTrainer across
rounds, keeping a restored generator's KL reference on the original policy, SafeDPO's shifted
reference log-probs, and logging SafeDPO's clean rewards. Where duoguard
reaches into TRL for them, the name is listed below with what it is used for, and
`check_grpo_trainer` / `check_dpo_trainer` verify that the installed TRL still has it (methods by
signature, instance attributes by the class source), so a TRL release that renames one stops the
run at start instead of training silently without it. pyproject.toml pins TRL to the minor
version `tests/test_trl_private.py` passed on. TRL is imported only when a check runs.
"""

from __future__ import annotations

import inspect
import re

# name -> (parameter names of a method, or None for a name the class source must mention; what duoguard uses it for)
GRPO_PRIVATE = {
    "_step": (
        None,
        "GRPOTrainer counts micro-steps in `_step` across train() calls and regenerates completions in "
        "_prepare_inputs only when `_step` reaches a multiple of steps_per_generation * num_iterations; "
        "the generator resets it (reset_grpo_rollout) so each round starts with a fresh rollout",
    ),
    "_buffered_inputs": (
        None,
        "GRPOTrainer keeps the last rollout in `_buffered_inputs` and trains on its slices until the "
        "next generation; the generator clears it (reset_grpo_rollout) so no round trains on the last round's rollout",
    ),
    "get_config_model_id": (
        None,
        "GRPOTrainer loads its KL reference model from get_config_model_id(model.config), i.e. "
        "config._name_or_path; the generator points it at the original policy (set_grpo_reference)",
    ),
}
DPO_PRIVATE = {
    "_precompute_ref_logps": (
        ("self", "dataset", "name", "batch_size"),
        "DPOTrainer.__init__ calls it to add the `ref_chosen_logps` / `ref_rejected_logps` columns that "
        "_compute_loss reads; SafeDPOTrainer overrides it to shift the rejected ones by SafeDPO's margin",
    ),
    "ref_rejected_logps": (None, "the precomputed column SafeDPOTrainer shifts by the margin"),
    "_compute_loss": (
        ("self", "model", "inputs", "return_outputs"),
        "compute_loss calls it for the loss and the `rewards/*` metrics; SafeDPOTrainer overrides it to "
        "take the per-pair margin out of the batch and log the clean rewards",
    ),
    "_metrics": (
        None,
        "DPOTrainer's per-mode metric lists, where SafeDPOTrainer adds `safety/margin` and `rewards_clean/*`",
    ),
    "rewards/rejected": (None, "the metric SafeDPOTrainer corrects by the margin into `rewards_clean/rejected`"),
    "rewards/margins": (None, "the metric SafeDPOTrainer corrects by the margin into `rewards_clean/margins`"),
    "_set_signature_columns_if_needed": (
        ("self",),
        "sets `_signature_columns`, the dataset columns the Trainer keeps; SafeDPOTrainer adds `safety_margin`",
    ),
    "_signature_columns": (None, "the dataset columns the Trainer keeps; SafeDPOTrainer adds `safety_margin`"),
}


def _check(cls, expected: dict) -> None:
    import trl

    source = inspect.getsource(cls)
    for name, (params, why) in expected.items():
        if params is None:
            found = re.search(rf"(?<![\w/]){re.escape(name)}(?![\w/])", source)
            problem = None if found else "is not in the class source"
        elif not callable(getattr(cls, name, None)):
            problem = "is not a method"
        else:
            found = tuple(inspect.signature(getattr(cls, name)).parameters)
            problem = None if found == params else f"takes ({', '.join(found)}), expected ({', '.join(params)})"
        if problem:
            raise RuntimeError(
                f"TRL {trl.__version__}: `{name}` in {cls.__name__} {problem}. duoguard relies on this private name: "
                f"{why}. Install the TRL pinned in pyproject.toml, or update duoguard/trl_private.py and its callers."
            )


def check_grpo_trainer(cls=None) -> None:
    """Raise RuntimeError if TRL's GRPOTrainer (or `cls`) lacks a private name the generator uses."""
    if cls is None:
        from trl import GRPOTrainer as cls
    _check(cls, GRPO_PRIVATE)


def check_dpo_trainer(cls=None) -> None:
    """Raise RuntimeError if TRL's DPOTrainer (or `cls`) lacks a private name SafeDPOTrainer uses."""
    if cls is None:
        from trl import DPOTrainer as cls
    _check(cls, DPO_PRIVATE)


def reset_grpo_rollout(trainer) -> None:
    """Make the next train() of a reused GRPOTrainer generate a fresh rollout from its train_dataset.

    train() starts a new TrainerState but leaves GRPOTrainer's micro-step counter and rollout
    buffer as the last call left them, so without this a round could train on buffered
    completions of the previous round's prompts, scored by the previous round's referee.
    """
    for name in ("_step", "_buffered_inputs"):
        if not hasattr(trainer, name):
            raise RuntimeError(f"{type(trainer).__name__} has no `{name}`: {GRPO_PRIVATE[name][1]}")
    trainer._step, trainer._buffered_inputs = 0, None


def set_grpo_reference(model, path: str) -> None:
    """Make GRPOTrainer load its KL reference from `path` (TRL reads the model id from the config)."""
    model.config._name_or_path = str(path)
