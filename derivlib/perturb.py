"""The four perturbed test sets (PAPER.md §3), each item linked to its static item by ``id``.

- VR, variable renaming: every symbol and function name is mapped one-to-one onto
  out-of-vocabulary symbols (default :data:`derivlib.symbols.RENAMING_SYMBOLS`, the authors'
  eleven Greek letters); prompt and target are re-rendered from the renamed expressions.
- EE, expression exchange: every equation's sides are swapped and the substitution annotations
  flip, so the swapped derivation replays step by step.
- AG, alternative goal: premises and intermediates stay; the last step is replaced by another
  step the generator draws from the same prefix (a different equation, not a premise).
- SR, step removal: the prompt loses every intermediate; the target is unchanged.

A perturbation that does not apply to an item (SR without intermediates, VR with more names
than renaming symbols, AG without an alternative step, a result the verifier rejects) raises
:class:`NotApplicable` with a short reason; :func:`perturb_records` skips and counts it.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence

import sympy as sp
from sympy.core.function import AppliedUndef

from . import generate, prompts
from .base.seeding import item_rng
from .base.vocabulary import JOIN, PERTURBATIONS
from .derivation import (EQUATION_OPERAND, SUBSTITUTIONS, Derivation, from_srepr, is_premise,
                         normalise_annotation, operator_name, to_latex, to_srepr)
from .symbols import RENAMING_SYMBOLS, VOCABULARY
from .verify import verify_steps

#: The perturbations, in the paper's order.
KINDS = PERTURBATIONS
FLIPPED = {SUBSTITUTIONS[0]: SUBSTITUTIONS[1], SUBSTITUTIONS[1]: SUBSTITUTIONS[0]}


class NotApplicable(Exception):
    """The perturbation does not apply to this item; ``reason`` is the count key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation {kind!r} (known: {', '.join(KINDS)})")
    return kind


def _steps(record_or_steps: Mapping | Sequence) -> list[list]:
    if isinstance(record_or_steps, Mapping):
        return Derivation.from_record(dict(record_or_steps)).steps
    return [[normalise_annotation(a), s] for a, s in record_or_steps]


# ----------------------------------------------------------------------------------- VR

def _operand_expr(annotation) -> sp.Basic | None:
    """The SymPy operand of an annotation, when it is an expression (not a number or equation)."""
    if isinstance(annotation, list) and len(annotation) > 2 and annotation[0] not in EQUATION_OPERAND:
        operand = annotation[2]
        if isinstance(operand, str):
            return from_srepr(operand)
    return None


def names_in(steps: Sequence[Sequence]) -> list[str]:
    """Every symbol and undefined-function name of a derivation, first occurrence first
    (equations in order, then annotation operands; each expression in SymPy's preorder)."""
    exprs = [from_srepr(s) for _, s in steps]
    exprs += [e for e in (_operand_expr(a) for a, _ in steps) if e is not None]
    seen: dict[str, None] = {}
    for expr in exprs:
        for node in sp.preorder_traversal(expr):
            if isinstance(node, sp.Symbol):
                seen.setdefault(node.name)
            elif isinstance(node, AppliedUndef):
                seen.setdefault(node.func.__name__)
    return list(seen)


def rename(expr: sp.Basic, mapping: Mapping[str, str]) -> sp.Basic:
    """``expr`` with symbols and undefined functions renamed (simultaneously) by ``mapping``.

    The expression is rebuilt, so sums and products take the canonical order of the new names,
    as a derivation generated with those names would print.
    """
    symbols = {s: s.func(mapping[s.name], **s.assumptions0)
               for s in expr.atoms(sp.Symbol) if s.name in mapping}
    expr = expr.xreplace(symbols)
    return expr.replace(
        lambda e: isinstance(e, AppliedUndef) and e.func.__name__ in mapping,
        lambda e: sp.Function(mapping[e.func.__name__])(*e.args))


