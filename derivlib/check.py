"""Symbolic checking of generated derivations: one label per generated equation.

A generated derivation (the model's text) is checked against its reference's
``srepr_derivation``, which gives the premises exactly. Labels, first match wins:

``unparseable``
    :func:`derivlib.latex.parse_equation` fails (not LaTeX of the dialect, or no ``=``).
``redundant``
    the same equation as an earlier generated one (SymPy ``==``, either side order).
``reference``
    the same equation as one of the reference's (SymPy ``==`` after canonical naming, either
    side order: the EE set swaps sides, and a swapped equation says the same thing).
``valid`` / ``irrelevant``
    holds given the premises (below) and is not a reference equation; ``irrelevant`` when no
    later equation on the way to the goal uses it (see :func:`_uses`).
``incorrect``
    does not hold given the premises, or could not be shown to hold (``reason`` says which:
    ``"false"`` or ``"undecided: ..."``). An equation that only follows from an earlier incorrect
    one is incorrect too: errors propagate.

"Holds given the premises" is decided numerically, not by ``simplify``: every premise
``f(x) = rhs`` defines ``f`` (its function side is replaced by the other side, repeatedly), a
function no premise defines becomes a fixed random smooth surrogate, derivatives are evaluated
with ``doit``, indefinite integrals with SymPy's ``manualintegrate`` when the integrand is
small (cached), and otherwise by Gauss-Legendre quadrature from a fixed base point. Both sides
are then evaluated in complex arithmetic at ``POINTS`` random points (every symbol uniform in
[0.5, 1.5], drawn from ``(seed, symbol name)`` alone, so checks are reproducible and independent
of order), and the equation holds when ``|lhs - rhs| <= RTOL * (1 + |lhs| + |rhs|)`` at every
point where both are finite (at least 2 needed).

Integration constants. Symbols of the reference that no premise has are the integration
constants ``evaluate_integrals`` introduced; so are new symbols first written in a generated
equation that contains an integral. An equation with an integral or such a constant holds if
it holds (a) with random constants, or (b) with the constants set to 0 (SymPy's antiderivatives
have none), or (c) up to an additive constant: the residual is the same at every point.

Per derivation: goal reached (some generated equation is the reference's last, either side
order), reference steps skipped (non-premise reference equations never produced), lengths.

Stage ``error_analysis`` (:mod:`derivlib.stages.error_analysis`) runs these checks over
predictions runs; the ``check`` command over files.
"""
from __future__ import annotations

import functools
import hashlib
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.integrals.manualintegrate import manualintegrate

from . import latex, srepr
from .base.vocabulary import SETS, split_equations
from .derivation import Derivation, is_premise, normalise_annotation

LABELS = ("unparseable", "reference", "valid", "incorrect", "redundant", "irrelevant")
COUNT_COLUMNS = ("equations",) + LABELS + ("derivations", "goal_reached")
POINTS = 5
RTOL = 1e-6
LOW, HIGH = 0.5, 1.5
QUADRATURE_BASE = 1.0
MAX_INTEGRAND_OPS = 12        # manualintegrate only for integrands up to this many operations
MAX_DEFINITION_ROUNDS = 4     # premise definitions substituted at most this deep
MAX_PREPARED_OPS = 4000       # larger prepared expressions are not evaluated ("undecided")
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(24)


class Undecided(Exception):
    """The equation could not be evaluated; the message says why."""


# ----------------------------------------------------------------------------------- results

@dataclass
class EquationCheck:
    text: str
    label: str
    reason: str = ""
    latex: str = ""  # canonical LaTeX of the parse (for display), "" if unparseable


@dataclass
class DerivationCheck:
    id: str
    model: str
    set: str
    equations: list[EquationCheck]
    goal_reached: bool
    skipped_steps: int
    length: int
    reference_length: int
    parse_failures: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.equations]

    @property
    def all_correct(self) -> bool:
        return all(label in ("reference", "valid") for label in self.labels)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["labels"] = self.labels
        return out

    @classmethod
    def from_dict(cls, row: dict) -> "DerivationCheck":
        """The check that :meth:`to_dict` wrote (extra keys, such as scores, are ignored)."""
        fields = {k: v for k, v in row.items() if k in cls.__dataclass_fields__}
        fields["equations"] = [EquationCheck(**e) if isinstance(e, dict) else e for e in fields["equations"]]
        return cls(**fields)


