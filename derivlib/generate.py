"""The authors' derivation generator (PAPER.md §2), seeded, bounded and parallel.

A derivation starts from one premise. Each step draws an arity (weights 0:5, 1:50, 2:100), then an
operator of that arity, an equation to act on (recency weight ``1 + (p-i-1)^3`` for the i-th most
recent, p = 10) and an operand, and keeps the result only if it passes every filter of the
authors' code (an equation, new also with sides swapped, no ``Subs``/``Piecewise``, LaTeX shorter
than 350 characters, no function nested in another's arguments, no repeated
``evaluate_integrals``). After each accepted step the longest dependency chain is extracted; the
derivation is done once that chain has at least L equations, L = round(Normal(7, 3)) resampled
until 3 < L < 10. 100 rejected proposals abandon a derivation.

Differences from the authors' code, each deliberate:
- every draw comes from ``config.item_rng(seed, index)``, and free symbols are sorted before
  drawing, so the same seed gives the same file with any number of worker processes;
- no wall-clock timeouts: expensive SymPy work is refused on structural budgets
  (:mod:`derivlib.rules`), integrals are evaluated with SymPy's Risch and polynomial/table
  methods only (not heurisch, Meijer-G or manual), and every refused candidate is counted by
  reason;
- a substitution pair is the first valid pair of a random permutation of all pairs (uniform
  over the valid pairs, as the authors' choice among all valid pairs, without computing them
  all);
- each accepted equation is stored as its srepr's read-back (SymPy's canonical form, with
  ``Eq``'s full decision); :func:`read_back` computes it by rebuilding the nodes instead of
  printing and parsing text, with the same result;
- an operator with no possible operand, or a SymPy error, is a rejected proposal (the authors'
  code discarded the whole derivation);
- a repeated ``evaluate_integrals`` counts against the budget of 100 rejections (the authors'
  loop did not count it, so it could in principle spin forever);
- ``evaluate_integrals`` replaces an integral when its value differs from it structurally (the
  authors compared ``str(simplify(...))``);
- equation numbers are always stored as integers (the authors' files hold 10 and 11 as strings).

Realised operator mix (2,000 derivations, seed 0, against the 100 released test derivations):
``evaluate_derivatives`` / ``evaluate_integrals`` are 4.3% / 3.5% of all our steps but 9.5% /
7.7% of the steps of our derivations that contain an ``evaluate_*`` step (43% of them), the fair
comparison since every released static prompt needs one (released: 10.5% / 9.0%, 62 and 53 of
588 steps, within sampling error). ``evaluate_*`` is drawn for ~15% of proposals each but
accepted for ~9% of its draws: the chosen equation usually has nothing to evaluate, and the
unchanged equation is rejected as already present, as in the authors' code.

Speed (``benchmarks/generate.py``): while generating, two SymPy internals are replaced by
stand-ins that give the same answers faster (:func:`fast_sympy`: assumption queries record the
facts they could not decide, so each handler runs once per node; ``subs``'s sameness test skips
the tree walk when identity or hashes decide it), and the LaTeX and srepr printers print each
distinct sub-expression once; outputs are byte-identical to SymPy's own. Of what remains, about
a quarter of the CPU time is integration, a fifth SymPy's ``Eq`` decision on the new nodes of
each candidate and a sixth substitution, all part of the algorithm. Chunks go to worker
processes as they free up, and no index past the last record needed is computed.

Parallelism uses joblib. To run on a cluster, switch its backend without touching this code::

    import joblib
    with joblib.parallel_config(backend="ray"):       # after ray.init(); or "dask"
        records, rejections = generate(30000, seed=0, workers=64)
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import random
import statistics
import string
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import sympy as sp
from sympy.core.relational import is_eq

from . import config as cfg
from . import rules
from .derivation import (JOIN, AuthorsLatexPrinter, _CanonicalReprPrinter, clean_latex, from_srepr,
                         is_premise, normalise_annotation, to_srepr)
from .rules import TooExpensive
from .symbols import SYMBOLS

STAGE = "generate"
#: Indices per chunk (a unit of parallel work and of resumption): n/16, clamped to this range.
#: Outcomes are per index, so the chunk size never changes what is generated.
MIN_CHUNK, MAX_CHUNK = 8, 250


def chunk_size_for(n: int) -> int:
    return max(MIN_CHUNK, min(MAX_CHUNK, -(-n // 16)))


# ----------------------------------------------------------------------------------- parameters

def _default_arity_weights() -> dict:
    return {str(k): v for k, v in rules.ARITY_WEIGHTS.items()}


def _default_operator_weights() -> dict:
    return dict(rules.OPERATOR_WEIGHTS)


@dataclass(frozen=True)
class GeneratorConfig:
    """Generator parameters; defaults are the authors' values (PAPER.md §2)."""

    arity_weights: dict = field(default_factory=_default_arity_weights)  # "0"/"1"/"2" -> weight
    operator_weights: dict = field(default_factory=_default_operator_weights)  # operator -> weight
    recency: int = 10  # p of the cubic recency weight 1 + (p-i-1)^3
    length_mean: float = 7.0  # target length L ~ round(Normal(mean, std)) ...
    length_std: float = 3.0
    min_length: int = 4  # ... resampled until min_length <= L <= max_length (3 < L < 10)
    max_length: int = 9
    max_rejections: int = 100  # rejected proposals that abandon a derivation
    max_latex_length: int = 350  # candidates whose LaTeX is at least this long are rejected

    def check(self) -> None:
        P = cfg.ParameterError
        unknown = sorted(set(self.operator_weights) - set(rules.OPERATORS))
        if unknown:
            raise P(f"parameter 'operator_weights': unknown operator(s) {unknown}; "
                    f"known: {sorted(rules.OPERATORS)}")
        arities = {}
        for key, weight in self.arity_weights.items():
            if str(key) not in ("0", "1", "2"):
                raise P(f"parameter 'arity_weights': unknown arity {key!r} (use 0, 1, 2)")
            arities[int(key)] = weight
        for name, weights in (("arity_weights", arities.values()),
                              ("operator_weights", self.operator_weights.values())):
            if any(not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 for w in weights):
                raise P(f"parameter {name!r}: weights must be non-negative numbers")
        if sum(arities.values()) <= 0:
            raise P("parameter 'arity_weights': weights sum to zero")
        for arity, weight in arities.items():
            ops = [n for n, a in rules.ARITY.items() if a == arity]
            if weight > 0 and sum(self.operator_weights.get(n, 0) for n in ops) <= 0:
                raise P(f"parameter 'operator_weights': the weights of arity-{arity} operators "
                        f"{ops} sum to zero while arity_weights[{arity}] = {weight}")
        if arities.get(1, 0) + arities.get(2, 0) <= 0:
            raise P("parameter 'arity_weights': arities 1 and 2 both have weight zero, "
                    "so no derivation can grow from its premise")
        if self.recency < 1:
            raise P(f"parameter 'recency' must be >= 1, got {self.recency}")
        if not 2 <= self.min_length <= self.max_length:
            raise P(f"parameters 'min_length'/'max_length' must satisfy 2 <= min <= max, "
                    f"got {self.min_length}, {self.max_length}")
        if self.length_std < 0:
            raise P(f"parameter 'length_std' must be >= 0, got {self.length_std}")
        if self.length_acceptance() < 1e-4:  # _draw_length redraws until L is in range
            raise P(f"parameters 'length_mean'/'length_std': round(Normal({self.length_mean}, "
                    f"{self.length_std})) almost never falls in [{self.min_length}, {self.max_length}] "
                    f"(probability {self.length_acceptance():.1e}); move length_mean into that range")
        if self.max_rejections < 1:
            raise P(f"parameter 'max_rejections' must be >= 1, got {self.max_rejections}")
        if isinstance(self.max_latex_length, bool) or self.max_latex_length < 1:
            raise P(f"parameter 'max_latex_length' must be a positive integer, got {self.max_latex_length!r}")

    def length_acceptance(self) -> float:
        """Probability that one draw of the target length L lies in [min_length, max_length]."""
        if self.length_std == 0:
            return float(self.min_length <= round(self.length_mean) <= self.max_length)
        normal = statistics.NormalDist(self.length_mean, self.length_std)
        return normal.cdf(self.max_length + 0.5) - normal.cdf(self.min_length - 0.5)

    def operator_weight(self, name: str) -> float:
        return self.operator_weights.get(name, 0)

    def arity_weight(self, arity: int) -> float:
        return self.arity_weights.get(str(arity), self.arity_weights.get(arity, 0))


