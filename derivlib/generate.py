"""The authors' derivation generator (PAPER.md §2), seeded, bounded and parallel.

A derivation starts from one premise. Each step draws an arity (weights 0:5, 1:50, 2:100), then an
operator of that arity, an equation to act on (recency weight ``1 + (p-i-1)^3`` for the i-th most
recent, p = 10) and an operand, and keeps the result only if it passes every filter of the
authors' code (an equation, new also with sides swapped, no ``Subs``/``Piecewise``, LaTeX shorter
than 350 characters, no function nested in another's arguments, no repeated
``evaluate_integrals``). After each accepted step the longest dependency chain is extracted; the
derivation is done once that chain has at least L equations, L = round(Normal(7, 3)) resampled
until 3 < L < 10. 100 rejected proposals abandon a derivation.

A length the generator cannot reach would otherwise have every derivation abandoned, for ever:
after :func:`abandon_budget` derivations abandoned in a row (in index order; 5 with the authors'
100 rejections), generation stops with :class:`Stalled`, a one-line ``ValueError`` naming the
parameters and the longest chain reached. With the authors' parameters 0.25% of derivations are
abandoned (5 of 2,005, seed 0), so five in a row come about once in 10^13 derivations.

Differences from the authors' code, each deliberate:
- every draw comes from ``item_rng(seed, index)`` (:mod:`derivlib.base.seeding`), and free
  symbols are sorted before drawing, so the same seed gives the same file with any number of
  worker processes;
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
- abandoned derivations have a budget too (:func:`abandon_budget`; the authors' loop started
  new derivations until it had enough, for ever if none could reach its length);
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

Speed (``benchmarks/generate.py``): while a chunk of derivations is generated, two SymPy
internals are replaced by stand-ins that give the same answers faster
(:func:`derivlib.sympy_fast.fast_sympy`, entered once per chunk in the process that computes it,
so nothing else sees it), and the LaTeX and srepr printers print each distinct sub-expression
once; outputs are byte-identical to SymPy's own. Of what remains, about a quarter of the CPU time
is integration, a fifth SymPy's ``Eq`` decision on the new nodes of each candidate and a sixth
substitution, all part of the algorithm. Chunks go to worker processes as they free up, and no
index past the last record needed is computed.

Parallelism uses joblib: chunks of indices go to ``joblib.Parallel(n_jobs=workers)``, and the
block around the call chooses where they run (:func:`derivlib.base.parallel.backend`: local loky
processes, or a Dask cluster), with the same output::

    from derivlib.base import parallel
    with parallel.backend("dask", scheduler="tcp://10.0.0.5:8786") as jobs:
        records, rejections = generate(300000, seed=0, workers=jobs)

Only the coordinator (the caller's process) stores chunks and assembles records, in index order;
a worker that dies mid-chunk is rescheduled by Dask, and the chunk is computed again from its
(seed, index range), so the output does not change.
"""
from __future__ import annotations

import random
import statistics
import string
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, MutableMapping, Sequence

import sympy as sp
from joblib import Parallel, delayed
from sympy.core.relational import is_eq

from . import rules, sympy_fast
from .base.params import ParameterError, validate
from .base.seeding import item_rng
from .base.vocabulary import JOIN
from .derivation import (clean_latex, fast_srepr, from_srepr, is_premise, normalise_annotation, raw_latex,
                         to_srepr)
from .rules import TooExpensive

#: Indices per chunk (a unit of parallel work and of resumption): n/16, clamped to this range.
#: Outcomes are per index, so the chunk size never changes what is generated.
MIN_CHUNK, MAX_CHUNK = 8, 250
#: Python frames SymPy may use below the frame that generates one derivation. ``subs`` on some
#: candidates recurses without end (one crashed a 30,000-derivation run at the default limit);
#: such a candidate is rejected like any other SymPy error. The limit is set relative to that
#: frame, so a candidate is rejected or not whatever the caller's stack depth (a joblib worker's,
#: a notebook's, pytest's): the output stays independent of how it is run. 1,002 is the limit
#: earlier versions set (1,000 above the two frames of their context manager), kept so that the
#: files stay the same: a candidate on which SymPy recurses deeply, but not without end, is
#: accepted or rejected depending on it.
RECURSION_BUDGET = 1002
#: The budget of abandoned derivations (:func:`abandon_budget`): derivations abandoned in a row
#: stop generation once they number at least MIN_ABANDONED and their rejected proposals at least
#: ABANDONED_PROPOSALS. It bounds the work spent on one requested derivation: an abandoned
#: derivation costs ``max_rejections`` proposals, so cheap ones (a small ``max_rejections``,
#: where most derivations are abandoned but records still come) get more tries.
MIN_ABANDONED, ABANDONED_PROPOSALS = 5, 500