def renaming_for(steps: Sequence[Sequence], rng: random.Random,
                 targets: Sequence[str] = RENAMING_SYMBOLS) -> dict[str, str]:
    """A one-to-one map of the derivation's names onto a random subset of ``targets``."""
    names = names_in(steps)
    if len(names) > len(targets):
        raise NotApplicable("too_many_names", f"{len(names)} names, {len(targets)} renaming symbols")
    chosen = rng.sample(list(targets), len(names))
    return dict(zip(names, chosen))


def rename_steps(steps: Sequence[Sequence], mapping: Mapping[str, str]) -> list[list]:
    out = []
    for annotation, srepr in steps:
        annotation = normalise_annotation(annotation)
        operand = _operand_expr(annotation)
        if operand is not None:
            annotation = [annotation[0], annotation[1], to_srepr(rename(operand, mapping))]
        out.append([annotation, to_srepr(rename(from_srepr(srepr), mapping))])
    return out


def variable_renaming(steps: Sequence[Sequence], rng: random.Random,
                      targets: Sequence[str] = RENAMING_SYMBOLS) -> tuple[list[list], dict[str, str]]:
    """VR: the renamed steps and the renaming used (old name -> new name)."""
    steps = _steps(steps)
    vocabulary = set(VOCABULARY)
    inside = sorted(set(targets) & vocabulary)
    if inside:
        raise ValueError(f"renaming symbols {inside} are in the training vocabulary")
    mapping = renaming_for(steps, rng, targets)
    return rename_steps(steps, mapping), mapping


# ----------------------------------------------------------------------------------- EE

def expression_exchange(steps: Sequence[Sequence]) -> list[list]:
    """EE: every equation with its sides swapped; substitutions flip direction."""
    out = []
    for annotation, srepr in _steps(steps):
        equation = from_srepr(srepr)
        if not isinstance(equation, sp.Equality):
            raise NotApplicable("not_an_equation", srepr[:80])
        if isinstance(annotation, list) and annotation[0] in FLIPPED:
            annotation = [FLIPPED[annotation[0]], *annotation[1:]]
        out.append([annotation, to_srepr(sp.Eq(equation.rhs, equation.lhs, evaluate=False))])
    return out


# ----------------------------------------------------------------------------------- AG

def alternative_goal(steps: Sequence[Sequence], rng: random.Random, attempts: int = 100,
                     next_step: Callable | None = None, verify: Callable | None = None) -> list[list]:
    """AG: ``steps`` with the last step replaced by another step drawn from the same prefix.

    The new step must give a different equation (also with sides swapped), must not be a
    premise (a goal is derived, not given) and must pass ``verify``. Steps are proposed by
    ``next_step`` (default: the generator's own proposal, :func:`derivlib.generate.next_step`).
    """
    steps = _steps(steps)
    if len(steps) < 2:
        raise NotApplicable("too_short", "AG needs a prefix")
    next_step = next_step or generate.next_step
    prefix = steps[:-1]
    old = from_srepr(steps[-1][1])
    forbidden = {old, sp.Eq(old.rhs, old.lhs, evaluate=False)} if isinstance(old, sp.Equality) else {old}
    forbidden |= {from_srepr(s) for _, s in prefix}
    for _ in range(attempts):
        proposal = next_step([list(s) for s in prefix], rng)
        if proposal is None:
            continue
        annotation, srepr = normalise_annotation(proposal[0]), proposal[1]
        if is_premise(annotation) or from_srepr(srepr) in forbidden:
            continue
        candidate = prefix + [[annotation, srepr]]
        if verify is not None and not verify(candidate):
            continue
        return candidate
    raise NotApplicable("no_alternative_goal", f"no new verified step in {attempts} proposals")


# ----------------------------------------------------------------------------------- records

def passes_verifier(steps: Sequence[Sequence]) -> bool:
    """Whether every step of ``steps`` replays with the generator's verifier
    (:func:`derivlib.verify.verify_steps`); the default check of a perturbed derivation."""
    return all(step.ok for step in verify_steps([list(s) for s in steps]))


def _record(base: Mapping, kind: str, steps: list[list], equations: list[str],
            intermediates: list[int], prompt_intermediates: list[int] | None = None, **extra) -> dict:
    shown = intermediates if prompt_intermediates is None else prompt_intermediates
    return {"id": base.get("id", ""), "set": kind,
            "prompt": prompts.build_prompt(equations, steps, shown),
            "derivation": JOIN.join(equations), "srepr_derivation": steps,
            "equations": equations, "intermediates": shown, **extra}