DEFAULT_CONFIG = GeneratorConfig()


def make_config(**values) -> GeneratorConfig:
    """A validated :class:`GeneratorConfig` (raises ``ParameterError`` naming the parameter)."""
    return cfg.validate(GeneratorConfig, values)


# ----------------------------------------------------------------------------------- SymPy

# Two of SymPy's internal functions, replaced while generating by faster ones that give the same
# answers (:func:`fast_sympy`). ``sympy.core.assumptions`` the attribute is a function; the
# modules themselves are in sys.modules.
_SYMPY_ASSUMPTIONS = sys.modules["sympy.core.assumptions"]
_SYMPY_BASIC = sys.modules["sympy.core.basic"]
_STOCK_ASK = _SYMPY_ASSUMPTIONS._ask
_STOCK_ARESAME = _SYMPY_BASIC._aresame
#: sha256 of the sources of SymPy 1.14.0's ``_ask`` and ``_aresame`` (``Basic.is_same``), the
#: functions that :func:`_ask_memo` and :func:`_aresame_fast` stand in for. With any other source
#: (another SymPy), :func:`fast_sympy` leaves SymPy's own in place.
STOCK_SHA256 = {"_ask": "fbf4c4060f257a9b435bc0f812609e8c8e57237a6917e8c1ef3a5f4834aaf3e2",
                "_aresame": "19997e4074bd933bac1109289aad9b5f587682b0420778523d34ea862e251b48"}
#: The facts that can decide each fact, in a fixed order (SymPy's ``_assume_rules.prereq``).
_PREREQUISITES = {fact: tuple(sorted(facts))
                  for fact, facts in _SYMPY_ASSUMPTIONS._assume_rules.prereq.items()}
_fast_lock = threading.Lock()
_fast_depth = 0


