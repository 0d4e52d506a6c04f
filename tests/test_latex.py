"""LaTeX -> SymPy: the dialect's constructs, round trips, released model outputs."""
from __future__ import annotations

import pytest
import sympy as sp

from derivlib import derivation, generate, latex
from derivlib.base.vocabulary import SETS, field, split_equations
from derivlib.readers import released

a, x, y = sp.symbols("a x y")
eta = sp.Function("\\eta")


def parsed(text, functions=frozenset()):
    result = latex.parse(text, functions)
    assert result.ok, result.reason
    return result.expr


@pytest.mark.parametrize("text, expected", [
    (r"\eta{(a)} = e^{a}", sp.Eq(eta(a), sp.exp(a), evaluate=False)),
    (r"\frac{d}{d a} \eta{(a)}", sp.Derivative(eta(a), a)),
    (r"\frac{d^{2}}{d a^{2}} \eta{(a)}", sp.Derivative(eta(a), (a, 2))),
    (r"\eta^{2}{(a)}", eta(a) ** 2),
    (r"\log{(x)}", sp.log(x)),                       # natural log, as SymPy prints it
    (r"\sin^{2}{(x)}", sp.sin(x) ** 2),
    (r"\int x y dx", sp.Integral(x * y, x)),
    (r"\int (x + y) d x + 1", sp.Integral(x + y, x) + 1),
    (r"e^{x} \int e^{x} dx", sp.exp(x) * sp.Integral(sp.exp(x), x)),
    (r"\frac{\partial^{2}}{\partial y\partial x} \operatorname{F_c}{(x,y)}",
     sp.Derivative(sp.Function("F_{c}")(x, y), x, y)),
    (r"\mathbf{E} \hat{H}_l", sp.Symbol("\\mathbf{E}") * sp.Symbol("\\hat{H}_{l}")),
    (r"x^{\prime} + y^\prime + f'", sp.Symbol("x^{\\prime}") + sp.Symbol("y^{\\prime}") + sp.Symbol("f^{\\prime}")),
    (r"x \cdot y", x * y),
    (r"\frac{x}{2}", x / 2),
    (r"\sqrt{x}", sp.sqrt(x)),
    (r"\operatorname{Ci}{(x)}", sp.Ci(x)),
    (r"e", sp.E),
    # SymPy's printing of rarer constructs in generated derivations
    (r"\int\limits^{y} x dx", sp.Integral(x, (x, y))),
    (r"\int\limits^{a}\int x y dx dy", sp.Integral(x * y, x, (y, a))),
    (r"\int x d\operatorname{F_{c}}{(a)}", sp.Integral(x, sp.Function("F_{c}")(a))),
    (r"\int x d\frac{d}{d a} \eta{(a)}", sp.Integral(x, sp.Derivative(eta(a), a))),
    (r"\frac{d^{2}}{d \chid y} x", sp.Derivative(x, y, sp.Symbol("\\chi"))),  # no space after \chi
    (r"\frac{\partial^{a + 1}}{\partial x^{a + 1}} x y", sp.Derivative(x * y, (x, a + 1))),
    (r"\frac{2 (x + y)}{a}", sp.Mul(2, x + y, 1 / a)),  # not distributed: SymPy holds it so
    (r"\frac{x}{2 (a + y)}", sp.Mul(sp.Rational(1, 2), x, 1 / (a + y))),
    (r"\frac{d}{d a} - (x - a) \eta{(a)}", sp.Derivative(sp.Mul(-1, x - a, eta(a)), a)),
])
def test_dialect(text, expected):
    assert parsed(text) == expected


def test_a_symbol_d_before_the_differential():
    # the printer writes Integral(B*d, B) as "\int B d dB" (its "\," dropped): the last d is the
    # differential; this copied premise was labelled incorrect by 07 when the first d was taken
    bold_b, d = sp.Symbol("\\mathbf{B}"), sp.Symbol("d")
    for expr in (sp.Integral(bold_b * d, bold_b), sp.Integral(d, d), sp.Integral(bold_b * d, bold_b, x)):
        assert parsed(derivation.to_latex(expr)) == expr, derivation.to_latex(expr)
    assert parsed(r"\int\int x dd dx") == sp.Integral(x, d, x)


def test_ambiguous_derivative_operand_follows_the_printer():
    # the printer writes both products below as "d/dx <a> d/dy <b>"-like text only in the
    # order SymPy sorts the factors; the reading that prints back as the text is chosen
    f, g = sp.Function("f"), sp.Function("g")
    nested = sp.Derivative(x * sp.Derivative(f(x, y), y), x)
    separate = sp.Derivative(g(x), x) * sp.Derivative(f(x, y), y)
    for expr in (nested, separate):
        assert parsed(derivation.to_latex(expr)) == expr


def test_model_noise_is_undone():
    # FLAN-T5: split commands, no leading backslash, spaces inside names
    noisy = r"eta { (a) } = \ frac { d } { d a } \ eta { (a) } + \ e ^ { a } + F_ { N }"
    clean = r"\eta{(a)} = \frac{d}{d a} \eta{(a)} + e^{a} + F_{N}"
    assert parsed(noisy) == parsed(clean)
    # dropped braces: a known function applied without them
    assert parsed(r"\eta(a)", frozenset({"\\eta"})) == eta(a)
    assert parsed(r"\eta(a)") == sp.Symbol("\\eta") * a
    assert parsed("F_N") == parsed("F_{N}") == sp.Symbol("F_{N}")


