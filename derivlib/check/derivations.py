"""One label per generated equation (:func:`check_derivation`), the per-derivation results
(:class:`DerivationCheck`), step ratings and the first wrong step. See the package docstring."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import sympy as sp

from .. import dialect, latex
from . import budgets
from .context import ReferenceContext, TooLarge, Undecided, context_of, equation_keys
from .evaluate import holds, integrate, substitute

LABELS = ("unparseable", "cut_off", "reference", "valid", "incorrect", "redundant", "irrelevant", "too_large",
          "timeout")
#: PRM800K-like step ratings: +1 reference or valid, 0 redundant or irrelevant, -1 incorrect.
#: ``unparseable``, ``cut_off``, ``too_large`` and ``timeout`` have none (None): the label says
#: which, the reason why.
RATINGS = {"reference": 1, "valid": 1, "redundant": 0, "irrelevant": 0, "incorrect": -1}
#: Progress steps reported to a ``progress`` callback besides the equation indices.
SETUP, RELEVANCE = -1, budgets.MAX_EQUATIONS + 1


# ----------------------------------------------------------------------------------- results

@dataclass
class EquationCheck:
    text: str
    label: str
    reason: str = ""
    latex: str = ""  # canonical LaTeX of the parse (for display), "" if unparseable
    chain: bool = False  # one link a = b of a chain a = b = c the model wrote
    reference_step: int | None = None  # the reference equation it equals (either side order)
    restored: str = ""  # the lost start put back before the text (dialect rule 9), read as a premise

    @property
    def rating(self) -> int | None:
        return RATINGS.get(self.label)


@dataclass
class DerivationCheck:
    id: str
    model: str
    set: str
    equations: list[EquationCheck]
    goal_reached: bool
    skipped_steps: int
    length: int  # equations the model wrote, chain links counted one by one
    reference_length: int
    parse_failures: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.equations]

    @property
    def ratings(self) -> list[int | None]:
        return [e.rating for e in self.equations]

    @property
    def first_wrong_step(self) -> int | None:
        """The index of the first equation labelled ``incorrect``, or None."""
        return next((i for i, label in enumerate(self.labels) if label == "incorrect"), None)

    @property
    def all_correct(self) -> bool:
        return all(label in ("reference", "valid") for label in self.labels)

    def to_dict(self) -> dict:
        out = asdict(self)
        for entry, equation in zip(out["equations"], self.equations):
            entry["rating"] = equation.rating
        out["labels"] = self.labels
        out["ratings"] = self.ratings
        out["first_wrong_step"] = self.first_wrong_step
        return out

    @classmethod
    def from_dict(cls, row: dict) -> "DerivationCheck":
        """The check that :meth:`to_dict` wrote (extra keys, such as scores, are ignored)."""
        fields = {k: v for k, v in row.items() if k in cls.__dataclass_fields__}
        names = EquationCheck.__dataclass_fields__
        fields["equations"] = [EquationCheck(**{k: v for k, v in e.items() if k in names}) if isinstance(e, dict) else e
                               for e in fields["equations"]]
        return cls(**fields)


# ----------------------------------------------------------------------------------- relevance

def _contains(expr: sp.Basic, part: sp.Basic) -> bool:
    if part.is_Atom or (isinstance(part, sp.Mul) and len(part.args) == 2 and part.args[0].is_Number
                        and part.args[1].is_Atom):
        return False  # a symbol or number is in everything
    if expr.has(part):
        return True
    if isinstance(part, (sp.Add, sp.Mul)):
        wanted = set(part.args)
        for node in sp.preorder_traversal(expr):
            if node.func is part.func and wanted <= set(node.args):
                return True
    return False


def _uses(earlier: sp.Equality, later: sp.Equality) -> bool:
    """Whether ``later`` plausibly uses ``earlier``: a side of ``earlier`` (or of its evaluated
    form) appears in ``later``, as substitution, operating on both sides and evaluating
    derivatives leave it. A heuristic: model outputs carry no annotations."""
    sides = [earlier.lhs, earlier.rhs]
    for side in (earlier.lhs, earlier.rhs):
        if side.has(sp.Derivative) and budgets.exceeded(side) is None:
            try:
                evaluated = side.doit(integrals=False)
            except Exception:  # an unevaluable derivative: the raw sides are enough
                continue
            if evaluated not in sides:
                sides.append(evaluated)
    return any(_contains(later, side) for side in sides)


def _mark_irrelevant(checks: list[EquationCheck], parsed: list, context: ReferenceContext) -> None:
    candidates = [i for i, c in enumerate(checks) if c.label == "valid"]
    if not candidates:
        return
    relevant = {i for i, c in enumerate(checks) if c.label == "reference"}
    if not any(context.goal == parsed[i] or equation_keys(context.goal)[1] == (parsed[i].lhs, parsed[i].rhs)
               for i in relevant if parsed[i] is not None):
        # goal not reached: the model's last correct equation is its conclusion
        correct = [i for i, c in enumerate(checks) if c.label in ("reference", "valid")]
        relevant.add(correct[-1])
    for later in range(len(checks) - 1, -1, -1):
        if later not in relevant:
            continue
        for earlier in candidates:
            if earlier < later and earlier not in relevant and _uses(parsed[earlier], parsed[later]):
                relevant.add(earlier)
    for i in candidates:
        if i not in relevant:
            checks[i].label = "irrelevant"
            checks[i].reason = "valid, but nothing on the way to the goal uses it"


# ----------------------------------------------------------------------------------- checking

def split_prediction(prediction: str | Sequence[str]) -> tuple[list[tuple[str, bool]], list[EquationCheck], int]:
    """(equations as (text, chain link), ``too_large`` entries for what the budgets leave out,
    the number of equations written). A string is split by :func:`derivlib.dialect.split`; a
    sequence is taken as its equations, as they are."""
    if isinstance(prediction, str):
        if len(prediction) > budgets.MAX_PREDICTION_CHARS:
            entry = EquationCheck(prediction[:200], "too_large",
                                  f"a prediction of {len(prediction)} characters is not split "
                                  f"(budget MAX_PREDICTION_CHARS = {budgets.MAX_PREDICTION_CHARS})")
            return [], [entry], 1
        found = [(piece.text, piece.chain) for piece in dialect.split(prediction)]
    else:
        found = [(str(text), False) for text in prediction]
    written = len(found)
    if written <= budgets.MAX_EQUATIONS:
        return found, [], written
    entry = EquationCheck(f"({written - budgets.MAX_EQUATIONS} more equations)", "too_large",
                          f"equations after the first {budgets.MAX_EQUATIONS} are not checked "
                          f"(budget MAX_EQUATIONS)")
    return found[:budgets.MAX_EQUATIONS], [entry], written


def cut_off_reason(text: str, parse_reason: str) -> str | None:
    """Why an answer's last equation that does not parse is where the answer was cut off (as when
    the generation's token budget runs out) rather than an equation written wrong, or None: it
    leaves a bracket open, ends with a backslash, or the parser ran out of input."""
    unclosed = dialect.unmatched_brackets(text)[1]
    if unclosed:
        return f"the answer ends inside this equation: {unclosed} bracket(s) left open"
    if text.rstrip().endswith("\\"):
        return "the answer ends inside this equation: it ends with a backslash"
    if "end of input" in parse_reason or parse_reason.endswith("got None"):
        return f"the answer ends inside this equation ({parse_reason})"
    return None


def _decide(equation: sp.Equality, context: ReferenceContext, constants: set, lenient: bool) -> tuple[str, str]:
    """(label, reason) of a parsed equation that is neither redundant nor a reference one."""
    try:
        lhs, rhs = substitute(equation.lhs, context), substitute(equation.rhs, context)
        if lhs == rhs and not lhs.has(sp.Derivative):
            # equal before integrating, so equal after (manualintegrate can take 10 s on e^x cos(e^x));
            # a derivative left unevaluated stays "undecided", as integrate() says
            ok, how = True, "trivially"
        else:
            lhs, rhs = integrate(lhs), integrate(rhs)
            if lhs == rhs:
                ok, how = True, "trivially"
            else:
                ok, how = holds(lhs, rhs, context, constants, lenient)
    except TooLarge as err:
        return "too_large", str(err)
    except MemoryError:
        return "too_large", "the worker's memory limit was reached (MemoryError)"
    except Undecided as err:
        ok, how = False, f"undecided: {err}"
    except (RecursionError, OverflowError, ZeroDivisionError) as err:
        ok, how = False, f"undecided: {type(err).__name__}"
    except (ValueError, TypeError) as err:  # SymPy refusing an odd expression a model wrote
        ok, how = False, f"undecided: {type(err).__name__}: {err}"
    return ("valid" if ok else "incorrect"), how


def _shown(equation: sp.Equality) -> str:
    if budgets.exceeded(equation):
        return ""  # SymPy's printer computes with what it prints (1/10^{10^{10}} as a fraction)
    try:
        return sp.latex(equation)
    except (ValueError, RecursionError):
        return ""


def check_derivation(prediction: str | Sequence[str], srepr_derivation: Sequence[Sequence], *,
                     seed: int = 0, id: str = "", model: str = "", set_name: str = "",
                     skip: Mapping[int, tuple[str, str]] | None = None, relevance: bool = True,
                     progress: Callable[[int], None] | None = None) -> DerivationCheck:
    """Label every equation of a generated derivation against its reference (package docstring).

    ``skip`` maps equation indices to the (label, reason) they get without being read (what a
    worker could not finish in time, :mod:`.parallel`); ``relevance=False`` leaves valid
    equations valid instead of deciding which are irrelevant; ``progress(step)`` is called before
    each step: :data:`SETUP`, each equation index, :data:`RELEVANCE`.
    """
    if not srepr_derivation:
        raise ValueError(f"{id or 'derivation'}: no srepr_derivation to check against")
    report = progress or (lambda step: None)
    skip = skip or {}
    report(SETUP)
    context = context_of(srepr_derivation, seed)
    pieces, left_out, written = split_prediction(prediction)
    # rule 9 of derivlib.dialect: FLAN-T5's answers lose their first token
    lost_start = dialect.restore_lost_start(pieces[0][0], context.premise_latex) \
        if pieces and not pieces[0][1] else None
    ends_the_answer = isinstance(prediction, str) and not left_out
    checks: list[EquationCheck] = []
    parsed: list[sp.Equality | None] = []
    seen: set = set()
    constants = set(context.constants)
    symbols_written: set = set()
    matched_reference: set[int] = set()
    failures = []
    parses: dict[str, latex.ParseResult] = {}
    printed: dict[str, str] = {}
    for index, (text, chain) in enumerate(pieces):
        report(index)
        if index in skip:
            label, reason = skip[index]
            checks.append(EquationCheck(text, label, reason, chain=chain))
            parsed.append(None)
            continue
        read, restored = (lost_start if index == 0 and lost_start else (text, ""))
        try:
            if read not in parses:  # models repeat equations: each text is parsed once
                parses[read] = latex.parse_equation(read, context.functions)
            result = parses[read]
        except MemoryError:
            result = None
        if result is None or not result.ok:
            if result is None:
                checks.append(EquationCheck(text, "too_large", "the worker's memory limit was reached (MemoryError)",
                                            chain=chain))
            elif result.too_large:  # a number the parser would not hold (latex.numbers)
                checks.append(EquationCheck(text, "too_large", result.reason, chain=chain))
            else:
                last = ends_the_answer and index == len(pieces) - 1
                cut = cut_off_reason(text, result.reason) if last else None
                checks.append(EquationCheck(text, "cut_off" if cut else "unparseable", cut or result.reason,
                                            chain=chain))
                failures.append(result.reason)
            parsed.append(None)
            continue
        equation = result.expr
        parsed.append(equation)
        if read not in printed:
            printed[read] = _shown(equation)
        shown = printed[read]
        key = (equation.lhs, equation.rhs)
        steps = context.reference_keys.get(key)
        step = steps[0] if steps else None
        if key in seen:
            checks.append(EquationCheck(text, "redundant", "repeats an earlier equation", shown, chain, step, restored))
            continue
        seen.update(equation_keys(equation))
        if steps:
            matched_reference.update(steps)
            checks.append(EquationCheck(text, "reference", "", shown, chain, step, restored))
            continue
        has_integral = equation.has(sp.Integral)
        if has_integral:  # a symbol first written beside an integral is the model's constant
            constants |= equation.free_symbols - context.reference_symbols - symbols_written
        symbols_written |= equation.free_symbols
        lenient = has_integral or bool(equation.free_symbols & constants)
        label, how = _decide(equation, context, constants, lenient)
        if label == "too_large":
            parsed[-1] = None
        checks.append(EquationCheck(text, label, how, shown, chain, step, restored))
    report(RELEVANCE)
    if relevance:
        _mark_irrelevant(checks, parsed, context)
    else:
        for entry in checks:
            if entry.label == "valid":
                entry.reason += " (relevance not decided: time limit)"
    checks.extend(left_out)
    goal_index = len(context.reference) - 1
    reference_steps = [i for i, flag in enumerate(context.premise_flags) if not flag]
    return DerivationCheck(
        id=id, model=model, set=set_name, equations=checks,
        goal_reached=goal_index in matched_reference,
        skipped_steps=sum(1 for i in reference_steps if i not in matched_reference),
        length=written, reference_length=len(context.reference), parse_failures=failures)


def validate_record(record: dict) -> None:
    """Raise ValueError naming the record when it cannot be checked."""
    missing = [k for k in ("prediction", "srepr_derivation") if not record.get(k)]
    if "prediction" in missing and isinstance(record.get("prediction"), str):
        missing.remove("prediction")  # an empty output is checked: it has no equations
    if missing:
        raise ValueError(f"record {record.get('id', '?')!r} lacks {', '.join(missing)}")


def check_record(record: dict, seed: int = 0, **options) -> DerivationCheck:
    """Check one prediction record (``{"id", "model", "set", "prediction", "srepr_derivation"}``);
    ``options`` are :func:`check_derivation`'s ``skip``, ``relevance`` and ``progress``."""
    validate_record(record)
    return check_derivation(record["prediction"], record["srepr_derivation"], seed=seed,
                            id=str(record.get("id", "")), model=str(record.get("model", "")),
                            set_name=str(record.get("set", "")), **options)
