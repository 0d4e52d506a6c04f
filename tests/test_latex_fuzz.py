"""Fuzz: random and mutated LaTeX never crashes the parser or the checker, and stays bounded;
hostile LaTeX of the classes issue 17 found (towers of powers, large factorials, nested braces,
fraction chains, long sums, nested integrals and derivatives, many equations) is labelled within
its budget."""
from __future__ import annotations

import time

import pytest
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


# ----------------------------------------------------------------------------------- hostile classes

SECONDS_PER_CASE = 5.0  # each hostile case is labelled within this (structural budgets, no worker)
numbers = st.one_of(st.integers(0, 12), st.integers(10, 10**6), st.just(10**100)).map(str)


@st.composite
def tower(draw):
    levels = draw(st.lists(numbers, min_size=2, max_size=8))
    base = draw(st.sampled_from(["x", "2", "10", r"\frac{1}{3}", "(x + 1)", "e", "2.5"]))
    text = base
    for level in levels:
        text = f"{text}^{{{level}" if draw(st.booleans()) else f"{{{text}}}^{{{level}"
    return text + "}" * len(levels)


@st.composite
def factorial(draw):
    inner = draw(st.one_of(numbers, tower()))
    return draw(st.sampled_from(["{}!", "({})!", r"\frac{{{}!}}{{2}}", "x^{{{}!}}"])).format(inner)


def nested(template: str, inner: str = "x"):
    return st.integers(1, 60).map(lambda n: template.split("@")[0] * n + inner + template.split("@")[1] * n)


@st.composite
def derivatives(draw):
    operand = draw(st.sampled_from(["x", "x^{x}", "x^{x^{x^{x}}}", r"\sin{(x)}^{\cos{(x)}^{x}}", "f{(x)} e^{x^{2}}"]))
    text = operand
    for _ in range(draw(st.integers(1, 6))):
        order = draw(st.integers(1, 10))
        text = rf"\frac{{d^{{{order}}}}}{{d x^{{{order}}}}} {text}"
    return text


def long_sum(n):
    return " + ".join(f"x^{{{i}}}" for i in range(n))


sides = st.one_of(
    tower(), factorial(), derivatives(),
    nested("{@}"), nested(r"\frac{1}{1 + @}"), nested("(@)"), nested(r"\sqrt{@}"), nested(r"e^{@}"),
    nested(r"\int @ dx", ""), nested(r"\int x (@) dx"), nested("f{(@)}"),
    st.integers(1, 400).map(long_sum),
    st.integers(1, 1990).map(lambda n: "9" * n), st.integers(1, 300).map(lambda n: "999999^{256} " * n),
)


@st.composite
def hostile(draw):
    equation = f"{draw(sides)} = {draw(st.one_of(sides, st.just('1')))}"
    count = draw(st.sampled_from([1, 1, 1, 2, 30, 5000, 300_000]))
    return " and ".join([equation] * count) if count < 300_000 else [equation] * count


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          derandomize=True)
@given(hostile())
def test_hostile_latex_is_labelled_within_its_budget(prediction):
    start = time.perf_counter()
    outcome = check.check_derivation(prediction, STEPS)
    elapsed = time.perf_counter() - start
    assert elapsed < SECONDS_PER_CASE, (elapsed, str(prediction)[:200])
    assert outcome.labels and set(outcome.labels) <= set(check.LABELS)
    assert len(outcome.equations) <= check.MAX_EQUATIONS + 1
