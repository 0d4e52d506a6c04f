"""The printer reproduces what SymPy 1.5.1 printed for the authors.

Measured on the released files (flan-t5-large_results.json; the GPT-4 file holds the same
derivations): for every released derivation of the five sets, ``Derivation.latex()`` of its
srepr against the released text split at " and ". Current result: 2940 of 2940 equations equal
(100%). Remaining known differences: none in the released data; by design, a function whose
name is a single LaTeX command with a modifier suffix (``\\hbar``) prints verbatim where 1.5.1
printed ``\\bar{\\h}`` (no released equation has one).
"""
import json

import sympy as sp

from derivlib.base.vocabulary import SETS, field
from derivlib.derivation import Derivation, split_equations, to_latex


def test_printer_matches_released_equations(flan_results):
    items = json.loads(flan_results.read_text())
    total = equal = 0
    differences = []
    for item in items:
        for set_name in SETS:
            ours = Derivation.from_record(item, field(set_name, "srepr_derivation")).latex()
            reference = split_equations(item[field(set_name, "derivation")])
            assert len(ours) == len(reference)
            for a, b in zip(ours, reference):
                total += 1
                equal += a == b
                if a != b:
                    differences.append((a, b))
    assert total == 2940
    assert equal / total >= 0.99, differences[:5]


def test_function_names_follow_sympy_151():
    x = sp.Symbol("x")
    assert to_latex(sp.Function("F_c")(x)) == r"\operatorname{F_{c}}{(x)}"
    assert to_latex(sp.Function(r"\eta")(x)) == r"\eta{(x)}"
    assert to_latex(sp.Function("f")(x) ** 2) == r"f^{2}{(x)}"
    assert to_latex(sp.Symbol(r"\sigma_x")) == r"\sigma_x"
    assert to_latex(sp.Symbol(r"\hbar")) == r"\hbar"


def test_integral_and_negative_derivative_spacing():
    x = sp.Symbol("x")
    assert to_latex(sp.Integral(x, x)) == r"\int x dx"
    assert to_latex(sp.Derivative(-sp.sin(x), x)) == r"\frac{d}{d x} - \sin{(x)}"
