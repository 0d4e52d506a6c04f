"""Derivation records: srepr round trips, annotation normalisation, target text."""
from __future__ import annotations

import pytest
import sympy as sp

from derivlib import derivation as D


def test_srepr_spelling_does_not_depend_on_sympy_cache():
    plain = sp.Symbol("a")  # equal to Symbol('a', commutative=True); SymPy's cache may reuse it
    sp.exp(plain)
    authors = sp.Symbol("a", commutative=True)
    text = D.to_srepr(sp.Eq(sp.Function("f")(authors), sp.exp(authors)))
    assert text == ("Equality(Function('f')(Symbol('a', commutative=True)), "
                    "exp(Symbol('a', commutative=True)))")
    assert D.from_srepr(text) == sp.Eq(sp.Function("f")(plain), sp.exp(plain))


def test_from_srepr_rejects_malformed_and_code():
    with pytest.raises(ValueError, match="not a valid srepr"):
        D.from_srepr("Equality(Symbol('x'")
    with pytest.raises(ValueError, match="not a valid srepr"):
        D.from_srepr("__import__('os').system('true')")


def test_annotations_with_string_numbers_are_normalised():
    assert D.normalise_annotation(["substitute_LHS_for_RHS", "10", "3"]) == ["substitute_LHS_for_RHS", 10, 3]
    assert D.normalise_annotation(["add", "11", "Symbol('x')"]) == ["add", 11, "Symbol('x')"]
    with pytest.raises(ValueError, match="unknown annotation"):
        D.normalise_annotation("axiom")


def test_target_text_joins_cleaned_latex():
    a = sp.Symbol("a", commutative=True)
    f = sp.Function(r"\eta")
    steps = [["premise", D.to_srepr(sp.Eq(f(a), sp.exp(a)))],
             [["differentiate", 1, D.to_srepr(a)], D.to_srepr(sp.Eq(sp.Derivative(f(a), a), sp.Derivative(sp.exp(a), a)))]]
    record = D.steps_to_record(steps, id="x")
    assert record["derivation"] == (r"\eta{(a)} = e^{a} and \frac{d}{d a} \eta{(a)} = \frac{d}{d a} e^{a}")
    assert D.split_equations(record["derivation"]) == record["equations"]


def test_srepr_with_attribute_access_is_refused():
    with pytest.raises(ValueError, match="Attribute is not allowed"):
        D.from_srepr("Integer(1).__class__")
