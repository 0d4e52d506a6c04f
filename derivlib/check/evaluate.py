"""Whether an equation holds given the premises, decided numerically (:func:`prepare`,
:func:`holds`): premises substituted, derivatives and small integrals evaluated, both sides
compared at random points. See the package docstring for the method."""
from __future__ import annotations

import functools

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.integrals.manualintegrate import manualintegrate

from . import budgets
from .context import POINTS, ReferenceContext, TooLarge, Undecided, name_rng

RTOL = 1e-6
QUADRATURE_BASE = 1.0
MAX_INTEGRAND_OPS = 12        # manualintegrate only for integrands up to this many operations
MAX_DEFINITION_ROUNDS = 4     # premise definitions substituted at most this deep
MAX_PREPARED_OPS = 4000       # larger prepared expressions are not evaluated ("undecided")
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(24)


def _budget(expr: sp.Basic) -> None:
    reason = budgets.exceeded(expr)
    if reason:
        raise TooLarge(reason)


def _surrogate(name: str, arity: int, seed: int) -> sp.Lambda:
    """A fixed smooth function standing in for one no premise defines."""
    rng = name_rng(seed, "function", name)
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
        _budget(expr)  # nested applications grow with every round
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


def substitute(expr: sp.Basic, context: ReferenceContext) -> sp.Basic:
    """``expr`` with premises substituted and derivatives evaluated (integrals left alone);
    raises :class:`TooLarge` when it exceeds a budget (:mod:`.budgets`) before anything is
    evaluated, and :class:`Undecided` when SymPy refuses the derivatives."""
    _budget(expr)
    expr = _define(expr, context)
    _budget(expr)
    try:
        return expr.doit(integrals=False)
    except Exception as err:  # SymPy refusing d/d(expression) and the like
        raise Undecided(f"derivatives could not be evaluated ({type(err).__name__})") from None


def integrate(expr: sp.Basic) -> sp.Basic:
    """A :func:`substitute` result with (small) integrals evaluated, ready for :func:`numeric`."""
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


def prepare(expr: sp.Basic, context: ReferenceContext) -> sp.Basic:
    """``expr`` with premises substituted, derivatives and (small) integrals evaluated."""
    return integrate(substitute(expr, context))


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
