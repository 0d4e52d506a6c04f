"""The one reader of srepr text: SymPy expression-node constructors with literal arguments.

Every path that turns srepr text from a file into SymPy goes through :func:`read` (derivations,
results files, set building, perturbation, verification, checking). srepr text is read as data,
never evaluated: :mod:`ast` parses it, and each call is checked before it is made.

What is accepted:
- a call of a class from :data:`NODE_CLASSES`, SymPy's expression nodes (numbers, symbols,
  ``Add``/``Mul``/``Pow``, relations, ``Derivative``, ``Integral``, ``Tuple``, and the
  elementary and special functions of ``sympy.functions``), whose positional arguments are
  such calls or integer or float literals;
- a string literal only as the name of ``Symbol``/``Dummy``/``Function`` and the digits of
  ``Float``, and keyword arguments only as assumptions (``commutative=True``), ``precision`` or
  ``dummy_index``;
- an undefined function applied to arguments, ``Function('f')(Symbol('x'))``.

Anything else is refused with a :class:`SreprError` naming what was found: names that are not
node classes (``sympify``, ``parse_expr``, ``S``, ``__import__``), attributes, subscripts,
lambdas, strings in any other position (SymPy's functions parse a string argument as code).

SymPy evaluates some nodes as they are built, and a few evaluations of pure numbers are
unbounded (``Pow(Integer(10), Integer(10**9))``, ``factorial(Integer(10**7))``). A node whose
arguments are all numbers is therefore built only when they are small (:data:`MAX_NUMERIC_ARGUMENT`,
:data:`MAX_POWER_BITS`); otherwise the text is refused as too large. The text itself is capped
at :data:`MAX_LENGTH` characters.
"""
from __future__ import annotations

import ast
import functools
import inspect
import math

import sympy as sp
import sympy.functions

#: Longest srepr text read, in characters (the longest in the released files is under 3,000).
MAX_LENGTH = 200_000
#: A function or power of numbers only is evaluated by SymPy at construction; it is built only
#: when each numeric argument is at most this large in absolute value ...
MAX_NUMERIC_ARGUMENT = 1000
#: ... except a power of two integers, allowed up to this many bits of result.
MAX_POWER_BITS = 100_000

_NUMBER_CLASSES = (sp.Integer, sp.Rational, sp.Float)
_CORE_CLASSES = (
    sp.Symbol, sp.Dummy, sp.Function, sp.Integer, sp.Rational, sp.Float,
    sp.Add, sp.Mul, sp.Pow, sp.Equality, sp.Unequality, sp.StrictGreaterThan, sp.StrictLessThan,
    sp.GreaterThan, sp.LessThan, sp.Derivative, sp.Integral, sp.Tuple, sp.Subs, sp.Piecewise,
    sp.functions.elementary.piecewise.ExprCondPair, sp.Sum, sp.Product, sp.Limit,
)
#: The constants srepr prints as bare names.
CONSTANTS: dict[str, sp.Basic] = {"pi": sp.pi, "E": sp.E, "I": sp.I, "oo": sp.oo, "zoo": sp.zoo,
                                  "nan": sp.nan, "EulerGamma": sp.EulerGamma, "true": sp.true,
                                  "false": sp.false}


def _function_classes() -> dict[str, type]:
    # The elementary and special functions: every Function subclass that sympy.functions exports.
    return {name: obj for name, obj in vars(sympy.functions).items()
            if inspect.isclass(obj) and issubclass(obj, sp.Function) and obj is not sp.Function}


#: srepr name -> SymPy class. Only these may be called.
NODE_CLASSES: dict[str, type] = {
    **{cls.__name__: cls for cls in _CORE_CLASSES},
    **_function_classes(),
}
#: Classes whose first argument is a string literal (a name, or Float's digits).
_NAMED = {"Symbol", "Dummy", "Function", "Float"}
_KEYWORDS = {"precision", "dummy_index"}


class SreprError(ValueError):
    """srepr text that is malformed or not made of expression-node constructors."""


def _refuse(text: str, why: str) -> SreprError:
    return SreprError(f"not a valid srepr expression: {text[:120]!r} ({why})")


