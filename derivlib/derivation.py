"""Derivations as data: steps, annotations, srepr <-> SymPy, and the text the models see.

A derivation is a list of steps ``[annotation, srepr_of_equation]`` in exactly the authors'
schema (PAPER.md §1): an annotation is ``"premise"``, ``"get_premise"``, ``"renaming_premise"``
or ``[operator_name, equation_number, operand]`` with 1-based equation numbers, the operand an
srepr string, an integer, or a second equation number (substitutions). Some of the authors'
annotations store numbers >= 10 as strings; :func:`normalise_annotation` reads both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import sympy as sp
from sympy.printing.conventions import split_super_sub
from sympy.printing.latex import LatexPrinter, accepted_latex_functions
from sympy.printing.repr import ReprPrinter
from sympy.printing.latex import translate as latex_translate

from . import srepr
from .base.vocabulary import JOIN, split_equations  # noqa: F401 (part of this module's interface)

PREMISE_ANNOTATIONS = ("premise", "get_premise", "renaming_premise")
SUBSTITUTIONS = ("substitute_LHS_for_RHS", "substitute_RHS_for_LHS")
#: Binary operators whose operand is a second equation's number, not an expression.
EQUATION_OPERAND = set(SUBSTITUTIONS)
#: Operators without an operand.
NO_OPERAND = {"cos", "sin", "exp", "log", "expand", "evaluate_derivatives", "evaluate_integrals"}


# ----------------------------------------------------------------------------------- srepr

def from_srepr(text: str) -> sp.Basic:
    """SymPy object from an srepr string (ours or the authors'), through the one whitelist
    reader (:func:`derivlib.srepr.read`). Raises ValueError if malformed."""
    return srepr.read(text)


class CanonicalReprPrinter(ReprPrinter):
    """srepr whose text depends on the expression alone.

    ``Symbol('a')`` and ``Symbol('a', commutative=True)`` are equal, so SymPy's cache may hand
    back either instance when an expression is built, and plain ``srepr`` prints the assumptions
    an instance was *created* with: the same derivation could then be stored in two spellings,
    depending on what else ran in the process. Printing the full assumptions (sorted) gives the
    authors' spelling, ``Symbol('a', commutative=True)``, every time.
    """

    def _print_Symbol(self, expr, style="plain"):
        assumptions = dict(sorted(expr.assumptions0.items()))
        if expr.is_Dummy:
            assumptions["dummy_index"] = expr.dummy_index
        if not assumptions:
            return f"{expr.__class__.__name__}({self._print(expr.name)})"
        attrs = ", ".join(f"{k}={v}" for k, v in assumptions.items())
        return f"{expr.__class__.__name__}({self._print(expr.name)}, {attrs})"


_REPR_PRINTER = CanonicalReprPrinter()


def to_srepr(expr: sp.Basic) -> str:
    """srepr in the authors' spelling, independent of SymPy's cache (see the printer's note)."""
    return _REPR_PRINTER.doprint(expr)


# ----------------------------------------------------------------------------------- annotations

def normalise_annotation(annotation: Any) -> str | list:
    """Annotation with equation numbers as ints (the authors store some as strings)."""
    if isinstance(annotation, str):
        if annotation not in PREMISE_ANNOTATIONS:
            raise ValueError(f"unknown annotation {annotation!r}")
        return annotation
    if not isinstance(annotation, (list, tuple)) or not annotation:
        raise ValueError(f"malformed annotation {annotation!r}")
    name, *rest = annotation
    if not rest:
        raise ValueError(f"annotation {annotation!r} lacks an equation number")
    out: list[Any] = [name, int(rest[0])]
    if len(rest) > 1:
        operand = rest[1]
        if name in EQUATION_OPERAND:
            operand = int(operand)
        out.append(operand)
    return out


def is_premise(annotation: Any) -> bool:
    return isinstance(annotation, str) and annotation in PREMISE_ANNOTATIONS


def operator_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else annotation[0]


# ----------------------------------------------------------------------------------- LaTeX

class AuthorsLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer, made to print what SymPy 1.5.1 printed for the authors.

    The released targets were printed by SymPy 1.5.1; SymPy 1.14 differs in a few places
    (measured on the 500 released reference derivations):
    - undefined function names follow 1.5.1's rules: sub/superscripts braced unless the name
      holds a brace (``F_c`` -> ``\\operatorname{F_{c}}``), bare when one letter or a backslash
      command, ``\\operatorname{}`` otherwise;
    - integrals print no thin space ``\\,`` before the differential;
    - a negative integrand or differentiand is not parenthesised;
    - symbol names are taken verbatim (1.14 re-reads ``\\sigma_x`` as ``\\sigma_{x}``,
      ``\\hbar`` as ``\\bar{\\h}``); our vocabulary names are already LaTeX.
    """

    def _print_Symbol(self, expr, style="plain"):
        name = expr.name
        if name in self._settings.get("symbol_names", {}):
            return self._settings["symbol_names"][name]
        if "\\" in name or "{" in name:
            return name  # already LaTeX (vocabulary symbol): print verbatim
        return super()._print_Symbol(expr, style)

    @staticmethod
    def _name_with_scripts_151(name: str) -> str:
        # SymPy 1.5.1's ``_deal_with_super_sub``: names holding a brace are kept verbatim,
        # others have their sub/superscripts braced and Greek names translated.
        if "{" in name:
            return name
        base, supers, subs = split_super_sub(name)
        # A base that is already a LaTeX command is kept: translating it would turn ``\\hbar``
        # into ``\\bar{\\h}`` (1.5.1 did so too; no released equation has such a function).
        base = base if base.startswith("\\") else latex_translate(base)
        if supers:
            base += "^{%s}" % " ".join(latex_translate(s) for s in supers)
        if subs:
            base += "_{%s}" % " ".join(latex_translate(s) for s in subs)
        return base

    def _function_name_latex(self, name: str) -> str:
        # SymPy 1.5.1's ``_hprint_Function``: known functions get their command, a one-letter or
        # backslash name stays bare, anything else is wrapped in \operatorname{}.
        name = self._name_with_scripts_151(name)
        if name in accepted_latex_functions:
            return "\\" + name
        if len(name) == 1 or name.startswith("\\"):
            return name
        return r"\operatorname{" + name + "}"

    def _print_Function(self, expr, exp=None):
        func = expr.func
        if isinstance(func, sp.core.function.UndefinedFunction):
            name = self._function_name_latex(func.__name__)
            args = ",".join(self._print(a) for a in expr.args)
            if exp is not None:
                name = f"{name}^{{{exp}}}"
            return f"{name}{{\\left({args} \\right)}}"
        return super()._print_Function(expr, exp)

    def _print_Integral(self, expr):
        return super()._print_Integral(expr).replace(r"\, d", " d")

    def parenthesize(self, item, level, is_neg=False, strict=False):
        # 1.5.1 did not parenthesise a negative integrand or differentiand
        # (``\frac{d}{d x} - \sin{(x)}``); SymPy >= 1.7 does (``is_neg``).
        return super().parenthesize(item, level, False, strict)


_PRINTER = AuthorsLatexPrinter()


def clean_latex(text: str) -> str:
    """The authors' cleaning of printed LaTeX: drop ``\\left``/``\\right``, ``' )'`` -> ``')'``."""
    return text.replace("\\left", "").replace("\\right", "").replace(" )", ")")


