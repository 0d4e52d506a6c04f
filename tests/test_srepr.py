"""The one srepr reader: SymPy expression-node constructors with literal arguments, nothing else."""
from __future__ import annotations

import json

import pytest
import sympy as sp

from derivlib import srepr
from derivlib.derivation import from_srepr, to_srepr

x, y = sp.symbols("x y")
f = sp.Function("f")

ROUND_TRIPS = [
    sp.Eq(f(x), sp.cos(x) ** 2 + sp.Rational(1, 2) * y),
    sp.Eq(sp.Derivative(f(x), (x, 2)), sp.Integral(sp.exp(-x) * sp.log(y), x)),
    sp.Eq(sp.Symbol("E_n"), sp.pi * sp.I + sp.E - sp.oo + sp.Float("1.5")),
    sp.Eq(sp.Ei(x), sp.Ci(y) + sp.sin(x)),
]


@pytest.mark.parametrize("expr", ROUND_TRIPS, ids=str)
def test_srepr_round_trips(expr):
    assert srepr.read(sp.srepr(expr)) == expr
    assert srepr.read(to_srepr(expr)) == expr


HOSTILE = [
    ("__import__('os').system('touch /tmp/derivlib-pwned')", "Attribute"),
    ("sympify('__import__(\"os\").getcwd()')", "'sympify' is not a SymPy expression node"),
    ("parse_expr('1')", "'parse_expr' is not a SymPy expression node"),
    ("cos('__import__(\"os\").getcwd()')", "a string argument of cos"),
    ("Add(Symbol('x'), '1')", "a string argument of Add"),
    ("S('x')", "'S' is not a SymPy expression node"),
    ("Symbol('x').subs(Symbol('x'), 1)", "Attribute"),
    ("[Symbol('x')][0]", "Subscript"),
    ("(lambda: 1)()", "Lambda"),
    ("Function(Symbol('f'))", "needs a string literal"),
    ("Symbol('x', commutative='yes')", "keyword 'commutative'"),
    ("Integer(__name__)", "Name"),
    ("Pow(Integer(10), Integer(1000000000))", "too large"),
    ("factorial(Integer(100000000))", "too large"),
    ("Pow(Pow(Integer(10), Integer(10000)), Integer(10000))", "too large"),
    ("Equality(Symbol('x'", "SyntaxError"),
    ("(" * 500 + "Symbol('x')" + ")" * 500, "nested"),
]


@pytest.mark.parametrize("text,reason", HOSTILE, ids=[h[0][:40] for h in HOSTILE])
def test_hostile_srepr_is_refused_and_nothing_runs(text, reason, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(srepr.SreprError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        srepr.read(text)
    assert list(tmp_path.iterdir()) == []


def test_too_long_text_is_refused_before_parsing():
    with pytest.raises(srepr.SreprError, match="characters"):
        srepr.read("Symbol('x')" + " " * srepr.MAX_LENGTH)


def test_non_text_is_refused():
    with pytest.raises(srepr.SreprError, match="expected an srepr string"):
        srepr.read(["Symbol('x')"])


def test_equality_can_be_left_unevaluated():
    text = "Equality(Symbol('x'), Symbol('x'))"
    assert srepr.read(text) is sp.true
    unevaluated = srepr.read(text, evaluate_equality=False)
    assert isinstance(unevaluated, sp.Equality) and unevaluated.lhs == unevaluated.rhs


def test_released_srepr_reads_as_sympy_constructs_it(paper_results_dir):
    """The srepr of the released files (first 20 items of each) gives the expression SymPy's own
    parser gives."""
    checked = 0
    for path in sorted(paper_results_dir.glob("*_results.json")):
        for item in json.loads(path.read_text())[:20]:
            for key, steps in item.items():
                if not key.endswith("srepr_derivation"):
                    continue
                for _, text in steps:
                    assert to_srepr(from_srepr(text)) == to_srepr(sp.parse_expr(text, evaluate=True)), text
                    checked += 1
    assert checked > 1000
