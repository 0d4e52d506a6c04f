"""The 18 operators of the authors' generator, as plain functions (PAPER.md §2).

Unary and binary operators act on both sides of an equation. Evaluation operators
(``evaluate_derivatives``, ``evaluate_integrals``) evaluate every derivative / integral inside an
equation. Premise operators build new equations from the vocabulary.

Every function takes its randomness from an explicit ``random.Random``; anything drawn from a set
(free symbols) is sorted first, so results never depend on Python's hash seed.

Runaway SymPy work is bounded structurally, never by wall-clock time: an operation that would
start expensive work on an oversized expression (``expand`` of a large power, ``doit`` on a big
integrand) raises :class:`TooExpensive` with the reason, and the generator counts it as a
rejected proposal.
"""
from __future__ import annotations

import functools
import random
from typing import Sequence

import sympy as sp
from sympy.core.function import UndefinedFunction
from sympy.printing.str import StrPrinter

from .derivation import SubexpressionMemo
from .symbols import SYMBOLS

#: Structural budgets (operation counts) above which an operation is not attempted.
MAX_EXPAND_OPS = 40
MAX_EXPAND_EXPONENT = 6
MAX_INTEGRAND_OPS = 12
MAX_DERIVATIVE_OPS = 60


class TooExpensive(Exception):
    """An operation was not attempted because its input exceeds a structural budget."""


# ----------------------------------------------------------------------------------- helpers

def sorted_symbols(expr: sp.Basic) -> list[sp.Symbol]:
    """Free symbols in a fixed order (a set's order changes with the hash seed)."""
    return sorted(expr.free_symbols, key=lambda s: s.name)


def equation_elements(eq: sp.Basic) -> list[sp.Basic]:
    """Every sub-expression of ``eq`` (not ``eq`` itself), first occurrence first, no Tuples.

    Breadth-first over ``args`` with duplicates removed, the order the authors' operand choices
    draw from.
    """
    seen: dict[sp.Basic, None] = {}
    frontier = list(eq.args)
    while frontier:
        nxt = []
        for node in frontier:
            if node not in seen:
                seen[node] = None
                nxt.extend(node.args)
        frontier = nxt
    return [e for e in seen if not isinstance(e, sp.Tuple)]


def is_applied_undefined(expr: sp.Basic) -> bool:
    return isinstance(type(expr), UndefinedFunction)


def contains_double_integral(expr: sp.Basic) -> bool:
    """An integral over two or more variables (what prints as ``\\iint``; SymPy merges
    ``Integral(Integral(f, x), y)`` into one such integral)."""
    return any(len(integral.limits) > 1 for integral in expr.atoms(sp.Integral))


def contains_nested_function(expr: sp.Basic) -> bool:
    """An undefined function applied inside another undefined function's arguments."""
    for f in expr.atoms(sp.core.function.AppliedUndef):
        if any(a.atoms(sp.core.function.AppliedUndef) for a in f.args):
            return True
    return False


def equation(lhs: sp.Basic, rhs: sp.Basic) -> sp.Basic:
    """``sp.Eq(lhs, rhs)`` for a candidate, asking SymPy to decide it only when that is cheap.

    ``Eq`` evaluates to True/False when SymPy can prove the sides equal or different, after an
    ``is_eq`` analysis that took a third of generation time in profiles. Most candidates fail a
    cheaper filter, so here only identical sides and sides that differ by a number are decided;
    the generator gives every surviving candidate SymPy's full decision (by reading its srepr
    back) before accepting it.
    """
    if lhs == rhs:
        return sp.true
    if isinstance(lhs, sp.Expr) and isinstance(rhs, sp.Expr) and (lhs - rhs).is_number:
        return sp.Eq(lhs, rhs)
    return sp.Eq(lhs, rhs, evaluate=False)


def _both_sides(eq, f):
    if isinstance(eq, sp.Equality):
        return equation(f(eq.lhs), f(eq.rhs))
    return f(eq)


# ----------------------------------------------------------------------------------- arity 1

def cos(eq):
    return _both_sides(eq, sp.cos)


def sin(eq):
    return _both_sides(eq, sp.sin)


def exp(eq):
    return _both_sides(eq, sp.exp)


def log(eq):
    return _both_sides(eq, sp.log)


def _check_expandable(expr: sp.Basic) -> None:
    if sp.count_ops(expr) > MAX_EXPAND_OPS:
        raise TooExpensive("expand_too_large")
    for power in expr.atoms(sp.Pow):
        if power.base.has(sp.Add) and power.exp.is_Integer and abs(int(power.exp)) > MAX_EXPAND_EXPONENT:
            raise TooExpensive("expand_too_large")


def expand(eq):
    _check_expandable(eq)
    return sp.expand(eq)