def _ask_memo(fact, obj):
    """SymPy 1.14.0's ``assumptions._ask``, which also records the facts it could not determine,
    and tries them in a fixed order instead of a shuffled one.

    SymPy answers ``obj.is_<fact>`` with a breadth-first search over the facts that can decide
    it (``prereq``), running each one's handler and deducing from every value found; an
    undecided query stores None for the queried fact only. Every other fact whose handler ran and
    returned None is left unknown, so the next query of another fact on the same node runs the
    same handlers again, each asking the same questions of the node's arguments: in profiles of
    the generator, most of ``Eq``'s decision (``is_eq``) was such repeated searches on the new
    nodes of each candidate (``lhs - rhs`` and its numerator, the sides).

    Here, when the search ends undecided, each fact whose handler returned None and that no
    deduction decided either is stored as None too. That is the value SymPy's own query of that
    fact gives: the search already ran every handler a direct query would run (the prerequisites
    of each visited fact are visited, skipping only facts already known) and deduced everything
    from their values, and SymPy's handlers are consistent with its rules, the premise on which
    SymPy itself tries the facts in random order (it shuffles each fact's prerequisites, to
    expose handlers that break the premise in its own tests; sympy PR #22557). The same premise
    lets the prerequisites be tried here in a fixed order, without the shuffle's cost. The outputs
    are unchanged: the generated files are byte-identical with and without it, and
    ``tests/test_fast_sympy.py`` compares every fact and ``Eq`` decision of real candidates
    with plain SymPy's.
    """
    assumptions = obj._assumptions
    handler_map = obj._prop_handler
    facts_to_check = [fact]
    facts_queued = {fact}
    undecided = []
    for fact_i in facts_to_check:
        if fact_i in assumptions:
            continue
        fact_i_value = None
        handler_i = handler_map.get(fact_i)
        if handler_i is not None:
            fact_i_value = handler_i(obj)
        if fact_i_value is not None:
            assumptions.deduce_all_facts(((fact_i, fact_i_value),))
        else:
            undecided.append(fact_i)
        fact_value = assumptions.get(fact)
        if fact_value is not None:
            return fact_value
        for fact_j in _PREREQUISITES.get(fact_i, ()):
            if fact_j not in facts_queued:
                facts_queued.add(fact_j)
                facts_to_check.append(fact_j)
    if fact in assumptions:
        return assumptions[fact]
    assumptions._tell(fact, None)
    for fact_i in undecided:
        if fact_i not in assumptions:
            assumptions._tell(fact_i, None)
    return None


def _aresame_fast(a, b) -> bool:
    """SymPy's ``_aresame(a, b)`` (``Basic.is_same``: the same tree, node for node, each pair
    ``==`` and of one class), without walking both trees when the answer is certain.

    ``subs`` asks it at every node, of the node and the pattern (almost always different: their
    hashes differ) and of each argument before and after substitution (almost always the same
    object). For SymPy objects, ``a is b`` gives True (``==`` is reflexive for every SymPy class),
    and different hashes give False (``is_same`` requires ``a == b``, and equal objects hash
    equally); everything else is left to ``is_same``.
    """
    if isinstance(a, sp.Basic) and isinstance(b, sp.Basic):
        if a is b:
            return True
        if hash(a) != hash(b):
            return False
    return _STOCK_ARESAME(a, b)


#: (module, name, SymPy's function, its replacement)
_REPLACEMENTS = ((_SYMPY_ASSUMPTIONS, "_ask", _STOCK_ASK, _ask_memo),
                 (_SYMPY_BASIC, "_aresame", _STOCK_ARESAME, _aresame_fast))


@functools.lru_cache(maxsize=1)
def _stock_is_known() -> bool:
    """True when SymPy's functions are the ones the replacements were derived from."""
    import hashlib
    import inspect
    for _, name, stock, _ in _REPLACEMENTS:
        try:
            source = inspect.getsource(stock)
        except (OSError, TypeError):
            return False
        if hashlib.sha256(source.encode()).hexdigest() != STOCK_SHA256[name]:
            return False
    return True


@contextlib.contextmanager
def fast_sympy():
    """Within this block SymPy runs :func:`_ask_memo` for its assumption queries (same answers,
    each handler run once per node) and :func:`_aresame_fast` in ``subs`` (same answers, no tree
    walk when certain). Re-entrant and thread-safe; SymPy's own functions are restored when the
    outermost block ends. Does nothing with a SymPy whose functions are not the ones replaced."""
    global _fast_depth
    with _fast_lock:
        if _fast_depth == 0 and _stock_is_known():
            for module, name, _, fast in _REPLACEMENTS:
                setattr(module, name, fast)
        _fast_depth += 1
    try:
        yield
    finally:
        with _fast_lock:
            _fast_depth -= 1
            if _fast_depth == 0:
                for module, name, stock, _ in _REPLACEMENTS:
                    setattr(module, name, stock)


# ----------------------------------------------------------------------------------- state

class _MemoLatexPrinter(rules.SubexpressionMemo, AuthorsLatexPrinter):
    """:class:`AuthorsLatexPrinter` that prints each distinct sub-expression once.

    A candidate is mostly made of sub-expressions printed before (the equation it was made from,
    the operand), and printing a node prints all of its sub-expressions again. The LaTeX
    printer's text for an expression is a function of the expression alone (its settings are
    fixed when it is made and it keeps no state while printing). ``tests/test_generate.py``
    checks it against the plain printer on real candidates and all their sub-expressions.
    """


_RAW_PRINTER = _MemoLatexPrinter()


