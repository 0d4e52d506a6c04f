"""Small, hand-written derivations in the authors' schema, for tests that must not wait for the
generator (seconds per derivation). Each is a correct derivation that the verifier replays."""
from __future__ import annotations

import itertools

import sympy as sp

from derivlib.derivation import steps_to_record, to_srepr
from derivlib.symbols import VOCABULARY


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, commutative=True)


def power_chain(function: str, variable: str, exponent: int, multiplier: str) -> list[list]:
    """f(x) = x^n; d/dx both sides; evaluate (an intermediate); times m; add x^n; substitute f."""
    x, m = _sym(variable), _sym(multiplier)
    f = sp.Function(function)(x)
    e1 = sp.Eq(f, x**exponent)
    e2 = sp.Eq(sp.Derivative(f, x), sp.Derivative(x**exponent, x))
    e3 = sp.Eq(sp.Derivative(f, x), exponent * x**(exponent - 1))
    e4 = sp.Eq(m * sp.Derivative(f, x), m * exponent * x**(exponent - 1))
    e5 = sp.Eq(e4.lhs + x**exponent, e4.rhs + x**exponent)
    e6 = e5.subs(x**exponent, f)
    return [["premise", to_srepr(e1)],
            [["differentiate", 1, to_srepr(x)], to_srepr(e2)],
            [["evaluate_derivatives", 2], to_srepr(e3)],
            [["times", 3, to_srepr(m)], to_srepr(e4)],
            [["add", 4, to_srepr(x**exponent)], to_srepr(e5)],
            [["substitute_RHS_for_LHS", 5, 1], to_srepr(e6)]]


def no_evaluation_chain(function: str, variable: str, exponent: int, multiplier: str) -> list[list]:
    """f(x) = x^n; times m; add x; square: no derivative or integral evaluated (no intermediate)."""
    x, m = _sym(variable), _sym(multiplier)
    f = sp.Function(function)(x)
    e1 = sp.Eq(f, x**exponent)
    e2 = sp.Eq(m * f, m * x**exponent)
    e3 = sp.Eq(e2.lhs + x, e2.rhs + x)
    e4 = sp.Eq(e3.lhs**2, e3.rhs**2)
    return [["premise", to_srepr(e1)],
            [["times", 1, to_srepr(m)], to_srepr(e2)],
            [["add", 2, to_srepr(x)], to_srepr(e3)],
            [["power", 3, 2], to_srepr(e4)]]


def records(n: int, kind=power_chain, prefix: str = "h") -> list[dict]:
    """``n`` distinct derivation records (shared derivations-file format)."""
    names = [v for v in VOCABULARY if "\\" not in v and "{" not in v]
    combos = itertools.product(("f", "g", "u", "w"), ("x", "t", "r", "z", "s"), range(2, 7), ("m", "k", "c"))
    out = []
    for index, (function, variable, exponent, multiplier) in enumerate(combos):
        if index == n:
            break
        assert {function, variable, multiplier} <= set(names)
        steps = kind(function, variable, exponent, multiplier)
        out.append(steps_to_record(steps, id=f"{prefix}-{index}", seed=0, index=index))
    if len(out) < n:
        raise ValueError(f"only {len(out)} hand-made derivations of this kind")
    return out