# ----------------------------------------------------------------------------------- context

def _sides(equation: sp.Equality) -> tuple[sp.Basic, sp.Basic]:
    return equation.lhs, equation.rhs


def _function_side(equation: sp.Equality):
    """(application, other side) of a definition ``f(x) = rhs`` or ``rhs = f(x)``, else None."""
    for side, other in ((equation.lhs, equation.rhs), (equation.rhs, equation.lhs)):
        if isinstance(side, AppliedUndef) and all(isinstance(a, sp.Symbol) for a in side.args) \
                and len(set(side.args)) == len(side.args):
            return side, other
    return None


class ReferenceContext:
    """What the checks of one reference derivation share: premises, definitions, constants."""

    def __init__(self, steps: Sequence[Sequence], seed: int):
        self.seed = seed
        derivation = Derivation(steps=[[normalise_annotation(a), s] for a, s in steps])
        equations = [_reference_equation(text) for _, text in derivation.steps]
        self.reference = equations
        self.premise_flags = [is_premise(a) for a in derivation.annotations]
        self.goal = equations[-1]
        self.definitions: dict[str, sp.Lambda] = {}
        premise_symbols: set = set()
        for flag, equation in zip(self.premise_flags, equations):
            if not flag:
                continue
            premise_symbols |= equation.free_symbols
            found = _function_side(equation)
            if found is not None:
                application, body = found
                self.definitions.setdefault(application.func.__name__, sp.Lambda(application.args, body))
        self.premise_symbols = premise_symbols
        self.reference_symbols = set().union(*(e.atoms(sp.Symbol) for e in equations))
        # integration constants: the symbols an evaluate_integrals step brings in
        self.constants = set()
        known = set()
        for annotation, equation in zip(derivation.annotations, equations):
            symbols = equation.atoms(sp.Symbol)
            if not is_premise(annotation) and annotation[0] == "evaluate_integrals":
                self.constants |= symbols - known
            known |= symbols
        self.functions = frozenset(
            f.func.__name__ for e in equations for f in e.atoms(AppliedUndef))
        self.reference_keys: dict[tuple, list[int]] = {}
        for index, equation in enumerate(equations):
            for key in set(_keys(equation)):
                self.reference_keys.setdefault(key, []).append(index)
        self._values: dict[sp.Symbol, np.ndarray] = {}

    # ---- points
    def values(self, symbol: sp.Symbol) -> np.ndarray:
        if symbol not in self._values:
            rng = _name_rng(self.seed, "symbol", symbol.name)
            self._values[symbol] = np.array([rng.uniform(LOW, HIGH) for _ in range(POINTS)], dtype=complex)
        return self._values[symbol]


@functools.lru_cache(maxsize=65536)
def _reference_equation(text: str) -> sp.Equality:
    # Unevaluated: deciding whether the sides are equal costs more than the whole check.
    expr = srepr.read(text, evaluate_equality=False)
    if not isinstance(expr, sp.Equality):
        raise ValueError(f"reference step is not an equation: {text[:80]!r}")
    return sp.Eq(latex.canonicalize(expr.lhs), latex.canonicalize(expr.rhs), evaluate=False)