@pytest.mark.parametrize("text, why", [
    ("", "empty"), (r"\frac{x}", "expected"), ("x = y = z", "more than one"),
    (r"\int x", "differential"), (r"\sum x", "unknown command"), (r"a \leq b", "unknown command"),
    ("(" * 100 + "x" + ")" * 100, "nested"),
    ("x" * 3000, "longer than"),
])
def test_failures_are_results_not_exceptions(text, why):
    result = latex.parse(text)
    assert not result.ok and why in result.reason


def test_bounded_numbers():
    # would not finish if evaluated; SymPy evaluates a power of numbers wherever it meets one
    for text in ("9^{9^{9^{9}}}", r"\sqrt{10^{10^{10}}}", r"2 \cdot 10^{10^{10}}", "10^{-10^{10}}", "x^{10^{10^{10}}}",
                 "(10^{6})!", "2^{2^{2^{2^{2^{2^{2}}}}}}"):
        result = latex.parse(text)
        assert not result.ok and result.too_large and "budget" in result.reason, text
    assert latex.parse("2^{300}").expr == sp.Integer(2) ** 300  # small enough to hold
    assert latex.parse("x^{10^{100}}").expr == sp.Symbol("x") ** sp.Integer(10) ** 100
    assert latex.parse("200!").expr == sp.factorial(200, evaluate=False)  # held, not computed
    assert latex.parse("5!").expr == 120
    assert not latex.parse("x = y = z").too_large


def test_unknown_command_words_are_names():
    # FLAN-T5's garbled Greek: a command word that is neither in the dialect nor LaTeX is a name
    esilon, kappa, iota = sp.Symbol("\\esilon"), sp.Symbol("\\kappa"), sp.Symbol("\\iota")
    assert parsed(r"1 = \ frac { 1 } { \ frac { d } { d \ kappa } \ esilon { ( \ kappa) } }") == sp.Eq(
        1, 1 / sp.Derivative(sp.Function("\\esilon")(kappa), kappa), evaluate=False)
    assert parsed(r"\ frac { d } { d \ iota } \ operator { ( \ iota) } = e ^ { \ iota }").lhs == \
        sp.Derivative(sp.Function("\\operator")(iota), iota)
    assert parsed(r"\int x d\mathsilon") == sp.Integral(sp.Symbol("x"), sp.Symbol("\\mathsilon"))
    assert parsed(r"x_{\esilon}") == sp.Symbol("x_{\\esilon}")
    assert parsed(r"\esilon + 1") == esilon + 1
    for command in ("sum", "leq", "approx", "to", "cdots", "begin", "partial", "binom"):
        assert latex.is_name_command("\\alpha") and not latex.is_name_command("\\" + command), command
        result = latex.parse(f"x \\{command} y")
        assert not result.ok, command  # a LaTeX command with a meaning is not silently a name


def test_a_font_around_an_expression_is_typography():
    iota = sp.Symbol("\\iota")
    assert parsed(r"\ mathbf { ( \ iota) } = \ iota") == sp.Eq(iota, iota, evaluate=False)
    assert parsed(r"\mathbf{x + y}") == x + y
    assert parsed(r"\mathbf{E}") == sp.Symbol("\\mathbf{E}")  # a font around a name makes a name
    assert parsed(r"\mathbf{A}{(x)}") == sp.Function("\\mathbf{A}")(x)
    assert not latex.parse(r"\hat{(x)}").ok  # an accent is not a font: \hat{x + 1} means something else


def test_parse_equation_requires_equals():
    assert not latex.parse_equation("x + y").ok
    assert latex.parse_equation("x = y").ok


def _round_trip_rate(sreprs):
    good = 0
    for text in sreprs:
        expr = derivation.from_srepr(text)
        result = latex.parse(derivation.to_latex(expr))
        good += result.ok and result.expr == latex.canonicalize(expr)
    return good / len(sreprs)


@pytest.mark.paper_results
def test_round_trip_released_references(paper_results_dir):
    sreprs = []
    for path in released.results_files(paper_results_dir).values():
        for item in released.load_items(path):
            for set_name in SETS:
                sreprs += [s for _, s in item[field(set_name, "srepr_derivation")]]
        break  # both files hold the same 100 items x 5 sets: 500 derivations
    assert len(sreprs) > 2500
    assert _round_trip_rate(sreprs) >= 0.995


@pytest.mark.slow
def test_round_trip_generated_derivations():
    # 300 derivations (about 2,000 equations) at CI cost; benchmarks/check.py --generated 2000
    # measures the full figure. What stays wrong is SymPy's genuinely ambiguous printing of a
    # product of derivatives (see latex.parser.Parser.side).
    records, _ = generate.generate(300, seed=0)
    sreprs = [s for record in records for _, s in record["srepr_derivation"]]
    assert len(sreprs) > 1500
    assert _round_trip_rate(sreprs) >= 0.995


@pytest.mark.paper_results
def test_released_model_outputs_parse(paper_results_dir):
    total = parsed_ok = 0
    for path in released.results_files(paper_results_dir).values():
        for record in released.to_predictions(path):
            for text in split_equations(record["prediction"]):
                total += 1
                parsed_ok += latex.parse_equation(text).ok
    assert total > 4000
    assert parsed_ok / total >= 0.98


def test_canonical_names():
    assert latex.canonical_name("F_N") == latex.canonical_name("F_{N}") == "F_{N}"
    assert latex.canonical_name("x^\\prime") == "x^{\\prime}"
    assert latex.canonical_name("\\hat{H}_l") == "\\hat{H}_{l}"
    expr = sp.Function("F_c")(sp.Symbol("M_E"))
    assert latex.canonicalize(expr) == sp.Function("F_{c}")(sp.Symbol("M_{E}"))