class _MemoReprPrinter(rules.SubexpressionMemo, _CanonicalReprPrinter):
    """:func:`derivation.to_srepr`'s printer, printing each distinct sub-expression once: the
    equations of a derivation share most of their sub-expressions, and that printer's text is a
    function of the expression (equal symbols print alike: its purpose). ``tests/test_generate.py``
    checks it against ``to_srepr``.
    """


_SREPR_PRINTER = _MemoReprPrinter()


def _srepr(expr: sp.Basic) -> str:
    """``to_srepr(expr)``, each distinct sub-expression printed once (:class:`_MemoReprPrinter`)."""
    return _SREPR_PRINTER.doprint(expr)


def raw_latex(expr: sp.Basic) -> str:
    """Uncleaned LaTeX (with ``\\left``/``\\right``), what the authors' 350-character filter measured.

    SymPy prints an equation as ``"<lhs> = <rhs>"`` with each side printed on its own, so the
    sides are printed separately, each (and each of its sub-expressions) once:
    :class:`_MemoLatexPrinter`.
    """
    if isinstance(expr, sp.Equality):
        return f"{_RAW_PRINTER.doprint(expr.lhs)} = {_RAW_PRINTER.doprint(expr.rhs)}"
    return _RAW_PRINTER.doprint(expr)


class _State:
    """A derivation under construction: equations, annotations (1-based, SymPy operands)."""

    def __init__(self, equations: list, annotations: list):
        self.equations = list(equations)
        self.annotations = list(annotations)
        self.known = set(self.equations)
        self._elements: list = []
        self._element_set: set = set()
        self._substitutions: dict = {}
        self._used_symbols: set = set()
        for eq in self.equations:
            self._add_elements(eq)

    def _add_elements(self, eq) -> None:
        self._used_symbols |= eq.free_symbols
        for e in rules.equation_elements(eq):
            if e not in self._element_set:
                self._element_set.add(e)
                self._elements.append(e)

    def append(self, eq, annotation) -> None:
        self.equations.append(eq)
        self.annotations.append(annotation)
        self.known.add(eq)
        self._add_elements(eq)

    @property
    def elements(self) -> list:
        return self._elements

    def used_symbols(self) -> set:
        return self._used_symbols

    def _substitution_cached(self, name: str, i: int, j: int):
        key = (name, i, j)
        if key not in self._substitutions:
            self._substitutions[key] = _substitution_result(name, self.equations[i], self.equations[j])
        return self._substitutions[key]

    def valid_substitutions(self, name: str) -> list[tuple[int, int]]:
        """Pairs (i, j), 0-based: a side of equation j occurs in i, and replacing it leaves a
        different equation; sides equal to 0 or 1 are never replaced (authors' rule)."""
        n = len(self.equations)
        return [(i, j) for i in range(n) for j in range(n)
                if i != j and self._substitution_cached(name, i, j) is not None]

    def random_substitution(self, name: str, rng: random.Random) -> tuple[int, int] | None:
        """A pair drawn uniformly from :meth:`valid_substitutions`, or None if there is none.

        The first valid pair of a random permutation is uniform over the valid pairs, and only
        the pairs before it are ever tried: most of the n^2 substitutions are never computed.
        """
        n = len(self.equations)
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        rng.shuffle(pairs)
        for i, j in pairs:
            if self._substitution_cached(name, i, j) is not None:
                return i, j
        return None

    def substitution(self, name: str, i: int, j: int):
        return self._substitutions[(name, i, j)]


def _substitution_result(name: str, target, source):
    lhs, rhs = source.lhs, source.rhs
    if any(side in (sp.S.Zero, sp.S.One) for side in (lhs, rhs)):
        return None
    old = lhs if name == "substitute_LHS_for_RHS" else rhs
    # structural occurrence test first: ``subs`` on a target that lacks ``old`` is wasted work
    if not target.has(old):
        return None
    result = getattr(rules, name)(target, source)
    if not isinstance(result, sp.Equality) or result == target:
        return None
    return result


# ----------------------------------------------------------------------------------- steps

