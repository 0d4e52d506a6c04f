"""rules: the memoised ``str`` that renaming_premise uses prints what ``str`` prints."""
import random

import sympy as sp

from derivlib import generate as gen
from derivlib import rules
from derivlib.derivation import from_srepr


def test_memo_str_equals_str_on_every_element_of_real_derivations():
    records, _ = gen.generate(12, seed=4, workers=1)
    equations = [from_srepr(s) for r in records for _, s in r["srepr_derivation"]]
    nodes = list(dict.fromkeys(n for eq in equations for n in [eq, *rules.equation_elements(eq)]))
    assert len(nodes) > 250
    fresh = rules.MemoStrPrinter()
    for node in nodes:
        assert rules.fast_str(node) == str(node), node
        assert fresh.doprint(node) == str(node), node
    x = sp.Symbol("x")
    # a Float keeps its trailing zeros only when printed on its own: never from the memo
    half, third = sp.Float(0.5), sp.Float("0.333", 30)
    tricky = [x + half, half, sp.Tuple(half, x), third * x, third, sp.Integer(1), sp.Float(1.0),
              sp.Rational(1, 2), sp.Eq(x, half), sp.sqrt(x) + third]
    for node in tricky + tricky[::-1]:
        assert rules.fast_str(node) == str(node), node
        assert fresh.doprint(node) == str(node), node
    assert (rules.fast_str(x + half), rules.fast_str(half)) == ("x + 0.5", "0.500000000000000")


def test_renaming_premise_draws_as_before():
    x, y = sp.symbols("x y")
    f = sp.Function("f")
    equations = [sp.Eq(f(x, y), x * sp.cos(y) + y ** 2), sp.Eq(sp.Derivative(f(x, y), x), sp.cos(y))]
    a = rules.renaming_premise(equations, random.Random(3))
    b = rules.renaming_premise(equations, random.Random(3))
    assert a == b and isinstance(a, sp.Equality) and a.rhs.free_symbols
