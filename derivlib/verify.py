"""Replay every annotated step of a derivation with SymPy and confirm it.

For each step ``[annotation, srepr]`` the verifier recomputes what the named operation gives
from the referenced (earlier) equations with the same operator functions the generator uses
(:mod:`derivlib.rules`) and compares it with the stored equation.

Comparison policy, in order (the first that holds decides; the method is reported):
1. ``exact``: the stored and the recomputed equation are the same SymPy object;
2. ``swapped``: the same with sides swapped (SymPy 1.5.1 sometimes ordered ``Eq`` differently);
3. ``simplified``: per side, ``simplify(stored - recomputed) == 0``, tried only when both sides
   have at most ``MAX_SIMPLIFY_OPS`` operations (simplify is unbounded otherwise). This absorbs
   differences between SymPy 1.5.1, which printed the released data, and the pinned version
   (e.g. a different but equal antiderivative or derivative form).
``evaluate_integrals`` adds an arbitrary fresh constant per evaluated integral: the constants are
read off the stored equation (symbols that are new in it), every assignment is tried, and
integrals are evaluated with SymPy's full ``integrate`` when the generator's fast methods fail.

Premises: ``premise``, ``get_premise`` and ``renaming_premise`` must define an undefined function
of exactly the free symbols of the other side (either side: EE swaps them). A renaming premise's
defining expression is reported as found in an earlier equation or not retained: longest-chain
extraction drops the equation it came from, since a premise depends on nothing. A failing step is reported with its number and reason;
nothing is hidden or repaired.
"""
from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import sympy as sp

from . import rules
from .derivation import from_srepr, is_premise, normalise_annotation

#: Sides larger than this (SymPy ``count_ops``) are compared structurally only.
MAX_SIMPLIFY_OPS = 150


@dataclass
class StepResult:
    step: int  # 1-based step number
    annotation: Any
    status: str  # "ok" or "fail"
    reason: str  # how it was confirmed, or why it failed

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _same(stored, expected) -> str | None:
    """The comparison method that confirms ``stored`` equals ``expected``, or None."""
    if not isinstance(expected, sp.Equality):
        return None
    if stored == expected:
        return "exact"
    if stored == sp.Eq(expected.rhs, expected.lhs, evaluate=False):
        return "swapped"
    for a, b in ((stored.lhs, expected.lhs), (stored.rhs, expected.rhs)):
        if a == b:
            continue
        if sp.count_ops(a) > MAX_SIMPLIFY_OPS or sp.count_ops(b) > MAX_SIMPLIFY_OPS:
            return None
        try:
            if sp.simplify(a - b) != 0:
                return None
        except Exception:  # SymPy failing on an exotic difference: not confirmed
            return None
    return "simplified"


def _check_premise(eq, annotation, earlier: Sequence) -> tuple[str | None, str]:
    """(None, how it was confirmed) if the premise is well formed, else (reason, "")."""
    if not isinstance(eq, sp.Equality):
        return "a premise must be an equation", ""
    lhs, rhs = eq.lhs, eq.rhs
    if not rules.is_applied_undefined(lhs) and rules.is_applied_undefined(rhs):
        lhs, rhs = rhs, lhs  # expression exchange (EE) puts the definition on the right
    if not rules.is_applied_undefined(lhs):
        return f"neither side is an undefined function applied to symbols ({lhs})", ""
    if set(lhs.args) != rhs.free_symbols:
        missing = sorted(map(str, rhs.free_symbols - set(lhs.args)))
        extra = sorted(map(str, set(lhs.args) - rhs.free_symbols))
        return (f"the function's arguments are not the other side's free symbols "
                f"(missing {missing}, extra {extra})"), ""
    if annotation == "renaming_premise":
        # Longest-chain extraction keeps a renaming premise without the equation it renamed
        # from (a premise has no dependencies), so the source may legitimately be absent.
        if any(rhs in rules.equation_elements(e) for e in earlier):
            return None, "premise (renamed sub-expression found)"
        return None, "premise (renamed sub-expression not retained)"
    return None, "premise"


def _fast_value(integral: sp.Integral) -> list:
    value = rules.integrate_fast(integral)
    return [value] if value != integral else []


def _full_values(integral: sp.Integral) -> list:
    """The fast value and SymPy's full ``integrate`` (heurisch, Meijer-G, manual), which the
    authors' SymPy 1.5.1 used; only tried when the fast value does not confirm the step."""
    values = _fast_value(integral)
    try:
        full = integral.doit()
    except Exception:
        full = integral
    if full != integral and full not in values and not full.has(sp.Integral):
        values.append(full)
    return values


def _verify_evaluate_integrals(stored, source) -> str | None:
    if rules.contains_double_integral(source):
        return _same(stored, source)
    integrals = [e for e in rules.equation_elements(source) if isinstance(e, sp.Integral)]
    constants = sorted(stored.free_symbols - source.free_symbols, key=lambda s: s.name)
    for values_of in (_fast_value, _full_values):
        method = _match_evaluations(stored, source, integrals, [values_of(i) for i in integrals], constants)
        if method:
            return method
    return None


def _match_evaluations(stored, source, integrals, options, constants) -> str | None:
    evaluable = [k for k, vals in enumerate(options) if vals]
    # Choose which integrals were evaluated (usually all evaluable ones), their values and the
    # constant added to each; constants may repeat (the authors drew them independently).
    for count in range(len(evaluable), -1, -1):
        for chosen in itertools.combinations(evaluable, count):
            pools = constants or [sp.Integer(0)]
            for values in itertools.product(*(options[k] for k in chosen)):
                for consts in itertools.product(pools, repeat=count):
                    expected = source
                    for k, value, c in zip(chosen, values, consts):
                        expected = expected.subs(integrals[k], value + c)
                    method = _same(stored, expected)
                    if method:
                        return method
    return None