def _literal(node: ast.AST):
    """An int or float literal (with its sign), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        return None if value is None else -value
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    return None


def _too_large_for_evaluation(cls: type, args: list) -> str | None:
    """Why building ``cls(*args)`` would be unbounded work, or None."""
    if not args or not all(isinstance(a, sp.Number) for a in args) or cls in _NUMBER_CLASSES:
        return None
    if cls in (sp.Add, sp.Mul, sp.Tuple):
        return None
    if cls is sp.Pow and len(args) == 2 and all(isinstance(a, sp.Rational) for a in args):
        base, exponent = args
        if abs(exponent) <= 1 or abs(base) <= 1:
            return None
        bits = float(abs(exponent)) * math.log2(max(abs(base.p), abs(base.q)))
        return None if bits <= MAX_POWER_BITS else f"a power of about {bits:.3g} bits"
    for arg in args:
        if arg.is_finite is not False and abs(arg) > MAX_NUMERIC_ARGUMENT:
            return f"{cls.__name__} of the number {str(arg)[:30]} (at most {MAX_NUMERIC_ARGUMENT})"
    return None


class _Reader:
    def __init__(self, text: str, evaluate_equality: bool):
        self.text = text
        self.evaluate_equality = evaluate_equality

    def build(self, node: ast.AST):
        literal = _literal(node)
        if literal is not None:
            return sp.Integer(literal) if isinstance(literal, int) else sp.Float(literal)
        if isinstance(node, ast.Name) and node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.build(node.operand)  # -oo
        if not isinstance(node, ast.Call):
            raise _refuse(self.text, f"{type(node).__name__} is not allowed in srepr")
        if isinstance(node.func, ast.Call):  # an undefined function applied: Function('f')(x)
            function = self.build(node.func)
            if not isinstance(function, sp.core.function.UndefinedFunction):
                raise _refuse(self.text, "only an undefined Function(...) may be applied")
            if node.keywords:
                raise _refuse(self.text, "keyword arguments of an applied function")
            return function(*[self.build(a) for a in node.args])
        if not isinstance(node.func, ast.Name):
            raise _refuse(self.text, f"{type(node.func).__name__} is not allowed in srepr")
        name = node.func.id
        cls = NODE_CLASSES.get(name)
        if cls is None:
            raise _refuse(self.text, f"{name!r} is not a SymPy expression node")
        keywords = {}
        for keyword in node.keywords:
            value = keyword.value
            if keyword.arg in _KEYWORDS and isinstance(value, ast.Constant) and type(value.value) is int:
                keywords[keyword.arg] = value.value
            elif (name in ("Symbol", "Dummy", "Function") and keyword.arg is not None
                  and isinstance(value, ast.Constant) and type(value.value) is bool):
                keywords[keyword.arg] = value.value
            else:
                raise _refuse(self.text, f"keyword {keyword.arg!r} of {name}")
        if name in _NAMED:
            if not node.args or not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                raise _refuse(self.text, f"{name} needs a string literal first")
            first, rest = node.args[0].value, node.args[1:]
            if name == "Float":
                if rest:
                    raise _refuse(self.text, "Float takes its digits and a precision only")
                try:
                    float(first)
                except ValueError:
                    raise _refuse(self.text, f"Float of {first[:30]!r}") from None
            elif rest:
                raise _refuse(self.text, f"{name} takes a name and assumptions only")
            try:
                return cls(first, **keywords)
            except (TypeError, ValueError) as err:
                raise _refuse(self.text, f"{name}: {err}") from None
        if any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args):
            raise _refuse(self.text, f"a string argument of {name}")
        args = [self.build(a) for a in node.args]
        why = _too_large_for_evaluation(cls, args)
        if why:
            raise _refuse(self.text, f"too large: {why}")
        if cls is sp.Equality and not self.evaluate_equality:
            keywords["evaluate"] = False
        try:
            return cls(*args, **keywords)
        except (TypeError, ValueError, ArithmeticError, AttributeError, NotImplementedError) as err:
            raise _refuse(self.text, f"{name}: {type(err).__name__}: {str(err)[:80]}") from None


@functools.lru_cache(maxsize=65536)
def _read_cached(text: str, evaluate_equality: bool) -> sp.Basic:
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as err:
        raise _refuse(text, f"{type(err).__name__}: {str(err)[:80]}") from None
    try:
        return _Reader(text, evaluate_equality).build(tree.body)
    except RecursionError:
        raise _refuse(text, "nested too deeply") from None


def read(text: str, evaluate_equality: bool = True) -> sp.Basic:
    """The SymPy expression an srepr string describes. Raises :class:`SreprError` otherwise.

    ``evaluate_equality=False`` builds ``Equality`` unevaluated: deciding whether the sides are
    equal costs more than the whole symbolic check of an equation.
    """
    if not isinstance(text, str):
        raise SreprError(f"expected an srepr string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise SreprError(f"srepr text of {len(text)} characters (at most {MAX_LENGTH})")
    return _read_cached(text, evaluate_equality)
