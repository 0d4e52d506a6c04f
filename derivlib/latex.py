"""Generated LaTeX -> SymPy, for the dialect the models produce.

The dialect is SymPy's own LaTeX output as the derivations are printed
(:func:`derivlib.derivation.to_latex`): undefined functions ``\\eta{(a)}``,
``\\operatorname{F_c}{(x,y)}``, ``\\eta^{2}{(a)}``; derivatives ``\\frac{d}{d a}``,
``\\frac{d^{2}}{d a^{2}}``, ``\\frac{\\partial^{2}}{\\partial y\\partial x}``; integrals
``\\int f dx``; Greek, ``\\mathbf{E}``, ``\\hat{H}``, primed and subscripted symbols;
``e^{x}`` is ``exp(x)`` and ``\\log`` the natural logarithm; plus the noise of model outputs:
FLAN-T5's tokenizer splits ``\\frac`` into ``\\ frac { d } { d a }`` and never emits a leading
backslash; ``\\cdot``/``\\times``; dropped braces (``\\eta(a)``, ``x_0``, ``\\hat H``).

Why a hand-written recursive-descent parser over a regex tokenizer rather than a library:
SymPy's ANTLR ``parse_latex`` reads this dialect wrongly (``\\eta{(a)}`` as ``a*eta``, ``e^{a}``
as a symbol ``e``) and, even after rewriting, manages about 20 equations per second; and the
dialect is context-sensitive in ways an LALR grammar (lark) cannot state without lexer hacks:
an integral's scope ends at ``d`` followed by its variable, ``^{\\prime}`` belongs to a name while
``^{2}`` is a power, ``X(a,b)`` is a function application only when ``X`` is a function. A
grammar of about fifteen productions written as functions states these rules directly.

Where SymPy's printing is ambiguous (a product after a derivative operator), the candidate
readings are printed back with :func:`derivlib.derivation.to_latex` and the one that reproduces
the text is kept (:meth:`_Parser.side`).

Every parse is bounded structurally (input length, token count, nesting depth, derivative order,
size of numbers raised to powers), never by a clock, so it is safe in any thread or worker.
Names come back canonical (:func:`canonical_name`): ``F_N``, ``F_{N}`` and ``F_{ N }`` are one
symbol. :func:`canonicalize` renames a SymPy expression's symbols the same way, so a parse can be
compared with ``==`` to an equation read from ``srepr``.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import sympy as sp
from sympy.core.function import AppliedUndef, UndefinedFunction

MAX_LENGTH = 2000        # characters after normalisation
MAX_TOKENS = 1000
MAX_DEPTH = 40           # nested groups, fractions, functions
MAX_DERIVATIVE_ORDER = 10
MAX_EXACT_POWER = 256    # number**number is evaluated only for exponents up to this size

GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "varpi", "rho", "varrho", "sigma",
    "varsigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta",
    "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega",
}
SYMBOL_COMMANDS = GREEK | {"hbar", "nabla", "ell", "imath", "jmath", "aleph", "wp"}
#: Commands that decorate one argument and make a new name (``\mathbf{E}``, ``\hat{H}``).
ACCENTS = {"mathbf", "mathbb", "mathcal", "mathrm", "mathit", "boldsymbol", "bm", "vec", "hat",
           "widehat", "dot", "ddot", "tilde", "widetilde", "bar", "overline", "breve", "check"}
#: Superscripts that are part of a name, not a power: canonical text.
NAME_SUPERSCRIPTS = {"\\prime": "\\prime", "'": "\\prime", "*": "*", "\\ast": "*", "\\star": "*",
                     "\\dagger": "\\dagger", "\\prime\\prime": "\\prime\\prime", "''": "\\prime\\prime"}
_FUNCTIONS = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec, "csc": sp.csc,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "coth": sp.coth,
    "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "asin": sp.asin, "acos": sp.acos,
    "atan": sp.atan, "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
    "log": sp.log, "ln": sp.log, "exp": sp.exp,
}
#: ``\operatorname{...}`` names SymPy prints for its own functions (integrals produce these).
_OPERATORNAMES = {
    "Ci": sp.Ci, "Si": sp.Si, "Ei": sp.Ei, "li": sp.li, "Li": sp.Li, "Shi": sp.Shi, "Chi": sp.Chi,
    "erf": sp.erf, "erfc": sp.erfc, "erfi": sp.erfi, "sign": sp.sign, "asin": sp.asin,
    "acos": sp.acos, "atan": sp.atan, "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
    "acot": sp.acot, "sinc": sp.sinc, "sech": sp.sech, "csch": sp.csch, "coth": sp.coth, "re": sp.re,
    "im": sp.im, "arg": sp.arg,
}
_SPACING = {"\\,", "\\;", "\\!", "\\:", "\\quad", "\\qquad", "\\left", "\\right", "\\displaystyle",
            "\\limits", "\\nolimits", "\\big", "\\Big", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<command>\\[A-Za-z]+|\\[,;:!{}|])
  | (?P<number>\d+(?:\.\d+)?|\.\d+)
  | (?P<letter>[A-Za-z])
  | (?P<punct>[{}()\[\]^_+\-=,|'*/<>!])
  | (?P<other>.)
""", re.VERBOSE)