def evaluate_derivatives(eq):
    """Evaluate every derivative that contains no integral."""
    if not eq.has(sp.Derivative):  # nothing to evaluate: skip the traversal below
        return eq
    derivatives = [e for e in equation_elements(eq) if isinstance(e, sp.Derivative)
                   and not e.has(sp.Integral)]
    if isinstance(eq, sp.Derivative):
        derivatives = [eq]
    for d in derivatives:
        if sp.count_ops(d) > MAX_DERIVATIVE_OPS:
            raise TooExpensive("derivative_too_large")
    result = eq
    for d in derivatives:
        result = _substitute(result, d, d.doit())
    return result


def integrate_bounded(integral: sp.Integral) -> sp.Basic:
    """The value of a single integral by :func:`integrate_fast`, or the integral itself when no
    method finds one or the variable is in both a power's base and its exponent; raises
    :class:`TooExpensive` when the integrand exceeds its budget."""
    if sp.count_ops(integral.function) > MAX_INTEGRAND_OPS:
        raise TooExpensive("integrand_too_large")
    if has_variable_power_of_variable(integral):
        # left unevaluated, as when Risch finds no elementary antiderivative (the usual outcome
        # for such integrands): on (log(u) - log(u)**u)**u, 5 operations, Risch ran for minutes
        # and took 10 GB (derivation 8991 of seed 0, in a 30,000 run)
        return integral
    return integrate_fast(integral)


def has_variable_power_of_variable(integral: sp.Integral) -> bool:
    """Whether the integrand holds a power whose base and exponent both depend on an
    integration variable (``u**u``, ``(log(u) - 1)**u``)."""
    variables = set(integral.variables)
    return any(power.base.free_symbols & variables and power.exp.free_symbols & variables
               for power in integral.function.atoms(sp.Pow))


@functools.lru_cache(maxsize=4096)
def integrate_fast(integral: sp.Integral) -> sp.Basic:
    """The integral's value by SymPy's fast methods, or the integral itself (cached)."""
    # Only SymPy's fast, deterministic methods: the Risch algorithm on its own, then the
    # term-wise polynomial/table methods. In profiles, the heuristic Risch algorithm (heurisch)
    # took 97% of generation time, can run for minutes on small integrands and depends on set
    # ordering; the rule-based (manual) and Meijer-G methods took most of the rest (SymPy's
    # fall-backs call them without our hints, so ``doit`` is never called with defaults). What
    # these methods cannot do stays unevaluated, and the generator rejects the unchanged equation.
    for hints in ({"risch": True}, {"risch": False, "heurisch": False, "meijerg": False, "manual": False}):
        value = integral.doit(**hints)
        if not value.has(sp.Integral):
            return value
    return integral


def evaluate_integrals(eq, used_symbols: Sequence[sp.Symbol], rng: random.Random):
    """Evaluate every single integral, adding a fresh constant (a vocabulary symbol not used in
    the derivation) per evaluated integral. Double integrals are left alone (the whole equation is
    returned unchanged)."""
    if not eq.has(sp.Integral) or contains_double_integral(eq):
        return eq
    used = set(used_symbols)
    constants = [s for s in SYMBOLS if s not in used]
    if isinstance(eq, sp.Integral):
        return integrate_bounded(eq) + rng.choice(constants)
    if not isinstance(eq, sp.Equality):
        return eq
    replacements = []
    for integral in (e for e in equation_elements(eq) if isinstance(e, sp.Integral)):
        value = integrate_bounded(integral)
        if value != integral:
            replacements.append((integral, value + rng.choice(constants)))
    for old, new in replacements:
        eq = _substitute(eq, old, new)
    return eq


# ----------------------------------------------------------------------------------- arity 2

def add(eq, operand):
    return _both_sides(eq, lambda side: side + operand)


def minus(eq, operand):
    return _both_sides(eq, lambda side: side - operand)


def times(eq, operand):
    return _both_sides(eq, lambda side: side * operand)


def divide(eq, operand):
    return _both_sides(eq, lambda side: side / operand)


def power(eq, operand):
    return _both_sides(eq, lambda side: side ** operand)


def differentiate(eq, variable):
    """Unevaluated derivative of both sides."""
    return _both_sides(eq, lambda side: sp.Derivative(side, variable))


def integrate(eq, variable):
    """Unevaluated integral of both sides."""
    return _both_sides(eq, lambda side: sp.Integral(side, variable))


def substitute_LHS_for_RHS(eq, source):
    """Replace ``source``'s left side by its right side inside ``eq``."""
    return _substitute(eq, source.lhs, source.rhs)


def substitute_RHS_for_LHS(eq, source):
    """Replace ``source``'s right side by its left side inside ``eq``."""
    return _substitute(eq, source.rhs, source.lhs)


def _substitute(eq, old, new):
    if isinstance(eq, sp.Equality):
        return equation(eq.lhs.subs(old, new), eq.rhs.subs(old, new))
    return eq.subs(old, new)


