"""The dialect rules: what chat models write, turned into the equations the parser reads."""
from __future__ import annotations

import json

import pytest

from derivlib import dialect
from derivlib.base.vocabulary import SETS, field, split_equations


def texts(answer: str) -> list[str]:
    return [p.text for p in dialect.split(answer)]


@pytest.mark.parametrize("answer,expected", [
    ("a = b = c", ["a = b", "b = c"]),
    ("$E = m c^{2}$.", ["E = m c^{2}"]),
    ("\\[ x = y \\] and \\( y = z \\)", ["x = y", "y = z"]),
    ("$$x = 1,$$", ["x = 1"]),
    ("\\begin{align*} x &= y \\\\ y &= z \\end{align*}", ["x  = y", "y  = z"]),
    ("x = y\ny = z", ["x = y", "y = z"]),
    ("Let u = x^{2}, then du = 2 x dx.", ["u = x^{2}", "du = 2 x dx"]),
    ("E = \\hbar \\omega, where \\hbar is the reduced Planck constant", ["E = \\hbar \\omega"]),
    ("We have a = b; therefore b = a.", ["a = b", "b = a"]),
    ("x = 1 \\text{ and } y = 2", ["x = 1", "y = 2"]),
    ("\\dfrac{a}{b} = \\tfrac{c}{d}", ["\\frac{a}{b} = \\frac{c}{d}"]),
    ("[A, B] = C", ["(A B - B A) = C"]),
    ("[x + 1] = y", ["[x + 1] = y"]),
    ("x \\leq y", ["x \\leq y"]),
    ("a \\, b = c \\; d", ["a   b = c   d"]),
])
def test_rules(answer, expected):
    assert texts(answer) == expected


def test_chain_links_are_marked_and_counted():
    pieces = dialect.split("a = b = c and d = e")
    assert [p.chain for p in pieces] == [True, True, False]
    assert [p.part for p in pieces] == [0, 0, 1]


def test_prose_is_dropped_and_counted_but_latex_is_not_prose():
    pieces, prose = dialect.split_counted("This follows from the chain rule. and x = y")
    assert [p.text for p in pieces] == ["x = y"] and prose == 1
    flan = "- \\ frac { \\ kappa } { \\ omicron } + \\ tau"
    assert texts(flan) == [flan]


def test_the_authors_format_passes_unchanged(paper_results_dir):
    """Every released reference derivation, and every released model output, splits exactly as
    the authors' " and " does, except where the dialect rules apply (chains)."""
    changed = 0
    for path in sorted(paper_results_dir.glob("*_results.json")):
        items = json.loads(path.read_text())
        for item in items:
            for set_name in SETS:
                reference = item[field(set_name, "derivation")]
                assert texts(reference) == split_equations(reference), reference
        model = path.name.split("_")[0]
        for item in items:
            for set_name in SETS:
                output = item[f"{set_name}_{model}"]
                if texts(output) != split_equations(output):
                    changed += 1
    assert changed <= 5, f"{changed} released outputs changed by the dialect rules"


PREMISES = [r"M{(\mathbf{A},\varepsilon_0)} = \mathbf{A} + \varepsilon_0", r"x + y = z", r"2 x = y",
            r"e^{\sin{(\dot{z})}} = A{(\dot{z})}", r"\omicron{(u)} = \cos{(u)}"]


@pytest.mark.parametrize("first,lost", [
    (r"{ ( \ mathbf { A }, \ varepsilon_0) } = \ mathbf { A } + \ varepsilon_0", "M"),  # a name lost
    (r"( \ mathbf { A }, \ varepsilon_0) } = \ mathbf { A } + \ varepsilon_0", "M{"),   # a ')' unmatched
    (r"sin { ( \ dot { z } ) } } = A { ( \ dot { z } ) }", "e^{\\"),                    # after a backslash
    (r"n { (u) } = \ cos { (u) }", "\\omicro"),                                          # inside a command
])
def test_a_lost_start_is_restored_from_the_premise_it_ends(first, lost):
    premise, restored = dialect.restore_lost_start(first, PREMISES)
    assert restored == lost and premise in PREMISES


@pytest.mark.parametrize("first", [
    "y = z",                         # ends x + y = z, but is an equation of its own
    "x = y",                         # 2 x = y: the cut falls between two tokens
    r"\mathbf{A} + \varepsilon_0",   # no '='
    r"M{(\mathbf{A},\varepsilon_0)} = \mathbf{A} + \varepsilon_0",  # the whole premise: nothing lost
    r"{ (u) } = \ sin { (u) }",      # ends no premise
])
def test_nothing_is_restored_where_no_token_was_cut(first):
    assert dialect.restore_lost_start(first, PREMISES) is None


def test_unmatched_brackets():
    assert dialect.unmatched_brackets("(a)} + {b") == (1, 1)
    assert dialect.unmatched_brackets("[(x)]") == (0, 0)
