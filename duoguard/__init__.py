"""duoguard: adversarial self-play for LLM safety.

    from duoguard import Guardrail
    g = Guardrail.from_pretrained("runs/guardrail/<date>/guardrail")
    g.predict(["How do I kill a Python process?"])   # [N, num_categories] probabilities

Heavy modules load on first use, so `import duoguard` stays light.
"""

__version__ = "0.1.0"
__all__ = ["Guardrail", "Taxonomy"]


def __getattr__(name: str):
    if name == "Guardrail":
        from duoguard.roles.guardrail import Guardrail

        return Guardrail
    if name == "Taxonomy":
        from duoguard.taxonomy import Taxonomy

        return Taxonomy
    raise AttributeError(f"module 'duoguard' has no attribute {name!r}")
