"""SafeDPO: from the game's prompts to a safer target.

pairs       preference pairs (Egida's recipe from prompts, or PKU-SafeRLHF-style files)
transform   T(D): keep / swap / drop, so every chosen answer is safe
trainer     TRL's DPOTrainer with SafeDPO's margin Δ
"""
