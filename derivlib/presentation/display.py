"""Notebook display helpers: what a notebook shows below a call, rendered for Jupyter."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from IPython.display import HTML, Image, Markdown

from .. import prompts
from ..base.vocabulary import split_equations
from ..check import DerivationCheck, examples as check_examples
from ..sets import examples as set_examples


def _as_math(text: str) -> str:
    return "<br>".join(f"${eq}$" for eq in split_equations(text)) or "*(empty)*"


def samples(records: Sequence[Mapping]) -> Markdown:
    """Prompts, references and outputs rendered as mathematics."""
    blocks = []
    for sample in records:
        blocks.append(f"**{sample['id']}** — prompt: {sample['prompt'].replace('$', '')}\n\n"
                      f"| reference | model |\n|---|---|\n"
                      f"| {_as_math(sample['reference'])} | {_as_math(sample['prediction'])} |\n")
    return Markdown("\n\n".join(blocks))


def label_examples(checks: Sequence[DerivationCheck]) -> Markdown:
    """One example of each symbolic label, rendered as mathematics."""
    lines = []
    for label, equation in check_examples(checks).items():
        shown = equation.latex or equation.text.replace("$", "")
        body = f"$${shown}$$" if equation.latex else f"`{equation.text[:200]}`"
        lines.append(f"**{label}** ({equation.reason or 'matches a reference equation'}):\n\n{body}\n")
    return Markdown("\n".join(lines))


def set_items(items: Mapping[str, Sequence[Mapping]], index: int = 0) -> Markdown:
    """One item per test set (a static item and its perturbed versions) rendered as mathematics."""
    chosen = set_examples(items, index)
    if not chosen:
        return Markdown("_no test items_")
    lines = [f"**Item `{next(iter(chosen.values()))['id']}`**", ""]
    for name, item in chosen.items():
        parts = prompts.parse_prompt(item["prompt"])
        lines.append(f"**{name}**  ")
        lines.append("Prompt: Given " + " and ".join(f"${p}$" for p in parts.premises)
                     + "".join(f", then derive ${p}$" for p in parts.intermediates)
                     + f", then obtain ${parts.goal}$  ")
        lines.append("Target: " + " and ".join(f"${e}$" for e in item["equations"]))
        if item.get("renaming"):
            lines.append("  \nRenaming: " + ", ".join(f"${a}$ → ${b}$" for a, b in item["renaming"].items()))
        lines.append("")
    return Markdown("\n".join(lines))


def table(frame) -> HTML | Markdown:
    """A DataFrame shown whole (Jupyter would cut it at 60 rows), its text escaped."""
    if not len(frame):
        return Markdown("_none_")
    return HTML(frame.to_html(index=False, escape=True, border=0))


def figure(path: Path | str) -> Image:
    """A saved figure, shown in the notebook."""
    return Image(filename=str(path))