class Rejected(Exception):
    """A proposal that failed a filter; ``reason`` is the counter's key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _recency_weights(n: int, p: int) -> list[int]:
    weights = []
    for k in range(n):
        i = n - 1 - k  # i-th most recent
        weights.append(1 + (p - i - 1) ** 3 if i < p - 1 else 1)
    return weights


def _choose(rng: random.Random, options: Sequence, weights: Sequence[float]):
    return rng.choices(options, weights=weights, k=1)[0]


def _pick_equation(state: _State, rng: random.Random, config: GeneratorConfig) -> int:
    n = len(state.equations)
    return _choose(rng, range(n), _recency_weights(n, config.recency))


def _draw_operator(state: _State, rng: random.Random, config: GeneratorConfig) -> str:
    arities = [a for a in (0, 1, 2) if config.arity_weight(a) > 0]
    arity = _choose(rng, arities, [config.arity_weight(a) for a in arities])
    names = [n for n, a in rules.ARITY.items() if a == arity and config.operator_weight(n) > 0]
    if arity == 2 and len(state.equations) == 1:
        names = [n for n in names if not n.startswith("substitute")]
        if not names:
            raise Rejected("no_valid_substitution")
    return _choose(rng, names, [config.operator_weight(n) for n in names])


def _apply(state: _State, name: str, rng: random.Random, config: GeneratorConfig):
    """One proposal: (equation, annotation) or raise :class:`Rejected`."""
    if name == "get_premise":
        return rules.get_premise(rng), "get_premise"
    if name == "renaming_premise":
        eq = rules.renaming_premise(state.equations, rng)
        if eq is None:
            raise Rejected("renaming_failed")
        return eq, "renaming_premise"
    if name.startswith("substitute"):
        pair = state.random_substitution(name, rng)
        if pair is None:
            raise Rejected("no_valid_substitution")
        i, j = pair
        return state.substitution(name, i, j), [name, i + 1, j + 1]
    k = _pick_equation(state, rng, config)
    eq = state.equations[k]
    if rules.ARITY[name] == 1:
        if name == "evaluate_integrals":
            if [name, k + 1] in state.annotations:  # the filter's verdict, known before the work
                raise Rejected("repeated_evaluate_integrals")
            return rules.evaluate_integrals(eq, state.used_symbols(), rng), [name, k + 1]
        return rules.OPERATORS[name](eq), [name, k + 1]
    if name in ("differentiate", "integrate"):
        pool = [e for e in rules.equation_elements(eq) if isinstance(e, sp.Symbol)]
    elif name == "power":
        pool = [e for e in rules.equation_elements(eq)
                if isinstance(e, sp.Symbol) or type(e) is sp.Integer]
    else:
        # the authors exclude exactly the class Integer: 0, 1, -1 and 1/2 are other classes
        pool = [e for e in state.elements if type(e) is not sp.Integer]
    if not pool:
        raise Rejected("no_operand")
    operand = rng.choice(pool)
    return rules.OPERATORS[name](eq, operand), [name, k + 1, operand]


def _check(state: _State, eq, annotation, config: GeneratorConfig) -> None:
    """The authors' filters, cheapest first."""
    if not isinstance(eq, sp.Equality):
        raise Rejected("not_equation")
    if eq in state.known or sp.Eq(eq.rhs, eq.lhs, evaluate=False) in state.known:
        raise Rejected("already_present")
    if annotation in state.annotations and annotation[0] == "evaluate_integrals":
        raise Rejected("repeated_evaluate_integrals")
    if eq.has(sp.Subs, sp.Piecewise):
        raise Rejected("subs_or_piecewise")
    if rules.contains_nested_function(eq):
        raise Rejected("nested_function")
    if len(raw_latex(eq)) >= config.max_latex_length:
        raise Rejected("latex_too_long")



#: Python frames SymPy may use below the generator's own frame. ``subs`` on some candidates
#: recurses without end (one crashed a 30,000-derivation run at the default limit); such a
#: candidate is rejected like any other SymPy error. The limit is set relative to the frame that
#: generates (:func:`_recursion_budget`), so a candidate is rejected or not whatever the caller's
#: stack depth (a joblib worker's, a notebook's, pytest's): the output stays independent of how
#: it is run.
RECURSION_BUDGET = 1000


def _stack_depth() -> int:
    depth, frame = 0, sys._getframe(1)
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


@contextlib.contextmanager
def _recursion_budget(frames: int = RECURSION_BUDGET):
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _propose(state: _State, rng: random.Random, config: GeneratorConfig):
    try:
        return _propose_unguarded(state, rng, config)
    except RecursionError:
        raise Rejected("sympy_error:RecursionError") from None


def _propose_unguarded(state: _State, rng: random.Random, config: GeneratorConfig):
    name = _draw_operator(state, rng, config)
    try:
        eq, annotation = _apply(state, name, rng, config)
    except TooExpensive as err:
        raise Rejected(f"too_expensive:{err}") from None
    except (Rejected, RecursionError):
        raise
    except Exception as err:  # SymPy raising on an odd candidate: count it, as the authors dropped it
        raise Rejected(f"sympy_error:{type(err).__name__}") from None
    _check(state, eq, annotation, config)
    # What is stored is the srepr, and reading it back re-evaluates every node (``subs`` can
    # leave non-canonical products such as Mul(-1, 2, x)) and lets SymPy decide the equation
    # (rules.equation skipped that; e.g. Eq(exp(x), 2*exp(x)) is False). A survivor is
    # therefore replaced by its read-back form, which must pass the filters too: no stored
    # equation reads back as True, False or a different equation.
    canonical = read_back(eq)
    if not isinstance(canonical, sp.Equality):
        raise Rejected("not_equation")
    if canonical is not eq:
        _check(state, canonical, annotation, config)
    return canonical, annotation


def _rebuild(expr: sp.Basic) -> sp.Basic:
    """Every node rebuilt bottom-up from its arguments with its constructor, which evaluates it:
    what ``eval(srepr(expr))`` does, without printing and parsing text."""
    if not expr.args:
        return expr
    return expr.func(*[_rebuild(arg) for arg in expr.args])


def read_back(eq: sp.Basic) -> sp.Basic:
    """``from_srepr(to_srepr(eq))``, what any reader of the stored srepr gets, computed faster.

    Reading an srepr back rebuilds every node, so non-canonical nodes left by ``subs`` or
    ``doit`` (e.g. ``Mul(-1, 2, x)``) are evaluated, and lets ``Eq`` decide the equation
    (:func:`rules.equation` skipped that; e.g. ``Eq(exp(x), 2*exp(x))`` is False). Here the
    nodes are rebuilt directly, without printing and parsing srepr text, and SymPy's very same
    decision (``is_eq``) runs on the sides; when the rebuild gives back ``eq`` (the usual case),
    on ``eq``'s own sides, which share sub-expressions (and their cached assumptions) with
    equations decided earlier. ``tests/test_generate.py`` checks the result against the plain
    read-back.
    """
    if not isinstance(eq, sp.Equality):
        return from_srepr(to_srepr(eq))
    lhs, rhs = _rebuild(eq.lhs), _rebuild(eq.rhs)
    if lhs == eq.lhs and rhs == eq.rhs:
        lhs, rhs = eq.lhs, eq.rhs
    verdict = is_eq(lhs, rhs)
    if verdict is not None:
        return sp.sympify(verdict)
    return eq if lhs is eq.lhs and rhs is eq.rhs else sp.Eq(lhs, rhs, evaluate=False)