def chunk_size_for(n: int) -> int:
    return max(MIN_CHUNK, min(MAX_CHUNK, -(-n // 16)))


def abandon_budget(config: "GeneratorConfig") -> int:
    """Derivations abandoned in a row after which generation stops with :class:`Stalled`."""
    return max(MIN_ABANDONED, -(-ABANDONED_PROPOSALS // config.max_rejections))


class Stalled(ValueError):
    """The budget of derivations abandoned in a row is spent: the parameters give no derivations
    (or almost none). The message names the parameters, the indices and the longest chain."""


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
        P = ParameterError
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
        if self.length_acceptance() < 1e-4:  # draw_length redraws until L is in range
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
    return validate(GeneratorConfig, values)


# ----------------------------------------------------------------------------------- state

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


def recency_weights(n: int, p: int) -> list[int]:
    """The authors' weight of each of ``n`` equations, oldest first: ``1 + (p-i-1)^3`` for the
    i-th most recent (i = 0 the newest), 1 once i reaches p - 1."""
    weights = []
    for k in range(n):
        i = n - 1 - k  # i-th most recent
        weights.append(1 + (p - i - 1) ** 3 if i < p - 1 else 1)
    return weights


def _choose(rng: random.Random, options: Sequence, weights: Sequence[float]):
    return rng.choices(options, weights=weights, k=1)[0]


def _pick_equation(state: _State, rng: random.Random, config: GeneratorConfig) -> int:
    n = len(state.equations)
    return _choose(rng, range(n), recency_weights(n, config.recency))


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


def longest_chain(equations: Sequence, annotations: Sequence) -> list[tuple]:
    """(equation, annotation) of each step of the first longest dependency chain, in order, with
    the annotations' equation numbers renumbered within the chain."""
    keep = extract_longest_chain(annotations)
    mapping = {old + 1: new + 1 for new, old in enumerate(keep)}
    return [(equations[k], _renumber(annotations[k], mapping)) for k in keep]


def _operand_json(operand):
    # The authors' convention: an integer that prints as a substring of "0123456789" is stored
    # as an int, everything else as its srepr.
    if isinstance(operand, sp.Integer) and str(operand) in string.digits:
        return int(operand)
    return fast_srepr(operand)


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


def draw_length(rng: random.Random, config: GeneratorConfig) -> int:
    """The target length L: round(Normal(length_mean, length_std)), redrawn until in range."""
    while True:
        length = round(rng.gauss(config.length_mean, config.length_std))
        if config.min_length <= length <= config.max_length:
            return length


def _generate_steps(rng: random.Random, config: GeneratorConfig, rejections: Counter):
    """(the chain, its length) of a finished derivation, or (None, the longest chain's length)
    of an abandoned one."""
    target = draw_length(rng, config)
    state = _State([rules.get_premise(rng)], ["premise"])
    failures, reached = 0, 1
    while True:
        try:
            eq, annotation = _propose(state, rng, config)
        except Rejected as rejection:
            rejections[rejection.reason] += 1
            failures += 1
            if failures >= config.max_rejections:
                rejections["abandoned_derivation"] += 1
                return None, reached
            continue
        state.append(eq, annotation)
        chain = longest_chain(state.equations, state.annotations)
        reached = max(reached, len(chain))
        if len(chain) >= target:
            return chain, reached


def _derive(seed: int, index: int, config: GeneratorConfig, rejections: Counter) -> tuple[dict | None, int]:
    """(record or None if abandoned, the longest chain's length) of derivation ``index`` of
    stream ``seed``, inside the generating context of :func:`generate_range` (SymPy's stand-ins
    and the recursion budget)."""
    rng = item_rng(seed, index, "generate")
    chain, reached = _generate_steps(rng, config, rejections)
    if chain is None:
        return None, reached
    steps = [[annotation_json(a), fast_srepr(eq)] for eq, a in chain]
    # derivation.steps_to_record's format, printed from the equations in hand (each is its
    # srepr's read-back) instead of parsing the srepr strings again
    equations = [clean_latex(raw_latex(eq)) for eq, _ in chain]
    return {"id": f"g{seed}-{index}", "seed": seed, "index": index, "srepr_derivation": steps,
            "equations": equations, "derivation": JOIN.join(equations)}, reached


def generate_range(seed: int, start: int, stop: int, config: GeneratorConfig | None = None) -> list[dict]:
    """Per-index outcomes ``{"index", "record", "rejections"}`` for indices in [start, stop): one
    chunk, the unit of work a joblib worker runs. An abandoned derivation's outcome has
    ``"record": None`` and ``"reached"``, the length of its longest chain.

    The chunk ends early, after the index that makes :func:`abandon_budget` derivations abandoned
    in a row: :func:`iter_outcomes` stops generation there or before, so the rest is never needed.

    SymPy's stand-ins (:func:`sympy_fast.fast_sympy`) and the recursion budget are in force for
    the whole chunk, in the process that computes it, and only there: they are restored before
    this returns.
    """
    config = config or DEFAULT_CONFIG
    out = []
    budget, abandoned = abandon_budget(config), 0
    # each derivation runs in a frame one below this one (_derive), with RECURSION_BUDGET below it
    with sympy_fast.fast_sympy(), sympy_fast.recursion_limit(sympy_fast.stack_depth() + 1 + RECURSION_BUDGET):
        for index in range(start, stop):  # a plain loop: a comprehension would add a frame
            counts: Counter = Counter()
            record, reached = _derive(seed, index, config, counts)
            outcome = {"index": index, "record": record, "rejections": dict(sorted(counts.items()))}
            if record is None:
                outcome["reached"] = reached
            out.append(outcome)
            abandoned = abandoned + 1 if record is None else 0
            if abandoned >= budget:
                break
    return out


def generate_one(seed: int, index: int, config: GeneratorConfig | None = None,
                 rejections: Counter | None = None) -> dict | None:
    """Derivation number ``index`` of the stream ``seed``: a record, or None if abandoned (a
    chunk of one index). Its rejected proposals are added to ``rejections`` when given."""
    (outcome,) = generate_range(seed, index, index + 1, config)
    if rejections is not None:
        rejections.update(outcome["rejections"])
    return outcome["record"]


def next_step(steps: Sequence[Sequence], rng: random.Random,
              config: GeneratorConfig | None = None) -> list | None:
    """One new step proposed from ``steps`` (authors' schema) under every generator filter.

    Returns ``[annotation, srepr]`` (annotation numbered against ``steps``), or None when
    ``config.max_rejections`` proposals were all rejected. Used for the alternative-goal (AG)
    perturbation: ``next_step(derivation[:-1], rng)``. Runs on SymPy's own functions (set
    building calls it between other work), under the generator's recursion budget.
    """
    config = config or DEFAULT_CONFIG
    if not steps:
        raise ValueError("next_step needs at least one step to extend")
    state = _State([from_srepr(s) for _, s in steps], [annotation_internal(a) for a, _ in steps])
    with sympy_fast.recursion_limit(sympy_fast.stack_depth() + RECURSION_BUDGET):
        for _ in range(config.max_rejections):
            try:
                eq, annotation = _propose(state, rng, config)
            except Rejected:
                continue
            return [annotation_json(annotation), fast_srepr(eq)]
    return None


# ----------------------------------------------------------------------------------- many

def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ParameterError(f"parameter 'n' (number of derivations) must be a positive integer, got {n!r}")


def check_workers(workers: int) -> None:
    """Raise ``ParameterError`` unless ``workers`` is a positive integer."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ParameterError(f"parameter 'workers' must be a positive integer, got {workers!r}")


#: Finished chunks by their bounds ``(start, stop)``: a dict, or a store that keeps them on disk
#: (the stage's run directory), so that an interrupted run resumes.
ChunkStore = MutableMapping[tuple, list]


def iter_outcomes(seed: int, workers: int = 1, config: GeneratorConfig | None = None,
                  chunk_store: ChunkStore | None = None, chunk_size: int = MAX_CHUNK,
                  n: int | None = None) -> Iterator[dict]:
    """Per-index outcomes in index order.

    Indices are computed in chunks of at most ``chunk_size`` (:func:`generate_range`), handed to
    the ``workers`` processes one at a time as each becomes free (no process waits for another's
    chunk) and yielded in order. With ``n``, the records wanted, the first batch of chunks covers
    exactly ``n`` indices and each later one as many indices as records are still missing (an
    index gives at most one record; abandoned derivations leave a few missing), so no index is
    computed that is not needed; without ``n``, batches of ``workers`` chunks follow each other
    forever.

    With ``chunk_store``, each finished chunk is stored under its bounds and a stored chunk is
    reused instead of computed, so an interrupted run resumes where it stopped (the chunks of a
    run are the same every time: they follow from ``n``, ``chunk_size`` and the outcomes).

    Raises :class:`Stalled` at the index that makes :func:`abandon_budget` derivations abandoned
    in a row, after yielding the outcomes before it: the same index with any ``workers`` and
    ``chunk_size``. A chunk that ended early there (:func:`generate_range`) is not stored.
    """
    config = config or DEFAULT_CONFIG
    check_workers(workers)
    parallel = Parallel(n_jobs=workers, batch_size=1, return_as="generator") if workers > 1 else None
    budget = abandon_budget(config)
    start, records, abandoned, reached = 0, 0, 0, 0
    while n is None or records < n:
        span = workers * chunk_size if n is None else n - records
        chunks = [(a, min(a + chunk_size, start + span)) for a in range(start, start + span, chunk_size)]
        cached = {c: chunk_store[c] for c in chunks if chunk_store is not None and c in chunk_store}
        todo = [c for c in chunks if c not in cached]
        if parallel is not None and len(todo) > 1:
            computed = iter(parallel(delayed(generate_range)(seed, a, b, config) for a, b in todo))
        else:
            computed = (generate_range(seed, a, b, config) for a, b in todo)
        left = len(todo)
        try:
            for c in chunks:
                outcomes = cached.get(c)
                if outcomes is None:
                    outcomes = next(computed)
                    left -= 1
                    if left == 0:
                        for _ in computed:  # let joblib end its generator before a consumer stops early
                            pass
                    if chunk_store is not None and len(outcomes) == c[1] - c[0]:
                        chunk_store[c] = outcomes
                for outcome in outcomes:
                    if outcome["record"] is None:
                        abandoned += 1
                        # chunks stored before "reached" was recorded lack it
                        reached = max(reached, outcome.get("reached", 0))
                        if abandoned >= budget:
                            raise Stalled(_stalled_message(seed, outcome["index"], abandoned, reached,
                                                           records, n, config))
                    else:
                        records += 1
                        abandoned, reached = 0, 0
                    yield outcome
        finally:
            if left:  # stopped early (Stalled, or the consumer has its records): cancel the chunks
                with warnings.catch_warnings():  # still queued, without joblib's warning about them
                    warnings.filterwarnings("ignore", category=UserWarning, module="joblib")
                    computed.close()
        start += span


def _stalled_message(seed: int, index: int, abandoned: int, reached: int, records: int, n: int | None,
                     config: GeneratorConfig) -> str:
    made = f"{records} of {n}" if n is not None else str(records)
    longest = f"their longest chain had {reached} equations" if reached else "their longest chains are not known"
    return (f"generation stalled: {abandoned} derivations in a row (indices {index - abandoned + 1}-{index} "
            f"of seed {seed}) were abandoned after max_rejections={config.max_rejections} rejected proposals "
            f"each before reaching their target length L = round(Normal({config.length_mean}, "
            f"{config.length_std})) in [{config.min_length}, {config.max_length}]; {longest}; {made} "
            f"derivations made. Lower min_length and length_mean, or raise max_rejections")


def generate(n: int, seed: int = 0, workers: int = 1, config: GeneratorConfig | None = None,
             chunk_store: ChunkStore | None = None, progress=None) -> tuple[list[dict], dict]:
    """The first ``n`` derivations of stream ``seed`` (abandoned indices skipped).

    Returns ``(records, rejection_counts)``; the counts cover exactly the indices up to the last
    record returned, so they too are independent of ``workers``. ``progress(done, n)`` is called
    after each record when given. ``chunk_store``: see :func:`iter_outcomes`. Raises
    :class:`Stalled` when the budget of derivations abandoned in a row is spent.
    """
    _check_n(n)
    check_workers(workers)
    config = config or DEFAULT_CONFIG
    config.check()
    records: list[dict] = []
    rejections: Counter = Counter()
    for outcome in iter_outcomes(seed, workers, config, chunk_store, chunk_size_for(n), n):
        rejections.update(outcome["rejections"])
        if outcome["record"] is not None:
            records.append(outcome["record"])
            if progress is not None:
                progress(len(records), n)
            if len(records) == n:
                break
    return records, dict(sorted(rejections.items()))
