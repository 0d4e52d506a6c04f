"""The copy-the-prompt baseline: the prompt's equations, in order, joined by ``" and "``.

A model that only copies its prompt already shares many bigrams with the reference (premises,
intermediates and goal are all in it), so every score table shows this baseline beside the
models: what a model adds is its distance above it.
"""
from __future__ import annotations

from .base.vocabulary import JOIN
from .prompts import DERIVE, GIVEN, OBTAIN

MODEL_NAME = "copy-prompt"


def prompt_equations(prompt: str) -> list[str]:
    """The equations of ``Given A and B, then derive C, then obtain D`` -> ``[A, B, C, D]``.

    Equations never contain ``", then "`` or ``" and "`` (the LaTeX printer writes neither),
    so splitting on the template's literal separators is exact.
    """
    if not isinstance(prompt, str) or not prompt.startswith(GIVEN) or OBTAIN not in prompt:
        raise ValueError(f"not a derivation prompt (expected 'Given ..., then obtain ...'): {prompt!r:.120}")
    head, goal = prompt[len(GIVEN):].rsplit(OBTAIN, 1)
    premises, *intermediates = head.split(DERIVE)
    equations = premises.split(JOIN) + intermediates + [goal]
    if any(not eq.strip() for eq in equations):
        raise ValueError(f"derivation prompt with an empty equation: {prompt!r:.120}")
    return [eq.strip() for eq in equations]


def copy_prompt(prompt: str) -> str:
    """The baseline's output for one prompt."""
    return JOIN.join(prompt_equations(prompt))


def predictions(items: list[dict], set_name: str) -> list[dict]:
    """Baseline records in the shared predictions format for the items of one test set."""
    return [{"id": item["id"], "model": MODEL_NAME, "set": set_name, "prompt": item["prompt"],
             "reference": item["derivation"], "prediction": copy_prompt(item["prompt"]),
             "srepr_derivation": item.get("srepr_derivation")} for item in items]
