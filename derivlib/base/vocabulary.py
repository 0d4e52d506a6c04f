"""Names that the whole project shares, each defined once: test sets, record fields, item ids."""
from __future__ import annotations

#: The five test sets, static first, in the paper's order.
SETS = ("static", "VR", "EE", "AG", "SR")
#: The four perturbed sets, each matched to static items by ``id``.
PERTURBATIONS = ("VR", "EE", "AG", "SR")
#: Files of a sets run directory (``<name>.jsonl``): training pairs, dev pairs, the test sets.
SET_FILES = ("train", "dev", *SETS)
#: Separator of the equations of a derivation's text (the authors' format).
JOIN = " and "

#: Fields of a predictions record (the shared format of every model's outputs, input of scoring).
PREDICTION_FIELDS = ("id", "model", "set", "prompt", "reference", "prediction", "srepr_derivation")
#: Fields a predictions record must have.
REQUIRED_PREDICTION_FIELDS = ("id", "model", "set", "reference", "prediction")
#: Fields a test or training item must have as non-empty text.
REQUIRED_ITEM_FIELDS = ("id", "prompt", "derivation")


def field(set_name: str, kind: str) -> str:
    """Authors' field name of ``kind`` (prompt, derivation, srepr_derivation) for a set."""
    return kind if set_name == "static" else f"{set_name} {kind}"


def paper_item_id(index: int) -> str:
    """The id of the ``index``-th item of an authors' results file, the same in every set."""
    return f"paper-{index:03d}"


def split_equations(text: str) -> list[str]:
    """A derivation's text as its equations (empty pieces dropped)."""
    return [part.strip() for part in text.split(JOIN) if part.strip()]
