"""The generator's stand-ins for SymPy internals (sympy_fast.fast_sympy) give SymPy's answers."""
import contextlib
import json
import subprocess
import sys

import pytest
import sympy as sp
from sympy.core.cache import clear_cache
from sympy.core.relational import is_eq

from derivlib import generate as gen
from derivlib import sympy_fast as fast
from derivlib.derivation import from_srepr

FACTS = fast.FACTS


def test_the_replaced_functions_are_sympys_own():
    # a SymPy upgrade changes their source: then nothing is replaced until the stand-ins are
    # re-derived from the new code
    assert fast.stock_is_known(), "SymPy's _ask or _aresame changed: re-derive sympy_fast's stand-ins"
    assert fast.installed() == fast.STOCK
    with fast.fast_sympy():
        assert fast.installed() == fast.STAND_INS
        with fast.fast_sympy():
            assert fast.installed() == fast.STAND_INS
        assert fast.installed() == fast.STAND_INS
    assert fast.installed() == fast.STOCK


def test_sympy_is_restored_after_an_error():
    with pytest.raises(RuntimeError):
        with fast.fast_sympy():
            raise RuntimeError
    assert fast.installed() == fast.STOCK


def test_importing_derivlib_changes_nothing_in_sympy_or_python():
    code = ("import sys, sympy; limit = sys.getrecursionlimit(); "
            "functions = (sys.modules['sympy.core.assumptions']._ask, sys.modules['sympy.core.basic']._aresame); "
            "import derivlib.generate, derivlib.stages.generate, derivlib.cli.generate; "
            "from derivlib import sympy_fast; "
            "assert sympy_fast.installed() == functions == sympy_fast.STOCK, 'patched at import'; "
            "assert sys.getrecursionlimit() == limit, 'recursion limit changed at import'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def candidate_sides():
    """(lhs, rhs) sreprs of every candidate that reached ``Eq``'s decision in 40 derivations,
    and a few made up."""
    seen = []
    original = gen.is_eq

    def spy(lhs, rhs):
        seen.append((sp.srepr(lhs), sp.srepr(rhs)))
        return original(lhs, rhs)

    gen.is_eq = spy
    try:
        gen.generate(40, seed=7, workers=1)
    finally:
        gen.is_eq = original
    # the vocabulary's symbols carry no assumptions, so generated nodes decide few facts: add
    # candidates whose facts and decisions are known beyond numbers
    x, y = sp.symbols("x y")
    p, n = sp.Symbol("p", positive=True), sp.Symbol("n", integer=True, negative=True)
    f = sp.Function("f")
    made_up = [(sp.exp(x), 2 * sp.exp(x)), (f(x) + 1, f(x)), (sp.cos(2) + 1, sp.Integer(3)),
               (sp.sqrt(2) * sp.pi, sp.E), (p ** 2 + 1, sp.Integer(0)), (p * n, p + n),
               (sp.exp(p) - 1, sp.log(p + 1)), (sp.Abs(x) + p, -n), (x / y, sp.oo),
               (sp.Integral(p, (x, 0, 1)), sp.Derivative(n * x, x)), (1 / (p + 1), sp.zoo)]
    return seen + [(sp.srepr(a), sp.srepr(b)) for a, b in made_up]


def _answers(pairs, memo: bool, decide_first: bool):
    """``is_eq`` and every fact of every node of a candidate and of ``lhs - rhs``, on fresh
    objects, in one of two orders."""
    clear_cache()  # the nodes built below are new objects, with no fact known
    out = []
    with fast.fast_sympy() if memo else contextlib.nullcontext():
        for lhs_text, rhs_text in pairs:
            lhs, rhs = from_srepr(lhs_text), from_srepr(rhs_text)
            # the sides, their difference, and every node below them
            exprs = list(dict.fromkeys([lhs, rhs, lhs - rhs, *sp.preorder_traversal(lhs),
                                        *sp.preorder_traversal(rhs)]))
            queries = [(k, fact) for k in range(len(exprs)) for fact in FACTS]
            verdict = is_eq(lhs, rhs) if decide_first else None
            facts = {(k, fact): getattr(exprs[k], "is_" + fact)
                     for k, fact in (queries if decide_first else queries[::-1])}
            if not decide_first:
                verdict = is_eq(lhs, rhs)
            out.append((verdict, facts))
    return out


def test_memo_answers_every_query_as_sympy_does(candidate_sides):
    # the memo decides first and then reads facts (most answered from its stored Nones); plain
    # SymPy is asked the facts first, in reverse order, and decides last
    assert len(candidate_sides) > 300
    memo = _answers(candidate_sides, memo=True, decide_first=True)
    plain = _answers(candidate_sides, memo=False, decide_first=False)
    mismatches = [(pair, m, p) for pair, m, p in zip(candidate_sides, memo, plain) if m != p]
    assert not mismatches, mismatches[:3]
    assert sum(v is not None for v, _ in plain) >= 5  # the made-up ones are decided


def test_generation_is_the_same_without_the_memo():
    # a fresh interpreter with SymPy's own functions throughout
    code = ("import json; from derivlib import generate as g, sympy_fast; "
            "sympy_fast.stock_is_known = lambda: False; "
            "print(json.dumps(g.generate(12, seed=2, workers=1)))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    plain = json.loads(done.stdout)
    memo = json.loads(json.dumps(gen.generate(12, seed=2, workers=1)))
    assert memo == plain


def test_aresame_stand_in_answers_as_is_same(candidate_sides):
    # every pair of nodes of 60 candidates, and the same nodes rebuilt as other objects
    pairs = candidate_sides[:60]
    nodes = list(dict.fromkeys(n for pair in pairs for text in pair
                               for n in sp.preorder_traversal(from_srepr(text))))
    clear_cache()
    rebuilt = [from_srepr(sp.srepr(n)) for n in nodes]
    assert sum(a is not b for a, b in zip(nodes, rebuilt)) > 30
    tricky = [sp.Integer(2), sp.Float(2.0), sp.Rational(1, 2), sp.Float(0.5), sp.Float("0.5", 30),
              sp.true, sp.Integer(1), sp.nan, sp.oo, sp.Tuple(1, 2), sp.Tuple(sp.Integer(1), 2.0)]
    everything = nodes + rebuilt + tricky
    checked = 0
    for a in everything + tricky:
        for b in everything:
            assert fast.aresame_fast(a, b) == sp.Basic.is_same(a, b), (a, b)
            checked += 1
    assert checked > 100_000  # pairs
