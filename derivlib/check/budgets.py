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
``MAX_DERIVATIVE_WORK``        2,000    nodes of a derivative's operand x 3^(its order, with the
                                        orders of derivatives around it): each order multiplies
                                        the result by 2-3 (``d^{7}/dx^{7} x^{x^{x^{x}}}`` takes
                                        6 s, the 8th 15 s); released outputs need at most 81
``MAX_INTEGRAL_NESTING``       3        integrals inside integrals: quadrature costs 24x a level
=============================  =======  ==========================================================

``MAX_DIGITS`` and ``MAX_FACTORIAL`` are the parser's (:mod:`derivlib.latex.numbers`), which
refuses such numbers already (``too_large`` too); here they guard what substituting the premises
builds. The parser's other budgets: 2,000 characters and 1,000 tokens an equation, nesting depth
40, derivative order 10.
"""
from __future__ import annotations

import math

import sympy as sp

from ..latex import MAX_DIGITS, MAX_FACTORIAL, magnitude
from ..latex.numbers import log10_integer

MAX_PREDICTION_CHARS = 20_000
MAX_EQUATIONS = 200
MAX_NODES = 5_000
MAX_DERIVATIVE_ORDER = 20
MAX_INTEGRAL_NESTING = 3
MAX_DERIVATIVE_WORK = 2_000


def exceeded(expr: sp.Basic) -> str | None:
    """The budget ``expr`` exceeds (the reason of a ``too_large`` label), else None."""
    nodes = 0
    stack = [(expr, 0, 0)]  # (node, derivative order above it, integrals above it)
    while stack:
        node, order, integrals = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return f"more than {MAX_NODES} expression nodes (budget MAX_NODES)"
        if node.is_Integer and log10_integer(int(node)) > MAX_DIGITS:
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
            limit = MAX_DERIVATIVE_WORK / 3 ** order
            size = _nodes(node.expr, limit)
            if size > limit:
                return (f"a derivative of order {order} of an expression of {size}{'+' if size >= limit else ''} "
                        f"nodes: nodes x 3^order over {MAX_DERIVATIVE_WORK} (budget MAX_DERIVATIVE_WORK)")
        if isinstance(node, sp.Integral):
            integrals += 1
            if integrals > MAX_INTEGRAL_NESTING:
                return f"integrals nested more than {MAX_INTEGRAL_NESTING} deep (budget MAX_INTEGRAL_NESTING)"
        stack.extend((arg, order, integrals) for arg in node.args)
    return None


def _nodes(expr: sp.Basic, limit: float) -> int:
    """The number of nodes of ``expr``, counted up to just past ``limit``."""
    count = 0
    for _ in sp.preorder_traversal(expr):
        count += 1
        if count > limit:
            break
    return count


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