def extract_longest_chain(annotations: Sequence) -> list[int]:
    """0-based indices of the first longest dependency chain (a step with everything it needs)."""
    closures: list[frozenset] = []
    for k, annotation in enumerate(annotations):
        chain = {k}
        if not is_premise(annotation):
            deps = [annotation[1]] + ([annotation[2]] if annotation[0].startswith("substitute") else [])
            for d in deps:
                chain |= closures[d - 1]
        closures.append(frozenset(chain))
    best = max(range(len(closures)), key=lambda k: (len(closures[k]), -k))
    return sorted(closures[best])


def _renumber(annotation, mapping: dict[int, int]):
    if is_premise(annotation):
        return annotation
    out = [annotation[0], mapping[annotation[1]]]
    if len(annotation) > 2:
        operand = annotation[2]
        out.append(mapping[operand] if annotation[0].startswith("substitute") else operand)
    return out


def _extract(state: _State) -> list[tuple]:
    keep = extract_longest_chain(state.annotations)
    mapping = {old + 1: new + 1 for new, old in enumerate(keep)}
    return [(state.equations[k], _renumber(state.annotations[k], mapping)) for k in keep]


def _operand_json(operand):
    # The authors' convention: an integer that prints as a substring of "0123456789" is stored
    # as an int, everything else as its srepr.
    if isinstance(operand, sp.Integer) and str(operand) in string.digits:
        return int(operand)
    return _srepr(operand)


def annotation_json(annotation):
    """Internal annotation (SymPy operand) -> the authors' JSON form."""
    if isinstance(annotation, str):
        return annotation
    out = [annotation[0], int(annotation[1])]
    if len(annotation) > 2:
        operand = annotation[2]
        out.append(int(operand) if annotation[0].startswith("substitute") else _operand_json(operand))
    return out


def annotation_internal(annotation):
    """The authors' JSON annotation -> internal form (operand parsed to SymPy)."""
    annotation = normalise_annotation(annotation)
    if isinstance(annotation, str) or len(annotation) < 3 or annotation[0].startswith("substitute"):
        return annotation
    operand = annotation[2]
    operand = sp.Integer(operand) if isinstance(operand, int) else from_srepr(operand)
    return [annotation[0], annotation[1], operand]


def _draw_length(rng: random.Random, config: GeneratorConfig) -> int:
    while True:
        length = round(rng.gauss(config.length_mean, config.length_std))
        if config.min_length <= length <= config.max_length:
            return length


def _generate_steps(rng: random.Random, config: GeneratorConfig, rejections: Counter):
    target = _draw_length(rng, config)
    state = _State([rules.get_premise(rng)], ["premise"])
    failures = 0
    while True:
        try:
            eq, annotation = _propose(state, rng, config)
        except Rejected as rejection:
            rejections[rejection.reason] += 1
            failures += 1
            if failures >= config.max_rejections:
                rejections["abandoned_derivation"] += 1
                return None
            continue
        state.append(eq, annotation)
        chain = _extract(state)
        if len(chain) >= target:
            return chain


def generate_one(seed: int, index: int, config: GeneratorConfig | None = None,
                 rejections: Counter | None = None) -> dict | None:
    """Derivation number ``index`` of the stream ``seed``: a record, or None if abandoned."""
    config = config or DEFAULT_CONFIG
    rejections = Counter() if rejections is None else rejections
    rng = cfg.item_rng(seed, index, "generate")
    with _recursion_budget():
        with fast_sympy():
            chain = _generate_steps(rng, config, rejections)
        if chain is None:
            return None
        steps = [[annotation_json(a), _srepr(eq)] for eq, a in chain]
        # derivation.steps_to_record's format, printed from the equations in hand (each is its
        # srepr's read-back) instead of parsing the srepr strings again
        equations = [clean_latex(raw_latex(eq)) for eq, _ in chain]
    return {"id": f"g{seed}-{index}", "seed": seed, "index": index, "srepr_derivation": steps,
            "equations": equations, "derivation": JOIN.join(equations)}


def next_step(steps: Sequence[Sequence], rng: random.Random,
              config: GeneratorConfig | None = None) -> list | None:
    """One new step proposed from ``steps`` (authors' schema) under every generator filter.

    Returns ``[annotation, srepr]`` (annotation numbered against ``steps``), or None when
    ``config.max_rejections`` proposals were all rejected. Used for the alternative-goal (AG)
    perturbation: ``next_step(derivation[:-1], rng)``.
    """
    config = config or DEFAULT_CONFIG
    if not steps:
        raise ValueError("next_step needs at least one step to extend")
    state = _State([from_srepr(s) for _, s in steps], [annotation_internal(a) for a, _ in steps])
    with fast_sympy(), _recursion_budget():
        for _ in range(config.max_rejections):
            try:
                eq, annotation = _propose(state, rng, config)
            except Rejected:
                continue
            return [annotation_json(annotation), _srepr(eq)]
    return None