def perturb_record(record: Mapping, kind: str, rng: random.Random, *,
                   verify: Callable | None = passes_verifier,
                   renaming_symbols: Sequence[str] = RENAMING_SYMBOLS,
                   next_step: Callable | None = None, attempts: int = 100) -> dict:
    """The ``kind`` perturbation of one static record (ours or the authors').

    A record needs ``srepr_derivation`` and ``prompt`` (and ``derivation`` or ``equations``);
    the intermediates its prompt shows are kept in place (VR, EE, AG) or removed (SR).
    Raises :class:`NotApplicable` when the perturbation does not apply.
    """
    check_kind(kind)
    steps = _steps(record)
    equations = prompts.equations_of(record)
    if len(equations) != len(steps):
        raise ValueError(f"record {record.get('id', '?')!r}: {len(equations)} equations in its "
                         f"derivation text but {len(steps)} steps")
    intermediates = prompts.locate_intermediates(record)
    extra: dict[str, Any] = {}
    if kind == "SR":
        if not intermediates:
            raise NotApplicable("no_intermediates", "nothing to remove from the prompt")
        new_steps, new_equations, shown = steps, equations, []
    elif kind == "EE":
        new_steps = expression_exchange(steps)
        new_equations, shown = [to_latex(from_srepr(s)) for _, s in new_steps], intermediates
    elif kind == "VR":
        new_steps, mapping = variable_renaming(steps, rng, renaming_symbols)
        new_equations, shown = [to_latex(from_srepr(s)) for _, s in new_steps], intermediates
        extra["renaming"] = mapping
    else:  # AG
        new_steps = alternative_goal(steps, rng, attempts=attempts, next_step=next_step, verify=verify)
        # the prefix is the static item's own text; only the new goal is printed here
        new_equations = equations[:-1] + [to_latex(from_srepr(new_steps[-1][1]))]
        shown = intermediates
    # SR keeps the static derivation; AG's step was verified when it was chosen
    if verify is not None and kind in ("VR", "EE") and not verify(new_steps):
        raise NotApplicable("not_verified", f"the {kind} derivation fails the replay verifier")
    return _record(record, kind, new_steps, new_equations, shown, **extra)


def item_rng_for(seed: int, kind: str, record: Mapping, index: int) -> random.Random:
    """The generator of one item's perturbation: keyed by its id (by position if it has none)."""
    item_id = record.get("id")
    return item_rng(seed, 0, f"{kind}:{item_id}") if item_id else item_rng(seed, index, kind)


def perturb_records(records: Iterable[Mapping], kind: str, seed: int, **options) -> tuple[list[dict], Counter]:
    """Perturb every record; returns (perturbed records, counts of skipped items by reason).

    Each item draws from :func:`item_rng_for` (seed, kind and its own id), so its result does not
    depend on which other items are perturbed, or in which order.
    """
    check_kind(kind)
    out, skipped = [], Counter()
    for index, record in enumerate(records):
        try:
            out.append(perturb_record(record, kind, item_rng_for(seed, kind, record, index), **options))
        except NotApplicable as reason:
            skipped[reason.reason] += 1
    return out, skipped


def operators_of(steps: Sequence[Sequence]) -> list[str]:
    return [operator_name(normalise_annotation(a)) for a, _ in steps]


# ----------------------------------------------------------------------------------- prompts

def with_authors_prompt(record: Mapping) -> dict:
    """``record`` (a derivation) with the prompt the authors' rule gives it."""
    steps = _steps(record)
    equations = list(record.get("equations") or [to_latex(from_srepr(s)) for _, s in steps])
    intermediates = prompts.choose_intermediates(steps)
    return {**record, "srepr_derivation": steps, "equations": equations,
            "derivation": record.get("derivation") or JOIN.join(equations),
            "prompt": prompts.build_prompt(equations, steps, intermediates), "intermediates": intermediates}
