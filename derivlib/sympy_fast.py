"""SymPy run faster while generating, and the interpreter settings the generator changes, each
only inside a context that restores them.

Two of SymPy's internal functions are replaced, inside :func:`fast_sympy` only, by stand-ins that
give the same answers faster: :func:`ask_memo` (an assumption query also records the facts it
could not decide, so each handler runs once per node) and :func:`aresame_fast` (``subs``'s
sameness test skips the tree walk when identity or hashes decide it). The generator enters the
context around one chunk of derivations, in the process that computes the chunk (a joblib worker,
or the caller's process when there is one worker), so no other code sees the replacement: not
the caller between chunks, not set building, not a test. Nothing is replaced at import, and with
any SymPy other than the one the stand-ins were derived from (:data:`STOCK_SHA256`) nothing is
replaced at all.

:func:`recursion_limit` is the one other setting the generator changes: Python's recursion limit,
set relative to the generating frame (:func:`stack_depth`) and restored on exit.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import sys
import threading

import sympy as sp

# The modules whose functions are replaced; ``sympy.core.assumptions`` the attribute is a
# function, so the modules are taken from sys.modules.
_SYMPY_ASSUMPTIONS = sys.modules["sympy.core.assumptions"]
_SYMPY_BASIC = sys.modules["sympy.core.basic"]
#: SymPy's own functions, as imported (restored whenever :func:`fast_sympy` ends).
STOCK_ASK = _SYMPY_ASSUMPTIONS._ask
STOCK_ARESAME = _SYMPY_BASIC._aresame
#: sha256 of the sources of SymPy 1.14.0's ``_ask`` and ``_aresame`` (``Basic.is_same``), the
#: functions that :func:`ask_memo` and :func:`aresame_fast` stand in for. With any other source
#: (another SymPy), :func:`fast_sympy` leaves SymPy's own in place.
STOCK_SHA256 = {"_ask": "fbf4c4060f257a9b435bc0f812609e8c8e57237a6917e8c1ef3a5f4834aaf3e2",
                "_aresame": "19997e4074bd933bac1109289aad9b5f587682b0420778523d34ea862e251b48"}
#: Every assumption fact SymPy defines (``commutative``, ``positive``...), sorted.
FACTS = tuple(sorted(_SYMPY_ASSUMPTIONS._assume_defined))
#: The facts that can decide each fact, in a fixed order (SymPy's ``_assume_rules.prereq``).
_PREREQUISITES = {fact: tuple(sorted(facts))
                  for fact, facts in _SYMPY_ASSUMPTIONS._assume_rules.prereq.items()}
_lock = threading.Lock()
_depth = 0


def ask_memo(fact, obj):
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


def aresame_fast(a, b) -> bool:
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
    return STOCK_ARESAME(a, b)


#: (module, name, SymPy's function, its replacement)
_REPLACEMENTS = ((_SYMPY_ASSUMPTIONS, "_ask", STOCK_ASK, ask_memo),
                 (_SYMPY_BASIC, "_aresame", STOCK_ARESAME, aresame_fast))
#: What :func:`installed` gives outside :func:`fast_sympy`, and inside it (with the pinned SymPy).
STOCK = (STOCK_ASK, STOCK_ARESAME)
STAND_INS = (ask_memo, aresame_fast)


def installed() -> tuple:
    """The functions SymPy runs now as ``assumptions._ask`` and ``basic._aresame``: :data:`STOCK`
    or :data:`STAND_INS`."""
    return _SYMPY_ASSUMPTIONS._ask, _SYMPY_BASIC._aresame


@functools.lru_cache(maxsize=1)
def stock_is_known() -> bool:
    """True when SymPy's functions are the ones the stand-ins were derived from."""
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
    """Within this block SymPy runs :func:`ask_memo` for its assumption queries (same answers,
    each handler run once per node) and :func:`aresame_fast` in ``subs`` (same answers, no tree
    walk when certain). Re-entrant and thread-safe; SymPy's own functions are restored when the
    outermost block ends, also on an error. Does nothing with a SymPy whose functions are not the
    ones replaced."""
    global _depth
    with _lock:
        if _depth == 0 and stock_is_known():
            for module, name, _, fast in _REPLACEMENTS:
                setattr(module, name, fast)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for module, name, stock, _ in _REPLACEMENTS:
                    setattr(module, name, stock)


def stack_depth() -> int:
    """Python frames on the caller's stack, the caller's own frame included."""
    depth, frame = 0, sys._getframe(1)
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


@contextlib.contextmanager
def recursion_limit(limit: int):
    """Python's recursion limit set to ``limit`` within the block, restored after (also on an
    error). The generator passes ``stack_depth() + budget`` so that how deep SymPy may recurse
    does not depend on the caller's stack."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)