# ----------------------------------------------------------------------------------- many

def _generate_range(seed: int, start: int, stop: int, config: GeneratorConfig) -> list[dict]:
    """Per-index outcomes ``{"index", "record", "rejections"}`` for indices in [start, stop)."""
    out = []
    for index in range(start, stop):
        counts: Counter = Counter()
        record = generate_one(seed, index, config, counts)
        out.append({"index": index, "record": record, "rejections": dict(sorted(counts.items()))})
    return out


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise cfg.ParameterError(f"parameter 'n' (number of derivations) must be a positive integer, got {n!r}")


def _check_workers(workers: int) -> None:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise cfg.ParameterError(f"parameter 'workers' must be a positive integer, got {workers!r}")


def iter_outcomes(seed: int, workers: int = 1, config: GeneratorConfig | None = None,
                  chunk_dir: Path | str | None = None, chunk_size: int = MAX_CHUNK,
                  n: int | None = None) -> Iterator[dict]:
    """Per-index outcomes in index order.

    Indices are computed in chunks of at most ``chunk_size``, handed to the ``workers`` processes
    one at a time as each becomes free (no process waits for another's chunk) and yielded in
    order. With ``n``, the records wanted, the first batch of chunks covers exactly ``n`` indices
    and each later one as many indices as records are still missing (an index gives at most one
    record; abandoned derivations leave a few missing), so no index is computed that is not
    needed; without ``n``, batches of ``workers`` chunks follow each other forever.

    With ``chunk_dir``, each finished chunk is saved atomically as ``chunk-<start>-<stop>.jsonl``
    and reused when present, so an interrupted run resumes where it stopped (the chunks of a run
    are the same every time: they follow from ``n``, ``chunk_size`` and the outcomes).
    """
    from joblib import Parallel, delayed

    config = config or DEFAULT_CONFIG
    _check_workers(workers)
    chunk_path = None
    if chunk_dir is not None:
        chunk_dir = Path(chunk_dir)
        chunk_dir.mkdir(parents=True, exist_ok=True)
        chunk_path = lambda bounds: chunk_dir / "chunk-{:09d}-{:09d}.jsonl".format(*bounds)  # noqa: E731
    parallel = Parallel(n_jobs=workers, batch_size=1, return_as="generator") if workers > 1 else None
    start, records = 0, 0
    while n is None or records < n:
        span = workers * chunk_size if n is None else n - records
        chunks = [(a, min(a + chunk_size, start + span)) for a in range(start, start + span, chunk_size)]
        cached = {c: cfg.read_jsonl(chunk_path(c)) for c in chunks if chunk_path and chunk_path(c).exists()}
        todo = [c for c in chunks if c not in cached]
        if parallel is not None and len(todo) > 1:
            computed = iter(parallel(delayed(_generate_range)(seed, a, b, config) for a, b in todo))
        else:
            computed = (_generate_range(seed, a, b, config) for a, b in todo)
        left = len(todo)
        for c in chunks:
            outcomes = cached.get(c)
            if outcomes is None:
                outcomes = next(computed)
                left -= 1
                if left == 0:
                    for _ in computed:  # let joblib end its generator before a consumer stops early
                        pass
                if chunk_path:
                    cfg.write_jsonl(chunk_path(c), outcomes)
            for outcome in outcomes:
                records += outcome["record"] is not None
                yield outcome
        start += span


def generate(n: int, seed: int = 0, workers: int = 1, config: GeneratorConfig | None = None,
             chunk_dir: Path | str | None = None, progress=None) -> tuple[list[dict], dict]:
    """The first ``n`` derivations of stream ``seed`` (abandoned indices skipped).

    Returns ``(records, rejection_counts)``; the counts cover exactly the indices up to the last
    record returned, so they too are independent of ``workers``. ``progress(done, n)`` is called
    after each record when given.
    """
    _check_n(n)
    _check_workers(workers)
    config = config or DEFAULT_CONFIG
    config.check()
    records: list[dict] = []
    rejections: Counter = Counter()
    for outcome in iter_outcomes(seed, workers, config, chunk_dir, chunk_size_for(n), n):
        rejections.update(outcome["rejections"])
        if outcome["record"] is not None:
            records.append(outcome["record"])
            if progress is not None:
                progress(len(records), n)
            if len(records) == n:
                break
    return records, dict(sorted(rejections.items()))


def write_derivations(path: Path | str, n: int, seed: int = 0, workers: int = 1,
                      config: GeneratorConfig | None = None) -> tuple[int, dict]:
    """Generate and write a derivations JSONL file atomically. Returns (count, rejections).

    Every parameter is checked before any work, and nothing is written unless all succeeds.
    """
    _check_n(n)
    _check_workers(workers)
    (config or DEFAULT_CONFIG).check()
    path = cfg.check_writable(path, "out")
    records, rejections = generate(n, seed, workers, config)
    cfg.write_jsonl(path, records)
    return len(records), rejections


def read_derivations(path: Path | str) -> list[dict]:
    """Our derivations JSONL, or an authors' results JSON (static derivations), as records."""
    path = Path(path)
    if path.suffix == ".json":
        from . import paper
        return [{"id": f"paper-{k:03d}", **item} for k, item in enumerate(paper.load_items(path))]
    return cfg.read_jsonl(path)