def _expected(name: str, annotation, equations: Sequence):
    source = equations[annotation[1] - 1]
    if name in ("substitute_LHS_for_RHS", "substitute_RHS_for_LHS"):
        return getattr(rules, name)(source, equations[annotation[2] - 1])
    if name in rules.ARITY and rules.ARITY[name] == 1:
        return rules.OPERATORS[name](source) if name != "evaluate_integrals" else None
    operand = annotation[2]
    operand = sp.Integer(operand) if isinstance(operand, int) else from_srepr(operand)
    return rules.OPERATORS[name](source, operand)


def _verify_step(k: int, annotation, eq, equations: Sequence) -> StepResult:
    def fail(reason):
        return StepResult(k, annotation, "fail", reason)

    if is_premise(annotation):
        reason, method = _check_premise(eq, annotation, equations[: k - 1])
        return fail(reason) if reason else StepResult(k, annotation, "ok", method)
    name = annotation[0]
    if name not in rules.OPERATORS:
        return fail(f"unknown operator {name!r}")
    refs = [annotation[1]] + ([annotation[2]] if name.startswith("substitute") else [])
    for r in refs:
        if not 1 <= r < k:
            return fail(f"refers to equation {r}, which does not precede step {k}")
    if not isinstance(eq, sp.Equality):
        return fail("the stored expression is not an equation")
    try:
        if name == "evaluate_integrals":
            method = _verify_evaluate_integrals(eq, equations[annotation[1] - 1])
        else:
            method = _same(eq, _expected(name, annotation, equations))
    except Exception as err:  # a malformed operand or SymPy refusing the replay
        return fail(f"replay raised {type(err).__name__}: {err}")
    if method is None:
        return fail(f"{name} applied to equation {annotation[1]} does not give the stored equation")
    return StepResult(k, annotation, "ok", method)


def verify_steps(steps: Sequence[Sequence]) -> list[StepResult]:
    """Per-step results for a derivation in the authors' ``srepr_derivation`` schema."""
    results = []
    equations = []
    for k, (annotation, text) in enumerate(steps, 1):
        try:
            annotation = normalise_annotation(annotation)
            eq = from_srepr(text)
        except ValueError as err:
            results.append(StepResult(k, annotation, "fail", str(err)))
            equations.append(sp.S.false)
            continue
        results.append(_verify_step(k, annotation, eq, equations))
        equations.append(eq)
    return results


def verify_record(record: dict, key: str = "srepr_derivation") -> list[StepResult]:
    if key not in record:
        raise ValueError(f"record {record.get('id', '?')!r} has no {key!r} field")
    return verify_steps(record[key])


@dataclass
class FileReport:
    """Every step of every derivation of a source (a file): ``rows`` of (id, field, StepResult)."""

    source: str
    rows: list

    @property
    def n_steps(self) -> int:
        return len(self.rows)

    @property
    def failures(self) -> list:
        return [(i, key, r) for i, key, r in self.rows if not r.ok]

    @property
    def pass_rate(self) -> float:
        return 1 - len(self.failures) / max(self.n_steps, 1)

    def methods(self) -> dict:
        return dict(Counter(r.reason if r.ok else "fail" for _, _, r in self.rows))

    def failure_table(self) -> list[dict]:
        return [{"id": i, "field": key, "step": r.step, "annotation": json.dumps(r.annotation),
                 "reason": r.reason} for i, key, r in self.failures]

    def summary(self) -> str:
        derivations = len({(i, key) for i, key, _ in self.rows})
        lines = [f"{self.source}: {derivations} derivations, {self.n_steps} steps, "
                 f"{self.n_steps - len(self.failures)} ok, {len(self.failures)} failed "
                 f"({100 * self.pass_rate:.2f}% pass)",
                 "confirmed by: " + ", ".join(f"{k} {v}" for k, v in sorted(self.methods().items()))]
        for i, key, r in self.failures:
            lines.append(f"FAIL {i} [{key}] step {r.step} {json.dumps(r.annotation)}: {r.reason}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The report as JSON-able data (:meth:`from_json` reads it back)."""
        return {"source": self.source, "rows": [[i, key, asdict(r)] for i, key, r in self.rows]}

    @classmethod
    def from_json(cls, data: dict) -> "FileReport":
        return cls(data["source"], [(i, key, StepResult(**r)) for i, key, r in data["rows"]])


def verify_derivations(derivations: Iterable[tuple[str, str, Sequence]], source: str) -> FileReport:
    """Every step of every ``(id, field, steps)`` replayed (:func:`verify_steps`); ``source``
    names where they came from in the report. ``readers.runs.iter_steps(path)`` gives the
    derivations of a derivations file, a run directory or an authors' results file. No
    derivations at all, or one without steps, is a ValueError naming ``source``: an empty input
    never passes."""
    rows = []
    for ident, key, steps in derivations:
        if not isinstance(steps, (list, tuple)) or not steps:
            # nothing to replay is not a pass: "100% of 0 steps" would hide an empty input
            raise ValueError(f"{source}: derivation {ident} ({key}) has no steps to verify "
                             f"(expected a non-empty list of [annotation, srepr] steps, got {steps!r:.60})")
        for result in verify_steps(steps):
            rows.append((ident, key, result))
    if not rows:
        raise ValueError(f"{source}: no derivations to verify (the input is empty)")
    return FileReport(source, rows)


def as_dicts(results: Iterable[StepResult]) -> list[dict]:
    return [asdict(r) for r in results]
