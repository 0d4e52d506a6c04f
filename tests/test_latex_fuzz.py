"""Fuzz: random and mutated LaTeX never crashes the parser or the checker, and stays bounded."""
from __future__ import annotations

import sympy as sp
from hypothesis import HealthCheck, given, settings, strategies as st

from derivlib import check, latex

x = sp.Symbol("x")
f = sp.Function("f")
STEPS = [["premise", sp.srepr(sp.Eq(f(x), sp.exp(x)))],
         [["differentiate", 1, sp.srepr(x)], sp.srepr(sp.Eq(sp.Derivative(f(x), x), sp.Derivative(sp.exp(x), x)))]]
SEEDS = [r"f{(x)} = e^{x}", r"\frac{d}{d x} f{(x)} = \frac{d}{d x} e^{x}", r"\int \sin{(x)} dx = C - \cos{(x)}",
         r"\frac{\partial^{2}}{\partial y\partial x} \operatorname{F_c}{(x,y)} = \mathbf{E}^{2} \hat{H}_l",
         r"\log{(x)}^{2} = \sqrt{x} + \frac{1}{2}"]
PIECES = [r"\frac", r"\int", "{", "}", "(", ")", "^", "_", "=", "+", "-", " d", "x", "e", r"\eta", "{(", ")}",
          r"\operatorname{", r"\partial", "2", "99", r"\mathbf{", r"\ ", ",", r"\log", r"\cdot", "'", "|"]


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if action == "insert":
            text = text[:position] + draw(st.sampled_from(PIECES)) + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 5)):]
        else:
            text = text[:position] + text[position:position + 12] * draw(st.integers(2, 40)) + text[position:]
    return text


texts = st.one_of(mutated(), st.lists(st.sampled_from(PIECES + list("abxyz0123 ")), max_size=150).map("".join),
                  st.text(max_size=200))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(texts)
def test_parse_and_check_never_crash(text):
    result = latex.parse(text)
    assert isinstance(result, latex.ParseResult)
    assert result.ok == (result.expr is not None)
    if result.ok:
        assert len(latex.tokenize(latex.normalise(text))) <= latex.MAX_TOKENS
    outcome = check.check_derivation([text, r"f{(x)} = e^{x}"], STEPS)
    assert outcome.labels[0] in check.LABELS
