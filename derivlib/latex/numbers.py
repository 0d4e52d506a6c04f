"""The size of exact numbers, judged from an expression's structure before anything computes it
(:func:`magnitude`), and the parser's budget on them (:func:`exact_power`, :func:`factorial`):
SymPy evaluates a power of numbers as soon as it meets one in a sum, a product or another power,
so the parser never builds one whose value it could not hold."""
from __future__ import annotations

import math

import sympy as sp

from .lexer import ParseError

MAX_DIGITS = 2000        # digits of an exact number a parse may hold (Python prints up to 4,300)
MAX_EXACT_FACTORIAL = 100  # n! is evaluated while parsing only for integers n up to this size
MAX_FACTORIAL = 1000     # n! with a larger n is not held at all

_LOG10_2 = math.log10(2)


class NumberTooLarge(ParseError):
    """The text writes an exact number too large to hold; the parse is labelled ``too_large``."""


def log10_integer(n: int) -> float:
    """An upper bound of log10 |n| (from the bit length: never converts n to decimal)."""
    n = abs(n)
    return 0.0 if n < 2 else n.bit_length() * _LOG10_2


def magnitude(expr: sp.Basic) -> float:
    """An upper bound of log10 |value| (and of the digits an exact computation of it needs) of an
    expression without free symbols, computed from its structure; ``inf`` when too large to say."""
    if expr.is_Integer:
        return log10_integer(int(expr))
    if expr.is_Rational:  # |p/q| <= max(|p|, q), and computing with it needs the digits of both
        return max(log10_integer(int(expr.p)), log10_integer(int(expr.q)))
    if expr.is_Float:
        value = abs(float(expr))
        if not math.isfinite(value):
            return math.inf
        return math.log10(value) if value > 1 else 0.0
    if expr.is_Atom:
        return 1.0  # pi, E, I, oo: small (or not numbers at all)
    if expr.is_Add:
        return max(magnitude(a) for a in expr.args) + math.log10(len(expr.args))
    if expr.is_Mul:
        return sum(max(magnitude(a), 0.0) for a in expr.args)
    if expr.is_Pow:
        base, exponent = expr.args
        top = magnitude(exponent)
        return math.inf if top > 300 else max(magnitude(base), 1.0) * 10 ** top
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


def _exact(expr) -> bool:
    return isinstance(expr, sp.Expr) and not expr.free_symbols and not expr.has(sp.Float)


def exact_power(base, exponent) -> None:
    """Raise NumberTooLarge when ``base^exponent`` would be an exact number of more than
    MAX_DIGITS digits, or its exponent one (``x^{10^{10^{10}}}`` needs 10^{10^{10}})."""
    if not _exact(exponent):
        return
    top = magnitude(exponent)
    if top > MAX_DIGITS:
        raise NumberTooLarge(f"an exponent of more than {MAX_DIGITS} digits (budget MAX_DIGITS)")
    if _exact(base) and not (base.is_Integer and abs(int(base)) <= 1):
        digits = max(magnitude(base), 1.0) * 10 ** top
        if digits > MAX_DIGITS:
            raise NumberTooLarge(f"a power of about {digits:.3g} digits, more than {MAX_DIGITS} (budget MAX_DIGITS)")


def factorial(base):
    """``base!``: evaluated for integers up to MAX_EXACT_FACTORIAL, held for numbers up to
    MAX_FACTORIAL, refused (NumberTooLarge) above."""
    if _exact(base) and magnitude(base) > math.log10(MAX_FACTORIAL):
        raise NumberTooLarge(f"a factorial of a number above {MAX_FACTORIAL} (budget MAX_FACTORIAL)")
    if isinstance(base, sp.Number) and not (isinstance(base, sp.Integer) and 0 <= base <= MAX_EXACT_FACTORIAL):
        return sp.factorial(base, evaluate=False)
    return sp.factorial(base)
