"""Symbolic checking of generated derivations: one label per generated equation.

A generated derivation (the model's text) is split into equations by the dialect rules
(:func:`derivlib.dialect.split`: delimiters, ``align`` rows, prose, punctuation, commutators;
a chain ``a = b = c`` becomes the links ``a = b`` and ``b = c``, each one equation, marked
``chain``, and counted in the derivation's length) and checked against its reference's
``srepr_derivation``, which gives the premises exactly. An answer's first equation that lost
its start (FLAN-T5's label-shift bug, dialect rule 9) is read as the premise it ends like; its
``restored`` field holds the text put back. Labels, first match wins:

``unparseable``
    :func:`derivlib.latex.parse_equation` fails (not LaTeX of the dialect, or no ``=``).
``cut_off``
    the last equation of an answer that does not parse because the answer ends inside it (a
    bracket left open, a trailing backslash, the parser out of input), as when the generation's
    token budget runs out (:func:`.derivations.cut_off_reason`).
``redundant``
    the same equation as an earlier generated one (SymPy ``==``, either side order).
``reference``
    the same equation as one of the reference's (SymPy ``==`` after canonical naming, either
    side order: the EE set swaps sides, and a swapped equation says the same thing).
``valid`` / ``irrelevant``
    holds given the premises (below) and is not a reference equation; ``irrelevant`` when no
    later equation on the way to the goal uses it (see :func:`.derivations._uses`).
``incorrect``
    does not hold given the premises, or could not be shown to hold (``reason`` says which:
    ``"false"`` or ``"undecided: ..."``). An equation that only follows from an earlier incorrect
    one is incorrect too: errors propagate.
``too_large``
    deciding it would exceed a structural budget (:mod:`.budgets`: digits of exact numbers,
    factorials, expression size after substitution, derivative order and work, integral nesting; also the
    equations beyond ``MAX_EQUATIONS`` of a prediction and a prediction over
    ``MAX_PREDICTION_CHARS``), or its worker reached its memory limit.
``timeout``
    a worker spent more than the time limit on it and was killed (:mod:`.parallel`).

Step ratings, PRM800K-like (:attr:`EquationCheck.rating`): +1 ``reference`` or ``valid``, 0
``redundant`` or ``irrelevant``, -1 ``incorrect``, None for ``unparseable``, ``cut_off``,
``too_large`` and ``timeout`` (the label says which, the reason why). Per derivation: the first
wrong step (index of the first ``incorrect`` equation, or None), goal reached (some generated equation is the
reference's last, either side order), reference steps skipped (non-premise reference equations
never produced), lengths.

"Holds given the premises" is decided numerically, not by ``simplify``: every premise
``f(x) = rhs`` defines ``f`` (its function side is replaced by the other side, repeatedly), a
function no premise defines becomes a fixed random smooth surrogate, derivatives are evaluated
with ``doit``, indefinite integrals with SymPy's ``manualintegrate`` when the integrand is
small (cached), and otherwise by Gauss-Legendre quadrature from a fixed base point. Both sides
are then evaluated in complex arithmetic at ``POINTS`` random points (every symbol uniform in
[0.5, 1.5], drawn from ``(seed, symbol name)`` alone, so checks are reproducible and independent
of order), and the equation holds when ``|lhs - rhs| <= RTOL * (1 + |lhs| + |rhs|)`` at every
point where both are finite (at least 2 needed).

Integration constants. Symbols of the reference that no premise has are the integration
constants ``evaluate_integrals`` introduced; so are new symbols first written in a generated
equation that contains an integral. An equation with an integral or such a constant holds if
it holds (a) with random constants, or (b) with the constants set to 0 (SymPy's antiderivatives
have none), or (c) up to an additive constant: the residual is the same at every point.

Modules: :mod:`.context` (a reference's shared state), :mod:`.budgets`, :mod:`.evaluate` (the
numeric decision), :mod:`.derivations` (labels of one derivation), :mod:`.parallel` (many
records in workers with a time and memory limit), :mod:`.summary` (tables, parse failures,
ProcessBench-style numbers). Stage ``error_analysis`` (:mod:`derivlib.stages.error_analysis`)
runs these checks over predictions runs; the ``check`` command over files.
"""
from __future__ import annotations

from .budgets import (MAX_DERIVATIVE_ORDER, MAX_DERIVATIVE_WORK, MAX_DIGITS, MAX_EQUATIONS, MAX_FACTORIAL,
                      MAX_INTEGRAL_NESTING, MAX_NODES, MAX_PREDICTION_CHARS)
from .context import HIGH, LOW, POINTS, ReferenceContext, TooLarge, Undecided
from .derivations import (LABELS, RATINGS, DerivationCheck, EquationCheck, check_derivation, check_record,
                          split_prediction, validate_record)
from .evaluate import RTOL, holds, integrate, numeric, prepare, substitute
from .parallel import MEMORY_LIMIT_MB, TIME_LIMIT, check_records, limit_memory
from .summary import (COUNT_COLUMNS, FAILURE_KINDS, examples, failure_kind, failures_table, format_table,
                      processbench, processbench_table, reference_match_first_deviation, summarize,
                      symbolic_first_wrong_step)

__all__ = [
    "LABELS", "RATINGS", "COUNT_COLUMNS", "FAILURE_KINDS", "POINTS", "RTOL", "LOW", "HIGH", "TIME_LIMIT",
    "MEMORY_LIMIT_MB", "MAX_PREDICTION_CHARS", "MAX_EQUATIONS", "MAX_DIGITS", "MAX_FACTORIAL", "MAX_NODES",
    "MAX_DERIVATIVE_ORDER", "MAX_DERIVATIVE_WORK", "MAX_INTEGRAL_NESTING", "EquationCheck", "DerivationCheck",
    "ReferenceContext", "Undecided", "TooLarge", "check_derivation", "check_record", "check_records",
    "limit_memory", "split_prediction", "validate_record", "prepare", "substitute", "integrate", "holds", "numeric",
    "summarize", "format_table", "examples", "failure_kind", "failures_table", "processbench", "processbench_table",
    "symbolic_first_wrong_step", "reference_match_first_deviation",
]
