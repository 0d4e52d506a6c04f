"""Symbolic checking: released references are all correct; corrupted ones get the right label;
the check command and stage ``error_analysis``."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
from collections import defaultdict

import pandas as pd
import pytest
import sympy as sp

from derivlib import check, derivation
from derivlib.__main__ import main
from derivlib.base.files import read_jsonl, write_jsonl
from derivlib.base.params import ParameterError
from derivlib.base.vocabulary import SETS, field
from derivlib.readers import released
from derivlib.stages import error_analysis as stage
from derivlib.stages import rundir

x = sp.Symbol("x")
f = sp.Function("f")
# f(x) = x^2; d/dx f = d/dx x^2; d/dx f = 2x; the goal
TOY = [["premise", sp.srepr(sp.Eq(f(x), x**2))],
       [["differentiate", 1, sp.srepr(x)], sp.srepr(sp.Eq(sp.Derivative(f(x), x), sp.Derivative(x**2, x)))],
       [["evaluate_derivatives", 2], sp.srepr(sp.Eq(sp.Derivative(f(x), x), 2 * x))]]


def labels(equations, steps=TOY):
    return check.check_derivation(equations, steps).labels


def test_labels_on_a_toy_derivation():
    reference = [r"f{(x)} = x^{2}", r"\frac{d}{d x} f{(x)} = \frac{d}{d x} x^{2}", r"\frac{d}{d x} f{(x)} = 2 x"]
    result = check.check_derivation(" and ".join(reference), TOY)
    assert result.labels == ["reference"] * 3 and result.goal_reached and result.skipped_steps == 0
    assert labels([reference[0], reference[0], reference[2]]) == ["reference", "redundant", "reference"]
    assert labels([reference[0], r"\frac{d}{d x} f{(x)} = 3 x"]) == ["reference", "incorrect"]
    assert labels([reference[0], r"\frac{d}{d x} f{(x)} = \frac{2 f{(x)}}{x}", reference[2]]) == \
        ["reference", "valid", "reference"]  # a different correct step that the goal uses
    assert labels([reference[0], r"\cos{(f{(x)})} = \cos{(x^{2})}", reference[2]]) == \
        ["reference", "irrelevant", "reference"]
    assert labels([reference[0], r"\frac{d}{d x} f{(x) = 2"]) == ["reference", "unparseable"]
    skipped = check.check_derivation([reference[0], reference[2]], TOY)
    assert skipped.skipped_steps == 1 and skipped.goal_reached


def test_integration_constants():
    c = sp.Symbol("C")
    steps = [["premise", sp.srepr(sp.Eq(f(x), sp.cos(x)))],
             [["integrate", 1, sp.srepr(x)], sp.srepr(sp.Eq(sp.Integral(f(x), x), sp.Integral(sp.cos(x), x)))],
             [["evaluate_integrals", 2], sp.srepr(sp.Eq(sp.Integral(f(x), x), c + sp.sin(x)))]]
    good = [r"f{(x)} = \cos{(x)}", r"\int f{(x)} dx = \int \cos{(x)} dx", r"\int f{(x)} dx = K + \sin{(x)}",
            r"(\int f{(x)} dx)^{2} = (K + \sin{(x)})^{2}"]
    assert labels(good, steps) == ["reference", "reference", "valid", "valid"]
    assert labels(good[:2] + [r"\int f{(x)} dx = K - \sin{(x)}"], steps)[-1] == "incorrect"
    # a model's constant K later used as an integration variable: zeroing K must not touch dK
    # (SymPy refused the limits and the whole of 07 stopped)
    last = check.check_derivation(good[:3] + [r"\int e^{K^{3}} dK = K"], steps).equations[-1]
    assert (last.label, last.reason) == ("incorrect", "false")


def test_bad_records_are_named():
    with pytest.raises(ValueError, match="srepr_derivation"):
        check.check_record({"id": "x1", "prediction": "x = 1", "srepr_derivation": []})


# ----------------------------------------------------------------------------------- released files

def _references(paper_results_dir):
    items = released.load_items(paper_results_dir / "gpt-4_results.json")
    return [item[field(s, "srepr_derivation")] for item in items for s in SETS]


@pytest.mark.paper_results
def test_released_references_are_correct(paper_results_dir):
    references = _references(paper_results_dir)
    good = 0
    for steps in references:
        result = check.check_derivation(derivation.Derivation(steps=steps).latex(), steps)
        good += result.all_correct and result.goal_reached and result.skipped_steps == 0
    assert len(references) == 500
    assert good / len(references) >= 0.99


def _nonzero(side):
    value = side.doit()
    return value != 0 and not any(p.base == 0 for p in value.atoms(sp.Pow))


def _corruptions(steps, rng):
    """(kind, equations, index, expected) for each corruption that applies to this derivation.
    Corruptions that leave the equation true (a zero side, a factor equal to 1) or that rebuild
    another reference equation are not corruptions and are not made."""
    equations = [derivation.from_srepr(s) for _, s in steps]
    texts = [derivation.to_latex(e) for e in equations]
    as_text = lambda lhs, rhs: derivation.to_latex(sp.Eq(lhs, rhs, evaluate=False))  # noqa: E731
    known = {(e.lhs, e.rhs) for e in equations} | {(e.rhs, e.lhs) for e in equations}
    step_indices = [i for i, (a, _) in enumerate(steps) if not derivation.is_premise(derivation.normalise_annotation(a))]
    nonzero = [i for i in step_indices if _nonzero(equations[i].lhs) and _nonzero(equations[i].rhs)]
    out = []
    if nonzero:
        k = rng.choice(nonzero)
        out.append(("sign flipped", texts[:k] + [as_text(equations[k].lhs, -equations[k].rhs)] + texts[k + 1:], k, "incorrect"))
    factors = [(i, side, factor) for i in nonzero for side in ("lhs", "rhs")
               if isinstance(getattr(equations[i], side), sp.Mul)
               for factor in getattr(equations[i], side).args if not factor.is_Number and factor.doit() != 1]
    if factors:
        i, side, factor = rng.choice(factors)
        dropped = sp.Mul(*[a for a in getattr(equations[i], side).args if a != factor])
        lhs, rhs = (dropped, equations[i].rhs) if side == "lhs" else (equations[i].lhs, dropped)
        if (lhs, rhs) not in known:
            out.append(("factor dropped", texts[:i] + [as_text(lhs, rhs)] + texts[i + 1:], i, "incorrect"))
    k = rng.randrange(len(texts))
    out.append(("step duplicated", texts[:k + 1] + [texts[k]] + texts[k + 1:], k + 1, "redundant"))
    premise = equations[0]
    unrelated = as_text(sp.cos(premise.lhs) + 1, sp.cos(premise.rhs) + 1)  # true, and used by nothing
    position = rng.randint(1, len(texts) - 1)
    out.append(("unrelated valid equation inserted", texts[:position] + [unrelated] + texts[position:], position, "irrelevant"))
    inner = [i for i in step_indices if i != len(texts) - 1]
    if inner:
        r = rng.choice(inner)
        out.append(("intermediate step removed", texts[:r] + texts[r + 1:], None, "skipped"))
    return out


@pytest.mark.paper_results
def test_corrupted_references_get_the_right_label(paper_results_dir):
    outcomes = defaultdict(list)
    for number, steps in enumerate(_references(paper_results_dir)):
        rng = random.Random(number)
        for kind, texts, index, expected in _corruptions(steps, rng):
            result = check.check_derivation(texts, steps)
            if expected == "skipped":
                right = result.skipped_steps >= 1 and result.goal_reached and result.all_correct
            else:
                right = result.labels[index] == expected
            outcomes[kind].append(right)
    assert len(outcomes) == 5
    for kind, rights in outcomes.items():
        assert len(rights) >= 150, kind
        assert sum(rights) / len(rights) >= 0.95, (kind, sum(rights), len(rights))


# ----------------------------------------------------------------------------------- CLI

REDUNDANT = r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = 2 x and \frac{d}{d x} f{(x)} = 2 x"
REFERENCE = r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = \frac{d}{d x} x^{2} and \frac{d}{d x} f{(x)} = 2 x"


def toy_records(sets=("static", "EE"), model="toy", prediction=REDUNDANT) -> list[dict]:
    return [{"id": "t1", "model": model, "set": s, "prompt": "", "reference": REFERENCE,
             "prediction": prediction, "srepr_derivation": TOY} for s in sets]


def test_cli_csv(tmp_path, capsys):
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_records()))
    assert main(["check", "--results", str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["model", "set", "equations", "unparseable", "reference", "valid", "incorrect",
                             "redundant", "irrelevant", "derivations", "goal_reached"]
    assert [(r["set"], r["equations"], r["reference"], r["redundant"], r["goal_reached"]) for r in rows] == \
        [("static", "3", "2", "1", "1"), ("EE", "3", "2", "1", "1")]
    assert main(["check", "--results", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such predictions file" in capsys.readouterr().err


@pytest.mark.paper_results
def test_cli_on_released_results(flan_results, capsys):
    assert main(["check", "--results", str(flan_results), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["set"] for r in rows] == list(SETS)
    for row in rows:
        labelled = sum(int(row[label]) for label in check.LABELS)
        assert labelled == int(row["equations"]) and int(row["derivations"]) == 100


def test_cli_details_and_model_name(tmp_path, capsys):
    write_jsonl(tmp_path / "predictions.jsonl", toy_records())
    details = tmp_path / "out" / "labels.jsonl"
    assert main(["check", "--results", str(tmp_path / "predictions.jsonl"), "--model-name", "renamed",
                 "--format", "csv", "--details", str(details)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["model"] for r in rows} == {"renamed"}
    written = read_jsonl(details)
    assert [r["labels"] for r in written] == [["reference", "reference", "redundant"]] * 2
    assert check.DerivationCheck.from_dict(written[0]).to_dict() == written[0]


def test_cli_details_never_overwrites_an_input(tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    write_jsonl(predictions, toy_records())
    before = predictions.read_bytes()
    for details in (predictions, tmp_path / "labels.jsonl"):
        # the second: inside the directory given as --results
        assert main(["check", "--results", str(tmp_path), "--details", str(details)]) == 2
        assert "would overwrite the input --results" in capsys.readouterr().err
    assert main(["check", "--results", str(predictions), "--details", str(predictions)]) == 2
    assert predictions.read_bytes() == before and not (tmp_path / "labels.jsonl").exists()


# ----------------------------------------------------------------------------------- stage 07

@dataclasses.dataclass(frozen=True)
class FixtureParams:
    profile: str = "fixture"


def predictions_run(records: list[dict]) -> str:
    """A complete predictions run published as ``predict_t5/fixture``, as 04 would publish it."""
    run = rundir.start_run("predict_t5", FixtureParams())
    write_jsonl(run.path("predictions.jsonl"), records)
    run.finish(records=len(records))
    return "predict_t5/fixture"


def test_error_analysis_stage_runs_then_loads(isolated_data, monkeypatch):
    monkeypatch.delenv(released.ENV, raising=False)
    wrong = r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = 3 x"
    records = toy_records(("static", "EE")) + toy_records(("static",), model="other", prediction=wrong)
    namespace = {"predictions": [predictions_run(records)], "profile": "tiny"}
    run = stage.open_run(namespace)
    result = stage.run(run)
    assert run.complete and run.dir == run.final
    assert {"params.json", "meta.json", "checks.jsonl", "summary.csv", "COMPLETE"} <= {p.name for p in run.dir.iterdir()}
    assert result.summary[["model", "set", "equations", "reference", "redundant", "incorrect"]].values.tolist() == [
        ["other", "static", 2, 1, 0, 1], ["toy", "static", 3, 2, 1, 0], ["toy", "EE", 3, 2, 1, 0]]
    assert [c.labels for c in result.checks] == [["reference", "reference", "redundant"]] * 2 + [["reference", "incorrect"]]
    assert result.per_item["share correct"].round(3).tolist() == [0.667, 0.667, 0.5]
    assert {"rouge", "bleu", "gleu", "goal reached"} <= set(result.per_item)
    assert set(result.figures) == {"error_distribution", "rouge_vs_validity"}
    assert all(path.exists() for path in result.figures.values())
    assert {p.name for p in (isolated_data / "figures" / "tiny").iterdir()} == \
        {"error_distribution.png", "rouge_vs_validity.png"}

    again = stage.run(stage.open_run(namespace))  # complete: loads
    pd.testing.assert_frame_equal(again.summary, result.summary)
    pd.testing.assert_frame_equal(again.per_item, result.per_item)
    assert [c.to_dict() for c in again.checks] == [c.to_dict() for c in result.checks]
    assert again.figures == result.figures


def test_error_analysis_stage_names_bad_parameters(isolated_data, tmp_path):
    with pytest.raises(ParameterError, match="predict_t5/nowhere"):
        stage.open_run({"predictions": ["predict_t5/nowhere"]})
    with pytest.raises(ParameterError, match="nothing to check"):
        stage.open_run({"predictions": [], "include_paper_results": False})
    with pytest.raises(ParameterError, match="sed"):
        stage.open_run({"predictions": [], "sed": 1})