# ----------------------------------------------------------------------------------- stage

@dataclass(frozen=True)
class GenerateParams:
    """Parameters of notebook ``01_generate`` (stage ``generate``)."""

    n_derivations: int = 2000
    seed: int = 0
    workers: int = 1
    arity_weights: dict = field(default_factory=_default_arity_weights)
    operator_weights: dict = field(default_factory=_default_operator_weights)
    recency: int = 10
    length_mean: float = 7.0
    length_std: float = 3.0
    min_length: int = 4
    max_length: int = 9
    max_latex_length: int = 350
    profile: str = "smoke"

    def check(self) -> None:
        if isinstance(self.n_derivations, bool) or self.n_derivations <= 0:
            raise cfg.ParameterError(f"parameter 'n_derivations' must be a positive integer, got {self.n_derivations!r}")
        _check_workers(self.workers)
        self.generator_config().check()

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(arity_weights={str(k): v for k, v in self.arity_weights.items()},
                               operator_weights=dict(self.operator_weights), recency=self.recency,
                               length_mean=self.length_mean, length_std=self.length_std,
                               min_length=self.min_length, max_length=self.max_length,
                               max_latex_length=self.max_latex_length)


def open_run(namespace: dict) -> cfg.Run:
    """Validate a notebook's parameters and open (or reopen) its run directory."""
    params = cfg.from_namespace(GenerateParams, namespace)
    return cfg.start_run(STAGE, params)


def run_stage(run: cfg.Run) -> tuple[list[dict], dict]:
    """Generate into ``run`` (resuming from finished chunks), or load a complete run.

    Writes ``derivations.jsonl`` and ``rejections.json``, then marks the run complete. Returns
    (records, rejection counts).
    """
    out = run.path("derivations.jsonl")
    if run.complete:
        return cfg.read_jsonl(out), json.loads(run.path("rejections.json").read_text())
    params = run.params
    last = [0]

    def progress(done, n):
        if done == n or done - last[0] >= max(1, n // 10):
            last[0] = done
            run.log(f"{done}/{n} derivations")

    records, rejections = generate(params.n_derivations, params.seed, params.workers,
                                   params.generator_config(), chunk_dir=run.path("chunks"),
                                   progress=progress)
    cfg.write_jsonl(out, records)
    cfg.atomic_write_json(run.path("rejections.json"), rejections)
    run.finish(derivations=len(records), rejections=rejections)
    import shutil
    shutil.rmtree(run.path("chunks"), ignore_errors=True)  # the payload holds it all now
    return records, rejections


# ----------------------------------------------------------------------------------- statistics

def operator_counts(records: Sequence[dict], key: str = "srepr_derivation") -> Counter:
    """How often each annotation (operator or premise kind) occurs."""
    counts: Counter = Counter()
    for record in records:
        for annotation, _ in record[key]:
            counts[annotation if isinstance(annotation, str) else annotation[0]] += 1
    return counts


def dataset_table(records: Sequence[dict], source: str, key: str = "srepr_derivation",
                  text_key: str = "derivation"):
    """One row per derivation: source, equations, total LaTeX length, mean equation length."""
    import pandas as pd

    from .derivation import split_equations
    rows = []
    for record in records:
        equations = split_equations(record[text_key])
        rows.append({"source": source, "equations": len(record[key]),
                     "latex_length": sum(len(e) for e in equations),
                     "equation_latex_length": sum(len(e) for e in equations) / max(len(equations), 1)})
    return pd.DataFrame(rows)


def operator_table(records: Sequence[dict], source: str, key: str = "srepr_derivation"):
    """Realised operator frequencies (share of all steps) of one source."""
    import pandas as pd
    counts = operator_counts(records, key)
    total = sum(counts.values()) or 1
    return pd.DataFrame([{"source": source, "operator": name, "count": c, "share": c / total}
                         for name, c in sorted(counts.items())])


def released_test_records() -> list[dict]:
    """The authors' 100 released static test derivations, or [] when not available."""
    from . import paper
    files = paper.results_files()
    if not files:
        return []
    path = files.get("flan-t5-large", next(iter(files.values())))
    return [{"id": f"paper-{k:03d}", **item} for k, item in enumerate(paper.load_items(path))]


def released_failures() -> "object":
    """The verifier's failing steps in the released derivations (all five sets), as a table."""
    import pandas as pd

    from . import paper, verify
    files = paper.results_files()
    if not files:
        return pd.DataFrame(columns=["id", "field", "step", "annotation", "reason"])
    path = files.get("flan-t5-large", next(iter(files.values())))
    report = verify.verify_file(path)
    table = pd.DataFrame(report.failure_table(), columns=["id", "field", "step", "annotation", "reason"])
    table.attrs["summary"] = report.summary().splitlines()[0]
    return table


def comparison_tables(records: Sequence[dict]):
    """(per-derivation table, operator table) for ours and, when available, the released test
    derivations (``DERIVLIB_PAPER_RESULTS``)."""
    import pandas as pd
    sources = [("ours", records)]
    released = released_test_records()
    if released:
        sources.append(("released test set", released))
    derivations = pd.concat([dataset_table(r, s) for s, r in sources], ignore_index=True)
    operators = pd.concat([operator_table(r, s) for s, r in sources], ignore_index=True)
    return derivations, operators
