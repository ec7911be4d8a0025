"""The stages an app runs, each writing a manifest (duoguard/manifest.py) the next one reads.

    guardrail     duoguard-guardrail (train, evaluate, save) and duoguard-eval's guardrail mode
    safedpo       duoguard-safedpo: pairs from a game's pool, SafeDPO on the target
    target_eval   duoguard-eval's target mode: ASR and over-refusal before and after SafeDPO

The game (duoguard/game.py) is a stage too; duoguard/pipeline.py chains game, SafeDPO and
target evaluation.
"""
