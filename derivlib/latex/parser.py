"""The grammar of the dialect (:class:`Parser`) and its entry points :func:`parse` and
:func:`parse_equation`; see the package docstring for the dialect and why it is parsed by hand."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..derivation import to_latex
from .lexer import ACCENTS, FONTS, FUNCTIONS, OPERATORNAMES, ParseError, is_name_command, normalise, tokenize
from . import numbers
from .names import NameReader, canonical_symbol

MAX_LENGTH = 2000        # characters after normalisation
MAX_DERIVATIVE_ORDER = 10


@dataclass(frozen=True)
class ParseResult:
    """Outcome of one parse: ``ok`` and ``expr``, or not ``ok`` and a ``reason``."""

    ok: bool
    expr: sp.Basic | None = None
    reason: str = ""
    too_large: bool = False  # failed on a budget of numbers (numbers.NumberTooLarge), not on the text

    def __bool__(self) -> bool:
        return self.ok


def parse(text: str, functions: frozenset[str] | set[str] = frozenset()) -> ParseResult:
    """Parse one equation (``lhs = rhs``) or expression. Never raises on bad input.

    ``functions`` are (canonical) names known to be functions, e.g. from the prompt's premises:
    they make ``f(x)`` without braces an application instead of ``f*x``.
    """
    if not isinstance(text, str):
        return ParseResult(False, reason=f"not a string ({type(text).__name__})")
    text = normalise(text)
    if not text:
        return ParseResult(False, reason="empty")
    if len(text) > MAX_LENGTH:
        return ParseResult(False, reason=f"longer than {MAX_LENGTH} characters")
    try:
        parser = Parser(tokenize(text), frozenset(functions))
        expr = parser.top()
    except numbers.NumberTooLarge as err:
        return ParseResult(False, reason=str(err), too_large=True)
    except ParseError as err:
        return ParseResult(False, reason=str(err))
    except RecursionError:
        return ParseResult(False, reason="nested too deeply")
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, OverflowError) as err:
        # SymPy refusing a construction (e.g. a relation inside an argument); a MemoryError is
        # not bad input but a limit of the process, and the caller's to handle
        return ParseResult(False, reason=f"not a SymPy expression ({type(err).__name__}: {err})"[:200])
    return ParseResult(True, expr=expr)


def parse_equation(text: str, functions: frozenset[str] | set[str] = frozenset()) -> ParseResult:
    """Like :func:`parse`, but an expression without ``=`` is a failure."""
    result = parse(text, functions)
    if result.ok and not isinstance(result.expr, sp.Equality):
        return ParseResult(False, reason="not an equation (no '=')")
    return result


def _power(base, exponent):
    numbers.exact_power(base, exponent)  # bounded: never a number SymPy could not hold
    return sp.Pow(base, exponent)


def _product(factors: list) -> sp.Expr:
    """The product as SymPy holds it: numbers first combined into one coefficient, then one
    ``Mul`` of all factors. Multiplying pairwise would distribute a number over a sum as soon as
    the two meet (``2 (x + y)`` inside ``\\frac{2 (x + y)}{z}``), which SymPy's own ``Mul`` of
    three or more factors does not."""
    coefficient = sp.Integer(1)
    others = []
    for factor in factors:
        if isinstance(factor, sp.Number):
            coefficient *= factor
        else:
            others.append(factor)
    if coefficient == 1:
        return sp.Mul(*others)
    return sp.Mul(coefficient, *others)


def _prints_as(expr, tokens: list) -> bool:
    """Whether SymPy's LaTeX of ``expr`` is ``tokens``, up to braces (``x_2`` is ``x_{2}``)."""
    try:
        printed = tokenize(to_latex(expr))
    except Exception:  # noqa: BLE001 -- a candidate SymPy cannot print is simply not the reading
        return False
    return [t for t in printed if t[1] not in "{}"] == [t for t in tokens if t[1] not in "{}"]