def _name_rng(seed: int, stream: str, name: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{stream}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _keys(equation: sp.Equality) -> tuple:
    return ((equation.lhs, equation.rhs), (equation.rhs, equation.lhs))


@functools.lru_cache(maxsize=512)
def _context(steps_key: tuple, seed: int) -> ReferenceContext:
    return ReferenceContext([list(step) for step in steps_key], seed)


def _steps_key(steps: Sequence[Sequence]) -> tuple:
    return tuple((a if isinstance(a, str) else tuple(a), s) for a, s in steps)


# ----------------------------------------------------------------------------------- evaluation

def _surrogate(name: str, arity: int, seed: int) -> sp.Lambda:
    """A fixed smooth function standing in for one no premise defines."""
    rng = _name_rng(seed, "function", name)
    args = sp.symbols(f"_s0:{arity}")
    inner = sum(sp.Rational(rng.randint(3, 17), 10) * a for a in args) + sp.Rational(rng.randint(1, 9), 10)
    return sp.Lambda(args, sp.sin(inner) + sp.Rational(rng.randint(11, 19), 10))


def _define(expr: sp.Basic, context: ReferenceContext) -> sp.Basic:
    for _ in range(MAX_DEFINITION_ROUNDS):
        applications = [a for a in expr.atoms(AppliedUndef) if a.func.__name__ in context.definitions]
        if not applications:
            break
        mapping = {}
        for application in applications:
            definition = context.definitions[application.func.__name__]
            if len(application.args) != len(definition.variables):
                raise Undecided(f"{application.func.__name__} applied to {len(application.args)} arguments")
            mapping[application] = definition(*application.args)
        expr = _replace_applications(expr, mapping)
    for application in expr.atoms(AppliedUndef):
        name = application.func.__name__
        surrogate = _surrogate(name, len(application.args), context.seed)
        expr = _replace_applications(expr, {application: surrogate(*application.args)})
    return expr


def _replace_applications(expr: sp.Basic, mapping: dict) -> sp.Basic:
    """``xreplace`` that also rewrites derivatives taken with respect to a replaced application
    (``d/d f(x)``) by the chain rule's meaning: such derivatives cannot be evaluated."""
    try:
        return expr.xreplace(mapping)
    except (ValueError, TypeError) as err:
        raise Undecided(f"substitution failed ({err})") from None


def _integration_cost(expr: sp.Basic) -> int:
    """Operations, counting x**n as |n| multiplications: manualintegrate's work grows with the
    power too (sin(x)**82 takes minutes although it is one operation)."""
    cost = 0
    for node in sp.preorder_traversal(expr):
        if node.is_Pow and node.exp.is_Integer:
            cost += abs(int(node.exp))
        elif not node.is_Atom:
            cost += 1
    return cost


@functools.lru_cache(maxsize=8192)
def _antiderivative(integrand: sp.Basic, variable: sp.Symbol):
    if _integration_cost(integrand) > MAX_INTEGRAND_OPS:
        return None
    try:
        result = manualintegrate(integrand, variable)
    except Exception:  # manualintegrate raises assorted errors on integrands it cannot do
        return None
    if result is None or result.has(sp.Integral) or result.has(sp.Piecewise):
        return None
    return result


def _evaluate_integrals(expr: sp.Basic) -> sp.Basic:
    integrals = sorted(expr.atoms(sp.Integral), key=sp.count_ops)
    mapping = {}
    for integral in integrals:
        if integral.has(sp.Integral) and any(i != integral and integral.has(i) for i in integrals):
            continue  # nested: the inner one is done first, the outer numerically
        if len(integral.limits) == 1 and len(integral.limits[0]) == 1 and isinstance(integral.limits[0][0], sp.Symbol):
            antiderivative = _antiderivative(integral.function, integral.limits[0][0])
            if antiderivative is not None:
                mapping[integral] = antiderivative
    return expr.xreplace(mapping) if mapping else expr


def prepare(expr: sp.Basic, context: ReferenceContext) -> sp.Basic:
    """``expr`` with premises substituted, derivatives and (small) integrals evaluated."""
    expr = _define(expr, context)
    try:
        expr = expr.doit(integrals=False)
    except Exception as err:  # SymPy refusing d/d(expression) and the like
        raise Undecided(f"derivatives could not be evaluated ({type(err).__name__})") from None
    if expr.has(sp.Integral):
        expr = _evaluate_integrals(expr)
        try:
            expr = expr.doit(integrals=False)
        except Exception as err:
            raise Undecided(f"derivatives could not be evaluated ({type(err).__name__})") from None
    if expr.has(sp.Derivative):
        raise Undecided("a derivative that does not evaluate (with respect to an expression?)")
    if sp.count_ops(expr) > MAX_PREPARED_OPS:
        raise Undecided(f"more than {MAX_PREPARED_OPS} operations after substitution")
    return expr


_NUMPY_FUNCTIONS = {
    sp.exp: np.exp, sp.log: np.log, sp.sin: np.sin, sp.cos: np.cos, sp.tan: np.tan,
    sp.sinh: np.sinh, sp.cosh: np.cosh, sp.tanh: np.tanh, sp.asin: np.arcsin, sp.acos: np.arccos,
    sp.atan: np.arctan, sp.Abs: np.abs, sp.sqrt: np.sqrt,
}


def numeric(expr: sp.Basic, values, size: int = POINTS) -> np.ndarray:
    """``expr`` at the check points: complex array; ``values(symbol)`` gives a symbol's values.

    A small evaluator of our own rather than ``lambdify``: lambdify compiles a function per
    expression (about a millisecond each), more than the whole check of an equation may cost.
    """
    if expr.is_Symbol:
        return values(expr)
    if expr.is_Number or isinstance(expr, sp.NumberSymbol) or expr is sp.I:
        return np.full(size, complex(expr))
    if expr.is_Add:
        total = numeric(expr.args[0], values, size)
        for arg in expr.args[1:]:
            total = total + numeric(arg, values, size)
        return total
    if expr.is_Mul:
        total = numeric(expr.args[0], values, size)
        for arg in expr.args[1:]:
            total = total * numeric(arg, values, size)
        return total
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent.is_Integer and abs(int(exponent)) <= 64:
            return numeric(base, values, size) ** int(exponent)
        return np.power(numeric(base, values, size), numeric(exponent, values, size))
    function = _NUMPY_FUNCTIONS.get(expr.func)
    if function is not None:
        return function(numeric(expr.args[0], values, size))
    if isinstance(expr, sp.Integral):
        return _quadrature(expr, values, size)
    if isinstance(expr, sp.Function):
        arguments = [numeric(a, values, size) for a in expr.args]
        out = np.empty(size, dtype=complex)
        for k in range(size):
            try:
                out[k] = complex(expr.func(*[sp.Float(a[k].real) + sp.I * sp.Float(a[k].imag) for a in arguments]).evalf(15))
            except (TypeError, ValueError):
                out[k] = np.nan
        return out
    if expr in (sp.oo, -sp.oo, sp.zoo, sp.nan):
        return np.full(size, np.nan, dtype=complex)
    raise Undecided(f"cannot evaluate {type(expr).__name__}")


def _quadrature(integral: sp.Integral, values, size: int) -> np.ndarray:
    """An integral at the check points by Gauss-Legendre quadrature: indefinite ones from
    ``QUADRATURE_BASE`` to the point (so equal to an antiderivative up to a constant)."""
    if len(integral.limits) != 1:
        raise Undecided("multiple integral without a closed form")
    limit = integral.limits[0]
    variable = limit[0]
    if not isinstance(variable, sp.Symbol):
        raise Undecided("integral with respect to an expression")
    if len(limit) == 3:
        lower, upper = numeric(limit[1], values, size), numeric(limit[2], values, size)
    elif len(limit) == 1:
        lower, upper = np.full(size, QUADRATURE_BASE, dtype=complex), values(variable)
    else:
        raise Undecided("integral with one limit")
    n = len(_NODES)
    half = (upper - lower) / 2
    nodes = (lower[:, None] + half[:, None] * (_NODES[None, :] + 1)).reshape(-1)

    def node_values(symbol):
        if symbol == variable:
            return nodes
        return np.repeat(values(symbol), n)

    # the integrand is evaluated at every node of every point
    inner = numeric(integral.function, node_values, size * n)
    return (inner.reshape(size, n) @ _WEIGHTS) * half


def _residual(lhs: sp.Basic, rhs: sp.Basic, context: ReferenceContext, constants: set, zero_constants: bool):
    if zero_constants and constants:
        # a model may integrate or differentiate with respect to a constant's symbol ("dC"):
        # there it is a variable, and replacing it by 0 would make SymPy refuse the limits
        bound = {v for side in (lhs, rhs) for node in sp.preorder_traversal(side)
                 if isinstance(node, (sp.Integral, sp.Derivative)) for v in node.variables}
        zero = {c: sp.S.Zero for c in constants if c not in bound}
        lhs, rhs = lhs.xreplace(zero), rhs.xreplace(zero)
    with np.errstate(all="ignore"):
        left = numeric(lhs, context.values)
        right = numeric(rhs, context.values)
    return left - right, 1 + np.abs(left) + np.abs(right)


def holds(lhs: sp.Basic, rhs: sp.Basic, context: ReferenceContext, constants: set, lenient: bool) -> tuple[bool, str]:
    """(holds, how) for the prepared sides of an equation."""
    attempts = [(False, "exact")]
    if lenient:
        attempts.append((True, "constants zero"))
    for zero_constants, how in attempts:
        residual, scale = _residual(lhs, rhs, context, constants, zero_constants)
        finite = np.isfinite(residual) & np.isfinite(scale)
        if finite.sum() < 2:
            raise Undecided("not finite at the check points")
        if np.all(np.abs(residual[finite]) <= RTOL * scale[finite]):
            return True, how
    if lenient:
        residual, scale = _residual(lhs, rhs, context, constants, False)
        finite = np.isfinite(residual) & np.isfinite(scale)
        spread = np.abs(residual[finite] - residual[finite][0])
        if np.all(spread <= RTOL * scale[finite]):
            return True, "up to a constant"
    return False, "false"


# ----------------------------------------------------------------------------------- relevance

def _contains(expr: sp.Basic, part: sp.Basic) -> bool:
    if part.is_Atom or (isinstance(part, sp.Mul) and len(part.args) == 2 and part.args[0].is_Number
                        and part.args[1].is_Atom):
        return False  # a symbol or number is in everything
    if expr.has(part):
        return True
    if isinstance(part, (sp.Add, sp.Mul)):
        wanted = set(part.args)
        for node in sp.preorder_traversal(expr):
            if node.func is part.func and wanted <= set(node.args):
                return True
    return False


def _uses(earlier: sp.Equality, later: sp.Equality) -> bool:
    """Whether ``later`` plausibly uses ``earlier``: a side of ``earlier`` (or of its evaluated
    form) appears in ``later``, as substitution, operating on both sides and evaluating
    derivatives leave it. A heuristic: model outputs carry no annotations."""
    sides = list(_sides(earlier))
    for side in _sides(earlier):
        if side.has(sp.Derivative):
            try:
                evaluated = side.doit(integrals=False)
            except Exception:  # an unevaluable derivative: the raw sides are enough
                continue
            if evaluated not in sides:
                sides.append(evaluated)
    return any(_contains(later, side) for side in sides)


# ----------------------------------------------------------------------------------- checking

def check_derivation(prediction: str | Sequence[str], srepr_derivation: Sequence[Sequence], *,
                     seed: int = 0, id: str = "", model: str = "", set_name: str = "") -> DerivationCheck:
    """Label every equation of a generated derivation against its reference (module docstring)."""
    if not srepr_derivation:
        raise ValueError(f"{id or 'derivation'}: no srepr_derivation to check against")
    context = _context(_steps_key(srepr_derivation), seed)
    texts = split_equations(prediction) if isinstance(prediction, str) else list(prediction)
    checks: list[EquationCheck] = []
    parsed: list[sp.Equality | None] = []
    seen: set = set()
    constants = set(context.constants)
    written: set = set()
    matched_reference: set[int] = set()
    failures = []
    for text in texts:
        result = latex.parse_equation(text, context.functions)
        if not result.ok:
            checks.append(EquationCheck(text, "unparseable", result.reason))
            parsed.append(None)
            failures.append(result.reason)
            continue
        equation = result.expr
        parsed.append(equation)
        shown = sp.latex(equation)
        key = (equation.lhs, equation.rhs)
        if key in seen:
            checks.append(EquationCheck(text, "redundant", "repeats an earlier equation", shown))
            continue
        seen.update(_keys(equation))
        if key in context.reference_keys:
            matched_reference.update(context.reference_keys[key])
            checks.append(EquationCheck(text, "reference", "", shown))
            continue
        has_integral = equation.has(sp.Integral)
        if has_integral:  # a symbol first written beside an integral is the model's constant
            constants |= equation.free_symbols - context.reference_symbols - written
        written |= equation.free_symbols
        lenient = has_integral or bool(equation.free_symbols & constants)
        try:
            lhs, rhs = prepare(equation.lhs, context), prepare(equation.rhs, context)
            if lhs == rhs:
                ok, how = True, "trivially"
            else:
                ok, how = holds(lhs, rhs, context, constants, lenient)
        except Undecided as err:
            ok, how = False, f"undecided: {err}"
        except (RecursionError, OverflowError, ZeroDivisionError, MemoryError) as err:
            ok, how = False, f"undecided: {type(err).__name__}"
        except (ValueError, TypeError) as err:  # SymPy refusing an odd expression a model wrote
            ok, how = False, f"undecided: {type(err).__name__}: {err}"
        checks.append(EquationCheck(text, "valid" if ok else "incorrect", how, shown))
    _mark_irrelevant(checks, parsed, context)
    goal_index = len(context.reference) - 1
    reference_steps = [i for i, flag in enumerate(context.premise_flags) if not flag]
    return DerivationCheck(
        id=id, model=model, set=set_name, equations=checks,
        goal_reached=goal_index in matched_reference,
        skipped_steps=sum(1 for i in reference_steps if i not in matched_reference),
        length=len(texts), reference_length=len(context.reference), parse_failures=failures)


def _mark_irrelevant(checks: list[EquationCheck], parsed: list, context: ReferenceContext) -> None:
    candidates = [i for i, c in enumerate(checks) if c.label == "valid"]
    if not candidates:
        return
    relevant = {i for i, c in enumerate(checks) if c.label == "reference"}
    if not any(context.goal == parsed[i] or _keys(context.goal)[1] == (parsed[i].lhs, parsed[i].rhs)
               for i in relevant if parsed[i] is not None):
        # goal not reached: the model's last correct equation is its conclusion
        correct = [i for i, c in enumerate(checks) if c.label in ("reference", "valid")]
        relevant.add(correct[-1])
    for later in range(len(checks) - 1, -1, -1):
        if later not in relevant:
            continue
        for earlier in candidates:
            if earlier < later and earlier not in relevant and _uses(parsed[earlier], parsed[later]):
                relevant.add(earlier)
    for i in candidates:
        if i not in relevant:
            checks[i].label = "irrelevant"
            checks[i].reason = "valid, but nothing on the way to the goal uses it"


def check_record(record: dict, seed: int = 0) -> DerivationCheck:
    """Check one prediction record (``{"id", "model", "set", "prediction", "srepr_derivation"}``)."""
    missing = [k for k in ("prediction", "srepr_derivation") if not record.get(k)]
    if "prediction" in missing and isinstance(record.get("prediction"), str):
        missing.remove("prediction")  # an empty output is checked: it has no equations
    if missing:
        raise ValueError(f"record {record.get('id', '?')!r} lacks {', '.join(missing)}")
    return check_derivation(record["prediction"], record["srepr_derivation"], seed=seed,
                            id=str(record.get("id", "")), model=str(record.get("model", "")),
                            set_name=str(record.get("set", "")))


def check_records(records: Iterable[dict], seed: int = 0) -> list[DerivationCheck]:
    return [check_record(r, seed) for r in records]


def summarize(checks: Iterable[DerivationCheck]):
    """Counts per (model, set): a DataFrame with the columns ``model, set`` + COUNT_COLUMNS."""
    rows: dict[tuple, Counter] = {}
    for check in checks:
        counts = rows.setdefault((check.model, check.set), Counter())
        counts["derivations"] += 1
        counts["goal_reached"] += int(check.goal_reached)
        counts["equations"] += len(check.equations)
        counts.update(check.labels)
    order = {name: i for i, name in enumerate(SETS)}
    table = [{"model": model, "set": set_name, **{c: counts.get(c, 0) for c in COUNT_COLUMNS}}
             for (model, set_name), counts in sorted(rows.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][1]))]
    return pd.DataFrame(table, columns=["model", "set", *COUNT_COLUMNS])


def format_table(table) -> str:
    """The summary as a readable table: counts, and each label's share of equations in %."""
    shown = table.copy()
    for label in LABELS:
        shown[f"{label} %"] = (100 * shown[label] / shown["equations"].clip(lower=1)).round(1)
    shown["goal %"] = (100 * shown["goal_reached"] / shown["derivations"].clip(lower=1)).round(1)
    columns = ["model", "set", "derivations", "equations", *(f"{label} %" for label in LABELS), "goal %"]
    return shown[columns].to_string(index=False)


def examples(checks: Sequence[DerivationCheck]) -> dict[str, EquationCheck]:
    """The first equation of each label (for display), in LABELS order."""
    found: dict[str, EquationCheck] = {}
    for derivation_check in checks:
        for equation in derivation_check.equations:
            found.setdefault(equation.label, equation)
    return {label: found[label] for label in LABELS if label in found}