def to_latex(expr: sp.Basic) -> str:
    """The cleaned LaTeX of an equation or expression, in the released data's dialect."""
    return clean_latex(_PRINTER.doprint(expr))


def latex_of_srepr(text: str) -> str:
    return to_latex(from_srepr(text))


# ----------------------------------------------------------------------------------- printed once

class SubexpressionMemo:
    """Mixin for a SymPy printer whose text for an object is a function of the object: each
    distinct sub-expression is printed once and its text kept, keyed by the object (SymPy
    equality: structural, type-aware, so ``Float(1.0)`` and ``Integer(1)`` are different keys).
    Calls with keyword arguments (a function printed as the base of a power gets ``exp=``) and
    non-SymPy objects (Python's ``1 == True``) are printed as usual."""

    MAX_MEMO = 50_000  # entries; the memo is emptied when full (it pays within a derivation)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._memo: dict = {}

    def _memoisable(self, expr) -> bool:
        return isinstance(expr, sp.Basic)

    def _print(self, expr, **kwargs) -> str:
        if kwargs or not self._memoisable(expr):
            return super()._print(expr, **kwargs)
        text = self._memo.get(expr)
        if text is None:
            text = super()._print(expr)
            if len(self._memo) >= self.MAX_MEMO:
                self._memo.clear()
            self._memo[expr] = text
        return text