def _is_symbolic_order(order) -> bool:
    return isinstance(order, sp.Expr) and bool(order.free_symbols)


class Parser(NameReader):
    """The recursive-descent grammar: equation, side, expression, term, factor, primary and the
    constructs (fractions and derivatives, integrals, functions, names). ``functions`` are the
    names known to be functions (from the premises)."""

    def __init__(self, tokens: list[tuple[str, str]], functions: frozenset[str]):
        super().__init__(tokens)
        self.functions = functions
        self.operand_reading = "default"  # see _operand
        self.ambiguous = False
        self.merged_factors = False

    def product(self, factors: list):
        symbolic = [factor for factor in factors if not isinstance(factor, sp.Number)]
        if len(set(symbolic)) < len(symbolic):
            self.merged_factors = True
        return _product(factors)

    # ---- grammar
    def top(self):
        lhs = self.side()
        if self.peek() == "=":
            self.pos += 1
            rhs = self.side()
            if self.peek() == "=":
                raise ParseError("more than one '=' (a chain of equations)")
            result = sp.Eq(lhs, rhs, evaluate=False)
        else:
            result = lhs
        if self.pos != len(self.tokens):
            raise ParseError(f"unexpected {self.peek()!r} at token {self.pos}")
        return result

    def side(self):
        """One side of the equation. Where a derivative's operand is ambiguous (see
        :meth:`_operand`), the readings are tried in turn and the first one that SymPy prints back
        as the same tokens wins; none matching (model outputs), the default reading stands."""
        start = self.pos
        self.ambiguous = self.merged_factors = False
        expr = self.expression()
        if not self.ambiguous:
            return expr
        end = self.pos
        # A product of equal factors (d/da f times d/da f) prints as a power once SymPy has merged
        # it, so its print cannot confirm the default reading; models write such products.
        if self.merged_factors or _prints_as(expr, self.tokens[start:end]):
            return expr
        for reading in ("greedy", "short"):
            self.pos, self.operand_reading = start, reading
            try:
                candidate = self.expression()
            except ParseError:
                continue
            finally:
                self.operand_reading = "default"
            if self.pos == end and _prints_as(candidate, self.tokens[start:end]):
                expr = candidate
                break
        self.pos = end
        return expr

    def expression(self, stop_at_differential: bool = False):
        self.enter()
        sign = 1
        if self.peek() in ("+", "-"):
            sign = -1 if self.next() == "-" else 1
        terms = [sign * self.term(stop_at_differential)]
        while self.peek() in ("+", "-"):
            sign = -1 if self.next() == "-" else 1
            terms.append(sign * self.term(stop_at_differential))
        self.leave()
        return sp.Add(*terms)

    def _term_ends(self, stop_at_differential: bool) -> bool:
        value = self.peek()
        if value is None or value in ("+", "-", "=", ")", "}", "]", ",", "|", "\\}", "&", "<", ">"):
            return True
        return stop_at_differential and self._at_differential()

    def term(self, stop_at_differential: bool = False):
        return self.product(self.term_factors(stop_at_differential))

    def term_factors(self, stop_at_differential: bool = False) -> list:
        factors = self.signed_factor(stop_at_differential)
        while not self._term_ends(stop_at_differential):
            value = self.peek()
            if value in ("\\cdot", "\\times", "*"):
                self.pos += 1
                factors += self.signed_factor(stop_at_differential)
            elif value in ("/", "\\div"):
                self.pos += 1
                factors.append(_power(self.factor(stop_at_differential), -1))
            else:
                factors += self.signed_factor(stop_at_differential)
        return factors

    def signed_factor(self, stop_at_differential: bool = False) -> list:
        """A factor, its sign kept apart: ``- (a - b) c`` is ``-1 * (a - b) * c`` as SymPy holds
        it, and multiplying the sign in first would distribute it over ``a - b``."""
        if self.peek() in ("-", "+"):
            sign = self.next()
            factors = self.signed_factor(stop_at_differential)
            return [sp.Integer(-1)] + factors if sign == "-" else factors
        return [self.factor(stop_at_differential)]

    def factor(self, stop_at_differential: bool = False):
        if self.peek() in ("-", "+"):  # a sign after \cdot or inside a product: -x
            sign = -1 if self.next() == "-" else 1
            return sign * self.factor(stop_at_differential)
        base = self.primary(stop_at_differential)
        while True:
            if self.peek() == "^":
                self.pos += 1
                base = _power(base, self.script())
            elif self.peek() == "!":
                self.pos += 1
                base = numbers.factorial(base)
            else:
                return base

    def script(self):
        """The argument of ``^``: a braced group or a single token (``x^2``, ``e^x``)."""
        if self.peek() == "{":
            return self.group()
        kind, value = self.kind(), self.peek()
        if kind == "number":
            self.pos += 1
            # x^23 in LaTeX is x^{2}3; models write it for x^{23}, which is what they mean
            return sp.Number(value) if "." not in value else sp.Float(value)
        if kind in ("letter", "command"):
            return self.primary()
        if value == "-":
            self.pos += 1
            return -self.script()
        raise ParseError(f"expected an exponent at token {self.pos}, got {value!r}")

    def group(self, stop_at_differential: bool = False):
        self.expect("{")
        if self.peek() == "}":
            raise ParseError(f"empty group at token {self.pos}")
        value = self.expression(stop_at_differential)
        self.expect("}")
        return value

    def _at_differential(self, offset: int = 0) -> bool:
        """At ``d x`` / ``d\\mathbf{J}`` / ``\\partial x`` ending an integrand."""
        if self.peek(offset) == "d" and self.kind(offset) == "letter":
            following_kind, following = self.kind(offset + 1), self.peek(offset + 1)
            if following == "d" and self._at_differential(offset + 1):
                # a symbol d ending the integrand: SymPy prints \int B d\, dB, and without the
                # \, the text reads "B d dB"; the differential is the last d
                return False
            if following_kind == "letter" or following == "\\operatorname":
                return True
            if following_kind == "command" and (is_name_command(following) or following[1:] in ACCENTS):
                return True
            # an integral over a derivative: d\frac{\partial}{\partial K} \psi{(K)}
            return following in ("\\frac", "\\dfrac") and self.peek(offset + 2) == "{" \
                and self.peek(offset + 3) in ("d", "\\partial") and self.peek(offset + 4) in ("}", "^")
        return False

    def primary(self, stop_at_differential: bool = False):
        kind, value = self.kind(), self.peek()
        if value is None:
            raise ParseError("unexpected end of input")
        if kind == "number":
            self.pos += 1
            return sp.Float(value) if "." in value else sp.Integer(value)
        if value in ("(", "[", "\\{"):
            closing = {"(": ")", "[": "]", "\\{": "\\}"}[value]
            self.pos += 1
            inner = self.expression()
            self.expect(closing)
            return inner
        if value == "{":
            return self.group(stop_at_differential)
        if value == "|":
            self.pos += 1
            inner = self.expression()
            self.expect("|")
            return sp.Abs(inner)
        if value == "\\e" and self.peek(1) == "^":  # FLAN-T5 splits e^{x} into \ e ^ { x }
            self.pos += 2
            return sp.exp(self.script())
        if kind == "command":
            return self.command(stop_at_differential)
        if kind == "letter":
            if value == "e" and self.peek(1) == "^":
                self.pos += 2
                return sp.exp(self.script())
            if value == "e" and self.peek(1) not in ("_", "'", "{"):
                self.pos += 1
                return sp.E
            return self.named()
        raise ParseError(f"unexpected {value!r} at token {self.pos}")

    def command(self, stop_at_differential: bool):
        value = self.peek()
        name = value[1:]
        if name in ("frac", "dfrac", "tfrac"):
            return self.fraction(stop_at_differential)
        if name in ("int", "iint", "iiint"):
            return self.integral(name)
        if name == "sqrt":
            self.pos += 1
            index = 2
            if self.peek() == "[":
                self.pos += 1
                index = self.expression()
                self.expect("]")
            return _power(self.group() if self.peek() == "{" else self.factor(), 1 / sp.sympify(index))
        if name in FUNCTIONS:
            self.pos += 1
            return self.application(FUNCTIONS[name], name)
        if name == "operatorname":
            self.pos += 1
            self.expect("{")
            label = self.identifier_or_word()
            self.expect("}")
            if label in OPERATORNAMES:
                return self.application(OPERATORNAMES[label], label)
            if label in FUNCTIONS:
                return self.application(FUNCTIONS[label], label)
            return self.undefined_application(label, required=False)
        if name == "tilde" and self.peek(1) == "{" and self.peek(2) == "\\infty" and self.peek(3) == "}":
            self.pos += 4
            return sp.zoo  # SymPy prints complex infinity as \tilde{\infty}
        if name == "infty":
            self.pos += 1
            return sp.oo
        if name in FONTS and self.peek(1) == "{" and not self._holds_a_name():
            # \mathbf{(\iota)}: a font around an expression is typography, not a new name
            self.pos += 1
            return self.group(stop_at_differential)
        if is_name_command(value) or name in ACCENTS:
            return self.named()
        raise ParseError(f"unknown command {value!r}")

    def _holds_a_name(self) -> bool:
        """Whether a name starts here (the cursor does not move)."""
        saved, depth = self.pos, self.depth
        try:
            self.identifier()
            return True
        except ParseError:
            return False
        finally:
            self.pos, self.depth = saved, depth

    def identifier_or_word(self) -> str:
        """Inside ``\\operatorname{...}``: a name, or a word such as ``Ci``."""
        if self.kind() == "letter" and self.kind(1) == "letter":
            word = ""
            while self.kind() == "letter":
                word += self.next()
            return word
        return self.identifier()

    def application(self, func, label: str):
        """A known function: optional ``^{n}``, then its argument."""
        exponent = None
        if self.peek() == "^":
            self.pos += 1
            exponent = self.script()
        self.enter()
        if self.peek() == "{" and self.peek(1) == "(":
            saved = self.pos
            self.pos += 1
            args = self.arguments()
            if self.peek() != "}":  # \log{(x)^{2}}: a braced argument that starts with '('
                self.pos = saved
                args = [self.group()]
            else:
                self.pos += 1
        elif self.peek() == "(":
            args = self.arguments()
        elif self.peek() == "{":
            args = [self.group()]
        else:
            args = [self.factor()]  # \sin x
        self.leave()
        try:
            value = func(*args)
        except TypeError as err:
            raise ParseError(f"\\{label} takes other arguments ({err})") from None
        return _power(value, exponent) if exponent is not None else value

    def arguments(self) -> list:
        self.expect("(")
        args = [self.expression()]
        while self.peek() == ",":
            self.pos += 1
            args.append(self.expression())
        self.expect(")")
        return args

    def named(self):
        """A symbol, or an undefined function applied: ``\\eta{(a)}``, ``\\eta^{2}{(a)}``, ``f(x, y)``."""
        label = self.identifier()
        return self.undefined_application(label, required=False)

    def undefined_application(self, label: str, required: bool):
        # \eta{(a)} | \eta^{2}{(a)} | f(x) for a known function | f(x, y)
        if self.peek() == "{" and self.peek(1) == "(":
            self.pos += 1
            args = self.arguments()
            self.expect("}")
            return sp.Function(label)(*args)
        if self.peek() == "^":
            saved = self.pos
            self.pos += 1
            try:
                exponent = self.script()
            except ParseError:
                self.pos = saved
                exponent = None
            if exponent is not None and self.peek() == "{" and self.peek(1) == "(":
                self.pos += 1
                args = self.arguments()
                self.expect("}")
                return _power(sp.Function(label)(*args), exponent)
            self.pos = saved
        if self.peek() == "(" and (label in self.functions or self._has_top_level_comma()):
            return sp.Function(label)(*self.arguments())
        if required:
            raise ParseError(f"\\operatorname{{{label}}} without arguments")
        return canonical_symbol(label, ())

    def _has_top_level_comma(self) -> bool:
        depth = 0
        for kind, value in self.tokens[self.pos:]:
            if value in ("(", "{", "["):
                depth += 1
            elif value in (")", "}", "]"):
                depth -= 1
                if depth == 0:
                    return False
            elif value == "," and depth == 1:
                return True
        return False

    def fraction(self, stop_at_differential: bool):
        self.pos += 1  # \frac
        saved = self.pos
        operator = self._differential_operator()
        if operator is not None:
            variables, operand_in_numerator = operator
            if operand_in_numerator is not None:
                return self._derivative(operand_in_numerator, variables)
            operand = self._operand(stop_at_differential)
            return self._derivative(operand, variables)
        self.pos = saved
        numerator = self.group_factors()
        denominator = self.group_factors()
        return self.product(numerator + [_power(factor, -1) for factor in denominator])

    def group_factors(self) -> list:
        """A braced group as its list of factors when it is a single product (see _product)."""
        saved = self.pos
        self.expect("{")
        if self.peek() not in ("}", "+") and not self._at_differential():
            self.enter()
            try:
                factors = self.term_factors()
            except ParseError:
                factors = None
            self.leave()
            if factors is not None and self.peek() == "}":
                self.pos += 1
                return factors
        self.pos = saved
        return [self.group()]

    def _derivative(self, operand, variables):
        if sum(n for _, n in variables if not _is_symbolic_order(n)) > MAX_DERIVATIVE_ORDER:
            raise ParseError(f"derivative of order above {MAX_DERIVATIVE_ORDER}")
        return sp.Derivative(operand, *variables)

    def _operand(self, stop_at_differential: bool):
        """What ``\\frac{d}{d x}`` acts on: the rest of the product (SymPy prints a product operand
        without brackets, ``\\frac{\\partial}{\\partial x} x y``).

        SymPy prints ``Derivative(a*Derivative(b, y), x)`` and ``Derivative(a, x)*Derivative(b, y)``
        alike when the factors happen to sort that way. Readings: ``default`` stops before the next
        differential operator or a factor holding a derivative (``(d/dx g)^{2}``) and keeps an
        integral; ``greedy`` takes the whole rest of the product; ``short`` also stops before an
        integral. :meth:`side` keeps the reading that SymPy prints back as the text; where all
        print the same (about 0.2% of generated equations) the default stands."""
        self.enter()
        factors = self.signed_factor(stop_at_differential)
        while not self._term_ends(stop_at_differential):
            if self.peek() in ("\\cdot", "\\times", "*"):
                break
            if self._at_operator():
                self.ambiguous = True
                if self.operand_reading != "greedy":
                    break
            saved = self.pos
            factor = self.factor(stop_at_differential)
            if factor.has(sp.Derivative, sp.Integral):
                self.ambiguous = True
                # default: (d/dx g)^{2} after the operand is a new factor, an integral is not
                if self.operand_reading == "short" or (
                        self.operand_reading == "default" and factor.has(sp.Derivative)):
                    self.pos = saved
                    break
            factors.append(factor)
        self.leave()
        return self.product(factors)

    def _at_operator(self) -> bool:
        value = self.peek()
        if value in ("\\frac", "\\dfrac", "\\tfrac") and self.peek(1) == "{":
            inner = self.peek(2)
            return inner in ("d", "\\partial") and self.peek(3) in ("}", "^")
        return False

    def _differential_operator(self):
        """At ``{d}{d x}``, ``{d^{2}}{d x^{2}}``, ``{\\partial^{2}}{\\partial y\\partial x}``,
        ``{d y}{d x}``: returns ([(var, order)], operand-in-numerator or None); else None."""
        if self.peek() != "{" or self.peek(1) not in ("d", "\\partial"):
            return None
        symbol = self.peek(1)
        self.pos += 2
        order = 1
        if self.peek() == "^":
            self.pos += 1
            exponent = self.script()
            if _is_symbolic_order(exponent):
                order = exponent  # Derivative(f, (x, n)): \frac{\partial^{n}}{\partial x^{n}}
            elif not isinstance(exponent, sp.Integer) or exponent < 1:
                return None
            else:
                order = int(exponent)
        numerator_operand = None
        if self.peek() != "}":
            try:
                numerator_operand = self.expression()
            except ParseError:
                return None
        if self.peek() != "}":
            return None
        self.pos += 1
        if self.peek() != "{" or self.peek(1) != symbol:
            return None
        self.pos += 1
        variables = []
        total = 0
        while self.peek() == symbol:
            self.pos += 1
            try:
                # a symbol, a function (d/d f(x)) or a bracketed name: d (f^{\prime})^{2}
                variable = self.primary()
            except ParseError:
                return None
            count = 1
            if self.peek() == "^":
                self.pos += 1
                exponent = self.script()
                if _is_symbolic_order(exponent):
                    if exponent != order:
                        return None
                    count = exponent
                elif not isinstance(exponent, sp.Integer) or exponent < 1:
                    return None
                else:
                    count = int(exponent)
            variables.append((variable, count))
            if _is_symbolic_order(count):
                if len(variables) != 1 or self.peek() != "}":
                    return None
                self.pos += 1
                return variables, numerator_operand
            total += count
        if _is_symbolic_order(order):
            return None
        if len(variables) == 1 and variables[0][1] == 1 and order > 1:
            variables = [(variables[0][0], order)]  # \frac{d^{2}}{d x}: models drop the order
            total = order
        if self.peek() != "}" or not variables or total != order:
            return None
        self.pos += 1
        # SymPy prints Derivative(f, x, y) as \partial y\partial x: last variable first
        return variables[::-1], numerator_operand

    def integral(self, name: str):
        self.pos += 1
        lower = upper = None
        if self.peek() == "_":
            self.pos += 1
            lower = self.script()
            if self.peek() == "^":
                self.pos += 1
                upper = self.script()
        if lower is None and self.peek() == "^":  # SymPy prints Integral(f, (x, b)) as \int\limits^{b}
            self.pos += 1
            upper = self.script()
        self.enter()
        integrand_is_integral = self.peek() in ("\\int", "\\iint", "\\iiint")
        integrand = sp.Integer(1) if self._at_differential() else self.expression(stop_at_differential=True)
        variables = []
        expected = {"int": 1, "iint": 2, "iiint": 3}[name]
        while self._at_differential():
            self.pos += 1
            if self.peek() in ("\\operatorname", "\\frac", "\\dfrac"):
                variables.append(self.command(stop_at_differential=True))
            else:
                variables.append(self.named())  # a symbol, or a function: d\mathbf{v}{(C_{2})}
            if len(variables) == expected:
                break
        self.leave()
        if len(variables) != expected:
            raise ParseError(f"\\{name} without its {expected} differential(s) d<variable>")
        if lower is None and upper is None:
            return sp.Integral(integrand, *variables)
        if expected != 1:
            raise ParseError("limits on a multiple integral")
        limit = (variables[0], upper) if lower is None else (variables[0], lower, upper)
        if upper is None:
            raise ParseError("integral with a lower limit only")
        if integrand_is_integral and isinstance(integrand, sp.Integral):
            # Integral(f, x, (y, b)) prints as \int\limits^{b}\int f dx dy: one integral, not two
            return sp.Integral(integrand.function, *integrand.limits, limit)
        return sp.Integral(integrand, limit)