class ParseError(ValueError):
    """The text is not an expression of the dialect; the message says where and why."""


@dataclass(frozen=True)
class ParseResult:
    """Outcome of one parse: ``ok`` and ``expr``, or not ``ok`` and a ``reason``."""

    ok: bool
    expr: sp.Basic | None = None
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


# ----------------------------------------------------------------------------------- normalisation

_SPLIT_COMMAND = re.compile(r"\\\s+(?=[A-Za-z])")
_LEADING_WORD = re.compile(r"^\s*([A-Za-z]{2,})(?=[\s{(^_]|$)")


def normalise(text: str) -> str:
    """Undo the model-output noise that is not grammar: FLAN-T5's split commands (``\\ frac`` ->
    ``\\frac``), its missing leading backslash (``eta { (a) }`` -> ``\\eta { (a) }``), and
    ``\\left``/``\\right``."""
    text = _SPLIT_COMMAND.sub(r"\\", text)
    match = _LEADING_WORD.match(text)
    if match and _is_command_word(match.group(1)):
        text = text[: match.start(1)] + "\\" + text[match.start(1):]
    return text.replace("\\left", " ").replace("\\right", " ").strip()


def _is_command_word(word: str) -> bool:
    return (word in SYMBOL_COMMANDS or word in ACCENTS or word in _FUNCTIONS
            or word in {"frac", "dfrac", "tfrac", "int", "iint", "iiint", "operatorname", "sqrt",
                        "partial", "cdot", "times"})


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; whitespace and spacing commands dropped."""
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group()
        if kind == "space" or value in _SPACING:
            continue
        if kind == "other":
            raise ParseError(f"unexpected character {value!r}")
        if kind == "command" and value.endswith("d") and value[1:-1] in SYMBOL_COMMANDS \
                and value[1:] not in SYMBOL_COMMANDS:
            # SymPy prints Derivative(f, chi, y) as \frac{d^{2}}{d \chid y}: no space after a command
            tokens += [("command", value[:-1]), ("letter", "d")]
            continue
        tokens.append((kind, value))
        if len(tokens) > MAX_TOKENS:
            raise ParseError(f"more than {MAX_TOKENS} tokens")
    return tokens


# ----------------------------------------------------------------------------------- names

@functools.lru_cache(maxsize=16384)
def canonical_name(name: str) -> str:
    """The canonical spelling of a symbol or function name, whatever braces and spaces it had:
    subscripts braced, name superscripts (primes, stars, daggers) braced after the subscript."""
    try:
        parser = _Parser(tokenize(normalise(name)), frozenset())
        canonical = parser.identifier()
        if parser.pos != len(parser.tokens):
            return name
        return canonical
    except ParseError:
        return name


@functools.lru_cache(maxsize=65536)
def _canonical_symbol(name: str, assumptions: tuple) -> sp.Symbol:
    return sp.Symbol(canonical_name(name), **dict(assumptions))


def canonicalize(expr: sp.Basic) -> sp.Basic:
    """``expr`` with every symbol and undefined function renamed to its canonical name, so it
    compares equal (``==``) to the parse of its LaTeX."""
    mapping = {}
    for symbol in expr.atoms(sp.Symbol):  # atoms, not free_symbols: integration variables too
        canonical = canonical_name(symbol.name)
        if canonical != symbol.name:
            mapping[symbol] = sp.Symbol(canonical, **symbol.assumptions0)
    for application in expr.atoms(AppliedUndef):
        name = application.func.__name__
        canonical = canonical_name(name)
        if canonical != name:
            mapping[application.func] = sp.Function(canonical)
    if not mapping:
        return expr
    functions = {k: v for k, v in mapping.items() if isinstance(k, UndefinedFunction)}
    symbols = {k: v for k, v in mapping.items() if not isinstance(k, UndefinedFunction)}
    if functions:
        expr = expr.replace(lambda e: isinstance(e, AppliedUndef) and e.func in functions,
                            lambda e: functions[e.func](*e.args))
    return expr.xreplace(symbols) if symbols else expr


# ----------------------------------------------------------------------------------- parser

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
        parser = _Parser(tokenize(text), frozenset(functions))
        expr = parser.top()
    except ParseError as err:
        return ParseResult(False, reason=str(err))
    except RecursionError:
        return ParseResult(False, reason="nested too deeply")
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, OverflowError, MemoryError) as err:
        # SymPy refusing a construction (e.g. a relation inside an argument)
        return ParseResult(False, reason=f"not a SymPy expression ({type(err).__name__}: {err})"[:200])
    return ParseResult(True, expr=expr)


def parse_equation(text: str, functions: frozenset[str] | set[str] = frozenset()) -> ParseResult:
    """Like :func:`parse`, but an expression without ``=`` is a failure."""
    result = parse(text, functions)
    if result.ok and not isinstance(result.expr, sp.Equality):
        return ParseResult(False, reason="not an equation (no '=')")
    return result


def _power(base, exponent):
    if isinstance(base, sp.Number) and isinstance(exponent, sp.Number):
        if abs(exponent) > MAX_EXACT_POWER or (isinstance(base, sp.Integer) and abs(base) > 10**6 and exponent > 1):
            return sp.Pow(base, exponent, evaluate=False)  # bounded: never compute huge numbers
    if isinstance(base, sp.Number) and isinstance(exponent, sp.Pow) and exponent.has(sp.Number) \
            and not exponent.free_symbols:
        return sp.Pow(base, exponent, evaluate=False)
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
    from derivlib.derivation import to_latex  # derivation does not import this module; lazy anyway

    try:
        printed = tokenize(to_latex(expr))
    except Exception:  # noqa: BLE001 -- a candidate SymPy cannot print is simply not the reading
        return False
    return [t for t in printed if t[1] not in "{}"] == [t for t in tokens if t[1] not in "{}"]


def _is_symbolic_order(order) -> bool:
    return isinstance(order, sp.Expr) and bool(order.free_symbols)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], functions: frozenset[str]):
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.functions = functions
        self.operand_reading = "default"  # see _operand
        self.ambiguous = False
        self.merged_factors = False

    # ---- token helpers
    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.tokens[i][1] if i < len(self.tokens) else None

    def kind(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.tokens[i][0] if i < len(self.tokens) else None

    def next(self) -> str:
        if self.pos >= len(self.tokens):
            raise ParseError("unexpected end of input")
        value = self.tokens[self.pos][1]
        self.pos += 1
        return value

    def expect(self, value: str) -> None:
        got = self.peek()
        if got != value:
            raise ParseError(f"expected {value!r} at token {self.pos}, got {got!r}")
        self.pos += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"nested deeper than {MAX_DEPTH}")

    def leave(self) -> None:
        self.depth -= 1

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
                base = sp.factorial(base)
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
            if following_kind == "command" and (following[1:] in SYMBOL_COMMANDS or following[1:] in ACCENTS):
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
        if name in _FUNCTIONS:
            self.pos += 1
            return self.application(_FUNCTIONS[name], name)
        if name == "operatorname":
            self.pos += 1
            self.expect("{")
            label = self.identifier_or_word()
            self.expect("}")
            if label in _OPERATORNAMES:
                return self.application(_OPERATORNAMES[label], label)
            if label in _FUNCTIONS:
                return self.application(_FUNCTIONS[label], label)
            return self.undefined_application(label, required=False)
        if name == "tilde" and self.peek(1) == "{" and self.peek(2) == "\\infty" and self.peek(3) == "}":
            self.pos += 4
            return sp.zoo  # SymPy prints complex infinity as \tilde{\infty}
        if name == "infty":
            self.pos += 1
            return sp.oo
        if name in SYMBOL_COMMANDS or name in ACCENTS:
            return self.named()
        raise ParseError(f"unknown command {value!r}")

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
        return _canonical_symbol(label, ())

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

    def identifier(self) -> str:
        """A name's canonical text: base, then ``_{sub}``, then name superscripts."""
        self.enter()
        base = self.name_base()
        subscript = superscript = ""
        while True:
            if self.peek() == "_" and not subscript:
                self.pos += 1
                subscript = self.script_text()
            elif self.peek() == "'":
                count = 0
                while self.peek() == "'":
                    self.pos += 1
                    count += 1
                superscript = "\\prime" * count
            elif self.peek() == "^" and not superscript:
                text = self._name_superscript()
                if text is None:
                    break
                superscript = text
            else:
                break
        self.leave()
        name = base
        if subscript:
            name += "_{" + subscript + "}"
        if superscript:
            name += "^{" + superscript + "}"
        return name

    def name_base(self) -> str:
        kind, value = self.kind(), self.peek()
        if kind == "letter":
            self.pos += 1
            return value
        if kind == "command" and value[1:] in SYMBOL_COMMANDS:
            self.pos += 1
            return value
        if kind == "command" and value[1:] in ACCENTS:
            self.pos += 1
            if self.peek() == "{":
                self.pos += 1
                inner = self.identifier()
                self.expect("}")
            else:
                inner = self.identifier()
            return f"{value}{{{inner}}}"
        raise ParseError(f"expected a name at token {self.pos}, got {value!r}")

    def _name_superscript(self) -> str | None:
        saved = self.pos
        self.pos += 1  # '^'
        if self.peek() == "{":
            self.pos += 1
            parts = []
            while self.peek() not in ("}", None):
                parts.append(self.next())
                if len(parts) > 2:
                    break
            text = "".join(parts)
            if self.peek() == "}" and text in NAME_SUPERSCRIPTS:
                self.pos += 1
                return NAME_SUPERSCRIPTS[text]
        elif self.peek() in NAME_SUPERSCRIPTS:
            return NAME_SUPERSCRIPTS[self.next()]
        self.pos = saved
        return None

    def script_text(self) -> str:
        """A subscript's canonical text (``_0``, ``_{0}``, ``_{\\mathbf{B}}``, ``_{nl}``)."""
        if self.peek() != "{":
            kind, value = self.kind(), self.peek()
            if kind in ("letter", "number"):
                self.pos += 1
                return value
            if kind == "command":
                return self.identifier()
            raise ParseError(f"expected a subscript at token {self.pos}, got {value!r}")
        self.pos += 1
        parts = []
        while self.peek() != "}":
            kind, value = self.kind(), self.peek()
            if value is None:
                raise ParseError("unclosed subscript")
            if kind == "command" and (value[1:] in ACCENTS or value[1:] in SYMBOL_COMMANDS):
                parts.append(self.identifier())
            elif kind in ("letter", "number") or value in ("+", "-", ",", "*", "'"):
                self.pos += 1
                parts.append(value)
            else:
                raise ParseError(f"unexpected {value!r} in a subscript")
        self.pos += 1
        text = ""
        for part in parts:
            if re.search(r"\\[A-Za-z]+$", text) and part[0].isalpha():
                text += " "  # \\lambda x, not \\lambdax
            text += part
        if not text:
            raise ParseError("empty subscript")
        return text

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
