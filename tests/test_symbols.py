"""The vocabulary: 155 distinct commutative symbols, each printing as intended."""
import re

import pytest
import sympy as sp

from derivlib.derivation import to_latex
from derivlib.symbols import RENAMING_SYMBOLS, SYMBOLS, VOCABULARY


def intended(name: str) -> str:
    # a plain name's subscript is braced (E_n -> E_{n}); LaTeX names print verbatim
    if "\\" in name or "{" in name:
        return name
    return re.sub(r"_(\w+)$", r"_{\1}", name)


def test_vocabulary_size_and_distinctness():
    assert len(VOCABULARY) == 155
    assert len(set(VOCABULARY)) == 155
    assert all(s.is_commutative for s in SYMBOLS)


def test_vocabulary_excludes_renaming_symbols():
    assert not set(VOCABULARY) & set(RENAMING_SYMBOLS)


@pytest.mark.parametrize("name", VOCABULARY)
def test_every_symbol_prints_as_intended(name):
    latex = to_latex(sp.Symbol(name, commutative=True))
    assert latex == intended(name)
    assert r"\bar{\h}" not in latex and "{\\}" not in latex


@pytest.mark.parametrize("name", VOCABULARY)
def test_every_symbol_prints_as_a_function_name(name):
    x = sp.Symbol("x")
    latex = to_latex(sp.Function(name)(x))
    assert latex.endswith("{(x)}")
    assert r"\bar{\h}" not in latex and "{\\}" not in latex
    # SymPy 1.5.1 braced a plain script of a function name (\varepsilon_0 -> \varepsilon_{0})
    braced = name if "{" in name else re.sub(r"([_^])([\w*]+)$", r"\1{\2}", name)
    assert braced in latex