# ----------------------------------------------------------------------------------- arity 0

UNARY_PREMISE_RULES = (cos, sin, exp, log)
BINARY_PREMISE_RULES = (add, minus, times, power, divide, differentiate, integrate)


def _premise_binary(rule, expr, other, rng: random.Random):
    if rule in (differentiate, integrate):
        # the authors' rule: on an expression, the variable is one of its own free symbols
        return rule(expr, rng.choice(sorted_symbols(expr)))
    return rule(expr, other)


def get_premise(rng: random.Random, symbols: Sequence[sp.Symbol] = SYMBOLS) -> sp.Equality:
    """A new premise ``f(free symbols of RHS) = RHS`` (PAPER.md §2)."""
    if rng.choice((1, 2)) == 1:
        rule = rng.choice(UNARY_PREMISE_RULES)
        sym = rng.choice(symbols)
        rhs = rule(sym)
        lhs_name = rng.choice([s for s in symbols if s != sym])
    else:
        rule = rng.choice(BINARY_PREMISE_RULES[:5])
        first = rng.choice(symbols)
        second = rng.choice([s for s in symbols if s != first])
        rhs = rule(first, second)
        lhs_name = rng.choice([s for s in symbols if s not in (first, second)])
    if rng.choice((0, 1)):
        if rng.choice((1, 2)) == 1:
            rhs = rng.choice(UNARY_PREMISE_RULES)(rhs)
        else:
            rule = rng.choice(BINARY_PREMISE_RULES)
            rhs = _premise_binary(rule, rhs, rng.choice(symbols), rng)
    return equation(sp.Function(lhs_name.name)(*sorted_symbols(rhs)), rhs)


class MemoStrPrinter(SubexpressionMemo, StrPrinter):
    """``str`` of SymPy objects (``sstr(expr, order=None)``), each distinct sub-expression printed
    once.

    :func:`renaming_premise` asks for the ``str`` of every sub-expression of a derivation, and
    printing one prints all of its own sub-expressions again. The printer's text for an object is
    a function of the object, except a Float's: one printed at the top keeps its trailing zeros,
    one inside another object drops them. So Floats (and calls with keyword arguments, and
    non-SymPy objects) are printed as usual and every other object's text is kept: a Float
    inside it is always printed inside. ``tests/test_rules.py`` checks it against ``str``.
    """

    def __init__(self):
        super().__init__({"order": None})

    def _memoisable(self, expr) -> bool:
        return isinstance(expr, sp.Basic) and not isinstance(expr, sp.Float)


_STR_PRINTER = MemoStrPrinter()


def fast_str(expr: sp.Basic) -> str:
    """``str(expr)``, printing each distinct sub-expression once (:class:`MemoStrPrinter`)."""
    return _STR_PRINTER.doprint(expr)


def renaming_premise(equations: Sequence[sp.Basic], rng: random.Random,
                     symbols: Sequence[sp.Symbol] = SYMBOLS, attempts: int = 100):
    """A new function defined as an existing sub-expression, or None after ``attempts`` tries."""
    elements: dict[sp.Basic, None] = {}
    for eq in equations:
        elements.update(dict.fromkeys(equation_elements(eq)))
    candidates = [e for e in elements if e.free_symbols and len(fast_str(e)) > 1]
    if not candidates:
        return None
    existing = " ".join(fast_str(eq) for eq in equations)
    for _ in range(attempts):
        rhs = rng.choice(candidates)
        free = sorted_symbols(rhs)
        name = rng.choice([s for s in symbols if s not in rhs.free_symbols]).name
        lhs = sp.Function(name)(*free)
        if not is_applied_undefined(rhs) and str(lhs) not in existing:
            return equation(lhs, rhs)
    return None


#: Operators by arity with the authors' default weights (PAPER.md §2).
ARITY_WEIGHTS = {0: 5, 1: 50, 2: 100}
OPERATOR_WEIGHTS = {
    "get_premise": 1, "renaming_premise": 1,
    "cos": 1, "sin": 1, "exp": 1, "log": 1, "expand": 1,
    "evaluate_derivatives": 50, "evaluate_integrals": 50,
    "add": 1, "minus": 1, "times": 1, "divide": 1, "power": 1, "differentiate": 1,
    "integrate": 1, "substitute_LHS_for_RHS": 5, "substitute_RHS_for_LHS": 5,
}
ARITY = {name: 0 for name in ("get_premise", "renaming_premise")}
ARITY.update({name: 1 for name in ("cos", "sin", "exp", "log", "expand", "evaluate_derivatives",
                                   "evaluate_integrals")})
ARITY.update({name: 2 for name in ("add", "minus", "times", "divide", "power", "differentiate",
                                   "integrate", "substitute_LHS_for_RHS", "substitute_RHS_for_LHS")})
OPERATORS = {name: globals()[name] for name in OPERATOR_WEIGHTS}