class MemoLatexPrinter(SubexpressionMemo, AuthorsLatexPrinter):
    """:class:`AuthorsLatexPrinter` that prints each distinct sub-expression once.

    A candidate of the generator is mostly made of sub-expressions printed before (the equation
    it was made from, the operand), and printing a node prints all of its sub-expressions again.
    The LaTeX printer's text for an expression is a function of the expression alone (its
    settings are fixed when it is made and it keeps no state while printing).
    ``tests/test_generate.py`` checks it against the plain printer on real candidates and all
    their sub-expressions.
    """


class MemoReprPrinter(SubexpressionMemo, CanonicalReprPrinter):
    """:func:`to_srepr`'s printer, printing each distinct sub-expression once: the equations of a
    derivation share most of their sub-expressions, and that printer's text is a function of the
    expression (equal symbols print alike: its purpose). ``tests/test_generate.py`` checks it
    against ``to_srepr``.
    """


_MEMO_LATEX_PRINTER = MemoLatexPrinter()
_MEMO_REPR_PRINTER = MemoReprPrinter()


def raw_latex(expr: sp.Basic) -> str:
    """Uncleaned LaTeX (with ``\\left``/``\\right``), what the authors' 350-character filter
    measured; :func:`to_latex` is ``clean_latex(raw_latex(expr))``.

    SymPy prints an equation as ``"<lhs> = <rhs>"`` with each side printed on its own, so the
    sides are printed separately, each (and each of its sub-expressions) once, by one
    :class:`MemoLatexPrinter` per process.
    """
    if isinstance(expr, sp.Equality):
        return f"{_MEMO_LATEX_PRINTER.doprint(expr.lhs)} = {_MEMO_LATEX_PRINTER.doprint(expr.rhs)}"
    return _MEMO_LATEX_PRINTER.doprint(expr)


def fast_srepr(expr: sp.Basic) -> str:
    """``to_srepr(expr)``, each distinct sub-expression printed once (one
    :class:`MemoReprPrinter` per process, its memo kept from one call to the next)."""
    return _MEMO_REPR_PRINTER.doprint(expr)


# ----------------------------------------------------------------------------------- records

@dataclass
class Derivation:
    """One derivation: ``steps`` in the authors' ``srepr_derivation`` schema."""

    steps: list[list]  # [[annotation, srepr], ...]
    id: str = ""
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: dict, key: str = "srepr_derivation") -> "Derivation":
        if key not in record:
            raise ValueError(f"record {record.get('id', '?')!r} has no {key!r} field")
        steps = [[normalise_annotation(a), s] for a, s in record[key]]
        return cls(steps=steps, id=str(record.get("id", "")))

    @property
    def annotations(self) -> list:
        return [a for a, _ in self.steps]

    def equations(self) -> list[sp.Basic]:
        return [from_srepr(s) for _, s in self.steps]

    def latex(self) -> list[str]:
        return [latex_of_srepr(s) for _, s in self.steps]

    def target(self) -> str:
        """The model's target text: every equation's LaTeX joined by ``" and "``."""
        return JOIN.join(self.latex())

    def premise_indices(self) -> list[int]:
        return [i for i, (a, _) in enumerate(self.steps) if is_premise(a)]

    def __len__(self) -> int:
        return len(self.steps)


def steps_to_record(steps: Sequence[Sequence], **extra) -> dict:
    """A JSON-able record of a derivation: authors' fields plus ours."""
    derivation = Derivation(steps=[list(s) for s in steps])
    equations = derivation.latex()
    return {**extra, "srepr_derivation": derivation.steps, "equations": equations,
            "derivation": JOIN.join(equations)}
