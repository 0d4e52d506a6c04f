"""What the checks of one reference derivation share (:class:`ReferenceContext`): its equations
read from ``srepr``, the premises' definitions, the integration constants, the check points."""
from __future__ import annotations

import functools
import hashlib
import random
from typing import Sequence

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef

from .. import latex, srepr
from ..derivation import Derivation, is_premise, normalise_annotation, to_latex

POINTS = 5
LOW, HIGH = 0.5, 1.5


class Undecided(Exception):
    """The equation could not be evaluated; the message says why (label ``incorrect``)."""


class TooLarge(Exception):
    """Checking the equation would exceed a structural budget; the message says which (label
    ``too_large``)."""


def function_side(equation: sp.Equality):
    """(application, other side) of a definition ``f(x) = rhs`` or ``rhs = f(x)``, else None."""
    for side, other in ((equation.lhs, equation.rhs), (equation.rhs, equation.lhs)):
        if isinstance(side, AppliedUndef) and all(isinstance(a, sp.Symbol) for a in side.args) \
                and len(set(side.args)) == len(side.args):
            return side, other
    return None


def equation_keys(equation: sp.Equality) -> tuple:
    """The two side orders of an equation: ``a = b`` and ``b = a`` say the same thing."""
    return ((equation.lhs, equation.rhs), (equation.rhs, equation.lhs))


def name_rng(seed: int, stream: str, name: str) -> random.Random:
    """A generator seeded from (seed, stream, name) alone: the same draws in any order or process."""
    digest = hashlib.sha256(f"{seed}:{stream}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class ReferenceContext:
    """What the checks of one reference derivation share: premises, definitions, constants."""

    def __init__(self, steps: Sequence[Sequence], seed: int):
        self.seed = seed
        derivation = Derivation(steps=[[normalise_annotation(a), s] for a, s in steps])
        equations = [reference_equation(text) for _, text in derivation.steps]
        self.reference = equations
        self.premise_flags = [is_premise(a) for a in derivation.annotations]
        self._premise_srepr = [text for flag, (_, text) in zip(self.premise_flags, derivation.steps) if flag]
        self.goal = equations[-1]
        self.definitions: dict[str, sp.Lambda] = {}
        premise_symbols: set = set()
        for flag, equation in zip(self.premise_flags, equations):
            if not flag:
                continue
            premise_symbols |= equation.free_symbols
            found = function_side(equation)
            if found is not None:
                application, body = found
                self.definitions.setdefault(application.func.__name__, sp.Lambda(application.args, body))
        self.premise_symbols = premise_symbols
        self.reference_symbols = set().union(*(e.atoms(sp.Symbol) for e in equations))
        # integration constants: the symbols an evaluate_integrals step brings in
        self.constants = set()
        known = set()
        for annotation, equation in zip(derivation.annotations, equations):
            symbols = equation.atoms(sp.Symbol)
            if not is_premise(annotation) and annotation[0] == "evaluate_integrals":
                self.constants |= symbols - known
            known |= symbols
        self.functions = frozenset(
            f.func.__name__ for e in equations for f in e.atoms(AppliedUndef))
        self.reference_keys: dict[tuple, list[int]] = {}
        for index, equation in enumerate(equations):
            for key in set(equation_keys(equation)):
                self.reference_keys.setdefault(key, []).append(index)
        self._values: dict[sp.Symbol, np.ndarray] = {}

    @functools.cached_property
    def premise_latex(self) -> list[str]:
        """The premises as the prompt shows them (the authors' printing of their srepr); one that
        SymPy's printer refuses is left out (its lost start cannot be restored, dialect rule 9)."""
        printed = []
        for text in self._premise_srepr:
            try:
                printed.append(to_latex(srepr.read(text, evaluate_equality=False)))
            except (ValueError, TypeError, RecursionError):
                continue
        return printed

    def values(self, symbol: sp.Symbol) -> np.ndarray:
        """The symbol's values at the ``POINTS`` check points (uniform in [LOW, HIGH])."""
        if symbol not in self._values:
            rng = name_rng(self.seed, "symbol", symbol.name)
            self._values[symbol] = np.array([rng.uniform(LOW, HIGH) for _ in range(POINTS)], dtype=complex)
        return self._values[symbol]


@functools.lru_cache(maxsize=65536)
def reference_equation(text: str) -> sp.Equality:
    """One reference step read from ``srepr`` (unevaluated) with canonical names."""
    # Unevaluated: deciding whether the sides are equal costs more than the whole check.
    expr = srepr.read(text, evaluate_equality=False)
    if not isinstance(expr, sp.Equality):
        raise ValueError(f"reference step is not an equation: {text[:80]!r}")
    return sp.Eq(latex.canonicalize(expr.lhs), latex.canonicalize(expr.rhs), evaluate=False)


@functools.lru_cache(maxsize=512)
def _context(steps_key: tuple, seed: int) -> ReferenceContext:
    return ReferenceContext([list(step) for step in steps_key], seed)


def context_of(steps: Sequence[Sequence], seed: int) -> ReferenceContext:
    """The (cached) context of a reference derivation's ``srepr_derivation``."""
    key = tuple((a if isinstance(a, str) else tuple(a), s) for a, s in steps)
    return _context(key, seed)
