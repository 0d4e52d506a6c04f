"""Structural budgets: what the check may afford to compute, decided by looking at an expression
before any evaluation, never by a clock. What exceeds one is labelled ``too_large`` with the
budget's name in the reason. The time limit of :mod:`derivlib.check.parallel` is the backstop for
whatever these do not foresee.

=============================  =======  ==========================================================
budget                         value    why
=============================  =======  ==========================================================
``MAX_PREDICTION_CHARS``       20,000   a prediction longer than this is not split (one entry)
``MAX_EQUATIONS``              200      equations checked per prediction; the rest: one entry
``MAX_DIGITS``                 2,000    digits of an exact number the check holds or computes
                                        (``10^{10^{10}}``, ``x^{2^{2^{2^{2^{2}}}}}``); Python
                                        refuses to print integers above 4,300 digits
``MAX_FACTORIAL``              1,000    ``n!`` is computed only for n up to this
``MAX_NODES``                  5,000    nodes of a side after the premises are substituted,
                                        before derivatives are evaluated
``MAX_DERIVATIVE_ORDER``       20       orders of all the derivatives of one side together
``MAX_INTEGRAL_NESTING``       3        integrals inside integrals: quadrature costs 24x a level
=============================  =======  ==========================================================

The parser has its own (:mod:`derivlib.latex`): 2,000 characters and 1,000 tokens an equation,
nesting depth 40, derivative order 10, exact powers only for exponents up to 256 and factorials
up to 100.
"""
from __future__ import annotations

import math

import sympy as sp

MAX_PREDICTION_CHARS = 20_000
MAX_EQUATIONS = 200
MAX_DIGITS = 2_000
MAX_FACTORIAL = 1_000
MAX_NODES = 5_000
MAX_DERIVATIVE_ORDER = 20
MAX_INTEGRAL_NESTING = 3

_LOG10_2 = math.log10(2)


def _log10_integer(n: int) -> float:
    n = abs(n)
    return 0.0 if n < 2 else n.bit_length() * _LOG10_2


def magnitude(expr: sp.Basic) -> float:
    """An upper bound of log10 |value| of an expression without free symbols, computed from its
    structure (never by evaluating it); ``inf`` when it is too large to say."""
    if expr.is_Integer:
        return _log10_integer(int(expr))
    if expr.is_Rational:  # |p/q| <= max(|p|, q), and computing with it needs the digits of both
        return max(_log10_integer(int(expr.p)), _log10_integer(int(expr.q)))
    if expr.is_Float:
        value = abs(float(expr))
        return math.log10(value) if math.isfinite(value) and value > 1 else (0.0 if math.isfinite(value) else math.inf)
    if expr.is_Atom:
        return 1.0  # pi, E, I, oo: small (or not numbers at all)
    if expr.is_Add:
        return max(magnitude(a) for a in expr.args) + math.log10(len(expr.args))
    if expr.is_Mul:
        return sum(max(magnitude(a), 0.0) for a in expr.args)
    if expr.is_Pow:
        base, exponent = expr.args
        top = magnitude(exponent)
        if top > 300:
            return math.inf
        return max(magnitude(base), 1.0) * 10 ** top
    if isinstance(expr, sp.factorial):
        top = magnitude(expr.args[0])
        if top > 300:
            return math.inf
        n = 10 ** top
        return n * max(math.log10(max(n, 2)), 1.0)
    if isinstance(expr, sp.exp):
        top = magnitude(expr.args[0])
        return math.inf if top > 300 else 10 ** top * math.log10(math.e)
    return max((magnitude(a) for a in expr.args), default=1.0) + 1.0


def exceeded(expr: sp.Basic) -> str | None:
    """The budget ``expr`` exceeds (the reason of a ``too_large`` label), else None."""
    nodes = 0
    stack = [(expr, 0, 0)]  # (node, derivative order above it, integrals above it)
    while stack:
        node, order, integrals = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return f"more than {MAX_NODES} expression nodes (budget MAX_NODES)"
        if node.is_Integer and _log10_integer(int(node)) > MAX_DIGITS:
            return f"a number of more than {MAX_DIGITS} digits (budget MAX_DIGITS)"
        if node.is_Atom:
            continue
        reason = _numeric_work(node)
        if reason:
            return reason
        if isinstance(node, sp.Derivative):
            counts = [c for _, c in node.variable_count]
            order += sum(int(c) if c.is_Integer else 1 for c in counts)  # a symbolic order does not evaluate
            if order > MAX_DERIVATIVE_ORDER:
                return f"derivatives of total order above {MAX_DERIVATIVE_ORDER} (budget MAX_DERIVATIVE_ORDER)"
        if isinstance(node, sp.Integral):
            integrals += 1
            if integrals > MAX_INTEGRAL_NESTING:
                return f"integrals nested more than {MAX_INTEGRAL_NESTING} deep (budget MAX_INTEGRAL_NESTING)"
        stack.extend((arg, order, integrals) for arg in node.args)
    return None


def _numeric_work(node: sp.Basic) -> str | None:
    """What evaluating ``node`` exactly (``doit``) would compute, if over a budget."""
    if node.is_Pow:
        base, exponent = node.args
        if exponent.free_symbols:
            return None
        top = magnitude(exponent)
        if top > MAX_DIGITS:  # even x^{n} needs n itself
            return f"an exponent of more than {MAX_DIGITS} digits (budget MAX_DIGITS)"
        if not base.free_symbols and base.is_number and not base.has(sp.Float):
            digits = max(magnitude(base), 1.0) * 10 ** top
            if digits > MAX_DIGITS:
                return f"a power of about 10^{top:.0f} x {max(magnitude(base), 1.0):.0f} digits (budget MAX_DIGITS)"
    elif isinstance(node, (sp.factorial, sp.factorial2, sp.gamma, sp.subfactorial, sp.RisingFactorial,
                           sp.FallingFactorial, sp.binomial)):
        argument = node.args[0]
        if not argument.free_symbols and magnitude(argument) > math.log10(MAX_FACTORIAL):
            return f"a factorial of a number above {MAX_FACTORIAL} (budget MAX_FACTORIAL)"
    return None
